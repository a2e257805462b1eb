"""armlab's dataset format, defined once: what a dataset folder holds, how it is written and checked.

Both writers of the format — the simulator's (`robot_env.dataset`) and the samplers' (`generative.data`'s
``write_generated``) — and every reader take their names, numbers and format-level pieces from here;
docs/dataset-format.md describes the format for people. This module never imports the simulator.

A finished dataset folder holds, for every frame ``i``, the files of `frame_files` (RGB, depth and
segmentation PNGs and a label JSON written by `label_bytes`; a frame exists once its label does:
`frame_done`), a COCO file ``instances.json`` (`coco_dict`, `coco_bytes`) and a ``manifest.json``
(`build_manifest`, `manifest_bytes`, `write_manifest`; read back with `load_manifest`) whose
``format`` is `FORMAT` and ``format_version`` is `FORMAT_VERSION`. A dataset whose arm poses come
from a policy also holds the pose bank ``poses.npz`` (`pose_bank_bytes`, `load_pose_bank`).
`verify` checks a folder against its manifest.

The pieces build dicts and bytes; writing goes through `robot_env.io.atomic` (each file atomically).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from robot_env.io.atomic import atomic_write_bytes
from robot_env.io.errors import DataError, ParamError
from robot_env.io.hashing import sha256_file
from robot_env.io.shards import LAYOUT_KEY, WDS

__all__ = ["CAMERA_STYLES", "CATEGORIES", "CLASSES", "COCO_FILE", "DatasetError", "DatasetParamError", "FORMAT",
           "FORMAT_VERSION", "MANIFEST", "POSE_BANK_KEYS", "POSES_FILE", "SEG_BACKGROUND", "SEG_ROBOT", "SEG_TABLE",
           "STYLES",
           "build_manifest", "coco_bytes", "coco_dict", "frame_done", "frame_files", "is_dataset", "label_bytes",
           "label_file", "load_manifest", "load_pose_bank", "manifest_bytes", "manifest_categories",
           "pose_bank_bytes", "read_label", "verify", "write_manifest"]

FORMAT = "armlab-dataset"  #: the manifest's ``format``
FORMAT_VERSION = 1  #: the manifest's ``format_version``
CLASSES = ("cube", "cylinder", "sphere")  #: the target object's shape: the dataset's discrete label
CATEGORIES = ("robot",) + CLASSES  #: COCO categories (ids 1..4)
STYLES = ("sim", "real", "photo")  #: the looks a dataset is rendered in (see `robot_env.dataset.look`)
CAMERA_STYLES = ("real", "photo")  #: the styles that stand in for a physical camera
SEG_BACKGROUND, SEG_TABLE, SEG_ROBOT = 0, 1, 2  #: fixed instance ids of the seg PNGs; objects follow from 3
MANIFEST = "manifest.json"
COCO_FILE = "instances.json"
POSES_FILE = "poses.npz"  #: the pose bank of a dataset whose arm poses come from a policy
#: the arrays every pose bank holds (it may hold more: ``episode``, ``time``, ``rolled_out``, ``env_id``, ``algo``)
POSE_BANK_KEYS = ("joint_positions", "joint_velocities", "model_sha256", "seed", "episodes")

# labels are trees built by the writers: no cycles to look for, which saves a sixth of the encoding time
_LABEL_ENCODER = json.JSONEncoder(separators=(",", ":"), check_circular=False)


class DatasetError(DataError):
    """A dataset folder or option that cannot be used; the message says what and where."""


class DatasetParamError(ParamError, DatasetError):
    """A bad value of one named dataset option (`ParamError`: the command line shows its flag)."""

    def __reduce__(self):  # survives pickling (errors of worker processes)
        return type(self), (self.param, self.template)


# -- frames --------------------------------------------------------------------------------------------
def frame_files(i: int) -> list[str]:
    """The files of frame ``i``, relative to the dataset folder: RGB, depth, segmentation, label."""
    return [f"rgb/{i:06d}.png", f"depth/{i:06d}.png", f"seg/{i:06d}.png", f"labels/{i:06d}.json"]


def label_file(i: int) -> str:
    """The label of frame ``i``, relative to the dataset folder (the frame's commit marker)."""
    return f"labels/{i:06d}.json"


def frame_done(root: str | Path, i: int) -> bool:
    """True when frame ``i`` of the dataset at ``root`` is written (its label, written last, exists)."""
    return (Path(root) / "labels" / f"{i:06d}.json").exists()


def label_bytes(label: dict) -> bytes:
    """A frame's label JSON as the simulator writes it: compact, one line, keys in the order built."""
    return (_LABEL_ENCODER.encode(label) + "\n").encode()


def read_label(root: str | Path, i: int) -> dict:
    """The label of frame ``i`` of the dataset at ``root``; `DatasetError` when it is missing or not JSON."""
    path = Path(root) / label_file(i)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise DatasetError(f"frame {i} of {root} has no label {path.name}; rerun generate to finish.") from None
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise DatasetError(f"{path} is not valid JSON; delete it and rerun generate.") from None


# -- COCO ----------------------------------------------------------------------------------------------
def coco_dict(images: list[dict], annotations: list[dict]) -> dict:
    """The COCO detection file of a dataset: ``images`` (``id``, ``file_name``, ``width``, ``height``),
    ``annotations`` without ids (numbered 1.. here, in order) and the categories of `CATEGORIES`."""
    return {"info": {"description": "armlab synthetic camera dataset", "version": str(FORMAT_VERSION)},
            "images": images,
            "annotations": [{"id": k + 1, **a} for k, a in enumerate(annotations)],
            "categories": [{"id": k + 1, "name": n, "supercategory": "object" if k else "robot"}
                           for k, n in enumerate(CATEGORIES)]}


def coco_bytes(images: list[dict], annotations: list[dict]) -> bytes:
    """`coco_dict` as the bytes of ``instances.json`` (compact JSON, no final newline)."""
    return json.dumps(coco_dict(images, annotations), separators=(",", ":")).encode()


# -- manifest ------------------------------------------------------------------------------------------
def manifest_categories(classes: Sequence[str] = CLASSES, robot: bool = True) -> list[dict]:
    """The manifest's ``categories``: ``{"id": 1, "name": "robot"}`` (with ``robot``), then class ``k``
    of ``classes`` with id ``k + 2`` (the COCO category ids of the simulator's datasets)."""
    return ([{"id": 1, "name": "robot"}] if robot else []) + [{"id": k + 2, "name": str(c)}
                                                              for k, c in enumerate(classes)]


def build_manifest(*, generator: str, version: str, seed: Any, style: str, size: Any, n: int, settings: dict,
                   classes: Sequence[str], categories: list[dict], counts: dict, files: dict[str, str],
                   **extra: Any) -> dict:
    """A manifest dict: ``format`` and ``format_version``, then the arguments in this order, then ``extra``
    (e.g. ``frames``, ``shard``, ``poses``, ``joint_limits``) in the order given. ``files`` maps every file
    of the dataset (relative path) to its SHA-256 hex digest; ``counts`` holds at least ``frames`` and
    ``files``."""
    return {"format": FORMAT, "format_version": FORMAT_VERSION, "generator": generator, "version": version,
            "seed": seed, "style": style, "size": size, "n": n, "settings": settings, "classes": list(classes),
            "categories": categories, "counts": counts, "files": files, **extra}


def manifest_bytes(manifest: dict, indent: int = 1, sort_keys: bool = True) -> bytes:
    """The bytes of ``manifest.json``: JSON with a final newline. The simulator's datasets use the defaults
    (indent 1, sorted keys); ``generative``'s generated sets have always been written with ``indent=2`` and
    ``sort_keys=False`` (keys in `build_manifest`'s order)."""
    return (json.dumps(manifest, indent=indent, sort_keys=sort_keys) + "\n").encode()


def write_manifest(root: str | Path, manifest: dict, indent: int = 1, sort_keys: bool = True) -> bytes:
    """Write ``root/manifest.json`` atomically and durably (`manifest_bytes`); returns the bytes written."""
    data = manifest_bytes(manifest, indent=indent, sort_keys=sort_keys)
    atomic_write_bytes(Path(root) / MANIFEST, data, durable=True)
    return data


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


# -- the pose bank -------------------------------------------------------------------------------------
def pose_bank_bytes(bank: dict[str, np.ndarray]) -> bytes:
    """The bank as an ``.npz`` with fixed member order and timestamps: the same bank, the same bytes."""
    import io
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as archive:
        for name in sorted(bank):
            member = io.BytesIO()
            np.lib.format.write_array(member, np.asarray(bank[name]), allow_pickle=False)
            archive.writestr(zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0)), member.getvalue())
    return buf.getvalue()


