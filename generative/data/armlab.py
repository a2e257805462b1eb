"""armlab datasets (``docs/dataset-format.md``) as a ``torch`` dataset, and in-memory tensors of any dataset."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from generative.data.images import (
    DataError,
    ImageFolderDataset,
    _check_size,
    _chw,
    _crop_box,
    _read_rgb,
    _square_resize,
)
from robot_env.io.dataset_format import CLASSES, FORMAT, MANIFEST
from robot_env.io.shards import WDS, dataset_layout, index_shard, manifest_shards, read_members

__all__ = ["ArmlabDataset", "is_armlab_dataset", "load_tensors", "open_images"]


def is_armlab_dataset(root: str | Path) -> bool:
    """True when ``root`` holds a ``manifest.json`` (what `open_images` dispatches on)."""
    return (Path(root) / MANIFEST).is_file()


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
    A dataset in the sharded layout (``--format wds``: WebDataset tar shards) reads the same way: the
    shards' headers and labels are read at construction, each image's bytes from its shard when asked
    for (`ShardStream` streams the shards instead, for data sets larger than a pass over the headers).
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
        manifest_path = self.root / MANIFEST
        if not manifest_path.is_file():
            raise DataError(f"{str(self.root)!r} is not an armlab dataset: no manifest.json")
        manifest = _read_json(manifest_path, "manifest")
        if not isinstance(manifest, dict):
            raise DataError(f"{str(manifest_path)!r} is not an armlab manifest: not a JSON object")
        if manifest.get("format", FORMAT) != FORMAT:
            raise DataError(f"{str(manifest_path)!r} is not an armlab manifest: format {manifest.get('format')!r}")
        self.manifest: dict = manifest
        self.classes: list[str] = [str(c) for c in manifest.get("classes", CLASSES)]
        self.records: list[dict] = []
        self.n_joints = 0  # set below; items carry "joints" only when it is > 0
        for stem, read_label in (self._shard_labels() if dataset_layout(manifest) == WDS else self._file_labels()):
            try:
                rec = self._record(*read_label())
                if skip_bad:
                    self._load(rec)
            except DataError as e:
                if not skip_bad:
                    raise
                warnings.warn(f"skipping frame {stem}: {e}", stacklevel=2)
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

    def labels(self) -> list[dict]:
        """The full label (the parsed JSON object) of every record, in the records' order, read again from the label
        files or the shards (the records keep only what an item needs: see :func:`label_fields`)."""
        wanted = {rec["label"] for rec in self.records}
        shards = dataset_layout(self.manifest) == WDS
        out = []
        for _, read_label in (self._shard_labels() if shards else self._file_labels()):
            label, where, _, _ = read_label()
            if where in wanted:
                out.append(label)
        return out

    def _file_labels(self):
        labels_dir = self.root / "labels"
        if not labels_dir.is_dir():
            raise DataError(f"{str(self.root)!r} is not an armlab dataset: no labels/ folder")
        label_paths = sorted(
            (p for p in labels_dir.glob("*.json") if not p.name.startswith(".")), key=_frame_number
        )
        if not label_paths:
            raise DataError(f"armlab dataset {str(self.root)!r} holds no frames: labels/ is empty")
        for flag, folder in ((self.with_depth, "depth"), (self.with_seg, "seg")):
            if flag and not (self.root / folder).is_dir():
                style = self.manifest.get("style", "?")
                raise DataError(f"armlab dataset {str(self.root)!r} (style {style!r}) has no {folder}/ folder")
        for p in label_paths:
            yield p.stem, lambda p=p: (_read_json(p, "label"), str(p), p.stem, None)

    def _shard_labels(self):
        for rel in manifest_shards(self.manifest):
            path = self.root / rel
            index = index_shard(path)
            spans = [(i, m["label"]) for i, m in sorted(index.items()) if "label" in m]
            if not spans:
                continue
            for (i, _), data in zip(spans, read_members(path, [span for _, span in spans])):
                where = f"{path}:{i:06d}.json"
                yield f"{i:06d}", lambda data=data, where=where, stem=f"{i:06d}", shard=(path, index[i]): (
                    _parse_label(data, where), where, stem, shard)

    def _record(self, label: Any, where: str, stem: str, shard: tuple | None) -> dict:
        rec = label_fields(label, where, stem)
        kinds = ("rgb",) + ("depth",) * self.with_depth + ("seg",) * self.with_seg
        if shard is None:
            rec.update({k: self.root / label.get(k, f"{k}/{stem}.png") for k in kinds})
        else:  # (shard, {kind: (offset, size)}): the bytes are read from the shard when the item is asked for
            path, members = shard
            missing = [k for k in kinds if k not in members]
            if missing:
                raise DataError(f"frame {stem} in {str(path)!r} has no {missing[0]} member")
            rec["shard"] = (path, [members[k] for k in kinds])
        return rec

    def _load(self, rec: dict) -> dict[str, Any]:
        if "shard" in rec:
            path, spans = rec["shard"]
            where = [f"{path}:{rec['frame']:06d}.{k}.png" for k in ("rgb", "depth", "seg")]
            blobs = iter(read_members(path, spans))
            rgb = decode_rgb(next(blobs), where[0])
            depth = decode_u16(next(blobs), "depth", where[1]) if self.with_depth else None
            seg = decode_u16(next(blobs), "segmentation", where[2]) if self.with_seg else None
        else:
            rgb = _read_rgb(rec["rgb"]) if rec["rgb"].is_file() else None
            if rgb is None:
                raise DataError(f"cannot read image {str(rec['rgb'])!r} (missing or corrupt)")
            depth = _read_u16(rec["depth"], "depth") if self.with_depth else None
            seg = _read_u16(rec["seg"], "segmentation") if self.with_seg else None
        return make_item(rec, rgb, depth, seg, self.size, self.n_joints)

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return self._load(self.records[i])


def label_fields(label: Any, where: str, stem: str = "") -> dict:
    """What an item takes from a frame's label (``frame``, ``class_id``, ``pixel_norm``, ``joint_positions``),
    with ``label``: ``where``. `DataError` naming ``where`` for a label that is not an object or has a malformed
    field."""
    if not isinstance(label, dict):
        raise DataError(f"label {where!r} is not a JSON object")
    try:
        frame = int(label.get("frame", int(stem) if stem.isdigit() else -1))
        class_id = int(label["class_id"]) if label.get("class_id") is not None else -1
        target = label.get("target") or {}
        pn = target.get("pixel_norm")
        pixel_norm = (float(pn[0]), float(pn[1])) if pn is not None else (float("nan"), float("nan"))
        jp = label.get("joint_positions")
        joint_positions = tuple(float(v) for v in jp) if jp is not None else None
    except (TypeError, ValueError, KeyError, IndexError, AttributeError) as e:
        raise DataError(f"label {where!r} has a malformed field: {e}") from None
    return {"label": where, "frame": frame, "class_id": class_id, "pixel_norm": pixel_norm,
            "joint_positions": joint_positions}


_COLOR_RGB = getattr(cv2, "IMREAD_COLOR_RGB", cv2.IMREAD_COLOR)  #: OpenCV >= 4.10 decodes straight to RGB


def _parse_label(data: bytes, where: str) -> Any:
    try:
        return json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DataError(f"cannot read label {where!r}: {e}") from None


def _read_u16(path: Path, what: str) -> np.ndarray:
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED) if path.is_file() else None
    return _check_u16(img, what, str(path))


def _check_u16(img: np.ndarray | None, what: str, where: str) -> np.ndarray:
    if img is None:
        raise DataError(f"cannot read {what} image {where!r} (missing or corrupt)")
    if img.dtype != np.uint16 or img.ndim != 2:
        raise DataError(f"{what} image {where!r} is not single-channel uint16 ({img.dtype}, {img.shape})")
    return img


def decode_rgb(data: bytes, where: str) -> np.ndarray:
    """RGB uint8 ``(H, W, 3)`` of the image bytes ``data``; `DataError` naming ``where`` when they are corrupt."""
    img = cv2.imdecode(np.frombuffer(data, np.uint8), _COLOR_RGB) if len(data) else None
    if img is None or img.ndim != 3:
        raise DataError(f"cannot read image {where!r} (corrupt)")
    return img if _COLOR_RGB != cv2.IMREAD_COLOR else np.ascontiguousarray(img[:, :, ::-1])


def decode_u16(data: bytes, what: str, where: str) -> np.ndarray:
    """The single-channel uint16 PNG ``data`` (depth or segmentation); `DataError` naming ``where`` otherwise."""
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED) if len(data) else None
    return _check_u16(img, what, where)


def target_in(rec: dict, h: int, w: int, size: int | None) -> tuple[float, float]:
    """The frame's ``pixel_norm`` target in the image as returned: moved with the centred crop when ``size`` is
    set (an ``h x w`` image)."""
    u, v = rec["pixel_norm"]
    if size is not None:
        y0, x0, side = _crop_box(h, w)
        u, v = (u * w - x0) / side, (v * h - y0) / side
    return u, v


def make_item(rec: dict, rgb: np.ndarray, depth: np.ndarray | None, seg: np.ndarray | None, size: int | None,
              n_joints: int) -> dict[str, Any]:
    """An `ArmlabDataset` item from a frame's record (``frame``, ``class_id``, ``pixel_norm``,
    ``joint_positions``) and its decoded images: the one place items are built, for both layouts and streams."""
    u, v = target_in(rec, rgb.shape[0], rgb.shape[1], size)
    out: dict[str, Any] = {
        "image": _chw(_square_resize(rgb, size)),
        "class_id": torch.tensor(rec["class_id"], dtype=torch.long),
        "target": torch.tensor([u, v], dtype=torch.float32),
        "frame": rec["frame"],
    }
    if n_joints:
        q = rec["joint_positions"]
        out["joints"] = torch.tensor(q if q is not None else [float("nan")] * n_joints, dtype=torch.float32)
    if depth is not None:
        d = _square_resize(depth, size, nearest=True).astype(np.float32) / 1000.0
        out["depth"] = torch.from_numpy(d)[None]
    if seg is not None:
        out["seg"] = torch.from_numpy(_square_resize(seg, size, nearest=True).astype(np.int64))
    return out


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
