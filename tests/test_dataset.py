"""Synthetic datasets: determinism across workers, shards and kills; COCO; pairs; verify; geometry."""

from __future__ import annotations

import filecmp
import hashlib
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from armlab_scripts.cli import main as cli
from robot_env.dataset import CLASSES, DatasetConfig, generate, merge, verify

SIZE = 48


def _cfg(**kw) -> DatasetConfig:
    return DatasetConfig(**{"n": 16, "size": SIZE, "seed": 5, **kw})


def _same_tree(a: Path, b: Path) -> list[str]:
    """Relative paths whose bytes differ (or exist on one side only)."""
    files_a = {p.relative_to(a) for p in a.rglob("*") if p.is_file()}
    files_b = {p.relative_to(b) for p in b.rglob("*") if p.is_file()}
    diff = sorted(str(p) for p in files_a ^ files_b)
    diff += sorted(str(p) for p in files_a & files_b if not filecmp.cmp(a / p, b / p, shallow=False))
    return diff


@pytest.fixture(scope="module")
def one_worker(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ds") / "w1"
    generate(out, _cfg(), workers=1, progress=False)
    return out


def test_two_workers_write_the_same_bytes_as_one(one_worker, tmp_path):
    generate(tmp_path / "w2", _cfg(), workers=2, progress=False)
    assert _same_tree(one_worker, tmp_path / "w2") == []
    assert verify(tmp_path / "w2") == []


def test_one_worker_writes_the_same_bytes_beside_its_renderer_or_in_it(one_worker, tmp_path, monkeypatch):
    """With a core to spare, one worker renders in a child process while this one encodes and writes; both ways
    of running it write the same bytes."""
    import robot_env.dataset.generation as generation

    assert generation._offload_writes(1) == (len(os.sched_getaffinity(0)) >= 2)
    assert not generation._offload_writes(2)
    for offload in (False, True):
        monkeypatch.setattr(generation, "_offload_writes", lambda workers, o=offload: o)
        generate(tmp_path / str(offload), _cfg(), workers=1, progress=False)
        assert _same_tree(one_worker, tmp_path / str(offload)) == []


def test_another_seed_gives_other_frames(one_worker, tmp_path):
    generate(tmp_path / "s", _cfg(seed=6, n=2), progress=False)
    a = (one_worker / "rgb" / "000000.png").read_bytes()
    assert a != (tmp_path / "s" / "rgb" / "000000.png").read_bytes()


def test_layout_label_and_manifest(one_worker):
    manifest = json.loads((one_worker / "manifest.json").read_text())
    assert manifest["counts"]["frames"] == 16 and manifest["classes"] == list(CLASSES)
    assert len(manifest["files"]) == 16 * 4 + 1
    lab = json.loads((one_worker / "labels" / "000003.json").read_text())
    for key in ("K", "T_cam_world", "joint_positions", "joint_velocities", "ee_pose", "target", "objects",
                "class_id", "class_name"):
        assert key in lab
    assert lab["class_name"] == CLASSES[lab["class_id"]]
    rgb = cv2.imread(str(one_worker / lab["rgb"]), cv2.IMREAD_UNCHANGED)
    depth = cv2.imread(str(one_worker / lab["depth"]), cv2.IMREAD_UNCHANGED)
    seg = cv2.imread(str(one_worker / lab["seg"]), cv2.IMREAD_UNCHANGED)
    assert rgb.shape == (SIZE, SIZE, 3) and depth.dtype == np.uint16 and seg.dtype == np.uint16
    assert {o["id"] for o in lab["objects"] if o["area"] > 0} <= set(np.unique(seg).tolist())


def _urdf_limits(robot: str) -> list[list[float]]:
    """The revolute joints' limits as the URDF file writes them (read with ElementTree, not PyBullet)."""
    import xml.etree.ElementTree as ET

    from robot_env.robots import get_spec

    joints = ET.parse(get_spec(robot).path).getroot().iter("joint")
    return [[float(j.find("limit").get("lower")), float(j.find("limit").get("upper"))]
            for j in joints if j.get("type") == "revolute"]


def test_manifest_carries_the_robots_joint_limits(one_worker):
    manifest = json.loads((one_worker / "manifest.json").read_text())
    limits = manifest["joint_limits"]
    assert limits == _urdf_limits("arm3") and len(limits) == 3
    lab = json.loads((one_worker / "labels" / "000000.json").read_text())
    assert len(lab["joint_positions"]) == len(limits)  # one [lower, upper] per label joint, in order
    for i in range(16):
        q = json.loads((one_worker / "labels" / f"{i:06d}.json").read_text())["joint_positions"]
        assert all(lo <= v <= hi for v, (lo, hi) in zip(q, limits))


def test_merge_and_verify_accept_manifests_without_joint_limits(one_worker, tmp_path):
    """Shards finished before manifests carried joint_limits still verify and merge; the merged one has them."""
    parts = []
    for i in range(2):
        parts.append(tmp_path / f"old{i}")
        generate(parts[-1], _cfg(), shard=(i, 2), progress=False)
        path = parts[-1] / "manifest.json"
        manifest = json.loads(path.read_text())
        del manifest["joint_limits"]
        path.write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
        assert verify(parts[-1]) == []
    merge(parts, tmp_path / "merged", progress=False)
    assert _same_tree(one_worker, tmp_path / "merged") == []


def test_target_pixel_and_depth_agree_with_the_images(one_worker):
    """The labelled target pixel lies on the target's mask, and the depth there is the
    camera-frame z of the object's surface (within the object's size)."""
    checked = 0
    for i in range(16):
        lab = json.loads((one_worker / "labels" / f"{i:06d}.json").read_text())
        target = next(o for o in lab["objects"] if o["is_target"])
        if not lab["target"]["visible"] or target["area"] < 6:
            continue
        seg = cv2.imread(str(one_worker / lab["seg"]), cv2.IMREAD_UNCHANGED)
        ys, xs = np.nonzero(seg == target["id"])
        u, v = lab["target"]["pixel"]
        assert abs(u - xs.mean()) < 2.0 and abs(v - ys.mean()) < 2.0
        T = np.array(lab["T_cam_world"])
        z_centre = (T @ np.r_[lab["target"]["position"], 1.0])[2]
        depth = cv2.imread(str(one_worker / lab["depth"]), cv2.IMREAD_UNCHANGED)
        z = depth[int(round(v)), int(round(u))] / 1000.0
        assert z_centre - 0.07 < z < z_centre + 0.005
        checked += 1
    assert checked >= 5


def test_coco_loads_in_pycocotools_and_masks_match_segmentation(one_worker):
    from pycocotools.coco import COCO

    coco = COCO(str(one_worker / "instances.json"))
    assert len(coco.getImgIds()) == 16
    assert {c["name"] for c in coco.loadCats(coco.getCatIds())} == {"robot", *CLASSES}
    for img_id in (0, 7):
        lab = json.loads((one_worker / "labels" / f"{img_id:06d}.json").read_text())
        seg = cv2.imread(str(one_worker / lab["seg"]), cv2.IMREAD_UNCHANGED)
        anns = coco.loadAnns(coco.getAnnIds(imgIds=[img_id]))
        assert anns
        for ann in anns:
            obj = next(o for o in lab["objects"] if o["name"] == ann["attributes"]["name"])
            assert np.array_equal(coco.annToMask(ann).astype(bool), seg == obj["id"])
            assert ann["bbox"] == obj["bbox"]


def test_png_writer_round_trips_every_image_kind_through_other_readers():
    from robot_env.dataset.writer import _png

    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (37, 53, 3), dtype=np.uint8)  # odd, non-square sizes
    grey = rng.integers(0, 256, (37, 53), dtype=np.uint8)
    deep = rng.integers(0, 65536, (37, 53), dtype=np.uint16)  # both bytes of every sample in use
    back = cv2.imdecode(np.frombuffer(_png(rgb), np.uint8), cv2.IMREAD_UNCHANGED)
    assert np.array_equal(back, rgb[:, :, ::-1])  # OpenCV gives colour PNGs back as BGR
    for img in (grey, deep, np.ascontiguousarray(deep[:, ::-1])):
        back = cv2.imdecode(np.frombuffer(_png(img), np.uint8), cv2.IMREAD_UNCHANGED)
        assert back.dtype == img.dtype and np.array_equal(back, img)
    import io

    from PIL import Image  # a second, independent decoder (matplotlib depends on Pillow)

    assert np.array_equal(np.asarray(Image.open(io.BytesIO(_png(rgb))).convert("RGB")), rgb)
    with pytest.raises(ValueError, match="float32"):
        _png(np.zeros((4, 4), np.float32))