def load_pose_bank(path: str | Path) -> dict[str, np.ndarray]:
    """Read a pose bank file (``poses.npz``; nothing is unpickled); `DatasetError` when missing or damaged."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            bank = {k: z[k] for k in z.files}
    except FileNotFoundError:
        raise DatasetParamError("poses_from", f"the pose bank {path} is missing; build it again with the same "
                                              "{name}.") from None
    except Exception as exc:  # zip or .npy damage
        raise DatasetError(f"the pose bank {path} is corrupt ({type(exc).__name__}); delete it and rerun.") from None
    if not set(POSE_BANK_KEYS) <= set(bank):
        raise DatasetError(f"{path} is not an armlab pose bank.")
    return bank


# -- verify --------------------------------------------------------------------------------------------
def _frame_problems(i: int, lab: dict, manifest: dict, bank_rows: set | None, images: dict) -> list[str]:
    """What is wrong with frame ``i`` (label ``lab``, decoded ``images`` by kind: None where unreadable).
    Generated sets (no ``depth``/``seg`` in their labels) get the checks that apply to an RGB image and its
    label."""
    rel = label_file(i)
    size = manifest["size"]
    h, w = (size, size) if not isinstance(size, list) else size
    classes = manifest.get("classes") or list(CLASSES)
    problems = []
    if lab.get("frame") != i or lab.get("width") != w or lab.get("height") != h:
        problems.append(f"{rel}: frame number or size disagrees with the manifest")
    if "class_id" in lab or "class_name" in lab:
        cid = lab.get("class_id", 0)
        if not (isinstance(cid, int) and 0 <= cid < len(classes)) or lab.get("class_name") != classes[cid]:
            problems.append(f"{rel}: class_id and class_name disagree")
    if bank_rows is not None and tuple(lab.get("joint_positions") or ()) not in bank_rows:
        problems.append(f"{rel}: the joint positions are not a pose of {POSES_FILE}")
    if "rgb" not in lab or any(img is None for img in images.values()):
        return problems + [f"frame {i}: an image cannot be read"]
    rgb, seg, depth = images["rgb"], images.get("seg"), images.get("depth")
    shapes = [rgb.shape] + [img.shape for img in (seg, depth) if img is not None]
    if rgb.shape != (h, w, 3) or any(s != (h, w) for s in shapes[1:]):
        problems.append(f"frame {i}: image shapes {', '.join(map(str, shapes))} are not {size}x{size}")
    if any(img.dtype != np.uint16 for img in (seg, depth) if img is not None):
        problems.append(f"frame {i}: depth and segmentation must be uint16 PNGs")
    for o in lab.get("objects", []) if seg is not None else []:
        ys, xs = np.nonzero(seg == o["id"])
        box = [0, 0, 0, 0] if len(xs) == 0 else [int(xs.min()), int(ys.min()), int(np.ptp(xs) + 1),
                                                  int(np.ptp(ys) + 1)]
        if box != o["bbox"] or len(xs) != o["area"]:
            problems.append(f"frame {i}: the box or area of {o['name']} disagrees with the segmentation")
    return problems


def verify(root: str | Path) -> list[str]:
    """Check a dataset folder: every manifest file present with its checksum, no frame missing, labels
    consistent with the images (sizes, boxes from the segmentation, the target's class and visibility) and,
    with a pose bank, every label's joint positions a row of it. Returns a list of problems, empty when all is
    well; `DatasetError` when ``root`` has no readable manifest."""
    root = Path(root)
    manifest = load_manifest(root)
    problems: list[str] = []
    bad = set()  # files missing or damaged
    for rel, digest in manifest["files"].items():
        path = root / rel
        if not path.exists():
            problems.append(f"{rel} is missing")
            bad.add(rel)
        elif sha256_file(path) != digest:
            problems.append(f"{rel} does not match its checksum")
            bad.add(rel)
    lo, hi = manifest.get("frames", [0, manifest["n"]])
    if manifest["counts"]["frames"] != hi - lo:
        problems.append(f"manifest counts {manifest['counts']['frames']} frames for the range {lo}..{hi - 1}")
    bank_rows = None
    if (manifest.get("settings") or {}).get("poses_from") is not None and (root / POSES_FILE).exists():
        try:
            bank_rows = {tuple(row) for row in load_pose_bank(root / POSES_FILE)["joint_positions"].tolist()}
        except DatasetError as exc:
            problems.append(str(exc).rstrip("."))
    if manifest.get(LAYOUT_KEY) == WDS:
        return problems + _shard_problems(root, manifest, bank_rows, lo, hi, bad) + coco_problems(root, hi - lo)
    import cv2

    for i in range(lo, hi):
        rel = label_file(i)
        if rel not in manifest["files"]:
            problems.append(f"frame {i} is not in the manifest")
            continue
        if not (root / rel).exists():
            continue
        try:
            lab = json.loads((root / rel).read_text())
        except json.JSONDecodeError:
            problems.append(f"{rel} is not valid JSON")
            continue
        images = {k: cv2.imread(str(root / lab[k]), cv2.IMREAD_UNCHANGED) for k in ("rgb", "seg", "depth") if k in lab}
        problems += _frame_problems(i, lab, manifest, bank_rows, images)
    return problems + coco_problems(root, hi - lo)


def _shard_problems(root: Path, manifest: dict, bank_rows: set | None, lo: int, hi: int, bad: set) -> list[str]:
    """What is wrong with the frames of a sharded dataset: each frame in its place, once, with every member (the
    shards ``bad``, missing or damaged, are named already: their frames are not decoded)."""
    import cv2

    from robot_env.io.shards import KINDS, iter_samples, manifest_shards

    kinds = set(manifest.get("outputs", KINDS))
    problems, seen = [], []
    for rel in manifest_shards(manifest):
        if rel in bad:
            continue
        try:
            for i, blobs in iter_samples(root / rel):
                seen.append(i)
                if set(blobs) != kinds:
                    problems.append(f"frame {i} in {rel} holds {', '.join(sorted(blobs))}, not "
                                    f"{', '.join(sorted(kinds))}")
                    continue
                try:
                    lab = json.loads(blobs["label"])
                except (UnicodeDecodeError, json.JSONDecodeError):
                    problems.append(f"the label of frame {i} in {rel} is not valid JSON")
                    continue
                images = {k: cv2.imdecode(np.frombuffer(blobs[k], np.uint8), cv2.IMREAD_UNCHANGED)
                          for k in ("rgb", "seg", "depth") if k in blobs}
                problems += _frame_problems(i, lab, manifest, bank_rows, images)
        except DataError as exc:
            problems.append(str(exc).rstrip("."))
    if seen != list(range(lo, hi)) and not bad:
        missing = sorted(set(range(lo, hi)) - set(seen))
        problems.append(f"the shards hold {len(seen)} frames for the range {lo}..{hi - 1}"
                        + (f" (frame {missing[0]} missing)" if missing else " (out of order or repeated)"))
    return problems


def coco_problems(root: Path, frames: int) -> list[str]:
    """What is wrong with the COCO file of a dataset of ``frames`` frames (nothing when there is none)."""
    problems = []
    coco = root / COCO_FILE
    if coco.exists():
        try:
            data = json.loads(coco.read_text())
            if len(data["images"]) != frames:
                problems.append(f"{COCO_FILE} lists {len(data['images'])} images, expected {frames}")
        except (json.JSONDecodeError, KeyError):
            problems.append(f"{COCO_FILE} is not a valid COCO file")
    return problems
