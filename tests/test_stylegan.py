"""The GAN family beyond the dcgan arch: StyleGAN2 (modulation, mapping, noise, lazy R1), ADA (p steered by D's
overfitting, the target moved with the image) and the Progressive GAN (growth, fade-in), each trained a few steps
through `train_gan`, resumed, sampled and exported."""

from __future__ import annotations

import csv
import dataclasses

import cv2
import pytest
import torch

from armlab_scripts.cli import main
from generative.gan import (
    TRAIN_DEFAULTS,
    GANConfig,
    evaluate_gan,
    evaluate_snapshots,
    load_generator,
    run_config,
    sample,
    train_gan,
)
from generative.gan.ada import AdaController, ada_augment, p_report, read_p_log
from generative.gan.ada_probe import ada_strength
from generative.gan.model import build_generator
from generative.gan.progan import progress
from generative.training import SNAPSHOTS, TrainConfig, load_checkpoint, snapshot_dir

pytestmark = pytest.mark.usefixtures("one_thread")

SIZE = 16
TINY = dict(g_base=8, d_base=8, z_dim=16, log_every=1, sample_every=1000, checkpoint_every=1000, progress=False,
            tensorboard=False, n_samples=4, w_dim=16, batch_size=8)
TRAINER = {f.name for f in dataclasses.fields(TrainConfig)}


def fit(data_dir, out, steps, cond="class,target", **kw):
    kw = {**TINY, **kw}
    train = TrainConfig(out=out, steps=steps, **{**TRAIN_DEFAULTS, **{k: v for k, v in kw.items() if k in TRAINER}})
    return train_gan(data_dir, train, cond, size=SIZE, **{k: v for k, v in kw.items() if k not in TRAINER})


@pytest.fixture(scope="module")
def dataset(tiny_dataset):
    return tiny_dataset(n=24, size=SIZE, seed=0, style="sim")


def _log(run) -> list[dict]:
    with open(run / "log.csv", newline="") as f:
        return list(csv.DictReader(f))


def _cfg(**kw) -> GANConfig:
    return GANConfig(**{"size": 16, "cond": ("class", "target"), "g_base": 8, "d_base": 8, "z_dim": 16,
                        "w_dim": 16, "arch": "stylegan2", "spatial_cond": True, **kw})


# ------------------------------------------------------------------------------------------------- stylegan2 units
def test_modulation_changes_the_output_per_style_and_demodulation_keeps_the_scale():
    torch.manual_seed(0)
    G = build_generator(_cfg()).eval()
    y, c = torch.tensor([0, 0]), torch.tensor([[0.5, 0.5], [0.5, 0.5]])
    w = torch.randn(2, G.w_dim)
    with torch.no_grad():
        a = G.synthesis(w, y, c, noise="const")
        b = G.synthesis(w.flip(0), y, c, noise="const")
    assert torch.equal(a[0], b[1]) and torch.equal(a[1], b[0])  # a style is a function of w alone (no noise)
    assert (a[0] - a[1]).abs().mean() > 1e-3  # two styles, same noise (none): two images
    conv = G.layers[1].conv
    x = torch.randn(4, conv.in_channels, 8, 8)
    for scale in (0.1, 1.0, 10.0):  # however strong the style, the demodulated output keeps unit scale
        with torch.no_grad():
            conv.affine.bias.fill_(scale)
            out = conv(x, torch.zeros(4, G.w_dim)) - conv.bias.view(1, -1, 1, 1)
        assert 0.5 < float(out.std()) < 2.0, scale
    mix = torch.stack([w[0]] * 2 + [w[1]] * (G.num_ws - 2)).unsqueeze(0)
    with torch.no_grad():
        mixed = G.synthesis(mix, y[:1], c[:1], noise="const")
    assert not torch.equal(mixed[0], a[0]) and not torch.equal(mixed[0], a[1])  # styles act per layer


def test_noise_inputs_are_per_layer_and_learned():
    G = build_generator(_cfg())
    strengths = [m.noise_strength for m in G.layers]
    assert len(strengths) == G.num_ws - 1 and all(s.requires_grad for s in strengths)
    with torch.no_grad():
        for s in strengths:
            s.fill_(0.5)
        z = torch.randn(1, 16)
        y, c = torch.tensor([1]), torch.tensor([[0.3, 0.6]])
        torch.manual_seed(1)
        a = G(z, y, c)
        torch.manual_seed(2)
        b = G(z, y, c)
        q = G(z, y, c, noise="const")
    assert (a - b).abs().max() > 1e-4 and torch.isfinite(q).all()


