"""Generated images written back in armlab's dataset format, with the requested conditions as labels."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from generative.data.armlab import _read_json
from generative.data.images import DataError
from robot_env.io.atomic import atomic_write_bytes, atomic_write_json
from robot_env.io.dataset_format import CLASSES, MANIFEST, build_manifest, manifest_categories, write_manifest
from robot_env.io.hashing import sha256_bytes

__all__ = ["write_generated", "write_grid"]


def _as_nhwc_uint8(images: Any) -> np.ndarray:
    arr = images.detach().cpu().numpy() if isinstance(images, torch.Tensor) else np.asarray(images)
    if arr.dtype != np.uint8:
        raise TypeError(f"generated images must be uint8 (0..255), not {arr.dtype}; convert them first")
    if arr.ndim == 3:  # N, H, W grayscale
        arr = arr[..., None]
    if arr.ndim != 4:
        raise ValueError(f"generated images must be (N, H, W, C) or (N, C, H, W), not shape {arr.shape}")
    if arr.shape[-1] not in (1, 3) and arr.shape[1] in (1, 3):
        arr = arr.transpose(0, 2, 3, 1)
    if arr.shape[-1] not in (1, 3):
        raise ValueError(f"generated images must have 1 or 3 channels, not shape {arr.shape}")
    if arr.shape[-1] == 1:
        arr = np.repeat(arr, 3, axis=-1)
    return np.ascontiguousarray(arr)


def _package_version() -> str:
    try:
        from importlib.metadata import version

        return version("armlab")
    except Exception:  # not installed (source checkout)
        return "0.0.0"


def write_generated(
    out: str | Path,
    images: Any,
    class_ids: Any = None,
    targets: Any = None,
    classes: Sequence[str] = CLASSES,
    extra_settings: dict | None = None,
    joint_positions: Any = None,
) -> dict:
    """Write generated images in armlab's format; returns the manifest written.

    ``images`` are uint8 ``(N, H, W, 3)`` or ``(N, 3, H, W)`` (numpy or torch; 1 channel is
    repeated to RGB). ``class_ids`` (N,) and ``targets`` (N, 2, ``pixel_norm`` in [0, 1]) are
    the *requested* conditions; each label carries ``class_id``, ``class_name``,
    ``target.pixel_norm`` and ``target.pixel`` (pixels: ``pixel_norm * (W, H)``) when given.
    ``joint_positions`` (N, J; radians) are requested joint angles, written as each label's
    ``joint_positions``.

    Writes ``rgb/NNNNNN.png``, then ``labels/NNNNNN.json`` (``"style": "generated"``), then
    ``manifest.json`` with the SHA-256 of every file; each file atomically. There is no
    ``depth/`` or ``seg/``, and ``manifest["settings"]`` says so (``"depth": false``,
    ``"seg": false``) together with ``extra_settings`` (e.g. the checkpoint and sampler
    options). Frames of an earlier generated set in ``out`` beyond the new ``N`` are removed;
    a folder holding a non-generated armlab dataset is refused with `DataError`.
    """
    out = Path(out)
    imgs = _as_nhwc_uint8(images)
    n, h, w = imgs.shape[:3]
    classes = [str(c) for c in classes]
    cids = None
    if class_ids is not None:
        cids = np.asarray(torch.as_tensor(class_ids).cpu()).astype(np.int64).reshape(-1)
        if len(cids) != n:
            raise ValueError(f"{len(cids)} class ids for {n} images")
        bad = cids[(cids < 0) | (cids >= len(classes))]
        if len(bad):
            raise ValueError(f"class id {int(bad[0])} is outside the {len(classes)} classes {classes}")
    tg = None
    if targets is not None:
        tg = np.asarray(torch.as_tensor(targets, dtype=torch.float64).cpu()).reshape(-1, 2)
        if len(tg) != n:
            raise ValueError(f"{len(tg)} targets for {n} images")
    jp = None
    if joint_positions is not None:
        jp = np.asarray(torch.as_tensor(joint_positions, dtype=torch.float64).cpu())
        if jp.ndim != 2 or len(jp) != n:
            raise ValueError(f"joint_positions must be one row per image ({n}), not shape {jp.shape}")
        if not np.isfinite(jp).all():
            raise ValueError("joint_positions must be finite numbers")

    old_manifest = out / MANIFEST
    if old_manifest.is_file():
        old = _read_json(old_manifest, "manifest")
        if isinstance(old, dict) and old.get("style") != "generated":
            raise DataError(
                f"{str(out)!r} holds an armlab dataset of style {old.get('style')!r}; "
                "refusing to overwrite it with generated images"
            )

    files: dict[str, str] = {}
    for i in range(n):
        stem = f"{i:06d}"
        ok, png = cv2.imencode(".png", imgs[i][:, :, ::-1])
        if not ok:
            raise DataError(f"OpenCV could not encode generated image {i} as PNG")
        rgb_rel = f"rgb/{stem}.png"
        png = png.tobytes()
        atomic_write_bytes(out / rgb_rel, png)
        files[rgb_rel] = sha256_bytes(png)
        label: dict[str, Any] = {"frame": i, "style": "generated", "width": int(w), "height": int(h), "rgb": rgb_rel}
        if cids is not None:
            label["class_id"] = int(cids[i])
            label["class_name"] = classes[int(cids[i])]
        if tg is not None:
            u, v = float(tg[i, 0]), float(tg[i, 1])
            label["target"] = {"pixel": [u * w, v * h], "pixel_norm": [u, v]}
        if jp is not None:
            label["joint_positions"] = [float(q) for q in jp[i]]
        label_rel = f"labels/{stem}.json"
        files[label_rel] = sha256_bytes(atomic_write_json(out / label_rel, label))

    # stale frames of an earlier, larger generated set (labels first: a frame exists while its label does)
    for folder, ext in (("labels", ".json"), ("rgb", ".png")):
        d = out / folder
        if d.is_dir():
            for p in d.glob(f"*{ext}"):
                if p.stem.isdigit() and int(p.stem) >= n:
                    p.unlink()

    settings = {"source": "generated", "depth": False, "seg": False, "conditioned_on_class": cids is not None,
                "conditioned_on_target": tg is not None, "conditioned_on_joints": jp is not None}
    settings.update(extra_settings or {})
    manifest = build_manifest(
        generator="armlab.generative", version=_package_version(), seed=settings.get("seed"), style="generated",
        size=int(w) if w == h else [int(h), int(w)], n=int(n), settings=settings, classes=classes,
        categories=manifest_categories(classes, robot=False), counts={"frames": int(n), "files": len(files)},
        files=files)
    write_manifest(out, manifest, indent=2, sort_keys=False)
    return manifest


def write_grid(out: str | Path, images: Any, name: str = "grid.png") -> Path:
    """A PNG grid of the first 64 of ``images`` (NHWC uint8; up to 8 a row) written atomically to ``out/name``:
    the look at a sampled set that `write_generated` stores image by image."""
    import math

    from generative.training import make_grid

    shown = torch.from_numpy(np.ascontiguousarray(_as_nhwc_uint8(images)[:64])).permute(0, 3, 1, 2).float() / 127.5 - 1
    grid = make_grid(shown, nrow=min(8, max(1, math.ceil(math.sqrt(len(shown))))))
    ok, png = cv2.imencode(".png", np.ascontiguousarray(grid[:, :, ::-1]))
    if not ok:
        raise RuntimeError("OpenCV could not encode the grid PNG")
    path = Path(out) / name
    atomic_write_bytes(path, png.tobytes())
    return path
