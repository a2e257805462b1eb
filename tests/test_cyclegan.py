"""generative.cyclegan and generative.sim2real: CycleGAN training, translation and the sim-to-real gap figures.

Tiny generators (base 8, 2 blocks) on tiny 32 px sim and real-style datasets of the same scenes, rendered once per
session (conftest's tiny_dataset).
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import math

import cv2
import numpy as np
import pytest
import torch

from armlab_scripts import cyclegan as cyclegan_cli
from armlab_scripts import sim2real as sim2real_cli
from armlab_scripts._common import UsageError
from generative.cyclegan import (
    TRAIN_DEFAULTS,
    CycleGANTask,
    ImagePool,
    augment,
    default_n_down,
    linear_decay,
    load_generators,
    train_cyclegan,
    translate_dataset,
    translate_images,
    translate_video,
)
from generative.cyclegan import task as cyclegan_task
from generative.data import ArmlabDataset, DataError, load_tensors, sha256_file
from generative.metrics import Probe, psnr
from generative.sim2real import sim2real_eval
from generative.training import TrainConfig, Trainer
from robot_env.io.threads import torch_threads

pytestmark = pytest.mark.usefixtures("one_thread")

SIZE = 32
TINY = {"size": SIZE, "base": 8, "n_blocks": 2, "d_base": 8, "progress": False, "tensorboard": False}
TRAINER = {f.name for f in dataclasses.fields(TrainConfig)}


def fit(sim_dir, real_dir, out, steps, **kw):
    """`train_cyclegan` with the trainer's options in a TrainConfig (over the CycleGAN's TRAIN_DEFAULTS), the
    model's as keywords."""
    train = TrainConfig(out=out, steps=steps, **{**TRAIN_DEFAULTS, **{k: v for k, v in kw.items() if k in TRAINER}})
    return train_cyclegan(sim_dir, real_dir, train, **{k: v for k, v in kw.items() if k not in TRAINER})


@pytest.fixture(scope="module")
def sim_dir(tiny_dataset):
    """48 sim-style frames, 32 px (shared, read-only)."""
    return tiny_dataset(n=48, size=SIZE, seed=3, style="sim")


@pytest.fixture(scope="module")
def real_dir(tiny_dataset):
    """The same 48 scenes as `sim_dir` in the real style."""
    return tiny_dataset(n=48, size=SIZE, seed=3, style="real")


@pytest.fixture(scope="module")
def run_dir(sim_dir, real_dir, tmp_path_factory):
    """A tiny trained run (with the task-consistency term, so eval reports it), trained on one thread."""
    out = tmp_path_factory.mktemp("cyclegan") / "run"
    with torch_threads(1):
        fit(sim_dir, real_dir, out, steps=6, batch_size=2, task_weight=0.5, probe_steps=10, log_every=3, **TINY)
    return out


def parser(module) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=f"armlab {module.__name__.rsplit('.', 1)[-1]}")
    module.add_arguments(p)
    return p


def cli(module, argv: list[str]) -> int:
    """``armlab <module> argv`` through the real `armlab_scripts.cli.main` (bad input: one sentence, exit code 2)."""
    from armlab_scripts.cli import main

    return main([module.__name__.rsplit(".", 1)[-1], *argv])


def read_log(run):
    with open(run / "log.csv", newline="") as f:
        return list(csv.DictReader(f))


# ----------------------------------------------------------------------------------------------------- components
def test_image_pool_returns_a_mix_of_old_and_new_images():
    torch.manual_seed(0)
    pool = ImagePool(4)
    first = torch.arange(4, dtype=torch.float32).view(4, 1, 1, 1)
    assert torch.equal(pool.query(first), first) and len(pool) == 4  # filling: each new image comes straight back
    seen = set(range(4))
    got_old = got_new = 0
    for k in range(1, 11):
        new = (10 * k + torch.arange(4, dtype=torch.float32)).view(4, 1, 1, 1)
        out = pool.query(new)
        assert out.shape == new.shape and len(pool) == 4
        for v in out.flatten().tolist():
            if v in new.flatten().tolist():
                got_new += 1
            else:
                assert v in seen  # an image of an earlier batch, swapped out of the pool for a new one
                got_old += 1
        seen |= set(new.flatten().tolist())
    assert got_old > 5 and got_new > 5  # about half and half
    assert set(pool.images.flatten().tolist()) <= seen
    clone = ImagePool(1)
    clone.load_state_dict(pool.state_dict())
    assert clone.size == 4 and torch.equal(clone.images, pool.images)
    assert torch.equal(ImagePool(0).query(first), first)  # size 0: no pool


