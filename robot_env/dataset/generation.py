"""Generating frames: worker processes or Ray actors, shards, and resuming a killed run.

Frame ``i`` depends only on ``(seed, i, settings)``, so any number of workers, any shard split and
any kill-and-resume give byte-identical files. A frame counts as done when its label exists (written
last, atomically); a restarted run regenerates exactly the frames without one. A folder records the
settings it was started with and refuses others.
"""

from __future__ import annotations

import json
import os
import time
from collections import deque
from dataclasses import asdict
from pathlib import Path

import numpy as np

from robot_env._quiet import quiet_c_output
from robot_env.dataset.config import DatasetConfig, shard_range
from robot_env.dataset.manifest import (
    LAYOUT_RECORD,
    SETTINGS_FILE,
    finalize_dataset,
    settings_record,
    write_settings_record,
)
from robot_env.dataset.scene import Frame, Scene
from robot_env.dataset.writer import frame_blobs, frame_meta, output_label, write_frame
from robot_env.io.atomic import make_dirs
from robot_env.io.dataset_format import POSES_FILE, DatasetError, DatasetParamError, frame_done, load_pose_bank
from robot_env.io.shards import (
    FORMATS,
    KINDS,
    SHARD_DIR,
    WDS,
    check_outputs,
    check_shard_size,
    sample_bytes,
    shard_span,
)

_WORKER: dict = {}


def _worker_init(cfg_dict: dict, out: str, outputs: tuple[str, ...] = KINDS) -> None:
    cfg = DatasetConfig(**cfg_dict)
    _WORKER["outputs"] = tuple(outputs)
    poses = load_pose_bank(Path(out) / POSES_FILE) if cfg.poses_from is not None else None  # the stored bank
    with quiet_c_output():
        _WORKER["scene"] = Scene(cfg, poses)
    _WORKER["out"] = Path(out)


def _worker_frames(indices: list[int]) -> dict[int, dict]:
    scene, out = _WORKER["scene"], _WORKER["out"]
    return {i: write_frame(out, scene.frame(i), _WORKER["outputs"]) for i in indices}


def _worker_rendered(indices: list[int]) -> dict[int, Frame]:
    """Frames ``indices`` rendered and labelled, nothing encoded or written: for the parent process to encode and
    write (`_offload_writes`)."""
    scene = _WORKER["scene"]
    return {i: scene.frame(i) for i in indices}


def _offload_writes(workers: int) -> bool:
    """Whether one worker's frames are rendered in a worker process while this process encodes and writes them:
    where a second core is free. Encoding a frame costs about 0.2 ms, creating its four small files (the folder
    layout) 0.1-1.7 ms of kernel time (more on an ext4 in the minutes after mass deletions); on the free core
    that overlaps the next frame's render instead of adding to it. Two or more workers fill the cores already
    and encode (and in the folder layout write) their own frames."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    return int(workers) == 1 and cores >= 2


def _sample(i: int, frame: Frame, outputs: tuple[str, ...]) -> tuple[bytes, dict]:
    """Frame ``i`` as tar members in memory (`robot_env.io.shards.sample_bytes`) with what the manifest and the
    COCO file need."""
    return (sample_bytes(i, frame_blobs(frame, outputs)),
            frame_meta(output_label(frame.label, outputs), frame.seg, frame.rles, masks="seg" in outputs))


def _worker_samples(indices: list[int]) -> dict[int, tuple[bytes, dict]]:
    """Frames ``indices`` as `_sample`s: the sharded layout's work per frame, nothing written."""
    scene, outputs = _WORKER["scene"], _WORKER["outputs"]
    return {i: _sample(i, scene.frame(i), outputs) for i in indices}


def _made_record(out: Path) -> dict | None:
    sfile = Path(out) / SETTINGS_FILE
    if not sfile.exists():
        return None
    try:
        return json.loads(sfile.read_text())
    except (OSError, ValueError) as exc:
        raise DatasetError(f"{sfile} cannot be read ({type(exc).__name__}); delete the folder {out} to start "
                           f"over.") from exc


