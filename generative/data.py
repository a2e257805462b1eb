"""Image data for the generative models: armlab datasets, plain image folders, and generated output.

Two readers, both ``torch.utils.data.Dataset`` subclasses returning dicts of tensors:

* `ArmlabDataset` reads armlab's camera dataset format (``docs/dataset-format.md``): ``rgb/``,
  optional ``depth/`` and ``seg/``, ``labels/`` and ``manifest.json``. Each item carries the
  conditioning labels of the generative models: ``class_id`` (the target's shape class),
  ``target`` (``target.pixel_norm``, where the target centre is in the image, in [0, 1]) and,
  when the labels have them, ``joints`` (``joint_positions``, the arm's joint angles in radians).
* `ImageFolderDataset` reads any folder of images (recursively) and gives images only.

`open_images` picks the right one (a folder with ``manifest.json`` is an armlab dataset).
`load_tensors` stacks a dataset into in-memory tensors, the form the training loops consume.
`write_generated` writes sampled images back in armlab's format (``"style": "generated"``),
with the *requested* conditions as labels, so they can be read again by `ArmlabDataset`.

Images are RGB uint8 everywhere; tensors are channels-first ``(C, H, W)``. With ``size`` set,
images are center-cropped to a square and resized to ``size x size`` (``cv2.INTER_AREA`` when
shrinking, ``cv2.INTER_LINEAR`` when enlarging); depth and segmentation use nearest-neighbour
so no depth or instance id is invented at object borders, and ``target`` is moved with the crop.

Every problem with the data on disk raises `DataError` (a ``ValueError``) with one sentence
that names the folder or file at fault.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
DEFAULT_CLASSES = ("cube", "cylinder", "sphere")
FORMAT = "armlab-dataset"
FORMAT_VERSION = 1

__all__ = [
    "DEFAULT_CLASSES",
    "IMAGE_EXTENSIONS",
    "ArmlabDataset",
    "DataError",
    "ImageFolderDataset",
    "atomic_write_bytes",
    "is_armlab_dataset",
    "load_tensors",
    "open_images",
    "sha256_bytes",
    "sha256_file",
    "write_generated",
]


class DataError(ValueError):
    """The data on disk cannot be used: a missing or empty folder, a corrupt image, a bad label."""


# ----------------------------------------------------------------------------- small file helpers


def sha256_bytes(data: bytes) -> str:
    """Hex SHA-256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of the file at ``path``, read in chunks of ``chunk`` bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically: a hidden temp file beside it, then ``os.replace``.

    Readers see either the old file or the complete new one, never a partial write, even when
    the writer is killed. Parent folders are created. (No ``fsync``: this protects against
    interrupted processes, not against power loss, and keeps writing thousands of small PNGs fast.)
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _atomic_write_json(path: Path, obj: Any) -> bytes:
    data = (json.dumps(obj, indent=2, sort_keys=False) + "\n").encode()
    atomic_write_bytes(path, data)
    return data


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
        raise ValueError(f"size must be a positive integer or None, not {size!r}")
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


# ----------------------------------------------------------------------------- armlab datasets


def is_armlab_dataset(root: str | Path) -> bool:
    """True when ``root`` holds a ``manifest.json`` (what `open_images` dispatches on)."""
    return (Path(root) / "manifest.json").is_file()