def test_fast_uniform_draws_what_numpy_uniform_draws():
    """Frames stay a function of the seed only if the scene's shortcut for ``rng.uniform``
    consumes the stream exactly as numpy does and gives the same values, bit for bit."""
    from robot_env.dataset.scene import _uniform

    lo, hi = np.array([-1.4, -2.0, -2.6]), np.array([1.4, 2.1, 2.6])
    a, b = np.random.default_rng(7), np.random.default_rng(7)
    for _ in range(200):
        assert np.array_equal(_uniform(a, lo, hi, 3), b.uniform(lo, hi))
        assert np.array_equal(_uniform(a, -0.08, 0.08, 3), b.uniform(-0.08, 0.08, 3))
        x, y = _uniform(a, -math.pi, math.pi), b.uniform(-math.pi, math.pi)
        assert x == y and type(x) is type(y)
        assert _uniform(a, -12, 12) == b.uniform(-12, 12)
    assert a.random() == b.random()  # both streams at the same place


def test_instance_masks_match_a_per_instance_reference():
    from pycocotools import mask as mask_utils

    from robot_env.dataset import instance_masks

    rng = np.random.default_rng(1)
    inst = np.zeros((40, 56), np.uint16)
    for k in (2, 3, 4, 6):  # blobs, some overlapping; id 5 is absent
        y, x = rng.integers(0, 30), rng.integers(0, 45)
        inst[y:y + rng.integers(3, 10), x:x + rng.integers(3, 12)] = k
    ids = [2, 3, 4, 5, 6]
    rles, boxes, areas = instance_masks(inst, ids)
    for k, i in enumerate(ids):
        m = inst == i
        assert int(areas[k]) == int(m.sum())
        assert np.array_equal(mask_utils.decode(rles[k]).astype(bool), m)
        if m.any():
            assert [int(v) for v in boxes[k]] == list(cv2.boundingRect(m.astype(np.uint8)))
    assert int(areas[ids.index(5)]) == 0