# ------------------------------------------------------------------------------------------------------------ ADA
@pytest.mark.parametrize("pipeline, spread", [("basic", 0.5), ("full", 0.2)])
def test_ada_moves_the_target_with_the_image_and_is_differentiable(pipeline, spread):
    torch.manual_seed(0)
    n, size = 32, 32
    x = torch.full((n, 3, size, size), -1.0)
    t = torch.rand(n, 2) * spread + 0.5 - spread / 2  # full: near the centre, so a rotation keeps it in the image
    for i in range(n):  # a bright 2 x 2 blob at each target
        r, col = int(t[i, 1] * size), int(t[i, 0] * size)
        x[i, :, r : r + 2, col : col + 2] = 1.0
    x.requires_grad_(True)
    torch.manual_seed(5)
    y, t2 = ada_augment(x, t, 1.0, pipeline)
    y.sum().backward()
    assert x.grad is not None and (t2 != t).any()
    torch.manual_seed(5)  # the same draws on the background alone: what differs is the moved blob
    bg, _ = ada_augment(torch.full_like(x, -1.0), t, 1.0, pipeline)
    for i in range(n):  # the blob's brightest pixel after augmentation is where the moved label says
        g = (y[i] - bg[i]).detach().mean(0)
        r, col = divmod(int(g.argmax()), size)
        assert abs((col + 1) / size - float(t2[i, 0])) <= 3.5 / size
        assert abs((r + 1) / size - float(t2[i, 1])) <= 3.5 / size
    same, tc = ada_augment(x, t, 0.0, pipeline)
    assert same is x and tc is t


def test_the_full_ada_pipeline_flips_and_rotates_and_keeps_the_basic_one_as_it_was():
    torch.manual_seed(1)
    n = 256
    x = torch.rand(n, 3, 16, 16) * 2 - 1
    a = torch.rand(n) * 6.283  # targets on a ring 0.3 image widths from the centre
    t = 0.5 + 0.3 * torch.stack([torch.cos(a), torch.sin(a)], 1)
    torch.manual_seed(3)
    _, full = ada_augment(x, t, 1.0, "full")
    torch.manual_seed(3)
    _, basic = ada_augment(x, t, 1.0, "basic")
    def turn(a):  # the angle by which each target's offset from the centre turned, in degrees
        u, v = t - 0.5, a - 0.5
        return torch.rad2deg(torch.atan2(u[:, 0] * v[:, 1] - u[:, 1] * v[:, 0], (u * v).sum(1))).abs()
    # basic: translation and isotropic scaling only, so offsets turn little; full: mirrored and rotated all round
    assert float(turn(basic).median()) < 20 and float(turn(full).median()) > 60
    assert float((turn(full) > 135).float().mean()) > 0.15
    # the 'basic' pipeline draws exactly what ada_augment drew before pipelines existed (default argument)
    torch.manual_seed(3)
    y0, c0 = ada_augment(x, t, 0.7)
    torch.manual_seed(3)
    y1, c1 = ada_augment(x, t, 0.7, "basic")
    assert torch.equal(y0, y1) and torch.equal(c0, c1)
    with pytest.raises(ValueError, match="pipeline"):
        ada_augment(x, t, 0.5, "fancy")
    with pytest.raises(ValueError, match="ada_pipeline"):
        GANConfig(arch="stylegan2", ada=True, ada_pipeline="fancy")
    assert GANConfig.from_dict({"arch": "stylegan2", "ada": True}).ada_pipeline == "basic"  # runs saved before it


def test_ada_controller_steps_p_towards_the_target():
    ctl = AdaController(target=0.6, kimg=0.1)  # 100 images for 0 -> 1
    for _ in range(8):
        ctl.observe(torch.ones(10))  # D says "real" to every real image: overfitting
    assert ctl.p == pytest.approx(0.8) and ctl.rt == 1.0
    for _ in range(4):
        ctl.observe(-torch.ones(10))
    assert ctl.p == pytest.approx(0.4)
    state = ctl.state()
    other = AdaController()
    other.load(state)
    assert other.state() == state


