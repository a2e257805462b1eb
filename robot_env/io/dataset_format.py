"""armlab's dataset format, defined once: what a dataset folder holds and how its manifest reads.

The writer (`robot_env.dataset`) and the readers (`generative.data`, the command line) both take
their names and numbers from here; docs/dataset-format.md describes the format for people.

A finished dataset folder holds, for every frame ``i``, the files of `frame_files` (RGB, depth and
segmentation PNGs and a label JSON written by `label_bytes`), a COCO file ``instances.json`` and a
``manifest.json`` (`load_manifest`) whose ``format`` is `FORMAT` and ``format_version`` is
`FORMAT_VERSION`.
"""

from __future__ import annotations

import json
from pathlib import Path

__all__ = ["CATEGORIES", "CLASSES", "COCO_FILE", "DatasetError", "FORMAT", "FORMAT_VERSION", "MANIFEST",
           "POSES_FILE", "SEG_BACKGROUND", "SEG_ROBOT", "SEG_TABLE", "STYLES", "frame_files", "is_dataset",
           "label_bytes", "load_manifest"]

FORMAT = "armlab-dataset"  #: the manifest's ``format``
FORMAT_VERSION = 1  #: the manifest's ``format_version``
CLASSES = ("cube", "cylinder", "sphere")  #: the target object's shape: the dataset's discrete label
CATEGORIES = ("robot",) + CLASSES  #: COCO categories (ids 1..4)
STYLES = ("sim", "real")  #: the looks a dataset is rendered in
SEG_BACKGROUND, SEG_TABLE, SEG_ROBOT = 0, 1, 2  #: fixed instance ids of the seg PNGs; objects follow from 3
MANIFEST = "manifest.json"
COCO_FILE = "instances.json"
POSES_FILE = "poses.npz"  #: the pose bank of a dataset whose arm poses come from a policy

_LABEL_ENCODER = json.JSONEncoder(separators=(",", ":"), check_circular=False)


class DatasetError(ValueError):
    """A dataset folder or option that cannot be used; the message says what and where."""


def frame_files(i: int) -> list[str]:
    """The files of frame ``i``, relative to the dataset folder: RGB, depth, segmentation, label."""
    return [f"rgb/{i:06d}.png", f"depth/{i:06d}.png", f"seg/{i:06d}.png", f"labels/{i:06d}.json"]


def label_bytes(label: dict) -> bytes:
    """A frame's label JSON as written: compact, one line, keys in the order the writer built them."""
    return (_LABEL_ENCODER.encode(label) + "\n").encode()


def is_dataset(root: str | Path) -> bool:
    """True when ``root`` is a folder with an armlab ``manifest.json``."""
    path = Path(root) / MANIFEST
    if not path.is_file():
        return False
    try:
        return json.loads(path.read_text()).get("format") == FORMAT
    except (OSError, ValueError, AttributeError):
        return False


def load_manifest(root: str | Path) -> dict:
    """The manifest of the finished dataset at ``root``; `DatasetError` when there is none or it is broken."""
    root = Path(root)
    path = root / MANIFEST
    if not root.is_dir():
        raise DatasetError(f"no dataset folder at {root}.")
    if not path.exists():
        raise DatasetError(
            f"{root} is not a finished armlab dataset: no {MANIFEST} (run `armlab dataset generate`)."
        )
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise DatasetError(f"{path} is not valid JSON ({e.msg} at line {e.lineno}).") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise DatasetError(f"{path} is not an armlab dataset manifest.")
    return manifest
