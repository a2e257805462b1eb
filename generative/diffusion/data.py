"""The training data of a diffusion model: tensors, labels and, for joint conditions, the robot's joint limits."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch

from generative.data.labelled import labelled_tensors
from robot_env.io.dataset_format import MANIFEST
from robot_env.io.errors import DataError
from robot_env.io.hashing import sha256_file

__all__ = ["manifest_joint_limits"]


def _load_data(data_dir: str | Path, size: int, cond: tuple[str, ...], limit: int | None = None,
               progress: bool = False) -> tuple[dict[str, torch.Tensor], list[str], dict[str, Any]]:
    """The training tensors (``image`` and, for an armlab dataset, ``class_id`` / ``target`` / ``joints``), the class
    names and a description of the data (``robot``: the manifest's ``settings.robot``). Frames without the labels
    ``cond`` needs are left out."""
    ds, data, classes = labelled_tensors(data_dir, size, cond, "a diffusion model", limit=limit,
                                         progress=progress)
    root = Path(data_dir)
    wanted = ["image"] + (["class_id"] if "class" in cond else [])
    if "target" in data and torch.isfinite(data["target"]).any():
        wanted.append("target")  # also for the loss weighting when the model is not conditioned on it
    if "joints" in cond:
        wanted.append("joints")
    data = {k: data[k] for k in wanted}
    manifest = root / MANIFEST
    info = {"path": str(root), "frames": len(data["image"]), "limit": limit,
            "manifest_sha256": sha256_file(manifest) if manifest.is_file() else None}
    settings = getattr(ds, "manifest", {}).get("settings")
    if "joints" in cond and isinstance(settings, dict) and settings.get("robot"):
        info["robot"] = str(settings["robot"])
    return data, classes, info


def _load_text_data(data_dir: str | Path, size: int, limit: int | None, seed: int, progress: bool = False
                    ) -> tuple[dict[str, torch.Tensor], list[str], dict[str, Any], list[list[str]], list[dict]]:
    """A text model's tensors (``image``, ``class_id``, ``target``), class names, data description, captions (four
    phrasings per frame, seeded) and labels."""
    from generative.text import text_data

    data, texts, labels, classes = text_data(data_dir, size, limit=limit, seed=seed, progress=progress)
    manifest = Path(data_dir) / MANIFEST
    info = {"path": str(data_dir), "frames": len(data["image"]), "limit": limit,
            "manifest_sha256": sha256_file(manifest) if manifest.is_file() else None}
    return data, classes, info, texts, labels


def _manifest(data_dir: str | Path) -> dict[str, Any]:
    """The dataset's manifest as a dict ({} for a plain image folder or an unreadable manifest)."""
    try:
        manifest = json.loads((Path(data_dir) / MANIFEST).read_text())
    except (OSError, ValueError):
        return {}
    return manifest if isinstance(manifest, dict) else {}


def manifest_joint_limits(manifest: dict[str, Any] | None, n_joints: int) -> list[list[float]] | None:
    """``[[lower, upper], ...]`` (radians) of the robot's controlled joints, in order, from the dataset manifest's
    ``joint_limits``. None only when the manifest has no such key (or it is null): datasets written before the key
    existed, whose limits are unknown as for a robot armlab does not know. A ``joint_limits`` that is there but
    malformed (not ``n_joints`` pairs of finite numbers with lower < upper) raises DataError naming what is wrong,
    rather than silently turning the check off. The limits only check requested joints; nothing is trained or
    sampled from them."""
    raw = (manifest or {}).get("joint_limits")
    if raw is None:
        return None
    where = "the dataset manifest's joint_limits"
    try:
        limits = [[float(a), float(b)] for a, b in raw]
    except (TypeError, ValueError) as exc:
        raise DataError(f"{where} must be a list of [lower, upper] number pairs, got {raw!r:.80}; "
                         f"regenerate the dataset or fix its manifest.") from exc
    if len(limits) != n_joints:
        raise DataError(f"{where} has {len(limits)} pairs, but the labels have {n_joints} joints; "
                         f"regenerate the dataset or fix its manifest.")
    bad = [i for i, (a, b) in enumerate(limits) if not (math.isfinite(a) and math.isfinite(b) and a < b)]
    if bad:
        raise DataError(f"{where} for joint {bad[0]} is {limits[bad[0]]}, not finite with lower < upper; "
                         f"regenerate the dataset or fix its manifest.")
    return limits
