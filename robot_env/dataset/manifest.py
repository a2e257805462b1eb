"""Finishing a dataset: its COCO file and manifest (format pieces from `robot_env.io.dataset_format`), and
`merge`, which joins shard folders into one dataset."""

from __future__ import annotations

import functools
import json
import os
import shutil
from pathlib import Path

from robot_env.dataset.config import DatasetConfig
from robot_env.io.atomic import atomic_path, atomic_write_bytes, make_dirs
from robot_env.io.dataset_format import (
    CLASSES,
    COCO_FILE,
    POSES_FILE,
    DatasetError,
    build_manifest,
    coco_bytes,
    frame_done,
    load_manifest,
    load_pose_bank,
    manifest_categories,
    write_manifest,
)
from robot_env.io.hashing import sha256_bytes, sha256_file
from robot_env.io.shards import KINDS, WDS, dataset_layout

GENERATOR = "armlab.robot_env.dataset"  #: the manifest's ``generator`` of simulator datasets
SETTINGS_FILE = ".armlab-settings.json"  #: a started folder's settings (and shard), to refuse mixing
LAYOUT_RECORD = ("format", "shard_size", "outputs")  #: the settings record's entries of the layout, not the frames


def _version() -> str:
    from robot_env import __version__

    return __version__


@functools.cache
def _joint_limits(robot: str) -> tuple[tuple[float, float], ...]:
    from robot_env.robots import Arm
    from robot_env.sim import World

    world = World(floor=False)
    try:
        arm = Arm(world, robot)
        return tuple((float(lo), float(hi)) for lo, hi in zip(arm.lower, arm.upper))
    finally:
        world.close()


def joint_limits(robot: str) -> list[list[float]]:
    """``[[lower, upper], ...]`` (rad) of the controlled joints of ``robot``, in the order of a label's
    ``joint_positions``: the limits of its URDF, as `robot_env.robots.Arm` loads them (the manifest's
    ``joint_limits``)."""
    return [list(pair) for pair in _joint_limits(robot)]


def finalize_dataset(out: Path, cfg: DatasetConfig, indices, shard=None, records: dict | None = None,
                     outputs=KINDS) -> dict:
    """Write ``instances.json`` and ``manifest.json`` for the frames ``indices`` in ``out``.

    ``records`` (frame -> `write_frame`'s return) saves reading back frames written in this
    process; frames not in it are read from disk."""
    from robot_env.dataset.writer import frame_record

    out = Path(out)
    indices = list(indices)
    missing = [i for i in indices if not frame_done(out, i)]
    if missing:
        raise DatasetError(f"{out} is missing {len(missing)} frames (first: {missing[0]}); rerun generate to finish.")
    records = records or {}
    files = {}
    for i in indices:
        if i not in records:
            records[i] = frame_record(out, i, outputs)
        files.update(records[i]["files"])
    labels, images, annotations = coco_parts(indices, records)
    coco = coco_bytes(images, annotations)
    atomic_write_bytes(out / COCO_FILE, coco)
    files[COCO_FILE] = sha256_bytes(coco)
    return write_dataset_manifest(out, cfg, indices, labels, files, shard=shard, **outputs_entry(outputs))


def coco_parts(indices, records: dict) -> tuple[list[dict], list[dict], list[dict]]:
    """``(labels, COCO images, COCO annotations)`` of the frames ``indices`` from their records (frame ->
    ``{"label": ..., "annotations": ...}``)."""
    labels, images, annotations = [], [], []
    for i in indices:
        lab = records[i]["label"]
        labels.append(lab)
        images.append({"id": i, "file_name": lab["rgb"], "width": lab["width"], "height": lab["height"]})
        annotations.extend(records[i].get("annotations", ()))
    return labels, images, annotations


def outputs_entry(outputs) -> dict:
    """The manifest's and the settings record's ``outputs`` entry: none when a frame stores all four kinds (the
    record and the manifest keep their bytes)."""
    return {} if tuple(outputs) == KINDS else {"outputs": list(outputs)}


def settings_record(cfg: DatasetConfig, shard: tuple[int, int] | None, format: str = "files",
                    shard_size: int | None = None, outputs=KINDS) -> dict:
    """What a started folder records in `SETTINGS_FILE`: the settings and the job (and the layout: the sharded
    one's format and shard size, the outputs when not all)."""
    record = {"settings": cfg.settings(), "shard": list(shard) if shard else None, **outputs_entry(outputs)}
    if format == WDS:  # the folder layout's record keeps its bytes
        record.update(format=WDS, shard_size=shard_size)
    return record


def write_settings_record(out: Path, record: dict) -> None:
    atomic_write_bytes(Path(out) / SETTINGS_FILE, json.dumps(record, sort_keys=True).encode())