@pytest.mark.parametrize("style", ["real", "photo"])
def test_camera_styles_pair_the_sim_frames(one_worker, tmp_path, style):
    real = tmp_path / style
    generate(real, _cfg(n=6, style=style), progress=False)
    assert verify(real) == []
    for i in range(6):
        a = json.loads((one_worker / "labels" / f"{i:06d}.json").read_text())
        b = json.loads((real / "labels" / f"{i:06d}.json").read_text())
        assert a["joint_positions"] == b["joint_positions"] and a["class_id"] == b["class_id"]
        assert a["target"]["position"] == b["target"]["position"]
        assert b["dist_coeffs"][0] < 0 and a["dist_coeffs"] == [0.0] * 5  # the lens moves pixels, not the scene
        sim_rgb = cv2.imread(str(one_worker / a["rgb"])).astype(float)
        real_rgb = cv2.imread(str(real / b["rgb"])).astype(float)
        assert np.abs(sim_rgb - real_rgb).mean() > 5.0
        assert b["style"] == style


def test_photo_style_is_the_camera_it_documents(one_worker, tmp_path):
    """The photo camera: a grey card comes out warm (the tungsten white balance), noisy and vignetted; the
    dataset frames carry its noise and JPEG (high-frequency energy where the render is flat), and frame i's
    look is a function of (seed, i)."""
    from robot_env.dataset.look import photo_camera

    grey = np.full((64, 64, 3), 128, np.uint8)
    ident = np.meshgrid(np.arange(64, dtype=np.float32), np.arange(64, dtype=np.float32))
    zeros = np.zeros((64, 64), np.uint16)
    card = photo_camera(grey, zeros, zeros, np.random.default_rng(0), ident)[0].astype(float)  # RGB
    assert card[..., 0].mean() > card[..., 2].mean() + 20  # red over blue
    assert card[24:40, 24:40].mean() > card[:8, 56:].mean() + 10  # the corner away from the lamp is darker
    assert np.abs(card - cv2.GaussianBlur(card, (0, 0), 1.0)).mean() > 1.0  # noise and blocks
    again = photo_camera(grey, zeros, zeros, np.random.default_rng(0), ident)[0]
    assert np.array_equal(card.astype(np.uint8), again)
    out = tmp_path / "photo"
    generate(out, _cfg(n=3, style="photo"), progress=False)
    twice = tmp_path / "twice"
    generate(twice, _cfg(n=3, style="photo"), progress=False)
    for i in range(3):
        name = f"rgb/{i:06d}.png"
        photo = cv2.imread(str(out / name)).astype(float)
        sim = cv2.imread(str(one_worker / name)).astype(float)
        rough = lambda im: np.abs(im - cv2.GaussianBlur(im, (0, 0), 1.0)).mean()  # noqa: E731
        assert rough(photo) > rough(sim)
        assert (out / name).read_bytes() == (twice / name).read_bytes()