def made_with_other_settings(out: str | Path, cfg: DatasetConfig, shard: tuple[int, int] | None = None) -> bool:
    """Whether ``out`` holds a dataset, finished or started, made with settings other than ``cfg``'s (and
    ``shard``'s): the one reason `generate` refuses a folder for its settings. False for a new folder or one
    without a settings file; an unreadable settings file is a `DatasetError` (not a mismatch)."""
    made = _made_record(out)
    if made is None:
        return False
    made = {k: v for k, v in made.items() if k not in LAYOUT_RECORD}  # the layout: `start_folder`
    return made != settings_record(cfg.validate(), shard)


def start_folder(out: str | Path, cfg: DatasetConfig, workers: int = 1, shard: tuple[int, int] | None = None,
                 format: str | None = None, shard_size: int | None = None,
                 outputs: tuple[str, ...] = KINDS) -> list[int]:
    """The checks `generate` makes before it writes anything: ``workers`` at least 1, ``shard`` valid, ``out``
    not started with other settings or (``format`` given) in another layout (`DatasetParamError`s). Creates
    ``out`` and that layout's folders and returns the frame indices of the shard (for ``format="wds"``, of whole
    tar shards: `shard_frames`). Without ``format`` (the pose bank's preparation, before the layout matters)
    the layout is neither checked nor laid out."""
    from robot_env.io.shards import shard_frames

    out = Path(out)
    if int(workers) < 1:
        raise DatasetParamError("workers", f"{{name}} must be at least 1, got {workers}.")
    if format is not None and format not in FORMATS:
        raise DatasetParamError("format", f"unknown {{name}} {format!r}; choose one of {', '.join(FORMATS)}.")
    if format == WDS:
        indices = list(shard_frames(cfg.n, check_shard_size(shard_size), shard)[1])
    else:
        indices = list(shard_range(cfg.n, shard))
    if made_with_other_settings(out, cfg, shard):
        raise DatasetParamError("out", f"{out} already holds a dataset made with other settings; choose a new "
                                       f"{{name}} or delete that folder.")
    made = _made_record(out) or {}
    layout = (format, shard_size if format == WDS else None, list(outputs))
    if made and format is not None and (made.get("format", "files"), made.get("shard_size"),
                                        made.get("outputs", list(KINDS))) != layout:
        was = f"--format {made.get('format', 'files')}" + (f" --shard-size {made['shard_size']}"
                                                            if made.get("shard_size") else "")
        was += f" --outputs {','.join(made['outputs'])}" if made.get("outputs") else ""
        raise DatasetParamError("out", f"{out} holds a dataset started with {was}; choose a new {{name}} or "
                                       f"generate it with those flags.")
    folders = [d for d, kind in zip(("rgb", "depth", "seg", "labels"), KINDS) if kind in outputs]
    for sub in {None: (".",), WDS: (SHARD_DIR,)}.get(format, folders):
        make_dirs(out / sub)
    return indices


def check_pose_bank(out: str | Path, cfg: DatasetConfig) -> dict[str, np.ndarray]:
    """The pose bank stored in ``out`` (``poses.npz``), checked against ``cfg`` (its model hash, seed and
    episodes). ``controllers.poses`` builds it; without it a ``poses_from`` dataset cannot be generated."""
    if cfg.poses_model_sha256 is None:
        raise DatasetParamError(
            "poses_from", "{name} needs the run's pose bank in the dataset folder: build it first with "
                          "controllers.poses.prepare_pose_bank (`armlab dataset generate --poses-from` does).")
    path = Path(out) / POSES_FILE
    bank = load_pose_bank(path)
    made = (str(bank["model_sha256"]), int(bank["seed"]), int(bank["episodes"]))
    if made != (cfg.poses_model_sha256, cfg.seed, cfg.pose_episodes):
        raise DatasetParamError("out", f"{path} was made from another model, seed or number of pose episodes; "
                                       f"delete it or choose a new {{name}}.")
    return bank