def test_ada_p_rises_when_d_overfits_a_tiny_set_and_stays_0_without_ada(dataset, tmp_path):
    data = dataset  # its first 8 frames (limit)
    s = fit(data, tmp_path / "ada", 24, arch="stylegan2", ada=True, ada_kimg=0.1, lr=4e-3, limit=8)
    rows = _log(tmp_path / "ada")
    ps = [float(r["ada_p"]) for r in rows]
    rts = [float(r["ada_rt"]) for r in rows]
    assert len(rows) == 24 and ps[0] == 0.0 and max(ps) > 0.3 and s["ada_p"] == ps[-1]
    assert max(rts) > 0.6  # D said "real" to more than 80 % of the reals: it overfits the 8 images
    a = s["ada"]  # how p moved, from log.csv: its peak, and the last quarter of the steps
    assert a["steps"] == 24 and a["p_peak"] == max(ps) and a["p_last"] == ps[-1] and a["from_step"] == 18
    assert a["p_min"] == min(ps[17:]) and a["p_max"] == max(ps[17:])
    held = ps[a["band_from"] - 1:]  # one row per step here: p has stayed within 0.1 from band_from on, not before
    assert max(held) - min(held) <= 0.1 + 1e-9 and (a["band_from"] == 1 or max(ps[a["band_from"] - 2:])
                                                    - min(ps[a["band_from"] - 2:]) > 0.1)
    assert main(["gan", "ada", "--run", str(tmp_path / "ada"), "--json"]) == 0  # the report and its plot
    assert cv2.imread(str(tmp_path / "ada" / "ada.png")).shape[2] == 3
    # how strongly each pipeline holds this D back, on its 8 training frames and the 16 it never saw
    st = ada_strength(tmp_path / "ada", data, ps=(1.0, 0.0), draws=1)
    assert st["n_train"] == 8 and st["n_unseen"] == 16 and st["ps"] == [0.0, 1.0] and st["p_run"] == s["ada_p"]
    r, lg = st["r"], st["logit"]
    assert r["train"]["basic"]["0"] == r["train"]["full"]["0"]  # p = 0: no augmentation, the same reals
    assert lg["unseen"]["basic"]["0"] == lg["unseen"]["full"]["0"] and set(r) == set(lg) == {"train", "unseen"}
    for pipe in ("basic", "full"):  # augmenting hides what D learnt: r and its logits fall with p
        assert r["train"][pipe]["1"] < r["train"][pipe]["0"] and lg["train"][pipe]["1"] < lg["train"][pipe]["0"]
    assert lg["train"]["full"]["1"] < lg["train"]["basic"]["1"]  # flips and rotations hold D back further
    assert main(["gan", "ada", "--run", str(tmp_path / "ada"), "--strength", str(data), "--p", "0,1"]) == 0
    off = fit(data, tmp_path / "off", 4, arch="stylegan2", limit=8)
    assert "ada_p" not in off and "ada_p" not in _log(tmp_path / "off")[0]
    assert off["aux_augment"] and off["aux_fake"]  # a new stylegan2 run's local classifier: random views, K + 1
    assert off["aux_class"] == 2.0  # and its class loss at twice the other archs' weight


def test_p_report_tells_a_settled_p_from_a_drifting_one():
    def rows(ps):
        return [{"step": 50 * (i + 1), "ada_p": p, "ada_rt": 0.6} for i, p in enumerate(ps)]

    wobble = [0.03 * (-1) ** i for i in range(20)]
    overshoot = [min(0.05 * i, 0.8) for i in range(20)] + [0.8 - 0.05 * i for i in range(12)] + \
        [0.25 + w for w in wobble] + [0.25 + w for w in wobble]  # up, down, then flat with a +-0.03 wobble
    r = p_report(rows(overshoot))
    assert r["settled"] and r["p_peak"] == 0.8 and r["p_peak_step"] == 50 * 17
    assert abs(r["p_trend"]) < 0.01 and 0.22 <= r["p_min"] < r["p_max"] <= 0.28 and r["from_step"] == 50 * 54
    assert r["band_from"] == 50 * 31  # within 0.1 from the 0.30 on the way down (with 0.22-0.28), not from 0.35
    drifting = overshoot[:32] + [0.25 - 0.004 * i for i in range(40)]  # still falling by 0.16 over its last 40
    d = p_report(rows(drifting))
    assert not d["settled"] and d["p_trend"] < -0.03 and d["p_max"] - d["p_min"] < 0.1  # the trend decides
    assert d["band_from"] > 50 * 32 and d["band_from"] == 50 * 47  # 0.25 - 0.004 * 14 = 0.194 is the last 0.1 away
    assert not p_report(rows(overshoot[:24]))["settled"]  # on the way up and down
    assert p_report(rows(overshoot), window=1.0)["from_step"] == 50 and not p_report(rows(overshoot), 1.0)["settled"]
    shuffled = rows(overshoot)[::-1]
    assert p_report(shuffled) == r  # read in step order
    with pytest.raises(ValueError):
        p_report(rows(overshoot), window=0)
    with pytest.raises(ValueError):
        p_report([])


