"""Writing frames: PNG encoding, a frame's files (images, then its label as the commit marker), COCO masks."""

from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np
from isal import isal_zlib

from robot_env.io.atomic import atomic_write_bytes, write_fd
from robot_env.io.dataset_format import DatasetError, frame_files, label_bytes, label_file, read_label
from robot_env.io.hashing import sha256_bytes, sha256_file
from robot_env.io.shards import KINDS

if TYPE_CHECKING:
    from robot_env.dataset.scene import Frame

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_WRITE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_BINARY", 0)


def _write(path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` in place (a frame's images: the label, written last and atomically, is what
    makes the frame count)."""
    write_fd(os.open(path, _WRITE_FLAGS, 0o644), data)


def _png_chunk(tag: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(data, zlib.crc32(tag)))


_PNG_END = _png_chunk(b"IEND", b"")


def _png(img: np.ndarray) -> bytes:
    """A PNG of ``img``: (H, W, 3) uint8 RGB, (H, W) uint8 or (H, W) uint16 grey.

    Written here rather than with ``cv2.imencode`` because the compression dominates: every
    row gets PNG's "Up" filter (each byte minus the byte above it) and goes into ISA-L's
    fastest deflate (level 0). On the sim renders that is as small as unfiltered rows at
    level 1 (+1 %) in 70 % of the time, and 14 % smaller on the noisy `real` style; zlib's
    level 1 takes about four times as long. Any PNG reader reads the files (OpenCV returns the
    RGB image as BGR, as for every colour PNG)."""
    if img.ndim == 3 and img.shape[2] == 3 and img.dtype == np.uint8:
        color_type, bit_depth = 2, 8
    elif img.ndim == 2 and img.dtype == np.uint8:
        color_type, bit_depth = 0, 8
    elif img.ndim == 2 and img.dtype == np.uint16:
        color_type, bit_depth = 0, 16
        img = img.astype(">u2")  # PNG stores 16-bit samples big-endian
    else:
        raise ValueError(f"cannot write a {img.dtype} image of shape {img.shape} as PNG")
    h, w = img.shape[:2]
    flat = np.ascontiguousarray(img).reshape(h, -1).view(np.uint8)
    rows = np.empty((h, 1 + flat.shape[1]), np.uint8)
    rows[:, 0] = 2  # filter type "Up" on every row; the first row's "above" is zeros
    rows[0, 1:] = flat[0]
    np.subtract(flat[1:], flat[:-1], out=rows[1:, 1:])  # modulo 256, as PNG's filters are
    header = struct.pack(">IIBBBBB", w, h, bit_depth, color_type, 0, 0, 0)
    return b"".join((_PNG_SIGNATURE, _png_chunk(b"IHDR", header),
                     _png_chunk(b"IDAT", isal_zlib.compress(rows, 0)), _PNG_END))


def instance_masks(inst: np.ndarray, ids) -> tuple[list[dict], np.ndarray, np.ndarray]:
    """COCO RLE masks, boxes (x, y, w, h) and pixel areas of the instances ``ids`` of the
    instance image ``inst``, in one pass (one mask per id, encoded together)."""
    from pycocotools import mask as mask_utils

    h, w = inst.shape
    masks = np.empty((h, w, len(ids)), np.uint8, order="F")  # the column-major stack pycocotools takes
    for k, i in enumerate(ids):
        np.equal(inst, i, out=masks[:, :, k].view(bool))
    rles = mask_utils.encode(masks)
    return rles, mask_utils.toBbox(rles), mask_utils.area(rles)


def _annotations(label: dict, seg: np.ndarray | None, rles: list | None = None, masks: bool = True) -> list[dict]:
    """COCO annotations (without ids) of one frame: box, area and RLE mask of every visible
    instance. ``rles`` are the masks of ``label["objects"]`` when already computed. Without
    ``masks`` (a dataset written without its segmentation images) boxes and areas only."""
    if masks and rles is None:
        rles = instance_masks(seg, [o["id"] for o in label["objects"]])[0]
    anns = []
    for o, r in zip(label["objects"], rles if masks else [None] * len(label["objects"])):
        if o["area"] == 0:
            continue
        ann = {"image_id": label["frame"], "category_id": o["category_id"], "bbox": o["bbox"],
               "area": int(o["area"]), "iscrowd": 0}
        if masks:
            ann["segmentation"] = {"size": list(r["size"]), "counts": r["counts"].decode("ascii")}
        ann["attributes"] = {"name": o["name"], "is_target": o["is_target"]}
        anns.append(ann)
    return anns


def output_label(label: dict, outputs=KINDS) -> dict:
    """``label`` as a dataset of ``outputs`` stores it: without the paths of images it does not write."""
    if len(outputs) == len(KINDS):
        return label
    return {k: v for k, v in label.items() if k not in ("depth", "seg") or k in outputs}


def frame_blobs(frame: Frame, outputs=KINDS) -> dict[str, bytes]:
    """A frame's bytes by kind (``rgb``, ``depth``, ``seg`` PNGs, ``label`` JSON) for the kinds of ``outputs``,
    encoded once: what the folder layout writes as files and the sharded layout as tar members."""
    images = {"rgb": frame.rgb, "depth": frame.depth_mm, "seg": frame.seg}
    blobs = {kind: _png(images[kind]) for kind in ("rgb", "depth", "seg") if kind in outputs}
    blobs["label"] = label_bytes(output_label(frame.label, outputs))
    return blobs


def write_blobs(out: Path, i: int, blobs: dict[str, bytes]) -> dict[str, str]:
    """Write frame ``i``'s files from their bytes (`frame_blobs`): the images plainly, then the label, the
    commit marker, atomically. Returns each file's SHA-256."""
    sums = {}
    root = os.fspath(out)
    # images plainly (a frame without its label is regenerated whole, so a torn image never counts), ...
    for rel, kind in zip(frame_files(i)[:3], ("rgb", "depth", "seg")):
        if kind not in blobs:
            continue
        _write(os.path.join(root, rel), blobs[kind])
        sums[rel] = sha256_bytes(blobs[kind])
    rel = label_file(i)  # ... then the label atomically
    atomic_write_bytes(os.path.join(root, rel), blobs["label"])
    sums[rel] = sha256_bytes(blobs["label"])
    return sums


def frame_meta(label: dict, seg: np.ndarray | None, rles: list | None = None, masks: bool = True) -> dict:
    """What the manifest and the COCO file need of a frame: its COCO annotations (``masks``: with their RLE
    masks) and its label."""
    return {"annotations": _annotations(label, seg, rles, masks), "label": label}


def write_frame(out: Path, frame: Frame, outputs=KINDS) -> dict:
    """Write one frame's images (those of ``outputs``), then its label: the commit marker, written atomically
    (`robot_env.io.atomic`, not durable). A frame counts only once its label exists.

    Returns what the manifest and the COCO file need (checksums and annotations), computed
    from the bytes in memory so that finishing a dataset does not read it back."""
    sums = write_blobs(out, frame.label["frame"], frame_blobs(frame, outputs))
    return {"files": sums, **frame_meta(output_label(frame.label, outputs), frame.seg, frame.rles,
                                        masks="seg" in outputs)}


def decode_png(data: bytes, what: str) -> np.ndarray:
    """The PNG ``data`` as OpenCV reads it (unchanged); `DatasetError` naming ``what`` when it is corrupt."""
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED) if data else None
    if img is None:
        raise DatasetError(f"cannot read image {what}: corrupt.")
    return img


def read_png(path: Path, flags: int = cv2.IMREAD_UNCHANGED) -> np.ndarray:
    """The image at ``path`` as OpenCV reads it; `DatasetError` when it is missing or corrupt."""
    img = cv2.imread(str(path), flags)
    if img is None:
        raise DatasetError(f"cannot read image {path}: missing or corrupt.")
    return img


def frame_record(out: Path, i: int, outputs=KINDS) -> dict:
    """`write_frame`'s record for a frame already on disk (a resumed run's earlier frames)."""
    label = read_label(out, i)
    sums = {rel: sha256_file(out / rel) for rel, kind in zip(frame_files(i), KINDS) if kind in outputs}
    masks = "seg" in outputs
    return {"files": sums, **frame_meta(label, read_png(out / label["seg"]) if masks else None, masks=masks)}
