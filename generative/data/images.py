"""Plain image folders, and the image helpers every reader shares: decoding, the centred square crop, resizing."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from robot_env.io.errors import ConfigError
from robot_env.io.errors import DataError as _DataError

__all__ = ["IMAGE_EXTENSIONS", "DataError", "ImageFolderDataset"]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp")


class DataError(_DataError):
    """The data on disk cannot be used: a missing or empty folder, a corrupt image, a bad label (an `ArmlabError`:
    ``armlab`` prints its sentence, exit code 2; still a ``ValueError``)."""


# ----------------------------------------------------------------------------- image helpers


def _read_rgb(path: Path) -> np.ndarray | None:
    """RGB uint8 ``(H, W, 3)`` of an image file, or None if OpenCV cannot decode it."""
    try:
        img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    except cv2.error:
        return None
    if img is None or img.ndim != 3 or img.shape[0] == 0 or img.shape[1] == 0:
        return None
    return np.ascontiguousarray(img[:, :, ::-1])


def _crop_box(h: int, w: int) -> tuple[int, int, int]:
    """``(y0, x0, side)`` of the centred square crop of an ``h x w`` image."""
    side = min(h, w)
    return (h - side) // 2, (w - side) // 2, side


def _square_resize(img: np.ndarray, size: int | None, nearest: bool = False) -> np.ndarray:
    """Center-crop ``img`` to a square and resize it to ``size x size`` (no-op for ``size=None``)."""
    if size is None:
        return img
    h, w = img.shape[:2]
    y0, x0, side = _crop_box(h, w)
    img = img[y0 : y0 + side, x0 : x0 + side]
    if side == size:
        return np.ascontiguousarray(img)
    if nearest:
        interp = cv2.INTER_NEAREST
    else:
        interp = cv2.INTER_AREA if size < side else cv2.INTER_LINEAR
    out = cv2.resize(img, (size, size), interpolation=interp)
    if img.ndim == 3 and out.ndim == 2:  # cv2 drops a single channel axis
        out = out[:, :, None]
    return out


def _chw(img: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1)))


def _check_size(size: int | None) -> int | None:
    if size is None:
        return None
    if int(size) != size or size < 1:
        raise ConfigError(f"size must be a positive integer or None, not {size!r}")
    return int(size)


# ----------------------------------------------------------------------------- plain image folders


class ImageFolderDataset(Dataset):
    """Every image under ``root`` (recursively), as ``{"image": uint8 (3, H, W), "path": str}``.

    Files with the extensions in `IMAGE_EXTENSIONS` (any case) are taken in sorted path order;
    hidden files and folders (names starting with ``.``) are ignored. Images are decoded by
    OpenCV and returned as RGB; with ``size`` they are center-cropped and resized to
    ``size x size``.

    A missing or empty folder raises `DataError` at construction. A file OpenCV cannot decode
    raises `DataError` naming it when it is read. With ``skip_bad=True`` every file is decoded
    once at construction (this costs one full read of the folder, about as long as one pass of
    `load_tensors`) and each unreadable one is skipped with a ``warnings.warn`` naming it.
    """

    def __init__(self, root: str | Path, size: int | None = None, skip_bad: bool = False):
        self.root = Path(root)
        self.size = _check_size(size)
        if not self.root.exists():
            raise DataError(f"image folder {str(self.root)!r} does not exist")
        if not self.root.is_dir():
            raise DataError(f"{str(self.root)!r} is not a folder")
        paths = []
        for p in self.root.rglob("*"):
            rel = p.relative_to(self.root)
            if any(part.startswith(".") for part in rel.parts):
                continue
            if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file():
                paths.append(p)
        paths.sort()
        if not paths:
            raise DataError(
                f"image folder {str(self.root)!r} holds no images (looked for {', '.join(IMAGE_EXTENSIONS)})"
            )
        if skip_bad:
            good = []
            for p in paths:
                if _read_rgb(p) is None:
                    warnings.warn(f"skipping unreadable image {str(p)!r}", stacklevel=2)
                else:
                    good.append(p)
            if not good:
                raise DataError(f"image folder {str(self.root)!r} holds no readable images")
            paths = good
        self.paths: list[Path] = paths

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> dict[str, Any]:
        path = self.paths[i]
        img = _read_rgb(path)
        if img is None:
            raise DataError(f"cannot read image {str(path)!r} (corrupt or not an image; skip_bad=True skips it)")
        return {"image": _chw(_square_resize(img, self.size)), "path": str(path)}