def test_read_p_log_keeps_one_row_per_step_and_skips_torn_rows(tmp_path):
    (tmp_path / "log.csv").write_text("step,d_loss,ada_p,ada_rt\n50,1,0.1,0.7\n100,1,0.2,0.8\n100,1,0.25,0.8\n"
                                      "150,1,nan,0.5\n200,1,0.3,\n")
    assert read_p_log(tmp_path) == [{"step": 50, "ada_p": 0.1, "ada_rt": 0.7}, {"step": 100, "ada_p": 0.25,
                                                                                "ada_rt": 0.8}]
    (tmp_path / "plain.csv").write_text("step,d_loss\n50,1\n")
    with pytest.raises(ValueError, match="--ada"):
        read_p_log(tmp_path / "plain.csv")


# ---------------------------------------------------------------------------------------------------------- progan
def test_progan_schedule_grows_and_fades_in():
    assert progress(0, 10, 64) == (0, 1.0, 0)
    assert progress(10, 10, 64)[:2] == (1, pytest.approx(0.2)) and progress(14, 10, 64)[1] == 1.0
    assert progress(25, 10, 64)[0] == 2 and progress(1000, 10, 64) == (3, 1.0, 3)
    assert progress(1000, 10, 16)[0] == 1


def test_progan_grows_with_alpha_0_to_1_and_stays_finite(dataset, tmp_path):
    s = fit(dataset, tmp_path / "pg", 12, arch="progan", phase_steps=6)
    rows = _log(tmp_path / "pg")
    res = [float(r["res"]) for r in rows]
    alpha = [float(r["alpha"]) for r in rows]
    assert res[:6] == [8.0] * 6 and res[6:] == [16.0] * 6
    assert alpha[6] < 0.5 and alpha[8] == 1.0 and alpha[-1] == 1.0
    assert [(p["res"], p["steps"]) for p in s["phases"]] == [(8, 6), (16, 6)]
    assert all(0.0 <= p["d_acc"] <= 1.0 for p in s["phases"])
    images, _, _ = sample(tmp_path / "pg", 4)
    assert images.shape == (4, SIZE, SIZE, 3)
    assert all(torch.isfinite(torch.tensor(float(r["g_loss"]))) for r in rows)


# ---------------------------------------------------------------------------------------------------------- all archs
@pytest.mark.parametrize("arch, kw", [("stylegan2", {"ada": True, "ada_kimg": 0.5, "ada_pipeline": "full"}),
                                      ("progan", {"phase_steps": 3})])