def _render(func, chunks: list[list[int]], workers: int, cfg: DatasetConfig, out: Path, ordered: bool,
            outputs: tuple[str, ...] = KINDS, pool: bool = False):
    """``func``'s results on ``chunks`` of frames, computed in this process (one worker, unless ``pool``) or a
    pool of worker processes; in chunk order when ``ordered`` (the sharded layout writes its tars in frame
    order)."""
    if workers == 1 and not pool:
        _worker_init(asdict(cfg), str(out), outputs)
        try:
            for ch in chunks:
                yield func(ch)
        finally:
            _WORKER.pop("scene").close()
        return
    import multiprocessing as mp

    # fork is cheap and safe here (workers create their own PyBullet clients and use no
    # threads of the parent); spawn where fork does not exist
    ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
    with ctx.Pool(int(workers), initializer=_worker_init, initargs=(asdict(cfg), str(out), outputs)) as pool:
        yield from (pool.imap if ordered else pool.imap_unordered)(func, chunks)


def generate(out: str | Path, cfg: DatasetConfig, workers: int = 1, shard: tuple[int, int] | None = None,
             progress: bool = True, chunk: int = 8, finalize: bool = True, only: list[int] | None = None,
             format: str = "files", shard_size: int | None = None, coco: bool = False, outputs=None,
             _map=None) -> dict:
    """Write frames ``shard_range(cfg.n, shard)`` of the dataset into ``out`` and (with
    ``finalize``) its COCO file and manifest. Returns the manifest.

    Restarting with the same arguments after a kill regenerates only the missing frames;
    restarting with *different* settings into the same folder is refused (no mixing).
    With ``cfg.poses_from`` the frames take their arm poses from the pose bank ``poses.npz`` in
    ``out`` (`check_pose_bank`), which ``controllers.poses.prepare_pose_bank`` builds first.

    ``format="wds"`` writes WebDataset tar shards of ``shard_size`` frames (default 1000) instead of four files a
    frame (`robot_env.io.shards`), and the COCO file only with ``coco``; a job ``shard=(i, N)`` then writes whole
    tar shards, and a restart rewrites only the shards that were not complete (each is written to a temporary
    name and renamed when complete). ``outputs`` (default all of ``rgb``, ``depth``, ``seg``, ``label``;
    `robot_env.io.shards.check_outputs`) chooses what each frame stores, in either layout: without ``depth`` or
    ``seg`` those images are neither encoded nor written, the labels lose their paths, and the COCO file has boxes
    without masks when ``seg`` is left out. ``_map(func, chunks)`` replaces the local worker processes (the Ray
    backend): it yields ``func``'s results on the chunks in order. One worker on a machine with a second core
    renders in a child process while this one encodes and writes (`_offload_writes`).
    """
    cfg = cfg.validate()
    out = Path(out)
    outputs = check_outputs(outputs)
    if format == WDS:
        shard_size = check_shard_size(1000 if shard_size is None else shard_size)
    indices = start_folder(out, cfg, workers, shard, format, shard_size, outputs)
    if cfg.poses_from is not None:  # before the settings are recorded: a folder without its bank binds nothing
        check_pose_bank(out, cfg)
    if not (out / SETTINGS_FILE).exists():
        write_settings_record(out, settings_record(cfg, shard, format, shard_size, outputs))
    for sub in (SHARD_DIR,) if format == WDS else ("rgb", "depth", "seg", "labels"):  # partial writes of a kill
        for stale in (out / sub).glob(".*.tmp*"):
            stale.unlink(missing_ok=True)
    from tqdm.auto import tqdm

    offload = _map is None and _offload_writes(workers)
    render = _map or (lambda func, chunks: _render(func, chunks, int(workers), cfg, out, format == WDS, outputs,
                                                   pool=offload))
    if format == WDS:
        from robot_env.dataset.sharded import finalize_sharded, job_shards, write_shards

        ks, todo_ks = job_shards(out, cfg.n, shard_size, shard)
        spans = [shard_span(cfg.n, shard_size, k) for k in todo_ks]
        todo = [i for span in spans for i in span]
        chunks = [c for span in spans for c in _split(span, chunk)]  # none across shards
    else:
        todo = [i for i in indices if not frame_done(out, i)] if only is None else list(only)
        chunks = _split(todo, chunk)
    bar = tqdm(total=len(indices), initial=len(indices) - len(todo), desc=f"dataset {cfg.style}", unit="frame",
               disable=not progress)
    t0 = time.perf_counter()
    records: dict[int, dict] = {}
    if format == WDS:
        samples = (({i: _sample(i, frame, outputs) for i, frame in done.items()} for done in
                    render(_worker_rendered, chunks)) if offload else render(_worker_samples, chunks))
        records, sums = write_shards(out, cfg.n, shard_size, todo_ks, samples, bar)
    elif chunks and offload:  # the worker renders, this process encodes and writes (label last, as always)
        for done in render(_worker_rendered, chunks):
            records.update({i: write_frame(out, frame, outputs) for i, frame in done.items()})
            bar.update(len(done))
    elif chunks:
        for done in render(_worker_frames, chunks):
            records.update(done)
            bar.update(len(done))
    bar.close()
    render_s = time.perf_counter() - t0
    manifest = {}
    if finalize and format == WDS:
        manifest = finalize_sharded(out, cfg, ks, shard, shard_size, records, sums, coco=coco, outputs=outputs)
    elif finalize:
        manifest = finalize_dataset(out, cfg, indices, shard=shard, records=records, outputs=outputs)
    manifest_timing = {"frames_rendered": len(todo), "render_seconds": render_s}
    return {**manifest, "_timing": manifest_timing}


