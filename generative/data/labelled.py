"""The labelled tensors the conditional models train and are evaluated on, read one way for every model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Subset

from generative.data.armlab import is_armlab_dataset, load_tensors, open_images
from generative.data.images import IMAGE_EXTENSIONS, DataError
from robot_env.io.dataset_format import CLASSES, MANIFEST

__all__ = ["labelled_tensors", "real_sample"]


def labelled_tensors(data_dir: str | Path, size: int, cond: tuple[str, ...], model: str, limit: int | None = None,
                     progress: bool = False) -> tuple[Any, dict[str, torch.Tensor], list[str]]:
    """``(dataset, tensors, class names)`` of the images at ``data_dir`` at ``size`` px, for a model (``model``:
    "a GAN", "a diffusion model", ... for the messages) conditioned on ``cond`` (a subset of class, target,
    joints). Frames without the labels ``cond`` needs are left out; `DataError` for a missing folder, one with
    no images, labels a condition needs that are absent, or no frame left."""
    root = Path(data_dir)
    if not root.exists():
        raise DataError(f"dataset folder {str(root)!r} does not exist")
    if not root.is_dir():
        raise DataError(f"{str(root)!r} is not a dataset folder")
    if not is_armlab_dataset(root) and not any(p.suffix.lower() in IMAGE_EXTENSIONS for p in root.rglob("*")):
        raise DataError(f"{str(root)!r} is not a dataset: no manifest.json (armlab dataset) and no images")
    ds = open_images(root, size)
    classes = list(getattr(ds, "classes", CLASSES))
    if cond and not hasattr(ds, "classes"):
        raise DataError(f"{str(root)!r} is a plain image folder (no manifest.json): {model} conditioned on "
                        f"{','.join(cond)} needs an armlab dataset with labels")
    data = load_tensors(ds, limit=limit, progress=progress)
    keep = torch.ones(len(data["image"]), dtype=torch.bool)
    if "class" in cond:
        keep &= (data["class_id"] >= 0) & (data["class_id"] < len(classes))
    if "target" in cond:
        keep &= torch.isfinite(data["target"]).all(1)
    if "joints" in cond:
        if "joints" not in data:
            raise DataError(f"the labels of dataset {str(root)!r} have no joint_positions: {model} conditioned on "
                            "joints needs them")
        keep &= torch.isfinite(data["joints"]).all(1)
    if not keep.all():
        data = {k: v[keep] for k, v in data.items()}
    if len(data["image"]) == 0:
        raise DataError(f"dataset {str(root)!r} holds no frames with the labels {','.join(cond)}")
    return ds, data, classes


def real_sample(data_dir: str | Path, size: int, n: int, seed: int, progress: bool = False,
                pool: tuple[int, int | None] | None = None) -> tuple[dict[str, torch.Tensor], torch.Generator]:
    """The tensors of ``n`` frames (at most all) of the armlab dataset at ``data_dir``, drawn with ``seed`` and
    kept in file order: the real images a generative model's samples are measured against. ``pool``
    (``(first, end)`` frame indices in file order, end None for the last frame; all frames when None) limits the
    draw to those frames, e.g. the ones a model did not train on. Also returns the seeded generator after the
    draw, which the caller goes on to draw the model's samples with."""
    root = Path(data_dir)
    if not root.exists():
        raise DataError(f"dataset folder {str(root)!r} does not exist")
    if not (root / MANIFEST).is_file():
        raise DataError(f"{str(root)!r} is not an armlab dataset: no manifest.json (the probe needs its labels)")
    ds = open_images(root, size)
    gen = torch.Generator().manual_seed(int(seed))
    frames = range(len(ds)) if pool is None else range(len(ds))[pool[0]:pool[1]]
    if len(frames) == 0:
        raise DataError(f"dataset {str(root)!r} has {len(ds)} frames, none from frame {pool[0]} on to draw from")
    n_use = min(int(n), len(frames))
    idx = [frames[i] for i in torch.randperm(len(frames), generator=gen)[:n_use].sort().values.tolist()]
    return load_tensors(Subset(ds, idx), progress=progress), gen