def test_each_arch_trains_finite_and_a_resumed_run_equals_a_straight_one(dataset, tmp_path, arch, kw):
    kw = {**kw, "snapshot_every": 3}
    a = fit(dataset, tmp_path / "a", 5, arch=arch, r1_every=2, **kw)  # a checkpoint mid-phase and mid-ADA-window
    a = fit(dataset, tmp_path / "a", 9, arch=arch, r1_every=2, **kw)
    b = fit(dataset, tmp_path / "b", 9, arch=arch, r1_every=2, **kw)
    assert a["start_step"] == 5 and all(torch.isfinite(torch.tensor(v)) for v in b["losses"].values())
    ca, cb = load_checkpoint(tmp_path / "a" / "checkpoint.pt"), load_checkpoint(tmp_path / "b" / "checkpoint.pt")
    for group in ("modules", "ema"):
        for net in cb[group]:
            for k, v in cb[group][net].items():
                assert torch.equal(ca[group][net][k], v), (group, net, k)
    assert ca["extra"]["arch_state"] == cb["extra"]["arch_state"]
    assert a["losses"] == b["losses"]
    assert run_config(tmp_path / "a").arch == arch and a["arch"] == arch
    G = load_generator(tmp_path / "a")
    assert G.z_dim == 16
    with pytest.raises(ValueError, match="arch"):
        fit(dataset, tmp_path / "a", 10, arch="dcgan")
    if kw.get("ada"):  # a resumed ADA run keeps its own pipeline
        with pytest.raises(ValueError, match="ada_pipeline"):
            fit(dataset, tmp_path / "a", 10, arch=arch, r1_every=2, **{**kw, "ada_pipeline": "basic"})
    # snapshots: the EMA generator at steps 3, 6 and 9, the same in the resumed run as in the straight one
    snaps = {r: sorted(p.name for p in (tmp_path / r / SNAPSHOTS).iterdir()) for r in ("a", "b")}
    assert snaps["a"] == snaps["b"] == ["step-000003", "step-000006", "step-000009"]
    g = {(r, st): load_checkpoint(snapshot_dir(tmp_path / r, st) / "checkpoint.pt")["modules"]["G"]
         for r in ("a", "b") for st in (3, 6, 9)}
    for st in (3, 6, 9):
        assert all(torch.equal(g["a", st][k], v) for k, v in g["b", st].items())
    assert all(torch.equal(g["a", 9][k], v) for k, v in ca["ema"]["G"].items())  # the last one is the run's EMA G
    assert not all(torch.equal(g["a", 3][k], v) for k, v in g["a", 9].items())
    assert (sample(snapshot_dir(tmp_path / "a", 9), 4, seed=1)[0] == sample(tmp_path / "a", 4, seed=1)[0]).all()
    with pytest.raises(ValueError, match="exported"):  # a snapshot samples and evaluates but is not resumed
        fit(dataset, snapshot_dir(tmp_path / "a", 9), 12, arch=arch, r1_every=2, **kw)
    if arch == "stylegan2":  # each snapshot evaluated on the same frames and noise; the best is the lowest fid
        r = evaluate_snapshots(tmp_path / "a", dataset, n=16, probe_steps=5)
        assert [row["step"] for row in r["rows"]] == [3, 6, 9] and r["last"]["step"] == 9
        assert r["best"]["fid_custom"] == min(row["fid_custom"] for row in r["rows"])
        assert len({row["fid_custom"] for row in r["rows"]}) == 3
        assert r["rows"][-1]["fid_custom"] == evaluate_gan(tmp_path / "a", dataset, n=16, probe_steps=5)["fid_custom"]


def test_stylegan2_compiles_through_lazy_r1_and_trains_what_the_eager_run_trains(dataset, tmp_path):
    """torch.compile (its aot_eager backend on the CPU: graphs captured as on a GPU) cannot run R1's double backward,
    so R1's passes run D eagerly: a compiled run with R1 at every step trains, and to the same weights as eager."""
    kw = dict(arch="stylegan2", r1_every=1, pad_channels=True)
    eager = fit(dataset, tmp_path / "eager", 3, **kw)
    compiled = fit(dataset, tmp_path / "compiled", 3, compile="aot_eager", **kw)
    assert compiled["compile"] == "aot_eager" and eager["compile"] == "off"
    a = load_checkpoint(tmp_path / "eager" / "checkpoint.pt")["modules"]
    b = load_checkpoint(tmp_path / "compiled" / "checkpoint.pt")["modules"]
    assert a.keys() == b.keys() and {"G", "D"} <= a.keys()
    for net in a:
        for k in a[net]:
            assert torch.allclose(a[net][k].float(), b[net][k].float(), rtol=1e-4, atol=1e-5), (net, k)
    assert [float(r["r1"]) for r in _log(tmp_path / "compiled")] == pytest.approx(
        [float(r["r1"]) for r in _log(tmp_path / "eager")], rel=1e-4)


def test_a_dcgan_run_keeps_its_settings_file_and_old_runs_load_as_dcgan(dataset, tmp_path):
    fit(dataset, tmp_path / "d", 1, g_base=4, d_base=4)
    saved = load_checkpoint(tmp_path / "d" / "checkpoint.pt")["task_config"]
    assert not {"arch", "w_dim", "ada", "phase_steps"} & set(saved)  # written as before the other archs existed
    assert GANConfig.from_dict(saved).arch == "dcgan"
    s = fit(dataset, tmp_path / "d", 2, g_base=4, d_base=4)  # and resumes as a dcgan run without --arch
    assert s["start_step"] == 1 and "arch" not in s