def test_randomization_switches_off(tmp_path):
    out = tmp_path / "plain"
    generate(out, _cfg(n=3, randomize=(), max_distractors=0), progress=False)
    colors = []
    for i in range(3):
        lab = json.loads((out / "labels" / f"{i:06d}.json").read_text())
        assert len(lab["objects"]) == 2  # robot and target, no distractors
        seg = cv2.imread(str(out / lab["seg"]), cv2.IMREAD_UNCHANGED)
        rgb = cv2.imread(str(out / lab["rgb"]))
        colors.append(np.median(rgb[seg == 1], axis=0))  # the table top, same light and colour every frame
    assert np.abs(colors[0] - colors[1]).max() <= 2 and np.abs(colors[0] - colors[2]).max() <= 2


def test_shards_merge_into_the_unsharded_dataset(one_worker, tmp_path):
    parts = []
    for i in range(3):
        parts.append(tmp_path / f"part{i}")
        generate(parts[-1], _cfg(), shard=(i, 3), progress=False)
    merged = tmp_path / "merged"
    merge(parts, merged, progress=False)
    assert _same_tree(one_worker, merged) == []
    with pytest.raises(ValueError, match="missing"):
        merge(parts[:2], tmp_path / "incomplete", progress=False)


def test_verify_names_a_tampered_file(one_worker, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(one_worker, copy)
    img = cv2.imread(str(copy / "rgb" / "000002.png"))
    img[0, 0] = 255 - img[0, 0]
    cv2.imwrite(str(copy / "rgb" / "000002.png"), img)
    (copy / "depth" / "000005.png").unlink()
    problems = verify(copy)
    assert any("rgb/000002.png" in p and "checksum" in p for p in problems)
    assert any("depth/000005.png" in p and "missing" in p for p in problems)
    assert cli(["dataset", "verify", str(copy)]) == 1
    assert cli(["dataset", "verify", str(one_worker)]) == 0


def test_kill_and_resume_gives_the_uninterrupted_dataset(tmp_path):
    # 64 frames, so that the kill lands mid-run even on a quiet machine, where the one-worker pipeline (a child
    # renders ahead while this process writes) can write a 16-frame dataset's last 12 frames within one poll
    n = 64
    reference = tmp_path / "straight"
    generate(reference, _cfg(n=n), workers=1, progress=False)
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "armlab_scripts.cli", "dataset", "generate", "--out", str(out), "--n", str(n),
           "--size", str(SIZE), "--seed", "5"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 60
    while time.time() < deadline and len(list((out / "labels").glob("*.json"))) < 4:
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done = len(list((out / "labels").glob("*.json")))
    assert 4 <= done < n and not (out / "manifest.json").exists()
    assert subprocess.run(cmd, capture_output=True).returncode == 0
    assert _same_tree(reference, out) == []


def test_errors_name_the_parameter_and_the_command_line_its_flag(tmp_path, capsys):
    from robot_env.dataset import DatasetError, parse_shard
    from robot_env.io.errors import ParamError

    with pytest.raises(ParamError, match=r"^n must be at least 1, got 0\.$") as err:
        _cfg(n=0).validate()
    assert err.value.param == "n" and isinstance(err.value, DatasetError)
    with pytest.raises(ParamError, match="^max_distractors must be between 0 and 6"):
        _cfg(max_distractors=9).validate()
    with pytest.raises(ParamError, match="^shard must be i/N"):
        parse_shard("3/2")
    with pytest.raises(ParamError, match="^workers must be at least 1"):
        generate(tmp_path / "w0", _cfg(n=1), workers=0, progress=False)
    for argv, flag in [(["--n", "0"], "--n must be at least 1, got 0."),
                       (["--n", "2", "--size", "8"], "--size must be between 16 and 1024"),
                       (["--n", "2", "--max-distractors", "9"], "--max-distractors must be between 0 and 6"),
                       (["--n", "2", "--randomize", "sparkles"], "--randomize has an unknown randomization"),
                       (["--n", "2", "--workers", "0"], "--workers must be at least 1")]:
        assert cli(["dataset", "generate", "--out", str(tmp_path / "d"), *argv]) == 2
        assert capsys.readouterr().err.startswith(f"armlab: error: {flag}")


def test_bad_input_is_one_sentence_and_exit_2(tmp_path, capsys):
    out = str(tmp_path / "d")
    assert cli(["dataset", "generate", "--out", out, "--n", "0"]) == 2
    assert cli(["dataset", "generate", "--out", out, "--n", "4", "--shard", "3/2"]) == 2
    assert cli(["dataset", "generate", "--out", out, "--n", "4", "--randomize", "sparkles"]) == 2
    assert cli(["dataset", "verify", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 4 and all(line.startswith("armlab: error: ") for line in err)
    assert cli(["dataset", "generate", "--out", out, "--n", "2", "--size", "32"]) == 0
    assert cli(["dataset", "generate", "--out", out, "--n", "2", "--size", "40"]) == 2  # other settings
    err = capsys.readouterr().err
    assert "other settings" in err and "choose a new --out" in err


def test_torch_dataset_reads_the_labels(one_worker):
    from generative.data import ArmlabDataset

    ds = ArmlabDataset(one_worker, with_depth=True, with_seg=True)
    item = ds[3]
    lab = json.loads((one_worker / "labels" / "000003.json").read_text())
    assert item["image"].shape == (3, SIZE, SIZE) and int(item["class_id"]) == lab["class_id"]
    assert np.allclose(item["target"].numpy(), lab["target"]["pixel_norm"], atol=1e-6)
    assert item["depth"].shape == (1, SIZE, SIZE) and item["seg"].shape == (SIZE, SIZE)


def test_ray_backend_writes_the_same_files(one_worker, tmp_path):
    pytest.importorskip("ray", reason="the Ray backend is the optional extra armlab[distributed]")
    from robot_env.dataset import generate_ray

    generate_ray(tmp_path / "ray", _cfg(), workers=2)
    assert _same_tree(one_worker, tmp_path / "ray") == []


@pytest.mark.slow
def test_a_thousand_frames_with_two_workers_survive_a_kill(tmp_path):
    """The issue's acceptance run: 1,000 frames at 64 px with 2 workers, killed part-way and
    resumed with the same command, equal to an uninterrupted run, loading in pycocotools with
    masks equal to the segmentation images, and passing verify."""
    from pycocotools.coco import COCO

    cmd = [sys.executable, "-m", "armlab_scripts.cli", "dataset", "generate", "--n", "1000", "--size", "64",
           "--seed", "11", "--workers", "2"]
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    assert subprocess.run(cmd + ["--out", str(whole)], capture_output=True).returncode == 0
    proc = subprocess.Popen(cmd + ["--out", str(killed)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    while len(list((killed / "labels").glob("*.json"))) < 300 and proc.poll() is None:
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert len(list((killed / "labels").glob("*.json"))) < 1000
    assert subprocess.run(cmd + ["--out", str(killed)], capture_output=True).returncode == 0
    assert _same_tree(whole, killed) == []
    assert verify(killed) == []
    coco = COCO(str(killed / "instances.json"))
    assert len(coco.getImgIds()) == 1000
    for img_id in range(0, 1000, 97):
        lab = json.loads((killed / "labels" / f"{img_id:06d}.json").read_text())
        seg = cv2.imread(str(killed / lab["seg"]), cv2.IMREAD_UNCHANGED)
        for ann in coco.loadAnns(coco.getAnnIds(imgIds=[img_id])):
            obj = next(o for o in lab["objects"] if o["name"] == ann["attributes"]["name"])
            assert np.array_equal(coco.annToMask(ann).astype(bool), seg == obj["id"])


# -- arm poses from a trained policy (--poses-from) ------------------------------------------------
@pytest.fixture(scope="module")
def policy_runs(tmp_path_factory) -> dict[str, Path]:
    """Tiny runs made by `controllers.rl.train` (seconds): an open-loop PPO and a closed-loop SAC
    on arm3 (the dataset's robot), and a SAC on the envs' default robot, arm2."""
    from controllers import rl

    folder = tmp_path_factory.mktemp("runs")
    net = {"policy_kwargs": {"net_arch": [16, 16]}}
    ppo = {"n_steps": 32, "batch_size": 32, "n_epochs": 1, **net}
    sac = {"learning_starts": 100, "batch_size": 32, **net}
    train = dict(folder=folder, seed=1, eval_freq=0, save_freq=0)
    return {
        "open": rl.train("ppo", "armlab/ReachSignalState-v0", 32, env_kwargs={"robot": "arm3"}, hyperparams=ppo,
                         **train).run_dir,
        "closed": rl.train("sac", "armlab/ReachVelocity-v0", 24, env_kwargs={"robot": "arm3"}, hyperparams=sac,
                           **train).run_dir,
        "arm2": rl.train("sac", "armlab/ReachFixed-v0", 24, hyperparams=sac, **train).run_dir,
    }


def _poses_args(out: Path, run: Path, n: int = 6, *extra: str) -> list[str]:
    return ["dataset", "generate", "--out", str(out), "--n", str(n), "--size", str(SIZE), "--seed", "5",
            "--poses-from", str(run), "--pose-episodes", "8", *extra]


@pytest.fixture(scope="module")
def posed(policy_runs, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("posed") / "d"
    assert cli(_poses_args(out, policy_runs["open"])) == 0
    return out


def _labels(root: Path, n: int) -> list[dict]:
    return [json.loads((root / "labels" / f"{i:06d}.json").read_text()) for i in range(n)]


def test_poses_from_a_run_come_from_its_pose_bank(posed, policy_runs, one_worker):
    from robot_env.dataset import load_pose_bank

    bank = load_pose_bank(posed / "poses.npz")
    rows = {tuple(r) for r in bank["joint_positions"].tolist()}
    assert len(bank["joint_positions"]) >= 6 and bank["joint_positions"].shape[1] == 3
    assert str(bank["env_id"]) == "armlab/ReachSignalState-v0" and int(bank["episodes"]) == 8
    manifest = json.loads((posed / "manifest.json").read_text())
    assert manifest["files"]["poses.npz"] == hashlib.sha256((posed / "poses.npz").read_bytes()).hexdigest()
    assert manifest["poses"]["count"] == len(bank["joint_positions"]) <= manifest["poses"]["rolled_out"]
    s = manifest["settings"]
    assert s["poses_from"] == str(policy_runs["open"].resolve()) and len(s["poses_model_sha256"]) == 64
    picked = set()
    for lab, plain in zip(_labels(posed, 6), _labels(one_worker, 6)):
        q = tuple(lab["joint_positions"])
        assert q in rows and q != tuple(plain["joint_positions"])
        k = bank["joint_positions"].tolist().index(list(q))
        assert lab["joint_velocities"] == bank["joint_velocities"][k].tolist()
        # the rest of the scene is the seed's: the same objects as without --poses-from
        assert lab["target"]["position"] == plain["target"]["position"] and lab["class_id"] == plain["class_id"]
        picked.add(q)
    assert len(picked) > 1
    assert verify(posed) == []
    # the open-loop signal is sampled along its play, every 1/24 s of its 0.5 s (poses below the table dropped)
    assert int(bank["rolled_out"]) == 8 * 12
    assert np.allclose(bank["time"] * 24, np.round(bank["time"] * 24)) and 0 < bank["time"].min()
    assert len(np.unique(bank["time"])) > 1 and bank["time"].max() <= 0.5 + 1e-9


def test_poses_from_are_byte_identical_across_workers_shards_and_reruns(posed, policy_runs, tmp_path):
    from controllers.poses import prepare_pose_bank

    run = policy_runs["open"]
    cfg = prepare_pose_bank(tmp_path / "w2", _cfg(n=6, poses_from=str(run), pose_episodes=8), workers=2)
    generate(tmp_path / "w2", cfg, workers=2, progress=False)
    assert _same_tree(posed, tmp_path / "w2") == []  # its own bank, computed again: the same bytes
    parts = [tmp_path / "p0", tmp_path / "p1"]
    for i, part in enumerate(parts):
        assert cli(_poses_args(part, run, 6, "--shard", f"{i}/2")) == 0
    merge(parts, tmp_path / "merged", progress=False)
    assert _same_tree(posed, tmp_path / "merged") == []
    # a rerun resumes with the stored bank; another run into the same folder is refused
    (tmp_path / "w2" / "labels" / "000004.json").unlink()
    assert cli(_poses_args(tmp_path / "w2", run)) == 0
    assert _same_tree(posed, tmp_path / "w2") == []
    assert cli(_poses_args(tmp_path / "w2", policy_runs["closed"])) == 2
    # verify checks that every label's pose is one of the bank's
    label = tmp_path / "w2" / "labels" / "000002.json"
    lab = json.loads(label.read_text())
    lab["joint_positions"][0] += 0.01
    label.write_text(json.dumps(lab))
    assert any("not a pose of poses.npz" in p for p in verify(tmp_path / "w2"))


def test_poses_from_a_closed_loop_run_are_recorded_every_step(policy_runs, tmp_path):
    from robot_env.dataset import load_pose_bank

    out = tmp_path / "closed"
    assert cli(_poses_args(out, policy_runs["closed"], 3)) == 0
    bank = load_pose_bank(out / "poses.npz")
    assert int(bank["rolled_out"]) == 8 * 12  # 12 control steps per episode
    assert np.allclose(bank["time"] * 24, np.round(bank["time"] * 24)) and bank["time"].min() > 0
    rows = {tuple(r) for r in bank["joint_positions"].tolist()}
    assert all(tuple(lab["joint_positions"]) in rows for lab in _labels(out, 3))


def test_poses_from_a_bad_run_is_one_sentence_and_exit_2(policy_runs, tmp_path, capsys):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(policy_runs["open"], broken)
    model = broken / "model.zip"
    model.write_bytes(model.read_bytes()[:200])
    no_config = tmp_path / "no_config"
    no_config.mkdir()
    cases = [(tmp_path / "nowhere", "not a folder"), (no_config, "config.yml"), (broken, "corrupt"),
             (policy_runs["arm2"], "trained on arm2")]
    for k, (run, needle) in enumerate(cases):
        assert cli(_poses_args(tmp_path / f"out{k}", run)) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("armlab: error: --poses-from") and needle in err[0], err
    assert not (tmp_path / "out2" / ".armlab-settings.json").exists()  # a failed bank binds no settings


def test_the_dataset_writer_reads_a_stored_pose_bank_without_controllers(posed, tmp_path):
    """robot_env never runs a policy: given the folder's poses.npz and the settings recorded with it, it
    writes the --poses-from dataset byte for byte without importing controllers (or SB3)."""
    import shutil

    out = tmp_path / "again"
    out.mkdir()
    shutil.copyfile(posed / "poses.npz", out / "poses.npz")
    script = f"""
import json, sys
from robot_env.dataset import DatasetConfig, generate
settings = json.loads(open({str(posed / "manifest.json")!r}).read())["settings"]
generate({str(out)!r}, DatasetConfig.from_settings(settings), workers=1, progress=False)
print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in ("controllers", "stable_baselines3"))))
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []
    assert _same_tree(posed, out) == []
    # without its bank, or with a config that never went through controllers.poses, the writer refuses
    from robot_env.dataset import DatasetConfig
    from robot_env.io.errors import ParamError

    settings = json.loads((posed / "manifest.json").read_text())["settings"]
    with pytest.raises(ValueError, match="pose bank .* is missing"):
        generate(tmp_path / "nobank", DatasetConfig.from_settings(settings), progress=False)
    with pytest.raises(ParamError, match="^poses_from needs the run's pose bank"):
        generate(tmp_path / "unresolved", _cfg(n=2, poses_from=settings["poses_from"]), progress=False)