def test_lr_schedule_constant_then_linear_to_zero():
    f = linear_decay(10)
    assert [f(s) for s in range(5)] == [1.0] * 5
    assert [round(f(s), 6) for s in range(5, 11)] == [1.0, 0.8, 0.6, 0.4, 0.2, 0.0]
    assert f(12) == 0.0
    task = CycleGANTask(torch.zeros(4, 3, SIZE, SIZE, dtype=torch.uint8), size=SIZE, steps=10, base=4, n_blocks=1,
                        d_base=4)
    lrs = []
    for _ in range(10):
        lrs.append(task.opt_g.param_groups[0]["lr"])
        task.opt_g.step()
        task.opt_d.step()
        task.sched_g.step()
        task.sched_d.step()
    assert lrs[:5] == [2e-4] * 5 and lrs[5] == pytest.approx(2e-4)
    assert all(a > b for a, b in zip(lrs[5:], lrs[6:]))  # strictly decreasing in the second half
    assert lrs[-1] == pytest.approx(2e-4 * 0.2) and task.opt_g.param_groups[0]["lr"] == pytest.approx(0.0, abs=1e-12)
    assert task.opt_d.param_groups[0]["lr"] == task.opt_g.param_groups[0]["lr"]


def test_generators_downsample_once_below_128_px():
    assert [default_n_down(s) for s in (32, 64, 128, 256)] == [1, 1, 2, 2]
    task = CycleGANTask(torch.zeros(2, 3, 64, 64, dtype=torch.uint8), size=64, base=4, n_blocks=1, d_base=4)
    assert task.gens.g.n_down == 1 and task.d_real.n_layers == 2 and task.config()["n_down"] == 1
    with pytest.raises(ValueError, match="multiple of 4"):
        CycleGANTask(torch.zeros(2, 3, 30, 30, dtype=torch.uint8), size=30)


def test_augment_flips_and_shifts_whole_images():
    torch.manual_seed(1)
    x = torch.randn(16, 3, 8, 8)
    y = augment(x, pad=0, flip=True)
    flipped = [torch.equal(y[i], x[i].flip(-1)) for i in range(16)]
    kept = [torch.equal(y[i], x[i]) for i in range(16)]
    assert all(a or b for a, b in zip(flipped, kept)) and 0 < sum(flipped) < 16
    z = augment(x, pad=2, flip=False)
    for i in range(16):  # the 4x4 centre of every image is found, shifted by at most 2 pixels, in the output
        assert any(torch.equal(z[i, :, 2 + dy : 6 + dy, 2 + dx : 6 + dx], x[i, :, 2:6, 2:6])
                   for dy in range(-2, 3) for dx in range(-2, 3))


