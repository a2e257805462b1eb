"""Dataset generation speed against the renderer it runs, and across worker processes.

Measured in one run, on the dataset's own scene at ``--size`` (default 128) pixels:

* raw: bare ``getCameraImage`` calls on the generator's own scenes (each set up outside
  the timer; TinyRenderer with the same view, light and flags), frames/s — the limit;
* generator: `robot_env.dataset.generate` with one worker, frames/s with everything
  written (RGB, depth and segmentation PNGs, labels, COCO file, manifest with checksums);
  ``render_vs_raw`` is their ratio (target >= 0.8);
* the same with two workers; ``workers2_vs_1`` is the speed-up (target >= 1.7), set
  beside ``parallel_ceiling``: two processes doing bare renders against one, the most
  two processes get on this machine at this moment.

Each ratio is the median over ``--repeats`` back-to-back pairs (reference, then subject).

    armlab bench dataset --frames 600 --json
    armlab bench dataset --dir /dev/shm --json   # the same on a RAM disk: the file system's share

The generator's files go to a fresh temporary folder under ``--dir`` (default: the system's
temporary folder). Four files per frame make the file system part of what is measured: on
the 2-vCPU VM of docs/benchmarks.md, whose ext4 has no journal, creating a small file costs
~0.02 ms, but 0.2-0.45 ms in the minutes after a few thousand deletions on the same disk (see
`generator_rate`): the run keeps its datasets until its last measurement, and figures taken
within minutes of deleting many files (a previous run, a test suite) come out low.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from armlab_scripts._common import UsageError, emit_json


def _scene(size: int):
    from robot_env._quiet import quiet_c_output
    from robot_env.dataset import DatasetConfig, Scene

    with quiet_c_output():
        scene = Scene(DatasetConfig(size=size))
    scene.frame(0)
    return scene


def raw_rate(size: int, frames: int) -> float:
    """Frames/s of bare getCameraImage calls on the generator's scenes: each of frames
    0..frames-1 is set up outside the timer, then rendered with exactly the generator's
    arguments inside it."""
    from robot_env.sim import pb

    scene = _scene(size)
    try:
        total = 0.0
        for i in range(frames):
            scene.frame(i)
            args = scene.render_args
            t0 = time.perf_counter()
            pb.getCameraImage(**args)
            total += time.perf_counter() - t0
        return frames / total
    finally:
        scene.close()


def _raw_job(job) -> float:
    return raw_rate(*job)


def parallel_ceiling(size: int, frames: int) -> float:
    """Two processes rendering at once against one: total rate ratio."""
    ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
    with ctx.Pool(2) as pool:
        pool.map(_raw_job, [(size, 5)] * 2)  # warm both
        one = pool.map(_raw_job, [(size, frames)])[0]
        two = sum(pool.map(_raw_job, [(size, frames)] * 2))
    return two / one


def generator_rate(size: int, frames: int, workers: int, where: str | None = None,
                   written: list[Path] | None = None) -> float:
    """Frames/s of `generate` into a fresh folder under ``where``, wall time of the whole call.

    The folder is deleted at once, or added to ``written`` for the caller to delete after its
    last measurement. Deleting a dataset right before the next measurement would time the
    file system, not the generator: on an ext4 without a journal (the VM of
    docs/benchmarks.md) the inode allocator steps over every inode freed in the last 1 to 6
    minutes, one by one, so after a few thousand deletions creating a small file costs
    0.2-0.45 ms instead of 0.02 ms."""
    from robot_env.dataset import DatasetConfig, generate

    tmp = Path(tempfile.mkdtemp(prefix="armlab-bench-dataset-", dir=where))
    try:
        t0 = time.perf_counter()
        generate(tmp / "d", DatasetConfig(n=frames, size=size, seed=0), workers=workers, progress=False)
        return frames / (time.perf_counter() - t0)
    finally:
        if written is None:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            written.append(tmp)


def measure(size: int = 128, frames: int = 600, repeats: int = 3, progress: bool = True,
            where: str | None = None) -> dict:
    from tqdm import tqdm

    raw, gen1, gen2, r_vs_raw, w2_vs_1, ceilings = [], [], [], [], [], []
    written: list[Path] = []  # the generated datasets, deleted after the last measurement
    try:
        for _ in tqdm(range(repeats), desc="bench dataset", disable=not progress):
            a = raw_rate(size, frames)
            b = generator_rate(size, frames, 1, where, written)
            c = generator_rate(size, frames, 2, where, written)
            raw.append(a), gen1.append(b), gen2.append(c)
            r_vs_raw.append(b / a)
            w2_vs_1.append(c / b)
            ceilings.append(parallel_ceiling(size, frames // 2))
    finally:
        for tmp in written:
            shutil.rmtree(tmp, ignore_errors=True)
    return {
        "size": size, "frames": frames, "repeats": repeats,
        "raw_fps": max(raw), "generator_fps": max(gen1), "generator_fps_2workers": max(gen2),
        "render_vs_raw": float(np.median(r_vs_raw)), "workers2_vs_1": float(np.median(w2_vs_1)),
        "parallel_ceiling": float(np.median(ceilings)), "dir": where or tempfile.gettempdir(),
        "per_repeat": {"raw_fps": raw, "generator_fps": gen1, "generator_fps_2workers": gen2},  # the ratios' inputs
    }


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--size", type=int, default=128, help="image size in pixels (default 128)")
    p.add_argument("--frames", type=int, default=600, help="frames per measurement (default 600)")
    p.add_argument("--repeats", type=int, default=3, help="measurement pairs; ratios are their medians (default 3)")
    p.add_argument("--dir", default=None, metavar="DIR",
                   help="folder the generator writes its temporary datasets under (default: the system's temporary "
                        "folder); put it on the disk you will generate to")
    p.add_argument("--json", action="store_true", help="print the figures as one JSON object on the last line")


def run(args: argparse.Namespace) -> int:
    if args.frames < 20:
        raise UsageError(f"--frames must be at least 20, got {args.frames}.")
    if args.repeats < 1:
        raise UsageError(f"--repeats must be at least 1, got {args.repeats}.")
    if not 16 <= args.size <= 1024:
        raise UsageError(f"--size must be between 16 and 1024 pixels, got {args.size}.")
    if args.dir is not None and not Path(args.dir).is_dir():
        raise UsageError(f"--dir {args.dir} is not an existing folder.")
    r = measure(args.size, args.frames, args.repeats, where=args.dir)
    print(f"raw getCameraImage {r['raw_fps']:.0f} frames/s at {r['size']}x{r['size']}; generator "
          f"{r['generator_fps']:.0f} frames/s (1 worker), {r['generator_fps_2workers']:.0f} frames/s (2 workers)")
    print(f"render_vs_raw {r['render_vs_raw']:.2f} (target >= 0.8)   workers2_vs_1 {r['workers2_vs_1']:.2f} "
          f"(target >= 1.7; two bare renderers reach {r['parallel_ceiling']:.2f} here); files under {r['dir']}")
    if args.json:
        emit_json(r)
    return 0