def _split(indices, chunk: int) -> list[list[int]]:
    indices = list(indices)
    return [indices[k:k + chunk] for k in range(0, len(indices), chunk)]


def generate_ray(out: str | Path, cfg: DatasetConfig, workers: int = 2, shard: tuple[int, int] | None = None,
                 chunk: int = 32, address: str | None = None, format: str = "files", shard_size: int | None = None,
                 coco: bool = False, outputs=None) -> dict:
    """`generate` on a Ray cluster: one Ray actor per worker renders chunks of frames. In the folder layout the
    actors write the files into ``out`` (a folder every node can write: a shared filesystem); in the sharded
    layout (``format="wds"``) they send each frame's bytes back and this process writes the shards, so only it
    needs ``out``. Frames depend only on ``(seed, i)``, so the files are identical to a local run. ``address``
    is passed to ``ray.init`` (``None``: start or join a local cluster; ``"auto"``: the running cluster, as
    ``RAY_ADDRESS`` also says); Ray starts only once the checks have passed and there are frames to render."""
    try:
        import ray
    except ImportError:
        raise DatasetError("the Ray backend needs Ray: pip install 'armlab[distributed]'.") from None
    cfg = cfg.validate()
    out = Path(out)
    outputs = check_outputs(outputs)
    started = []

    def ray_map(func, chunks):
        if not ray.is_initialized():
            ray.init(address=address, num_cpus=None if address else workers, include_dashboard=False,
                     log_to_driver=False, configure_logging=False)
            started.append(True)

        @ray.remote(num_cpus=1)
        class Renderer:
            def __init__(self, cfg_dict, out_dir, kinds):
                _worker_init(cfg_dict, out_dir, kinds)

            def render(self, name, indices):
                return {"_worker_frames": _worker_frames, "_worker_samples": _worker_samples}[name](indices)

        actors = [Renderer.remote(asdict(cfg), str(out.resolve()), outputs) for _ in range(max(1, int(workers)))]
        pending: deque = deque()  # at most four chunks an actor in flight: results wait in Ray's store, not all
        for k, ch in enumerate(chunks):
            pending.append(actors[k % len(actors)].render.remote(func.__name__, ch))
            if len(pending) >= 4 * len(actors):
                yield ray.get(pending.popleft())  # in order: the sharded layout writes its tars in frame order
        while pending:
            yield ray.get(pending.popleft())

    try:
        return generate(out, cfg, workers=1, shard=shard, progress=False, chunk=chunk, format=format,
                        shard_size=shard_size, coco=coco, outputs=outputs, _map=ray_map)
    finally:
        if started:
            ray.shutdown()
