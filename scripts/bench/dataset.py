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
    armlab bench dataset --format both --json    # both formats, and reading: wds shards against the folder format
    armlab bench dataset --read-only --json      # the reading benchmark alone

Reading (``--format wds|both`` or ``--read-only``): a 64 px dataset of ``--read-frames`` frames in both
formats (the shards converted from the folder, so the same bytes), read by a torch DataLoader with one
worker process after a warm-up epoch each (warm page cache): `ArmlabDataset` over the folder against
`ShardStream` over the shards (batches of 64 built in the worker; the folder's items are collated by the
DataLoader, its usual use), samples/s of whole epochs (dataset construction included: the folder format
reads its labels there), alternating; ``read_wds_vs_files`` is the median of the per-repeat ratios (target
>= 1.5).

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
                   written: list[Path] | None = None, format: str = "files") -> float:
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
        generate(tmp / "d", DatasetConfig(n=frames, size=size, seed=0), workers=workers, progress=False,
                 format=format)
        return frames / (time.perf_counter() - t0)
    finally:
        if written is None:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            written.append(tmp)


def measure(size: int = 128, frames: int = 600, repeats: int = 3, progress: bool = True,
            where: str | None = None, formats: tuple[str, ...] = ("files",)) -> dict:
    """The writer's figures for each of ``formats`` (the folder format's keys unprefixed, the sharded one's with
    ``wds_``), measured in the same repeats against the same raw renders."""
    from tqdm import tqdm

    per: dict[str, list[float]] = {"raw_fps": []}
    ratios: dict[str, list[float]] = {}
    ceilings = []
    written: list[Path] = []  # the generated datasets, deleted after the last measurement
    try:
        for _ in tqdm(range(repeats), desc="bench dataset", disable=not progress):
            a = raw_rate(size, frames)
            per["raw_fps"].append(a)
            for fmt in formats:
                pre = "" if fmt == "files" else f"{fmt}_"
                b = generator_rate(size, frames, 1, where, written, fmt)
                c = generator_rate(size, frames, 2, where, written, fmt)
                per.setdefault(f"{pre}generator_fps", []).append(b)
                per.setdefault(f"{pre}generator_fps_2workers", []).append(c)
                ratios.setdefault(f"{pre}render_vs_raw", []).append(b / a)
                ratios.setdefault(f"{pre}workers2_vs_1", []).append(c / b)
            ceilings.append(parallel_ceiling(size, frames // 2))
    finally:
        for tmp in written:
            shutil.rmtree(tmp, ignore_errors=True)
    return {
        "size": size, "frames": frames, "repeats": repeats, "formats": list(formats),
        **{k: max(v) for k, v in per.items()}, **{k: float(np.median(v)) for k, v in ratios.items()},
        "parallel_ceiling": float(np.median(ceilings)), "dir": where or tempfile.gettempdir(),
        "per_repeat": per,  # the ratios' inputs
    }


def _epoch_rate(make, batch: int | None) -> float:
    """Samples/s of one epoch of a DataLoader with one worker process over ``make()`` (built inside the timer:
    the folder format reads its labels there, the stream as it goes), collating ``batch`` items (None: the
    dataset yields batches)."""
    from torch.utils.data import DataLoader

    t0 = time.perf_counter()
    n = sum(len(b["image"]) for b in DataLoader(make(), batch_size=batch, num_workers=1))
    return n / (time.perf_counter() - t0)


def read_rates(frames: int = 4000, size: int = 64, repeats: int = 3, where: str | None = None,
               batch: int = 64) -> dict:
    """A torch DataLoader (one worker, warm cache) reading the same ``frames`` frames at ``size`` px from the
    folder format (`ArmlabDataset`, items collated by the DataLoader) and from the wds shards (`ShardStream`,
    shards of 1000, batches built in the worker), side by side, the same batches of ``batch`` frames from both:
    samples/s of each (best of ``repeats`` alternating epochs) and their ratio (median over the pairs). Each
    epoch builds its dataset inside the timer (one pass over the data); ``read_files_built_sps`` is the folder
    format's later epochs, its labels parsed once before (``read_wds_vs_files_built``: the stream against
    that)."""
    from generative.data import ArmlabDataset, ShardStream
    from robot_env.dataset import DatasetConfig, convert, generate
    from robot_env.io.threads import torch_threads

    tmp = Path(tempfile.mkdtemp(prefix="armlab-bench-read-", dir=where))
    try:
        generate(tmp / "files", DatasetConfig(n=frames, size=size, seed=0), workers=2, progress=False)
        convert(tmp / "files", tmp / "wds", "wds")
        built = ArmlabDataset(tmp / "files")  # a later epoch of the same object: its labels are parsed already
        makers = {"files": (lambda: ArmlabDataset(tmp / "files"), batch),  # items, collated by the DataLoader
                  "wds": (lambda: ShardStream(tmp / "wds", seed=0, batch_size=batch), None),  # batches
                  "files_built": (lambda: built, batch)}
        rates: dict[str, list[float]] = {f"read_{name}_sps": [] for name in makers}
        with torch_threads(1):
            for make, b in makers.values():  # warm the page cache and the imports
                _epoch_rate(make, b)
            for _ in range(repeats):
                for name, (make, b) in makers.items():
                    rates[f"read_{name}_sps"].append(_epoch_rate(make, b))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    ratio = [w / f for w, f in zip(rates["read_wds_sps"], rates["read_files_sps"])]
    later = [w / f for w, f in zip(rates["read_wds_sps"], rates["read_files_built_sps"])]
    return {"read_frames": frames, "read_size": size, "read_batch": batch,
            **{k: max(v) for k, v in rates.items()}, "read_wds_vs_files": float(np.median(ratio)),
            "read_wds_vs_files_built": float(np.median(later)), "per_repeat_read": rates}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--size", type=int, default=128, help="image size in pixels (default 128)")
    p.add_argument("--frames", type=int, default=600, help="frames per measurement (default 600)")
    p.add_argument("--repeats", type=int, default=3, help="measurement pairs; ratios are their medians (default 3)")
    p.add_argument("--dir", default=None, metavar="DIR",
                   help="folder the generator writes its temporary datasets under (default: the system's temporary "
                        "folder); put it on the disk you will generate to")
    p.add_argument("--format", default="files", metavar="files|wds|both",
                   help="the dataset format(s) the writer is measured in (default files); wds and both also run the "
                        "reading benchmark: a DataLoader streaming --read-size px shards against the folder format")
    p.add_argument("--read-frames", type=int, default=4000, metavar="N",
                   help="frames of the reading benchmark's dataset (default 4000)")
    p.add_argument("--read-size", type=int, default=64, metavar="PX", help="its image size (default 64)")
    p.add_argument("--read-only", action="store_true", help="skip the writer: only the reading benchmark")
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
    formats = {"files": ("files",), "wds": ("wds",), "both": ("files", "wds")}.get(args.format)
    if formats is None:
        raise UsageError(f"--format must be files, wds or both, got {args.format!r}.")
    reading = args.format != "files" or args.read_only
    if reading and args.read_frames < 100:
        raise UsageError(f"--read-frames must be at least 100, got {args.read_frames}.")
    if reading and not 16 <= args.read_size <= 1024:
        raise UsageError(f"--read-size must be between 16 and 1024 pixels, got {args.read_size}.")
    r = {} if args.read_only else measure(args.size, args.frames, args.repeats, where=args.dir, formats=formats)
    for fmt in () if args.read_only else formats:
        pre = "" if fmt == "files" else f"{fmt}_"
        print(f"{fmt}: raw getCameraImage {r['raw_fps']:.0f} frames/s at {r['size']}x{r['size']}; generator "
              f"{r[pre + 'generator_fps']:.0f} frames/s (1 worker), {r[pre + 'generator_fps_2workers']:.0f} frames/s "
              f"(2 workers)")
        print(f"{fmt}: render_vs_raw {r[pre + 'render_vs_raw']:.2f} (target >= 0.8)   workers2_vs_1 "
              f"{r[pre + 'workers2_vs_1']:.2f} (target >= 1.7; two bare renderers reach {r['parallel_ceiling']:.2f} "
              f"here); files under {r['dir']}")
    if reading:
        r.update(read_rates(args.read_frames, args.read_size, args.repeats, where=args.dir))
        print(f"reading {r['read_frames']} frames at {r['read_size']} px, DataLoader with one worker, warm cache: "
              f"folder format {r['read_files_sps']:.0f} samples/s, wds shards {r['read_wds_sps']:.0f} samples/s; "
              f"read_wds_vs_files {r['read_wds_vs_files']:.2f} (target >= 1.5); against a folder dataset built "
              f"before the timer (a later epoch: labels parsed already) {r['read_files_built_sps']:.0f} samples/s, "
              f"read_wds_vs_files_built {r['read_wds_vs_files_built']:.2f}")
    if args.json:
        emit_json(r)
    return 0
