"""generative.data: armlab datasets, image folders, in-memory tensors and generated output.

The dataset generator is not needed: `write_toy_dataset` writes a small dataset in armlab's
format (``docs/dataset-format.md``) with one coloured shape per frame, whose shape is the class
and whose centre is the target, so class and position can be learnt (tests/test_metrics.py
trains its probe on it).
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from generative.data import (
    ArmlabDataset,
    DataError,
    ImageFolderDataset,
    atomic_write_bytes,
    load_tensors,
    open_images,
    sha256_file,
    write_generated,
)

CLASSES = ["cube", "cylinder", "sphere"]
COLORS = [(220, 60, 50), (60, 200, 70), (70, 90, 230)]  # RGB per class


def draw_shape(img: np.ndarray, class_id: int, u: float, v: float, r: float, color) -> None:
    """Draw class ``class_id``'s shape (square, triangle, circle) centred at pixel ``(u, v)``, in place."""
    bgr = tuple(int(c) for c in color[::-1])
    s = 4  # sub-pixel precision bits
    cu, cv_, rr = int(round(u * 2**s)), int(round(v * 2**s)), int(round(r * 2**s))
    if class_id == 0:
        pts = np.array([[cu - rr, cv_ - rr], [cu + rr, cv_ - rr], [cu + rr, cv_ + rr], [cu - rr, cv_ + rr]])
        cv2.fillPoly(img, [pts.astype(np.int32)], bgr, cv2.LINE_AA, shift=s)
    elif class_id == 1:
        h = int(round(r * 1.15 * 2**s))
        pts = np.array([[cu, cv_ - h], [cu + h, cv_ + h * 3 // 4], [cu - h, cv_ + h * 3 // 4]])
        cv2.fillPoly(img, [pts.astype(np.int32)], bgr, cv2.LINE_AA, shift=s)
    else:
        cv2.circle(img, (cu, cv_), rr, bgr, -1, cv2.LINE_AA, shift=s)


def toy_frame(rng: np.random.Generator, size: int, class_id: int | None = None):
    """One toy frame: BGR image, class id, pixel_norm target."""
    cid = int(rng.integers(3)) if class_id is None else class_id
    bg = rng.integers(90, 150)
    img = np.full((size, size, 3), bg, np.uint8)
    img = np.clip(img.astype(np.int16) + rng.integers(-6, 7, img.shape), 0, 255).astype(np.uint8)
    r = size * rng.uniform(0.12, 0.16)
    u, v = rng.uniform(0.22, 0.78, 2) * size
    color = np.clip(np.array(COLORS[cid]) + rng.integers(-20, 21, 3), 0, 255)
    draw_shape(img, cid, u, v, r, color)
    return img, cid, (u / size, v / size)


def write_toy_dataset(root: Path, n: int = 60, size: int = 32, seed: int = 0, depth: bool = False) -> Path:
    """A small dataset in armlab's format under ``root``: rgb/, labels/, manifest.json (+ depth/, seg/)."""
    rng = np.random.default_rng(seed)
    files = {}
    for i in range(n):
        img, cid, (un, vn) = toy_frame(rng, size)
        stem = f"{i:06d}"
        (root / "rgb").mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(root / "rgb" / f"{stem}.png"), img)
        files[f"rgb/{stem}.png"] = sha256_file(root / "rgb" / f"{stem}.png")
        label = {
            "frame": i, "style": "sim", "width": size, "height": size,
            "rgb": f"rgb/{stem}.png", "depth": f"depth/{stem}.png", "seg": f"seg/{stem}.png",
            "class_id": cid, "class_name": CLASSES[cid],
            "target": {"position": [0.0, 0.0, 0.0], "pixel": [un * size, vn * size], "pixel_norm": [un, vn],
                       "visible": True},
        }
        if depth:
            (root / "depth").mkdir(exist_ok=True)
            (root / "seg").mkdir(exist_ok=True)
            d = np.full((size, size), 1500 + i, np.uint16)
            s = np.zeros((size, size), np.uint16)
            s[: size // 2] = 3
            cv2.imwrite(str(root / "depth" / f"{stem}.png"), d)
            cv2.imwrite(str(root / "seg" / f"{stem}.png"), s)
        (root / "labels").mkdir(exist_ok=True)
        (root / "labels" / f"{stem}.json").write_text(json.dumps(label))
    manifest = {
        "format": "armlab-dataset", "format_version": 1, "generator": "tests", "version": "0", "seed": seed,
        "style": "sim", "size": size, "n": n, "settings": {}, "classes": CLASSES,
        "categories": [{"id": 1, "name": "robot"}] + [{"id": j + 2, "name": c} for j, c in enumerate(CLASSES)],
        "counts": {"frames": n, "files": len(files) + n}, "files": files,
    }
    (root / "manifest.json").write_text(json.dumps(manifest))
    return root


def write_images(folder: Path, n: int, size=(20, 30), ext: str = ".png") -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    paths = []
    for i in range(n):
        p = folder / f"img{i:02d}{ext}"
        cv2.imwrite(str(p), rng.integers(0, 256, (*size, 3), dtype=np.uint8))
        paths.append(p)
    return paths


# ----------------------------------------------------------------------------- image folders


def test_image_folder_reads_recursively_as_rgb_sorted(tmp_path):
    img = np.zeros((10, 16, 3), np.uint8)
    img[..., 2] = 200  # red in BGR
    (tmp_path / "b").mkdir()
    cv2.imwrite(str(tmp_path / "b" / "z.png"), img)
    cv2.imwrite(str(tmp_path / "a.jpg"), img)
    cv2.imwrite(str(tmp_path / "c.bmp"), img)
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / ".hidden").mkdir()
    cv2.imwrite(str(tmp_path / ".hidden" / "x.png"), img)

    ds = ImageFolderDataset(tmp_path)
    assert [p.relative_to(tmp_path).as_posix() for p in ds.paths] == ["a.jpg", "b/z.png", "c.bmp"]  # sorted
    item = ds[1]
    assert item["image"].dtype == torch.uint8 and item["image"].shape == (3, 10, 16)
    assert item["image"][0].float().mean() > 190 and item["image"][2].max() == 0  # RGB, not BGR
    assert item["path"].endswith("z.png")

    small = ImageFolderDataset(tmp_path, size=8)
    assert small[0]["image"].shape == (3, 8, 8)
    data = load_tensors(small)
    assert set(data) == {"image"} and data["image"].shape == (3, 3, 8, 8) and data["image"].dtype == torch.uint8


def test_image_folder_center_crop(tmp_path):
    img = np.zeros((10, 30, 3), np.uint8)
    img[:, 10:20] = 255  # the centred 10x10 square is white, the sides black
    cv2.imwrite(str(tmp_path / "x.png"), img)
    out = ImageFolderDataset(tmp_path, size=5)[0]["image"]
    assert out.shape == (3, 5, 5) and int(out.min()) == 255


def test_image_folder_missing_and_empty(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        ImageFolderDataset(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("x")
    with pytest.raises(DataError, match="holds no images"):
        ImageFolderDataset(tmp_path / "empty")


def test_image_folder_corrupt_file_error_and_skip(tmp_path):
    write_images(tmp_path, 3)
    (tmp_path / "x.png").write_bytes(b"this is not a png at all" * 10)
    ds = ImageFolderDataset(tmp_path)
    assert len(ds) == 4
    with pytest.raises(DataError, match=r"x\.png"):
        load_tensors(ds)
    with pytest.warns(UserWarning, match=r"x\.png"):
        ds = ImageFolderDataset(tmp_path, skip_bad=True)
    assert len(ds) == 3 and all("x.png" not in str(p) for p in ds.paths)
    assert load_tensors(ds)["image"].shape == (3, 3, 20, 30)


def test_load_tensors_different_sizes_is_a_clear_error(tmp_path):
    write_images(tmp_path / "a", 1, size=(8, 8))
    write_images(tmp_path / "b", 1, size=(9, 9))
    with pytest.raises(DataError, match="size="):
        load_tensors(ImageFolderDataset(tmp_path))
    assert load_tensors(ImageFolderDataset(tmp_path, size=6))["image"].shape == (2, 3, 6, 6)


# ----------------------------------------------------------------------------- armlab datasets


def test_armlab_dataset_items(tmp_path):
    root = write_toy_dataset(tmp_path / "ds", n=5, size=24, depth=True)
    ds = ArmlabDataset(root, with_depth=True, with_seg=True)
    assert len(ds) == 5 and ds.classes == CLASSES
    label = json.loads((root / "labels" / "000003.json").read_text())
    item = ds[3]
    assert item["frame"] == 3
    assert item["image"].dtype == torch.uint8 and item["image"].shape == (3, 24, 24)
    assert item["class_id"].dtype == torch.long and int(item["class_id"]) == label["class_id"]
    assert item["target"].dtype == torch.float32
    assert torch.allclose(item["target"], torch.tensor(label["target"]["pixel_norm"]))
    assert item["depth"].dtype == torch.float32 and item["depth"].shape == (1, 24, 24)
    assert torch.allclose(item["depth"], torch.full((1, 24, 24), 1.503))
    assert item["seg"].dtype == torch.int64 and item["seg"].shape == (24, 24)
    assert int(item["seg"][0, 0]) == 3 and int(item["seg"][-1, -1]) == 0

    data = load_tensors(ArmlabDataset(root, size=16), limit=4)
    assert data["image"].shape == (4, 3, 16, 16)
    assert data["class_id"].shape == (4,) and data["class_id"].dtype == torch.long
    assert data["target"].shape == (4, 2) and data["target"].dtype == torch.float32
    assert "depth" not in data

    assert isinstance(open_images(root, 16), ArmlabDataset)
    assert isinstance(open_images(root / "rgb", 16), ImageFolderDataset)
    with pytest.raises(DataError, match="not an armlab dataset"):
        open_images(root / "rgb", with_depth=True)


def test_armlab_dataset_crop_moves_the_target(tmp_path):
    root = write_toy_dataset(tmp_path / "ds", n=1, size=8)
    label_path = root / "labels" / "000000.json"
    label = json.loads(label_path.read_text())
    cv2.imwrite(str(root / "rgb" / "000000.png"), np.zeros((8, 16, 3), np.uint8))  # 16 wide: crop x 4..12
    label["target"]["pixel_norm"] = [10 / 16, 2 / 8]
    label_path.write_text(json.dumps(label))
    assert torch.allclose(ArmlabDataset(root, size=4)[0]["target"], torch.tensor([6 / 8, 2 / 8]))


def test_armlab_dataset_errors(tmp_path):
    write_images(tmp_path / "plain", 2)
    with pytest.raises(DataError, match=r"is not an armlab dataset: no manifest\.json"):
        ArmlabDataset(tmp_path / "plain")
    with pytest.raises(DataError, match="not an armlab dataset"):
        ArmlabDataset(tmp_path / "missing")

    root = write_toy_dataset(tmp_path / "ds", n=3, size=8)
    with pytest.raises(DataError, match="no depth/ folder"):
        ArmlabDataset(root, with_depth=True)
    (root / "rgb" / "000001.png").write_bytes(b"garbage")
    ds = ArmlabDataset(root)
    with pytest.raises(DataError, match=r"000001\.png"):
        ds[1]
    with pytest.warns(UserWarning, match=r"000001\.png"):
        ds = ArmlabDataset(root, skip_bad=True)
    assert [r["frame"] for r in ds.records] == [0, 2]
    (root / "labels" / "000002.json").write_text("{not json")
    with pytest.raises(DataError, match=r"000002\.json"):
        ArmlabDataset(root)

    for p in (root / "labels").iterdir():
        p.unlink()
    with pytest.raises(DataError, match="labels/ is empty"):
        ArmlabDataset(root)
    (root / "labels").rmdir()
    with pytest.raises(DataError, match="no labels/ folder"):
        ArmlabDataset(root)


# ----------------------------------------------------------------------------- writing


def test_atomic_write_and_sha256(tmp_path):
    p = tmp_path / "sub" / "f.bin"
    atomic_write_bytes(p, b"abc")
    assert p.read_bytes() == b"abc"
    assert sha256_file(p) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    atomic_write_bytes(p, b"xyz")
    assert p.read_bytes() == b"xyz" and [q.name for q in p.parent.iterdir()] == ["f.bin"]  # no temp left


@pytest.mark.parametrize("layout", ["nhwc", "nchw"])
def test_write_generated_round_trips(tmp_path, layout):
    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 256, (5, 12, 12, 3), dtype=np.uint8)
    given = torch.from_numpy(imgs).permute(0, 3, 1, 2).contiguous() if layout == "nchw" else imgs
    cids = [0, 2, 1, 1, 0]
    tgts = rng.uniform(0, 1, (5, 2)).astype(np.float32)
    out = tmp_path / "gen"
    manifest = write_generated(out, given, class_ids=cids, targets=tgts, classes=CLASSES,
                               extra_settings={"checkpoint": "gan.pt", "seed": 7})

    assert manifest == json.loads((out / "manifest.json").read_text())
    assert manifest["style"] == "generated" and manifest["n"] == 5 and manifest["classes"] == CLASSES
    assert manifest["settings"]["depth"] is False and manifest["settings"]["seg"] is False
    assert manifest["settings"]["checkpoint"] == "gan.pt" and manifest["seed"] == 7
    assert len(manifest["files"]) == 10
    for rel, digest in manifest["files"].items():
        assert sha256_file(out / rel) == digest
    assert not (out / "depth").exists() and not (out / "seg").exists()
    assert not [p for p in out.rglob(".*")]  # no temp files left

    label = json.loads((out / "labels" / "000001.json").read_text())
    assert label["style"] == "generated" and label["class_id"] == 2 and label["class_name"] == "sphere"
    assert np.allclose(label["target"]["pixel_norm"], tgts[1])
    assert np.allclose(label["target"]["pixel"], tgts[1] * 12)

    ds = ArmlabDataset(out)
    data = load_tensors(ds)
    assert torch.equal(data["image"], torch.from_numpy(imgs).permute(0, 3, 1, 2))
    assert data["class_id"].tolist() == cids
    assert torch.allclose(data["target"], torch.from_numpy(tgts))
    with pytest.raises(DataError, match="no depth/"):
        ArmlabDataset(out, with_depth=True)

    # rewriting fewer frames leaves no stale ones
    write_generated(out, imgs[:2], classes=CLASSES)
    ds = ArmlabDataset(out)
    assert len(ds) == 2 and int(ds[0]["class_id"]) == -1 and torch.isnan(ds[0]["target"]).all()


def test_write_generated_refuses_a_simulator_dataset_and_bad_input(tmp_path):
    root = write_toy_dataset(tmp_path / "ds", n=2, size=8)
    imgs = np.zeros((2, 8, 8, 3), np.uint8)
    with pytest.raises(DataError, match="refusing"):
        write_generated(root, imgs)
    with pytest.raises(TypeError, match="uint8"):
        write_generated(tmp_path / "g", imgs.astype(np.float32))
    with pytest.raises(ValueError, match="class id 3"):
        write_generated(tmp_path / "g", imgs, class_ids=[0, 3])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        write_generated(tmp_path / "g", imgs[:, :, :, :1])  # grayscale is written as RGB
    assert ArmlabDataset(tmp_path / "g")[0]["image"].shape == (3, 8, 8)


# ----------------------------------------------------------------------------- joint positions


def test_armlab_dataset_joint_positions(tmp_path):
    root = write_toy_dataset(tmp_path / "ds", n=4, size=8)
    assert ArmlabDataset(root).n_joints == 0 and "joints" not in ArmlabDataset(root)[0]
    assert "joints" not in load_tensors(ArmlabDataset(root))
    for i, q in enumerate(([0.1, -0.3, 1.0], [0.5, 0.2, -0.4], None, [0.0, 1.5, 2.0])):
        path = root / "labels" / f"{i:06d}.json"
        label = json.loads(path.read_text())
        if q is not None:
            label["joint_positions"] = q
        path.write_text(json.dumps(label))
    ds = ArmlabDataset(root, size=4)
    assert ds.n_joints == 3
    assert ds[0]["joints"].dtype == torch.float32 and torch.allclose(ds[0]["joints"], torch.tensor([0.1, -0.3, 1.0]))
    assert torch.isnan(ds[2]["joints"]).all()  # a label without joint positions
    data = load_tensors(ds)
    assert data["joints"].shape == (4, 3) and torch.allclose(data["joints"][3], torch.tensor([0.0, 1.5, 2.0]))

    path = root / "labels" / "000001.json"
    label = json.loads(path.read_text())
    label["joint_positions"] = [0.5, 0.2]
    path.write_text(json.dumps(label))
    with pytest.raises(DataError, match=r"000001\.json' has 2 joint_positions"):
        ArmlabDataset(root)
    label["joint_positions"] = ["up", 0.2, 0.1]
    path.write_text(json.dumps(label))
    with pytest.raises(DataError, match=r"000001\.json' has a malformed field"):
        ArmlabDataset(root)


def test_write_generated_joint_positions(tmp_path):
    imgs = np.zeros((2, 8, 8, 3), np.uint8)
    q = np.array([[0.1, -0.3, 1.0], [0.25, 0.5, -0.75]])
    manifest = write_generated(tmp_path / "g", imgs, class_ids=[0, 1], classes=CLASSES, joint_positions=q)
    assert manifest["settings"]["conditioned_on_joints"] is True
    label = json.loads((tmp_path / "g" / "labels" / "000000.json").read_text())
    assert label["joint_positions"] == [0.1, -0.3, 1.0]
    assert torch.allclose(load_tensors(ArmlabDataset(tmp_path / "g"))["joints"], torch.from_numpy(q).float())
    assert write_generated(tmp_path / "h", imgs)["settings"]["conditioned_on_joints"] is False
    with pytest.raises(ValueError, match="one row per image"):
        write_generated(tmp_path / "g", imgs, joint_positions=q[:1])
    with pytest.raises(ValueError, match="finite"):
        write_generated(tmp_path / "g", imgs, joint_positions=[[0.0, float("nan")], [0.0, 0.0]])