def test_task_term_compares_the_probe_on_the_same_augmented_image(sim_dir, real_dir, tmp_path, monkeypatch):
    """With G replaced by the identity, the probe must read exactly the same position from x and G(x) although flips
    and shifts moved the target: the term compares the augmented image with its own translation, never with the
    label of the unaugmented image."""
    sim = load_tensors(ArmlabDataset(sim_dir, size=SIZE))["image"][:8]
    real = load_tensors(ArmlabDataset(real_dir, size=SIZE))["image"]
    torch.manual_seed(0)
    probe = Probe(SIZE, 3)
    task = CycleGANTask(real, size=SIZE, steps=4, base=8, n_blocks=2, d_base=8, task_weight=1.0, probe=probe)
    task.gens.g = torch.nn.Identity()
    trainer = Trainer(task, {"image": sim}, TrainConfig(out=tmp_path / "unused", steps=4, batch_size=8,
                                                       progress=False, tensorboard=False))
    seen = []

    def recording_augment(x, *args, **kwargs):
        seen.append(augment(x, *args, **kwargs))
        return seen[-1]

    monkeypatch.setattr(cyclegan_task, "augment", recording_augment)
    batch = trainer.batch(0)
    losses = task.train_step(batch, 0)
    assert float(losses["task_px"]) == 0.0
    x, x_aug = batch["image"], seen[0]
    assert not torch.equal(x, x_aug)  # the batch was flipped and shifted ...
    assert not torch.allclose(probe(x)[1], probe(x_aug)[1])  # ... which moves what the probe reads


# -------------------------------------------------------------------------------------------------------- training
def test_cycle_loss_falls_and_translation_moves_towards_real(sim_dir, real_dir, tmp_path):
    out = tmp_path / "run"
    s = fit(sim_dir, real_dir, out, steps=40, batch_size=4, log_every=5, sample_every=40, **TINY)
    rows = read_log(out)
    cycle = [float(r["cycle_sim"]) + float(r["cycle_real"]) for r in rows]
    assert cycle[-1] < 0.7 * cycle[0], cycle
    assert s["steps"] == 40 and s["images_per_s"] > 0 and (out / "samples" / "step_000040.png").is_file()
    sample_grid = cv2.imread(str(out / "samples" / "step_000040.png"))
    assert sample_grid.shape[0] > SIZE and sample_grid.shape[1] >= 4 * SIZE  # quartets sim, G(sim), real, F(real)
    # a few dozen steps already bring G(sim) much closer to the paired real frames (colour cast, darkening, blur)
    sim = load_tensors(ArmlabDataset(sim_dir, size=SIZE))["image"]
    real = load_tensors(ArmlabDataset(real_dir, size=SIZE))["image"]
    fake = translate_images(out, sim, "sim2real")
    assert fake.shape == sim.shape and fake.dtype == torch.uint8
    assert psnr(fake, real) > psnr(sim, real) + 1.0


def snapshot(run):
    ckpt = torch.load(run / "checkpoint.pt", weights_only=True)
    state = {f"{g}.{k}": v for g in ("modules", "ema") for m in ckpt[g].values() for k, v in m.items()}
    for name, opt in ckpt["optimizers"].items():
        for i, s in opt["state"].items():
            state.update({f"opt.{name}.{i}.{k}": v for k, v in s.items()})
        state[f"lr.{name}"] = torch.tensor(opt["param_groups"][0]["lr"])
    for name, pool in ckpt["extra"].items():
        state[f"pool.{name}"] = pool["images"]
    return ckpt["step"], state


def test_resume_4_then_8_equals_straight_8(sim_dir, real_dir, tmp_path):
    kw = dict(batch_size=2, pool_size=4, task_weight=0.5, probe_steps=10, log_every=2, checkpoint_every=3, **TINY)
    fit(sim_dir, real_dir, tmp_path / "straight", steps=8, **kw)
    fit(sim_dir, real_dir, tmp_path / "parts", steps=4, lr_steps=8, **kw)
    s = fit(sim_dir, real_dir, tmp_path / "parts", steps=8, **kw)
    assert (s["start_step"], s["steps_run"]) == (4, 4)
    (step_a, a), (step_b, b) = snapshot(tmp_path / "straight"), snapshot(tmp_path / "parts")
    assert step_a == step_b == 8 and a.keys() == b.keys()
    assert len(a["pool.pool_real"]) == 4  # the pool is full, so its random swaps were exercised
    for k in a:
        assert torch.equal(a[k], b[k]), k