@pytest.mark.slow  # ~25 s with the probe's training for the dataset (cached for the rest of the session)
@pytest.mark.parametrize("arch", ["stylegan2", "progan"])
def test_cli_trains_samples_exports_and_evaluates_each_arch(dataset, tmp_path, capsys, arch):
    """`armlab gan train --arch ...`, then `sample` (seeded: the same images twice), `export` (float16 weights that
    sample like the run) and `eval` work for every architecture."""
    import json

    import numpy as np

    from armlab_scripts.cli import main

    run, w = tmp_path / "run", tmp_path / "weights"
    assert main(["gan", "train", "--arch", arch, "--data", str(dataset), "--out", str(run), "--steps", "3", "--size",
                 str(SIZE), "--base", "8", "--batch-size", "8", "--w-dim", "16", "--phase-steps", "2", "--cond",
                 "class,target", "--snapshot-every", "2", "--no-progress", "--json"]) == 0
    s = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert s["arch"] == arch and s["steps"] == 3
    a = sample(run, 6, {"class_id": 1}, seed=3)[0].astype(int)
    assert np.array_equal(a, sample(run, 6, {"class_id": 1}, seed=3)[0].astype(int))
    assert main(["gan", "export", "--run", str(run), "--data", str(dataset), "--out", str(w)]) == 0
    b = sample(w, 6, {"class_id": 1}, seed=3)[0].astype(int)
    assert np.abs(a - b).mean() < 2.0
    capsys.readouterr()
    assert main(["gan", "eval", "--run", str(run), "--data", str(dataset), "--n", "16", "--probe-steps", "5",
                 "--json"]) == 0
    r = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert r["fid_custom"] >= 0 and r["class_acc_ratio"] is not None
    assert main(["gan", "eval", "--run", str(run), "--data", str(dataset), "--n", "16", "--probe-steps", "5",
                 "--snapshots", "--json"]) == 0  # the snapshot at step 2 and the checkpoint at step 3
    out = capsys.readouterr().out.strip().splitlines()
    rs = json.loads(out[-1])
    assert [row["step"] for row in rs["rows"]] == [2, 3] and rs["rows"][1]["fid_custom"] == r["fid_custom"]
    assert f"at step {rs['best']['step']}" in out[-2]
    assert cv2.imread(rs["plot"]) is not None and rs["plot"] == str(run / "snapshots.png")


def _ddp_worker(rank, port, data, root):
    """One torchrun-like process training a tiny stylegan2 (with ADA) and a tiny progan run."""
    import os

    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE="2",
                      LOCAL_RANK=str(rank))
    result = {}
    for arch, kw in (("stylegan2", {"ada": True, "ada_kimg": 0.05}), ("progan", {"phase_steps": 2})):
        s = fit(data, f"{root}/{arch}", 6, arch=arch, r1_every=2, device="cpu", **kw)
        G = load_generator(f"{root}/{arch}", ema=False) if rank == 0 else None
        task_state = {"steps": s["steps"], "ada_p": s.get("ada_p", -1.0)}
        result[arch] = {"state": None if G is None else G.state_dict(), **task_state}
    torch.save(result, f"{root}/rank{rank}.pt")


@pytest.mark.slow  # two spawned processes (~30 s with their imports)
def test_ddp_trains_each_arch_in_two_cpu_processes(dataset, tmp_path):
    """Under DDP (gloo, two processes) stylegan2 with ADA (p steered by the reals of every rank) and progan (layers
    of later resolutions unused) train, and rank 0 checkpoints what both computed."""
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    mp.spawn(_ddp_worker, args=(port, str(dataset), str(tmp_path)), nprocs=2, join=True)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    for arch in ("stylegan2", "progan"):
        assert r0[arch]["steps"] == r1[arch]["steps"] == 6
        assert r0[arch]["ada_p"] == r1[arch]["ada_p"]  # one p for all ranks
        assert all(torch.isfinite(v).all() for v in r0[arch]["state"].values() if v.is_floating_point())