def write_dataset_manifest(out: Path, cfg: DatasetConfig, indices: list[int], labels: list[dict], files: dict,
                           shard=None, counts: dict | None = None, **extra) -> dict:
    """Write the manifest of the frames ``indices`` (their ``labels``; ``files``: every file's SHA-256 but the
    pose bank's, added here) of either layout; ``counts`` and ``extra`` add the sharded layout's entries."""
    if cfg.poses_from is not None:  # absent from random-configuration datasets
        bank = load_pose_bank(out / POSES_FILE)
        files[POSES_FILE] = sha256_file(out / POSES_FILE)
        extra["poses"] = {"file": POSES_FILE, "count": int(len(bank["joint_positions"])),
                          "rolled_out": int(bank["rolled_out"]), "episodes": int(bank["episodes"]),
                          "env_id": str(bank["env_id"]), "algo": str(bank["algo"]), "run": cfg.poses_from}
    manifest = build_manifest(
        generator=GENERATOR, version=_version(), seed=cfg.seed, style=cfg.style, size=cfg.size, n=cfg.n,
        settings=cfg.settings(), classes=CLASSES, categories=manifest_categories(),
        counts={"frames": len(indices), "files": len(files),
                "annotations": sum(1 for lab in labels for o in lab["objects"] if o["area"] > 0), **(counts or {})},
        files=files,
        frames=[int(indices[0]), int(indices[-1]) + 1] if len(indices) else [0, 0],
        shard=list(shard) if shard else None,
        joint_limits=joint_limits(cfg.robot),
        **extra,
    )
    write_manifest(out, manifest)
    return manifest


def merge(shards: list[str | Path], out: str | Path, progress: bool = True) -> dict:
    """Join shard folders written with ``shard=(i, N)`` into one dataset at ``out``.

    The shards must share every setting, and together cover all frames exactly once.
    Files are hard-linked when possible (copied otherwise); the shards are left intact.
    Shards finished before manifests held ``joint_limits`` are accepted (the merged one has them).
    """
    out = Path(out)
    manifests = [load_manifest(s) for s in shards]
    first = manifests[0]
    for s, m in zip(shards, manifests):
        if m["settings"] != first["settings"]:
            raise DatasetError(f"shard {s} was generated with other settings than {shards[0]}.")
    covered = sorted((m["frames"][0], m["frames"][1], s) for m, s in zip(manifests, shards))
    pos = 0
    for lo, hi, s in covered:
        if lo != pos:
            what = "overlaps" if lo < pos else "leaves a gap before"
            raise DatasetError(f"shard {s} {what} frame {min(lo, pos)}; shards must cover 0..{first['n'] - 1} once.")
        pos = hi
    if pos != first["n"]:
        raise DatasetError(f"the shards cover frames 0..{pos - 1} of {first['n']}; some shards are missing.")
    for s, m in zip(shards, manifests):
        if m["files"].get(POSES_FILE) != first["files"].get(POSES_FILE):
            raise DatasetError(f"shard {s} has another pose bank ({POSES_FILE}) than {shards[0]}; generate the shards "
                               f"with one bank (copy it into each shard folder first).")
    layouts = {(dataset_layout(m), m.get("shard_size"), tuple(m.get("outputs", KINDS))) for m in manifests}
    if len(layouts) > 1:
        raise DatasetError(f"the shards {', '.join(map(str, shards))} mix the files and wds formats (or shard sizes "
                           f"or outputs); convert them to one first.")
    layout, shard_size, outputs = layouts.pop()
    for folder in {(out / rel).parent for m in manifests for rel in m["files"]} | {out}:
        make_dirs(folder)
    from tqdm.auto import tqdm

    for s, m in zip(shards, manifests):
        for rel in tqdm([r for r in m["files"] if r != COCO_FILE], desc=f"merge {Path(s).name}",
                        disable=not progress):
            src, dst = Path(s) / rel, out / rel
            if dst.exists():
                continue
            with atomic_path(dst) as tmp:
                try:
                    os.link(src, tmp)
                except OSError:
                    shutil.copyfile(src, tmp)
    cfg = DatasetConfig.from_settings(first["settings"])
    write_settings_record(out, settings_record(cfg, None, layout, shard_size, outputs))
    if layout == WDS:
        from robot_env.dataset.sharded import finalize_sharded

        sums = {rel: d for m in manifests for rel, d in m["files"].items()}
        return finalize_sharded(out, cfg, range(-(-first["n"] // shard_size)), None, shard_size, {}, sums,
                                coco=any(COCO_FILE in m["files"] for m in manifests), outputs=outputs)
    return finalize_dataset(out, cfg, range(first["n"]), outputs=outputs)