def _read_json(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DataError(f"cannot read {what} {str(path)!r}: {e}") from None


def _frame_number(path: Path) -> tuple[int, str]:
    stem = path.stem
    return (int(stem), stem) if stem.isdigit() else (1 << 62, stem)


class ArmlabDataset(Dataset):
    """A dataset in armlab's format (``docs/dataset-format.md``), one dict per frame.

    Items::

        {"image": uint8 (3, H, W),          # rgb/NNNNNN.png, RGB
         "class_id": long scalar,           # label "class_id" (-1 if the label has none)
         "target": float32 (2,),            # label "target.pixel_norm" (NaN if the label has none)
         "joints": float32 (J,),            # label "joint_positions" (radians; NaN if the label has
                                            # none), only when some label has them
         "frame": int,                      # label "frame"
         "depth": float32 (1, H, W),        # with_depth: metres (uint16 millimetres / 1000; 0 = none)
         "seg": int64 (H, W)}               # with_seg: instance ids (0 = background)

    A frame exists when its label exists (labels are written last). Labels are parsed at
    construction, so a corrupt label fails early; images are read when an item is asked for.
    ``classes`` is the manifest's class list, ``manifest`` the whole manifest. ``n_joints`` is the
    length of the labels' ``joint_positions`` (0 when no label has them; labels of different
    lengths raise `DataError`).

    With ``size`` the images are center-cropped and resized to ``size x size`` and ``target``
    is moved with the crop (it stays the target centre in the returned image). ``skip_bad=True``
    decodes every requested image once at construction (one full read of the data) and skips,
    with a warning naming the file, every frame whose label or images cannot be read.
    """

    def __init__(
        self,
        root: str | Path,
        size: int | None = None,
        with_depth: bool = False,
        with_seg: bool = False,
        skip_bad: bool = False,
    ):
        self.root = Path(root)
        self.size = _check_size(size)
        self.with_depth = bool(with_depth)
        self.with_seg = bool(with_seg)
        if not self.root.is_dir():
            raise DataError(f"{str(self.root)!r} is not an armlab dataset: the folder does not exist")
        manifest_path = self.root / "manifest.json"
        if not manifest_path.is_file():
            raise DataError(f"{str(self.root)!r} is not an armlab dataset: no manifest.json")
        manifest = _read_json(manifest_path, "manifest")
        if not isinstance(manifest, dict):
            raise DataError(f"{str(manifest_path)!r} is not an armlab manifest: not a JSON object")
        if manifest.get("format", FORMAT) != FORMAT:
            raise DataError(f"{str(manifest_path)!r} is not an armlab manifest: format {manifest.get('format')!r}")
        self.manifest: dict = manifest
        self.classes: list[str] = [str(c) for c in manifest.get("classes", DEFAULT_CLASSES)]
        labels_dir = self.root / "labels"
        if not labels_dir.is_dir():
            raise DataError(f"{str(self.root)!r} is not an armlab dataset: no labels/ folder")
        label_paths = sorted(
            (p for p in labels_dir.glob("*.json") if not p.name.startswith(".")), key=_frame_number
        )
        if not label_paths:
            raise DataError(f"armlab dataset {str(self.root)!r} holds no frames: labels/ is empty")
        for flag, folder in ((with_depth, "depth"), (with_seg, "seg")):
            if flag and not (self.root / folder).is_dir():
                style = manifest.get("style", "?")
                raise DataError(f"armlab dataset {str(self.root)!r} (style {style!r}) has no {folder}/ folder")

        self.records: list[dict] = []
        self.n_joints = 0  # set below; items carry "joints" only when it is > 0
        for p in label_paths:
            try:
                rec = self._record(p)
                if skip_bad:
                    self._load(rec)
            except DataError as e:
                if not skip_bad:
                    raise
                warnings.warn(f"skipping frame {p.stem}: {e}", stacklevel=2)
                continue
            self.records.append(rec)
        if not self.records:
            raise DataError(f"armlab dataset {str(self.root)!r} holds no readable frames")
        first = None
        for rec in self.records:
            q = rec["joint_positions"]
            if q is None:
                continue
            if first is None:
                first = rec
            elif len(q) != len(first["joint_positions"]):
                raise DataError(
                    f"label {rec['label']!r} has {len(q)} joint_positions but label {first['label']!r} has "
                    f"{len(first['joint_positions'])}; one dataset holds one robot"
                )
        self.n_joints = len(first["joint_positions"]) if first is not None else 0

    def _record(self, path: Path) -> dict:
        label = _read_json(path, "label")
        if not isinstance(label, dict):
            raise DataError(f"label {str(path)!r} is not a JSON object")
        stem = path.stem
        try:
            frame = int(label.get("frame", int(stem) if stem.isdigit() else -1))
            class_id = int(label["class_id"]) if label.get("class_id") is not None else -1
            target = label.get("target") or {}
            pn = target.get("pixel_norm")
            pixel_norm = (float(pn[0]), float(pn[1])) if pn is not None else (float("nan"), float("nan"))
            jp = label.get("joint_positions")
            joint_positions = tuple(float(v) for v in jp) if jp is not None else None
        except (TypeError, ValueError, KeyError, IndexError) as e:
            raise DataError(f"label {str(path)!r} has a malformed field: {e}") from None
        rec = {
            "label": str(path),
            "frame": frame,
            "class_id": class_id,
            "pixel_norm": pixel_norm,
            "joint_positions": joint_positions,
            "rgb": self.root / label.get("rgb", f"rgb/{stem}.png"),
        }
        if self.with_depth:
            rec["depth"] = self.root / label.get("depth", f"depth/{stem}.png")
        if self.with_seg:
            rec["seg"] = self.root / label.get("seg", f"seg/{stem}.png")
        return rec

    @staticmethod
    def _read_u16(path: Path, what: str) -> np.ndarray:
        img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED) if path.is_file() else None
        if img is None:
            raise DataError(f"cannot read {what} image {str(path)!r} (missing or corrupt)")
        if img.dtype != np.uint16 or img.ndim != 2:
            raise DataError(f"{what} image {str(path)!r} is not single-channel uint16 ({img.dtype}, {img.shape})")
        return img

    def _load(self, rec: dict) -> dict[str, Any]:
        rgb = _read_rgb(rec["rgb"]) if rec["rgb"].is_file() else None
        if rgb is None:
            raise DataError(f"cannot read image {str(rec['rgb'])!r} (missing or corrupt)")
        h, w = rgb.shape[:2]
        u, v = rec["pixel_norm"]
        if self.size is not None:
            y0, x0, side = _crop_box(h, w)
            u, v = (u * w - x0) / side, (v * h - y0) / side
        out: dict[str, Any] = {
            "image": _chw(_square_resize(rgb, self.size)),
            "class_id": torch.tensor(rec["class_id"], dtype=torch.long),
            "target": torch.tensor([u, v], dtype=torch.float32),
            "frame": rec["frame"],
        }
        if self.n_joints:
            q = rec["joint_positions"]
            out["joints"] = torch.tensor(q if q is not None else [float("nan")] * self.n_joints, dtype=torch.float32)
        if self.with_depth:
            d = self._read_u16(rec["depth"], "depth")
            d = _square_resize(d, self.size, nearest=True).astype(np.float32) / 1000.0
            out["depth"] = torch.from_numpy(d)[None]
        if self.with_seg:
            s = self._read_u16(rec["seg"], "segmentation")
            out["seg"] = torch.from_numpy(_square_resize(s, self.size, nearest=True).astype(np.int64))
        return out

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return self._load(self.records[i])


