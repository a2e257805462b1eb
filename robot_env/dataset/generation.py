"""Generating frames: worker processes or Ray actors, shards, and resuming a killed run.

Frame ``i`` depends only on ``(seed, i, settings)``, so any number of workers, any shard split and
any kill-and-resume give byte-identical files. A frame counts as done when its label exists (written
last, atomically); a restarted run regenerates exactly the frames without one. A folder records the
settings it was started with and refuses others.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from robot_env._quiet import quiet_c_output
from robot_env.dataset.config import DatasetConfig, shard_range
from robot_env.dataset.manifest import SETTINGS_FILE, finalize_dataset
from robot_env.dataset.scene import Scene
from robot_env.dataset.writer import write_frame
from robot_env.io.atomic import atomic_write_bytes, make_dirs
from robot_env.io.dataset_format import POSES_FILE, DatasetError, DatasetParamError, frame_done, load_pose_bank

_WORKER: dict = {}


def _worker_init(cfg_dict: dict, out: str) -> None:
    cfg = DatasetConfig(**cfg_dict)
    poses = load_pose_bank(Path(out) / POSES_FILE) if cfg.poses_from is not None else None  # the stored bank
    with quiet_c_output():
        _WORKER["scene"] = Scene(cfg, poses)
    _WORKER["out"] = Path(out)


def _worker_frames(indices: list[int]) -> dict[int, dict]:
    scene, out = _WORKER["scene"], _WORKER["out"]
    return {i: write_frame(out, scene.frame(i)) for i in indices}


def _settings_record(cfg: DatasetConfig, shard: tuple[int, int] | None) -> dict:
    return {"settings": cfg.settings(), "shard": list(shard) if shard else None}


def made_with_other_settings(out: str | Path, cfg: DatasetConfig, shard: tuple[int, int] | None = None) -> bool:
    """Whether ``out`` holds a dataset, finished or started, made with settings other than ``cfg``'s (and
    ``shard``'s): the one reason `generate` refuses a folder for its settings. False for a new folder or one
    without a settings file; an unreadable settings file is a `DatasetError` (not a mismatch)."""
    sfile = Path(out) / SETTINGS_FILE
    if not sfile.exists():
        return False
    try:
        made = json.loads(sfile.read_text())
    except (OSError, ValueError) as exc:
        raise DatasetError(f"{sfile} cannot be read ({type(exc).__name__}); delete the folder {out} to start "
                           f"over.") from exc
    return made != _settings_record(cfg.validate(), shard)


def start_folder(out: str | Path, cfg: DatasetConfig, workers: int = 1,
                 shard: tuple[int, int] | None = None) -> list[int]:
    """The checks `generate` makes before it writes anything: ``workers`` at least 1, ``shard`` valid, ``out``
    not started with other settings (`DatasetParamError`s). Creates ``out``'s image folders and returns the
    frame indices of the shard."""
    out = Path(out)
    if int(workers) < 1:
        raise DatasetParamError("workers", f"{{name}} must be at least 1, got {workers}.")
    indices = list(shard_range(cfg.n, shard))
    for sub in ("rgb", "depth", "seg", "labels"):
        make_dirs(out / sub)
    if made_with_other_settings(out, cfg, shard):
        raise DatasetParamError("out", f"{out} already holds a dataset made with other settings; choose a new "
                                       f"{{name}} or delete that folder.")
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


def generate(out: str | Path, cfg: DatasetConfig, workers: int = 1, shard: tuple[int, int] | None = None,
             progress: bool = True, chunk: int = 8, finalize: bool = True, only: list[int] | None = None) -> dict:
    """Write frames ``shard_range(cfg.n, shard)`` of the dataset into ``out`` and (with
    ``finalize``) its COCO file and manifest. Returns the manifest.

    Restarting with the same arguments after a kill regenerates only the missing frames;
    restarting with *different* settings into the same folder is refused (no mixing).
    With ``cfg.poses_from`` the frames take their arm poses from the pose bank ``poses.npz`` in
    ``out`` (`check_pose_bank`), which ``controllers.poses.prepare_pose_bank`` builds first.
    """
    cfg = cfg.validate()
    out = Path(out)
    indices = start_folder(out, cfg, workers, shard)
    if cfg.poses_from is not None:  # before the settings are recorded: a folder without its bank binds nothing
        check_pose_bank(out, cfg)
    sfile = out / SETTINGS_FILE
    if not sfile.exists():
        atomic_write_bytes(sfile, json.dumps(_settings_record(cfg, shard), sort_keys=True).encode())
    for sub in ("rgb", "depth", "seg", "labels"):  # partial writes of a killed run
        for stale in (out / sub).glob(".*.tmp*"):
            stale.unlink(missing_ok=True)
    todo = [i for i in indices if not frame_done(out, i)] if only is None else list(only)
    from tqdm.auto import tqdm

    bar = tqdm(total=len(indices), initial=len(indices) - len(todo), desc=f"dataset {cfg.style}", unit="frame",
               disable=not progress)
    t0 = time.perf_counter()
    records: dict[int, dict] = {}
    if todo:
        chunks = [todo[k:k + chunk] for k in range(0, len(todo), chunk)]
        if workers == 1:
            _worker_init(asdict(cfg), str(out))
            try:
                for ch in chunks:
                    records.update(_worker_frames(ch))
                    bar.update(len(ch))
            finally:
                _WORKER.pop("scene").close()
        else:
            import multiprocessing as mp

            # fork is cheap and safe here (workers create their own PyBullet clients and use no
            # threads of the parent); spawn where fork does not exist
            ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
            with ctx.Pool(int(workers), initializer=_worker_init,
                          initargs=(asdict(cfg), str(out))) as pool:
                for done in pool.imap_unordered(_worker_frames, chunks):
                    records.update(done)
                    bar.update(len(done))
    bar.close()
    render_s = time.perf_counter() - t0
    manifest = finalize_dataset(out, cfg, indices, shard=shard, records=records) if finalize else {}
    manifest_timing = {"frames_rendered": len(todo), "render_seconds": render_s}
    return {**manifest, "_timing": manifest_timing}


def generate_ray(out: str | Path, cfg: DatasetConfig, workers: int = 2, shard: tuple[int, int] | None = None,
                 chunk: int = 32, address: str | None = None) -> dict:
    """`generate` on a Ray cluster: one Ray actor per worker renders chunks of frames into
    ``out`` (a folder every node can write: a shared filesystem). Frames depend only on
    ``(seed, i)``, so the files are identical to a local run. ``address`` is passed to
    ``ray.init`` (``None``: start or join a local cluster; ``"auto"``: the running cluster)."""
    try:
        import ray
    except ImportError:
        raise DatasetError("the Ray backend needs Ray: pip install 'armlab[distributed]'.") from None
    cfg = cfg.validate()
    out = Path(out)
    # the folder, settings check, pose bank and resume bookkeeping are the local path's, with no frames to render
    pending = [i for i in shard_range(cfg.n, shard) if not frame_done(out, i)]
    generate(out, cfg, workers=1, shard=shard, progress=False, finalize=False, only=[])
    started = not ray.is_initialized()
    if started:
        ray.init(address=address, num_cpus=None if address else workers, include_dashboard=False,
                 log_to_driver=False, configure_logging=False)
    try:
        @ray.remote(num_cpus=1)
        class Renderer:
            def __init__(self, cfg_dict, out_dir):
                _worker_init(cfg_dict, out_dir)

            def render(self, indices):
                return _worker_frames(indices)

        actors = [Renderer.remote(asdict(cfg), str(out.resolve())) for _ in range(max(1, int(workers)))]
        chunks = [pending[k:k + chunk] for k in range(0, len(pending), chunk)]
        t0 = time.perf_counter()
        records: dict[int, dict] = {}
        for done in ray.get([actors[k % len(actors)].render.remote(ch) for k, ch in enumerate(chunks)]):
            records.update(done)
        render_s = time.perf_counter() - t0
    finally:
        if started:
            ray.shutdown()
    manifest = finalize_dataset(out, cfg, list(shard_range(cfg.n, shard)), shard=shard, records=records)
    return {**manifest, "_timing": {"frames_rendered": len(pending), "render_seconds": render_s}}