# ------------------------------------------------------------------------------------------------------ translation
def test_translate_dataset_keeps_labels_and_writes_a_valid_manifest(sim_dir, real_dir, run_dir, tmp_path):
    from robot_env.dataset import verify

    out = tmp_path / "sim2real"
    s = translate_dataset(run_dir, sim_dir, out, "sim2real")
    assert s["kind"] == "armlab" and s["images"] == 48
    src_manifest = json.loads((sim_dir / "manifest.json").read_text())
    manifest = json.loads((out / "manifest.json").read_text())
    assert set(manifest["files"]) == set(src_manifest["files"])
    for rel, digest in manifest["files"].items():
        assert sha256_file(out / rel) == digest, rel
        if not rel.startswith("rgb/"):
            assert (out / rel).read_bytes() == (sim_dir / rel).read_bytes(), rel
    changed = [rel for rel in manifest["files"] if rel.startswith("rgb/") and
               manifest["files"][rel] != src_manifest["files"][rel]]
    assert len(changed) == 48
    t = manifest["settings"]["translation"]
    assert t["direction"] == "sim2real" and t["run"] == str(run_dir) and t["step"] == 6
    assert manifest["style"] == "translated" and t["source_style"] == "sim"
    assert verify(out) == []  # checksums, sizes, boxes against segmentation: all still hold
    ds = ArmlabDataset(out)
    orig = ArmlabDataset(sim_dir)
    assert torch.equal(ds[5]["target"], orig[5]["target"]) and ds[5]["image"].shape == orig[5]["image"].shape
    # again into the same folder: allowed (an earlier translation); into a real dataset: refused
    translate_dataset(run_dir, sim_dir, out, "sim2real")
    with pytest.raises(DataError, match="refusing to overwrite"):
        translate_dataset(run_dir, sim_dir, real_dir, "sim2real")


def test_translate_plain_folder_keeps_names_and_sizes(run_dir, tmp_path):
    src = tmp_path / "photos"
    (src / "a" / "b").mkdir(parents=True)
    rng = np.random.default_rng(0)
    cv2.imwrite(str(src / "one.png"), rng.integers(0, 255, (40, 56, 3), dtype=np.uint8))
    cv2.imwrite(str(src / "a" / "b" / "two.jpg"), rng.integers(0, 255, (32, 32, 3), dtype=np.uint8))
    s = translate_dataset(run_dir, src, tmp_path / "out", "real2sim")
    assert s["kind"] == "folder" and s["images"] == 2
    assert cv2.imread(str(tmp_path / "out" / "one.png")).shape == (40, 56, 3)
    assert cv2.imread(str(tmp_path / "out" / "a" / "b" / "two.jpg")).shape == (32, 32, 3)


@pytest.mark.parametrize("side_by_side", [False, True])
def test_translate_video_frame_count_and_width(run_dir, tmp_path, side_by_side):
    from robot_env.video import write_video

    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 255, (48, 64, 3), dtype=np.uint8) for _ in range(7)]
    src = write_video(tmp_path / "in.mp4", frames, fps=10)
    out = tmp_path / ("sbs.webm" if side_by_side else "out.mp4")
    s = translate_video(run_dir, src, out, "sim2real", side_by_side=side_by_side, batch_size=3)
    cap = cv2.VideoCapture(str(out))
    n, shapes = 0, set()
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        n += 1
        shapes.add(frame.shape)
    cap.release()
    width = 128 if side_by_side else 64
    assert n == s["frames"] == 7 and shapes == {(48, width, 3)} and s["width"] == width
    assert s["fps"] == pytest.approx(10)