def open_images(
    root: str | Path,
    size: int | None = None,
    *,
    skip_bad: bool = False,
    with_depth: bool = False,
    with_seg: bool = False,
) -> ArmlabDataset | ImageFolderDataset:
    """`ArmlabDataset` if ``root`` holds a ``manifest.json``, else `ImageFolderDataset`.

    ``with_depth``/``with_seg`` need an armlab dataset; asking for them on a plain image
    folder raises `DataError`.
    """
    if is_armlab_dataset(root):
        return ArmlabDataset(root, size=size, with_depth=with_depth, with_seg=with_seg, skip_bad=skip_bad)
    if with_depth or with_seg:
        raise DataError(f"{str(root)!r} is not an armlab dataset (no manifest.json), so it has no depth or seg")
    return ImageFolderDataset(root, size=size, skip_bad=skip_bad)


# ----------------------------------------------------------------------------- in-memory tensors


def load_tensors(dataset: Dataset, limit: int | None = None, progress: bool = False) -> dict[str, torch.Tensor]:
    """Stack the first ``limit`` items (all with ``None``) of ``dataset`` into tensors.

    Returns ``{"image": uint8 (N, C, H, W)}`` for an image folder and, for an armlab dataset,
    also ``"class_id"`` (long ``(N,)``) and ``"target"`` (float32 ``(N, 2)``), ``"joints"`` (float32
    ``(N, J)``, radians) when the labels have joint positions, plus ``"depth"``
    (float32 ``(N, 1, H, W)``) and ``"seg"`` (int64 ``(N, H, W)``) when the dataset was opened
    with them. All images must have one size: pass ``size=`` to the dataset otherwise.
    ``progress`` shows a tqdm bar.
    """
    n = len(dataset) if limit is None else min(len(dataset), max(0, int(limit)))
    if n == 0:
        raise DataError("nothing to load: the dataset is empty or limit is 0")
    keys = ("image", "class_id", "target", "joints", "depth", "seg")
    out: dict[str, torch.Tensor] = {}
    indices: Any = range(n)
    if progress:
        from tqdm.auto import tqdm

        indices = tqdm(indices, desc="loading images", unit="img")
    for i in indices:
        item = dataset[i]
        if i == 0:
            for k in keys:
                if k in item:
                    v = torch.as_tensor(item[k])
                    out[k] = torch.empty((n, *v.shape), dtype=v.dtype)
        for k, buf in out.items():
            v = torch.as_tensor(item[k])
            if v.shape != buf.shape[1:]:
                where = f" ({item['path']})" if "path" in item else ""
                raise DataError(
                    f"item {i}{where} has {k} shape {tuple(v.shape)} but item 0 has {tuple(buf.shape[1:])}; "
                    "open the dataset with size= to resize all images to one size"
                )
            buf[i] = v
    return out


# ----------------------------------------------------------------------------- generated images


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
    classes: Sequence[str] = DEFAULT_CLASSES,
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

    old_manifest = out / "manifest.json"
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
        files[label_rel] = sha256_bytes(_atomic_write_json(out / label_rel, label))

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
    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "generator": "armlab.generative",
        "version": _package_version(),
        "seed": settings.get("seed"),
        "style": "generated",
        "size": int(w) if w == h else [int(h), int(w)],
        "n": int(n),
        "settings": settings,
        "classes": classes,
        "categories": [{"id": j + 2, "name": c} for j, c in enumerate(classes)],
        "counts": {"frames": int(n), "files": len(files)},
        "files": files,
    }
    _atomic_write_json(old_manifest, manifest)
    return manifest