# ---------------------------------------------------------------------------------------------------------- sim2real
def test_sim2real_eval_quick(sim_dir, real_dir, run_dir):
    r = sim2real_eval(sim_dir, real_dir, run_dir, quick=True)
    for k in ("e_sim", "e_trans", "e_real", "gap_closure", "psnr_sim", "psnr_trans", "psnr_gain", "ssim_sim",
              "ssim_trans"):
        assert isinstance(r[k], float) and math.isfinite(r[k]), k
    assert r["gap_closure"] == pytest.approx((r["e_sim"] - r["e_trans"]) / (r["e_sim"] - r["e_real"]))
    assert r["psnr_gain"] == pytest.approx(r["psnr_trans"] - r["psnr_sim"])
    assert r["paired"] and r["task_consistency"] and r["task_weight"] == 0.5
    assert 30 <= r["n_train"] <= 38 and (r["n_test"], r["size"], r["run_step"]) == (10, SIZE, 6)
    # a second run's eval reuses the sim and real regressors of the first
    again = sim2real_eval(sim_dir, real_dir, run_dir, quick=True, baseline=r)
    assert (again["e_sim"], again["e_real"], again["e_trans"]) == (r["e_sim"], r["e_real"], r["e_trans"])


# --------------------------------------------------------------------------------------------------------------- CLI
def test_cli_train_translate_eval(sim_dir, real_dir, run_dir, tmp_path, capsys):
    out = tmp_path / "cli_run"
    argv = ["train", "--sim", str(sim_dir), "--real", str(real_dir), "--out", str(out), "--steps", "3",
            "--size", "32", "--batch-size", "2", "--base", "8", "--n-blocks", "2", "--d-base", "8", "--no-progress",
            "--json"]
    assert cli(cyclegan_cli, argv) == 0
    figures = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert figures["steps"] == 3 and figures["task_weight"] == 0.0 and "loss_cycle_sim" in figures
    assert cli(cyclegan_cli, ["translate", "--run", str(out), "--in", str(real_dir), "--out",
                              str(tmp_path / "r2s"), "--direction", "real2sim", "--json"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["images"] == 48
    assert cli(sim2real_cli, ["eval", "--sim", str(sim_dir), "--real", str(real_dir), "--run",
                              str(run_dir), "--quick", "--json"]) == 0
    printed = capsys.readouterr().out.strip().splitlines()
    figures = json.loads(printed[-1])
    assert {"gap_closure", "e_sim", "e_trans", "e_real", "psnr_sim", "psnr_trans"} <= set(figures)
    assert any("gap closure" in line for line in printed)
    assert "armlab cyclegan train" in cyclegan_cli.__doc__ and "armlab sim2real eval" in sim2real_cli.__doc__


def test_bad_folders_give_one_clear_sentence(sim_dir, real_dir, tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    cv2.imwrite(str(corrupt / "ok.png"), np.zeros((32, 32, 3), np.uint8))
    (corrupt / "bad.png").write_bytes(b"not a png at all")
    cases = [(tmp_path / "missing", "does not exist"), (empty, "holds no images"), (corrupt, "cannot read image")]
    for real, message in cases:
        with pytest.raises(DataError, match=message):
            fit(sim_dir, real, tmp_path / "never", steps=2, batch_size=2, **TINY)
    assert not (tmp_path / "never").exists()
    with pytest.raises(ValueError, match="not a CycleGAN run"):
        load_generators(tmp_path)
    base = ["--sim", str(sim_dir), "--out", str(tmp_path / "never"), "--steps", "2", "--size", "32"]
    for real, message in [(tmp_path / "missing", "is not a folder"), *cases[1:]]:
        assert cli(cyclegan_cli, ["train", "--real", str(real), *base]) == 2
        err = capsys.readouterr().err.strip()
        assert message in err and len(err.splitlines()) == 1, err
    assert cli(cyclegan_cli, ["translate", "--run", str(tmp_path), "--in", str(sim_dir), "--out",
                              str(tmp_path / "t")]) == 2
    assert "not a CycleGAN run" in capsys.readouterr().err
    assert cli(cyclegan_cli, ["eval", "--run", str(tmp_path), "--sim", str(corrupt), "--real", str(real_dir),
                              "--quick"]) == 2
    assert "not a CycleGAN run" in capsys.readouterr().err
    with pytest.raises(UsageError, match="--steps"):
        cyclegan_cli.run(parser(cyclegan_cli).parse_args(["train", "--real", str(real_dir), "--sim",
                                                          str(sim_dir), "--out", "x", "--steps", "0"]))
    with pytest.raises(UsageError, match="--time-limit"):
        cyclegan_cli.run(parser(cyclegan_cli).parse_args(["train", "--real", str(real_dir), "--sim",
                                                          str(sim_dir), "--out", "x", "--steps", "2",
                                                          "--time-limit", "0"]))


def test_gpu_check_cyclegan_stage_on_cpu(sim_dir, real_dir, tmp_path, capsys):
    """The prepared GPU run's cyclegan stage, tiny on the CPU: a rate-measuring first call, the run continued to fill
    the budget, the sim2real figures, a small generators-only checkpoint that load_generators reads, a sample grid."""
    from armlab_scripts.bench import gpu_generative as check

    out = tmp_path / "gpu"
    argv = ["--data", str(sim_dir), "--real", str(real_dir), "--out", str(out), "--device", "cpu",
            "--quick", "--stages", "cyclegan", "--cyclegan-budget", "6", "--cyclegan-variants", "b32x8",
            "--threads", "1"]
    assert check.main(argv) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["cyclegan"]["b32x8"]
    train, report = result["train"], result["eval"]
    assert train["steps"] > train["first_call_steps"] >= 1 and train["images_per_s"] > 0
    assert report["run_step"] == train["steps"] and report["paired"] and report["n_test"] == 10
    assert {"gap_closure", "e_sim", "e_trans", "e_real", "psnr_sim", "psnr_trans"} <= set(report)
    # every derived figure, recomputed from the figures the same JSON reports
    settings = result["settings"]
    assert train["epochs"] == pytest.approx(train["steps"] * settings["batch_size"] / settings["train_frames"],
                                            rel=1e-9, abs=0)
    for e in ("e_sim", "e_trans", "e_real"):
        seeds = report[f"{e}_seeds"]
        assert len(seeds) == report["n_seeds"] == 1 and report[e] == pytest.approx(float(np.mean(seeds)), rel=1e-9)
    assert report["gap"] == pytest.approx(report["e_sim"] - report["e_real"], rel=1e-9, abs=1e-12)
    assert report["gap"] != 0 and report["gap_closure"] == pytest.approx(
        (report["e_sim"] - report["e_trans"]) / report["gap"], rel=1e-9, abs=0)
    assert report["psnr_gain"] == pytest.approx(report["psnr_trans"] - report["psnr_sim"], rel=1e-9, abs=1e-12)
    # plausible ranges: regressor errors are positive pixel distances, at most a few image widths; the gap closure
    # finite (a few steps of training: anything, not inf or NaN); PSNRs in dB of 8-bit images; SSIMs in [-1, 1];
    # the continued call planned past the first and stopped at its time limit or plan
    for e in ("e_sim", "e_trans", "e_real"):
        assert 0 < report[e] < 10 * SIZE, (e, report[e])
    assert math.isfinite(report["gap_closure"]) and abs(report["gap_closure"]) < 1e6
    assert 0 < report["psnr_sim"] < 100 and 0 < report["psnr_trans"] < 100
    assert -1 <= report["ssim_sim"] <= 1 and -1 <= report["ssim_trans"] <= 1
    assert train["first_call_steps"] < train["planned_steps"] and train["steps"] <= train["planned_steps"]
    assert 0 < train["epochs"] < math.inf and 0 < train["images_per_s_first_call"] < math.inf
    assert train["train_s"] > 0 and result["stage_seconds"] >= train["train_s"]
    gens_dir = tmp_path / "gens"
    gens_dir.mkdir()
    (gens_dir / "checkpoint.pt").write_bytes((out / "cyclegan-b32x8-gens.pt").read_bytes())
    gens = load_generators(gens_dir)
    assert gens.step == train["steps"] and gens.size == SIZE
    assert cv2.imread(str(out / "cyclegan-b32x8-samples.png")) is not None
    assert check.main([*argv[:2], *argv[4:]]) == 2  # no --real
    assert "needs --real" in capsys.readouterr().err
