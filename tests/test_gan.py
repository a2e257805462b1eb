"""generative.gan and `armlab gan`: a tiny GAN learns, conditions matter, CLI round trip, resume, bad input."""

from __future__ import annotations

import csv
import dataclasses
import json
import math

import numpy as np
import pytest
import torch

from generative.data import ArmlabDataset, load_tensors
from generative.gan import (
    DEFAULT_AUX_AUGMENT,
    DEFAULT_AUX_FAKE,
    TRAIN_DEFAULTS,
    Discriminator,
    GANConfig,
    GANTask,
    build_generator,
    diff_augment,
    evaluate_gan,
    load_generator,
    parse_cond,
    sample,
    train_gan,
)
from generative.training import TrainConfig
from robot_env.io.errors import ConfigError

pytestmark = pytest.mark.usefixtures("one_thread")

SIZE = 32
TINY = dict(g_base=8, d_base=8, z_dim=16, log_every=5, sample_every=1000, checkpoint_every=1000, progress=False,
            tensorboard=False, n_samples=6)
REPORT_KEYS = ("class_acc_ratio", "pos_err_ratio", "diversity_ratio", "fid_custom")
TRAINER = {f.name for f in dataclasses.fields(TrainConfig)}


def fit(data_dir, out, steps, cond=(), **kw):
    """`train_gan` with the trainer's options in a TrainConfig (over the GAN's TRAIN_DEFAULTS), the model's as
    keywords."""
    train = TrainConfig(out=out, steps=steps, **{**TRAIN_DEFAULTS, **{k: v for k, v in kw.items() if k in TRAINER}})
    return train_gan(data_dir, train, cond, **{k: v for k, v in kw.items() if k not in TRAINER})


@pytest.fixture(scope="module")
def dataset(tiny_dataset):
    """64 sim-style frames, 32 px (shared, read-only)."""
    return tiny_dataset(n=64, size=SIZE, seed=0, style="sim")


@pytest.fixture(scope="module")
def data(dataset):
    return load_tensors(ArmlabDataset(dataset, size=SIZE))


def armlab(*argv: str) -> int:
    """``armlab ARGV`` in this process: `armlab_scripts.cli.main`."""
    from armlab_scripts.cli import main

    return main(list(argv))


def last_json(text: str) -> dict:
    return json.loads(text.strip().splitlines()[-1])


def moments_error(images: torch.Tensor, real: torch.Tensor) -> float:
    """Distance between per-channel mean and standard deviation of two image sets in [-1, 1]."""
    def moments(x):
        return torch.cat([x.mean(dim=(0, 2, 3)), x.std(dim=(0, 2, 3))])

    return float((moments(images) - moments(real)).abs().sum())


# ---------------------------------------------------------------------------------------------------------- units
def test_parse_cond_and_config_round_trip():
    assert parse_cond("target,class") == ("class", "target")
    assert parse_cond("") == parse_cond(None) == parse_cond("none") == ()
    with pytest.raises(ValueError, match="unknown condition 'colour'"):
        parse_cond("class,colour")
    cfg = GANConfig(size=32, cond="class,target", augment="translation,color", g_base=8)
    assert cfg.cond == ("class", "target") and cfg.augment == ("color", "translation")
    assert GANConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    with pytest.raises(ValueError, match="power of two"):
        GANConfig(size=48)
    # where-and-what maps: one channel per class with class + target, one with the target alone, none otherwise;
    # a config saved before they existed loads without them (so its checkpoint still fits)
    assert (cfg.spatial_cond, cfg.map_channels) == (True, 3)
    assert GANConfig(cond="target").map_channels == 1 and GANConfig(cond="class").map_channels == 0
    old = {k: v for k, v in cfg.to_dict().items() if k != "spatial_cond"}
    assert GANConfig.from_dict(old).map_channels == 0
    G, D = build_generator(cfg), Discriminator(cfg)
    assert G.body[0].in_channels == 8 * 4 + 3 and D.net.features[0].in_channels == 3 + 3


def test_translation_moves_the_target_label_with_the_image():
    torch.manual_seed(0)
    n, size = 16, 32
    x = torch.full((n, 3, size, size), -1.0, requires_grad=True)
    target = torch.tensor([[0.5, 0.25]]).expand(n, 2).clone()
    marked = x.detach().clone()
    marked[:, :, 8, 16] = 1.0  # a bright pixel at the target: row v * H = 8, column u * W = 16
    marked.requires_grad_(True)
    y, t = diff_augment(marked, target, ("translation",))
    for i in range(n):
        rows, cols = torch.nonzero(y[i, 0] > 0, as_tuple=True)
        assert len(rows) == 1
        assert (cols.item() / size, rows.item() / size) == pytest.approx(t[i].tolist(), abs=1e-6)
    assert (t != target).any()  # something moved
    y2, t2 = diff_augment(x, None, ("color", "translation"))
    assert t2 is None and y2.shape == x.shape
    y2.sum().backward()  # differentiable
    assert x.grad is not None and x.grad.abs().sum() > 0


# ------------------------------------------------------------------------------------------------- learning effects
def test_a_hundred_steps_fit_the_data(dataset, data, tmp_path):
    """D learns to tell real from fake, and G's colour statistics move toward the data's.

    120 steps: after 60 the moments error was below 0.6 of its start on earlier machines but at
    0.66 on an AVX-512 EPYC (a GAN's first steps amplify the float differences of CPU kernels);
    after 120 it is at 0.47 there."""
    real = data["image"].float() / 127.5 - 1
    cfg = GANConfig(size=SIZE, g_base=8, d_base=8, z_dim=16)
    g0 = GANTask(cfg, init_seed=0).G.eval()
    with torch.no_grad():
        before = moments_error(g0(torch.randn(64, 16)), real)
    fit(dataset, tmp_path / "run", 120, (), size=SIZE, batch_size=16, lr=1e-3, **TINY)
    with open(tmp_path / "run" / "log.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    first, last = rows[0], rows[-1]
    assert float(first["d_loss"]) > float(last["d_loss"]) + 0.1  # hinge loss starts at ~2 (logits ~0)
    assert float(last["d_acc"]) > 0.6
    G = load_generator(tmp_path / "run", ema=False)
    with torch.no_grad():
        after = moments_error(G(torch.randn(64, 16)), real)
    assert after < 0.6 * before, (before, after)


def test_conditional_generator_depends_on_class_and_target(dataset, data, tmp_path):
    run = tmp_path / "cgan"
    fit(dataset, run, 30, "class,target", size=SIZE, batch_size=16, lr=1e-3, **TINY)
    G = load_generator(run)
    z, z2 = torch.randn(8, 16), torch.randn(8, 16)
    c = torch.full((8, 2), 0.5)
    with torch.no_grad():
        by_class = [G(z, torch.full((8,), k), c) for k in range(3)]
        again = G(z, torch.full((8,), 0), c)
        other_z = G(z2, torch.full((8,), 0), c)
        moved = G(z, torch.full((8,), 0), torch.tensor([[0.2, 0.7]]).expand(8, 2))
    assert torch.equal(by_class[0], again)  # eval mode: deterministic
    z_effect = (other_z - by_class[0]).abs().mean()
    for a in range(3):
        for b in range(a + 1, 3):
            assert (by_class[a] - by_class[b]).abs().mean() > 0.01 * z_effect
    assert (moved - by_class[0]).abs().mean() > 0.002 * z_effect

    # sampling: explicit conditions are used as given; otherwise drawn from the training labels (seeded)
    imgs, cls, tgt = sample(run, 6, {"class_id": "sphere", "target": (0.3, 0.6)}, seed=1)
    assert imgs.shape == (6, SIZE, SIZE, 3) and imgs.dtype == np.uint8
    assert cls.tolist() == [2] * 6 and np.allclose(tgt, [0.3, 0.6])
    imgs, cls, tgt = sample(run, 90, seed=2)
    train_pairs = {(int(k), round(float(u), 5), round(float(v), 5))
                   for k, (u, v) in zip(data["class_id"], data["target"])}
    assert {(int(k), round(float(u), 5), round(float(v), 5)) for k, (u, v) in zip(cls, tgt)} <= train_pairs
    assert set(cls.tolist()) == {0, 1, 2}
    again = sample(run, 90, seed=2)
    assert np.array_equal(imgs, again[0]) and np.array_equal(cls, again[1])
    with pytest.raises(ValueError, match="unknown class"):
        sample(run, 2, {"class_id": "pyramid"})


def test_resume_4_then_8_equals_straight_8(dataset, tmp_path):
    kw = dict(cond="class,target", size=SIZE, batch_size=8, seed=3, **TINY)
    fit(dataset, tmp_path / "a", 4, **kw)
    summary = fit(dataset, tmp_path / "a", 8, **kw)
    assert summary["start_step"] == 4 and summary["steps_run"] == 4
    fit(dataset, tmp_path / "b", 8, **kw)
    for ema in (False, True):
        ga, gb = load_generator(tmp_path / "a", ema=ema), load_generator(tmp_path / "b", ema=ema)
        sa, sb = ga.state_dict(), gb.state_dict()
        assert sa.keys() == sb.keys()
        for k in sa:
            assert torch.equal(sa[k], sb[k]), (ema, k)
    with pytest.raises(ValueError, match="trained with cond"):
        fit(dataset, tmp_path / "a", 9, **{**kw, "cond": "class"})


def test_speed_settings_change_how_not_what(dataset, tmp_path):
    """pad_channels (zero channels to multiples of 8) and compile (torch.compile's aot_eager backend on the CPU) train
    the same networks as without them (padding: up to the order of float sums), count the same FLOPs and are reported
    in the summary; they are off by default on the CPU, a run may resume with other settings, and checkpoints=False
    writes no checkpoint."""
    from generative.training import load_checkpoint

    kw = dict(cond="class,target", size=SIZE, batch_size=8, **TINY)
    plain = fit(dataset, tmp_path / "plain", 3, **kw)
    fast = fit(dataset, tmp_path / "fast", 3, pad_channels=True, compile="aot_eager", **kw)
    assert (plain["pad_channels"], plain["compile"], fast["pad_channels"], fast["compile"]) == (
        False, "off", True, "aot_eager")
    assert fast["train_flops_per_image"] == plain["train_flops_per_image"]
    a = load_checkpoint(tmp_path / "plain" / "checkpoint.pt")["modules"]
    b = load_checkpoint(tmp_path / "fast" / "checkpoint.pt")["modules"]
    assert a.keys() == b.keys() == {"G", "D", "A"}
    for net in a:
        assert a[net].keys() == b[net].keys()
        for k in a[net]:
            assert torch.allclose(a[net][k].float(), b[net][k].float(), rtol=1e-4, atol=1e-5), (net, k)
    resumed = fit(dataset, tmp_path / "fast", 4, **kw)  # defaults: padding and compile off on the CPU
    assert (resumed["start_step"], resumed["pad_channels"], resumed["compile"]) == (3, False, "off")
    fit(dataset, tmp_path / "bare", 2, checkpoints=False, **kw)
    assert not (tmp_path / "bare" / "checkpoint.pt").exists() and (tmp_path / "bare" / "summary.json").is_file()


def test_local_classifier_crops_centre_on_the_target():
    """The crop around (u, v) holds what the image has there: a single bright pixel lands in the crop's centre."""
    from generative.gan import LocalClassifier

    a = LocalClassifier(3, crop=0.25)
    x = -torch.ones(2, 3, 64, 64)
    x[0, :, 20, 40] = 1.0  # row 20, column 40
    x[1, :, 50, 8] = 1.0
    c = torch.tensor([[40 / 64, 20 / 64], [8 / 64, 50 / 64]])  # (u, v) = pixel / size, as in the labels
    crops = a.crops(x, c)
    assert crops.shape == (2, 3, 16, 16)
    for k in range(2):
        peak = divmod(int(crops[k, 0].argmax()), 16)
        assert peak in {(7, 7), (7, 8), (8, 7), (8, 8)}, peak
    # off the image: zeros, not the edge repeated
    assert a.crops(x, torch.tensor([[1.5, 1.5], [1.5, 1.5]])).abs().max() == 0


def test_local_classifiers_random_views_move_the_crop_a_little_and_pass_gradients():
    """With ``augment``, every call sees another view (a shifted, scaled, flipped, recoloured crop) that still holds
    the object near its centre, and G's gradient reaches the image through it; without, the crop is fixed."""
    from generative.gan import LocalClassifier

    x = -torch.ones(64, 3, 64, 64)
    x[:, :, 18:23, 38:43] = 1.0  # a 5 px object centred on row 20, column 40
    c = torch.tensor([[40.5 / 64, 20.5 / 64]]).expand(64, 2)
    plain, aug = LocalClassifier(3, crop=0.25), LocalClassifier(3, crop=0.25, augment=True)
    assert torch.equal(plain.crops(x, c, jitter=True), plain.crops(x, c))
    assert torch.equal(aug.crops(x, c), plain.crops(x, c))  # views only where asked for (the steps ask)
    torch.manual_seed(0)
    v1, v2 = aug.crops(x, c, jitter=True), aug.crops(x, c, jitter=True)
    assert (v1 - v2).abs().mean() > 0.05  # another view each time ...
    assert (v1[1:] - v1[:-1]).abs().flatten(1).amax(1).min() > 0.01  # ... and per image
    ys, xs = torch.meshgrid(torch.arange(16.0), torch.arange(16.0), indexing="ij")
    w = (v1 - v1.flatten(2).median(2).values[..., None, None]).mean(1).clamp(min=0)  # the object's mass
    cy, cx = (w * ys).sum((1, 2)) / w.sum((1, 2)), (w * xs).sum((1, 2)) / w.sum((1, 2))
    assert ((cy - 7.5).abs().max() < 2.5) and ((cx - 7.5).abs().max() < 2.5)  # ... that keeps the object central
    xg = x.clone().requires_grad_(True)
    loss, _ = aug.class_loss(xg, c, torch.zeros(64, dtype=torch.long))
    loss.backward()
    assert xg.grad is not None and xg.grad[:, :, 14:27, 34:47].abs().sum() > 0
    assert xg.grad[:, :, :8].abs().sum() == 0  # far from the target, no gradient


def test_local_classifier_with_a_fake_class_learns_to_tell_gs_crops_from_real_ones():
    """The K + 1 classifier: real crops by their class, G's crops as the extra class; G's class loss then asks for
    a crop that is both real-looking and of the requested class, so a fake the classifier has caught costs G more
    than the same classifier's loss on a real crop of that class."""
    from generative.gan import LocalClassifier

    torch.manual_seed(0)
    n = 48
    y = torch.arange(n) % 3
    c = torch.rand(n, 2) * 0.5 + 0.25
    real = -torch.ones(n, 3, 32, 32)
    for k in range(n):  # class k: a bright patch in channel k at the target
        u, v = int(c[k, 0] * 32), int(c[k, 1] * 32)
        real[k, int(y[k]), v - 2:v + 2, u - 2:u + 2] = 1.0
    fake = real.clone()
    fake[:, :, :, :] += 0.6 * torch.randn_like(fake)  # G's tell: noisy pixels everywhere
    a = LocalClassifier(3, crop=0.5, fake_class=True)
    assert a(a.crops(real, c)).shape == (n, 4)
    opt = torch.optim.Adam(a.parameters(), lr=2e-3)
    for _ in range(60):
        loss, acc = a.learn(opt, real, c, y, fake=fake)
    assert float(acc) > 0.9  # the real classes ...
    with torch.no_grad():
        assert (a(a.crops(fake, c)).argmax(1) == 3).float().mean() > 0.9  # ... and G's crops as G's
    g_fake, acc_fake = a.class_loss(fake, c, y)
    g_real, _ = a.class_loss(real, c, y)
    assert float(g_fake) > float(g_real) + 1.0 and float(acc_fake) < 0.2
    a.requires_grad_(True)
    plain = LocalClassifier(3, crop=0.5)  # without the fake class, the fakes are not in its steps
    assert plain(plain.crops(real, c)).shape == (n, 3)


def test_local_class_loss_trains_its_classifier_and_resumes(dataset, tmp_path):
    kw = dict(cond="class,target", size=SIZE, batch_size=16, seed=1, aux_class=1.0, **TINY)
    s = fit(dataset, tmp_path / "a", 40, **{**kw, "log_every": 10})
    assert s["losses"]["a_loss"] < math.log(3)  # the classifier learned something about the real crops
    assert {"g_class", "a_acc_fake", "a_acc_real"} <= set(s["losses"])
    ckpt = torch.load(tmp_path / "a" / "checkpoint.pt", weights_only=True)
    assert "A" in ckpt["modules"] and "A" in ckpt["optimizers"]
    # resuming keeps the classifier: 20 + 20 steps equal 40 straight
    fit(dataset, tmp_path / "b", 20, **{**kw, "log_every": 10})
    fit(dataset, tmp_path / "b", 40, **{**kw, "log_every": 10})
    ga, gb = load_generator(tmp_path / "a", ema=False), load_generator(tmp_path / "b", ema=False)
    for k, v in ga.state_dict().items():
        assert torch.equal(v, gb.state_dict()[k]), k
    with pytest.raises(ValueError, match="class and target"):
        fit(dataset, tmp_path / "c", 2, **{**kw, "cond": "class"})
    with pytest.raises(ValueError, match="aux_class"):
        fit(dataset, tmp_path / "c", 2, **{**kw, "aux_class": -1.0})


def test_local_class_loss_defaults(dataset, tmp_path):
    """On for new runs with class and target, off otherwise; a resumed run keeps its own; old configs load 0."""
    kw = dict(size=SIZE, batch_size=4, **TINY)
    both = fit(dataset, tmp_path / "both", 1, cond="class,target", **kw)
    assert both["aux_class"] == 1.0
    assert fit(dataset, tmp_path / "cls", 1, cond="class", **kw)["aux_class"] == 0.0
    off = fit(dataset, tmp_path / "off", 1, cond="class,target", aux_class=0.0, **kw)
    assert off["aux_class"] == 0.0
    assert fit(dataset, tmp_path / "off", 2, cond="class,target", **kw)["aux_class"] == 0.0  # kept on resume
    with pytest.raises(ValueError, match="aux_class"):
        fit(dataset, tmp_path / "off", 3, cond="class,target", aux_class=1.0, **kw)
    legacy = GANConfig(cond=("class", "target")).to_dict()
    legacy.pop("aux_class")
    legacy.pop("aux_augment")
    assert GANConfig.from_dict(legacy).aux_class == 0.0 and GANConfig.from_dict(legacy).aux_augment is False
    # the classifier's random views: the default for a new run, kept on resume, a bool or a ValueError
    assert both["aux_augment"] is DEFAULT_AUX_AUGMENT["dcgan"]
    flip = not DEFAULT_AUX_AUGMENT["dcgan"]
    aug = fit(dataset, tmp_path / "aug", 1, cond="class,target", aux_augment=flip, **kw)
    assert aug["aux_augment"] is flip
    assert fit(dataset, tmp_path / "aug", 2, cond="class,target", **kw)["aux_augment"] is flip
    with pytest.raises(ValueError, match="aux_augment"):
        GANConfig(cond=("class", "target"), aux_augment="yes")
    assert both["aux_fake"] is DEFAULT_AUX_FAKE["dcgan"] and GANConfig.from_dict(legacy).aux_fake is False
    fk = fit(dataset, tmp_path / "fake", 2, cond="class,target", aux_fake=True, **kw)
    assert fk["aux_fake"] is True and fit(dataset, tmp_path / "fake", 3, cond="class,target", **kw)["aux_fake"]
    ckpt = torch.load(tmp_path / "fake" / "checkpoint.pt", weights_only=True)
    assert ckpt["modules"]["A"]["net.7.weight"].shape[0] == 4  # three classes and G's
    with pytest.raises(ValueError, match="aux_fake"):
        GANConfig(cond=("class", "target"), aux_fake=1)


# ------------------------------------------------------------------------------------------------------------ CLI
def test_cli_train_sample_eval_round_trip(dataset, tmp_path, capsys):
    run, out = tmp_path / "run", tmp_path / "samples"
    assert armlab("gan", "train", "--data", str(dataset), "--out", str(run), "--steps", "6", "--cond", "class,target",
                  "--size", str(SIZE), "--batch-size", "16", "--base", "8", "--json") == 0
    s = last_json(capsys.readouterr().out)
    assert s["steps"] == 6 and s["cond"] == ["class", "target"] and (run / "checkpoint.pt").is_file()
    assert (run / "config.json").is_file() and list((run / "samples").glob("step_*.png"))

    assert armlab("gan", "sample", "--run", str(run), "--n", "12", "--class", "cube", "--target", "0.4,0.6",
                  "--seed", "1", "--out", str(out)) == 0
    ds = ArmlabDataset(out)
    assert len(ds) == 12 and ds.manifest["style"] == "generated" and (out / "grid.png").is_file()
    for i in (0, 11):
        item = ds[i]
        assert item["image"].shape == (3, SIZE, SIZE)
        assert int(item["class_id"]) == 0 and item["target"].tolist() == pytest.approx([0.4, 0.6])

    assert armlab("gan", "sample", "--run", str(run), "--n", "5", "--out", str(tmp_path / "drawn")) == 0
    assert len(ArmlabDataset(tmp_path / "drawn")) == 5
    capsys.readouterr()

    assert armlab("gan", "eval", "--run", str(run), "--data", str(dataset), "--n", "32", "--probe-steps", "20",
                  "--json") == 0
    captured = capsys.readouterr().out
    r = last_json(captured)
    for key in REPORT_KEYS:
        assert key in r
    assert r["class_acc_ratio"] is not None and r["pos_err_ratio"] is not None and r["fid_custom"] >= 0
    from armlab_scripts._common import fmt

    lines = captured.splitlines()
    assert lines[0].startswith(f"{run} (step ") and lines[1].split()[:4] == ["metric", "real", "fake", "ratio"]
    row = next(line for line in lines if "class accuracy (probe)" in line)  # the table row carries the JSON's ratio
    assert fmt(r["class_acc_ratio"]) in row and "class_acc_ratio >= 0.9" in row


def test_export_samples_like_the_run_and_records_its_provenance(dataset, tmp_path, capsys):
    """`armlab gan export`: a small float16 copy of G that samples what the run samples (to float16 precision),
    with PROVENANCE.json naming the dataset manifest's hash and the metrics; it refuses to be trained on."""
    from generative.gan import sample
    from robot_env.io.hashing import sha256_file

    run, weights = tmp_path / "run", tmp_path / "weights"
    fit(dataset, run, 4, ("class", "target"), size=SIZE, batch_size=8, **TINY)
    metrics = tmp_path / "eval.json"
    metrics.write_text('some report line\n{"class_acc_ratio": 0.5}\n')
    assert armlab("gan", "export", "--run", str(run), "--data", str(dataset), "--out", str(weights), "--metrics",
                  str(metrics), "--command", "armlab gan train ...", "--json") == 0
    note = last_json(capsys.readouterr().out)
    saved = json.loads((weights / "PROVENANCE.json").read_text())
    assert saved == note and note["metrics"] == {"class_acc_ratio": 0.5} and note["step"] == 4
    assert note["dataset"]["manifest_sha256"] == sha256_file(dataset / "manifest.json")
    assert (weights / "checkpoint.pt").stat().st_size < 0.6 * (run / "checkpoint.pt").stat().st_size
    a = sample(run, 6, {"class_id": 1}, seed=3)[0].astype(int)
    b = sample(weights, 6, {"class_id": 1}, seed=3)[0].astype(int)
    assert np.abs(a - b).max() <= 3 and np.abs(a - b).mean() < 0.5
    with pytest.raises(ConfigError, match="exported inference weights"):
        fit(dataset, weights, 6, ("class", "target"), size=SIZE, batch_size=8, **TINY)
    assert armlab("gan", "export", "--run", str(run), "--data", str(tmp_path), "--out", str(tmp_path / "w2")) == 2


def test_unconditional_eval_has_no_conditioning_figures(dataset, tmp_path):
    fit(dataset, tmp_path / "dcgan", 3, (), size=SIZE, batch_size=8, **TINY)
    r = evaluate_gan(tmp_path / "dcgan", dataset, n=24, probe_steps=20)
    assert r["class_acc_ratio"] is None and r["pos_err_ratio"] is None
    assert r["diversity_ratio"] is not None and r["fid_custom"] >= 0 and r["modes_covered"] >= 1


def test_eval_frames_draws_the_training_frames_or_the_heldout_ones(dataset, data, tmp_path, capsys):
    """`gan eval --frames train|heldout`: the first --limit frames the run trained on, or the frames after them,
    and only on the run's own dataset."""
    import shutil

    from generative.data.labelled import real_sample
    from generative.gan.evaluate import FRAMES, frame_pool

    run = tmp_path / "run"
    fit(dataset, run, 2, ("class", "target"), size=SIZE, batch_size=8, limit=40, **TINY)
    cfg = json.loads((run / "config.json").read_text())["task"]["data"]
    assert frame_pool(cfg, dataset, "train") == (0, 40) and frame_pool(cfg, dataset, "heldout") == (40, None)
    assert frame_pool(cfg, dataset, "all") is None
    held, _ = real_sample(dataset, SIZE, 100, seed=1, pool=(40, None))  # all 24 frames after the 40, in order
    assert torch.equal(held["image"], data["image"][40:]) and torch.equal(held["target"], data["target"][40:])
    some, _ = real_sample(dataset, SIZE, 10, seed=1, pool=(0, 40))
    pos = [next(i for i in range(40) if torch.equal(data["image"][i], im)) for im in some["image"]]
    assert len(pos) == 10 and pos == sorted(set(pos))  # ten different training frames, in file order
    everything, _ = real_sample(dataset, SIZE, 10, seed=1)  # no pool: the draw of old (frames 40-63 included)
    assert torch.equal(everything["image"], real_sample(dataset, SIZE, 10, seed=1, pool=(0, None))[0]["image"])
    train = evaluate_gan(run, dataset, n=24, probe_steps=20, frames="train")
    heldout = evaluate_gan(run, dataset, n=24, probe_steps=20, frames="heldout")
    assert train["pool"] == [0, 40] and heldout["pool"] == [40, None] and train["frames"] == "train"
    assert train["fid_custom"] != heldout["fid_custom"]
    assert evaluate_gan(run, dataset, n=24, probe_steps=20)["pool"] is None
    other = tmp_path / "other"  # the same frames under another manifest: not the run's dataset
    shutil.copytree(dataset, other)
    (other / "manifest.json").write_text((other / "manifest.json").read_text() + " ")
    with pytest.raises(ConfigError, match="trained on"):
        evaluate_gan(run, other, n=24, probe_steps=20, frames="heldout")
    evaluate_gan(run, other, n=24, probe_steps=20)  # every frame: any dataset
    with pytest.raises(ConfigError, match="one of"):
        frame_pool(cfg, dataset, "test")
    fit(dataset, tmp_path / "every", 1, ("class", "target"), size=SIZE, batch_size=8, **TINY)
    from generative.data.images import DataError

    with pytest.raises(DataError, match="none from frame 64"):  # a run that trained on every frame
        evaluate_gan(tmp_path / "every", dataset, n=24, probe_steps=20, frames="heldout")
    capsys.readouterr()
    assert armlab("gan", "eval", "--run", str(run), "--data", str(other), "--frames", "train") == 2
    err = capsys.readouterr().err.strip()
    assert "--frames train needs the dataset the run trained on" in err and len(err.splitlines()) == 1
    assert armlab("gan", "eval", "--run", str(run), "--data", str(dataset), "--n", "24", "--probe-steps", "20",
                  "--frames", "heldout", "--json") == 0
    r = last_json(capsys.readouterr().out)
    assert r["pool"] == [40, None] and r["fid_custom"] == heldout["fid_custom"]
    import argparse

    from armlab_scripts import gan as gan_cli  # the command line's choices are the library's

    parser = argparse.ArgumentParser()
    gan_cli.add_arguments(parser)
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices["eval"]
    assert tuple(next(a for a in sub._actions if a.dest == "frames").choices) == FRAMES


def test_bench_gan_runs_on_a_given_dataset(dataset, tmp_path, capsys):
    assert armlab("bench", "gan", "--data", str(dataset), "--out", str(tmp_path / "bench"), "--size", str(SIZE),
                  "--steps", "3", "--batch-size", "8", "--base", "8", "--n", "24", "--probe-steps", "20",
                  "--json") == 0
    r = last_json(capsys.readouterr().out)
    for key in (*REPORT_KEYS, "train_images_per_s", "train_seconds", "eval_seconds", "targets_met"):
        assert key in r
    # each ratio is fake / real of figures the same JSON reports (generation_report's floor of 1e-12 on the real)
    for ratio, fake, real in (("class_acc_ratio", "class_acc_fake", "class_acc_real"),
                              ("pos_err_ratio", "pos_err_fake_norm", "pos_err_real_norm"),
                              ("diversity_ratio", "diversity_fake", "diversity_real")):
        assert r[ratio] is not None and math.isfinite(r[ratio]), ratio
        assert r[ratio] == pytest.approx(r[fake] / max(r[real], 1e-12), rel=1e-9, abs=0), ratio
    # plausible ranges: accuracies are fractions; errors and diversities positive and finite; the pixel errors are
    # the normalised ones times the image width
    assert 0 <= r["class_acc_real"] <= 1 and 0 <= r["class_acc_fake"] <= 1
    for key in ("pos_err_real_norm", "pos_err_fake_norm", "diversity_real", "diversity_fake"):
        assert 0 < r[key] < math.inf, key
    assert r["pos_err_real_norm"] < 1.5 and r["pos_err_fake_norm"] < 1.5  # within the image's diagonal
    for kind in ("real", "fake"):
        assert r[f"pos_err_{kind}_px"] == pytest.approx(r[f"pos_err_{kind}_norm"] * SIZE, rel=1e-5), kind
    if r["class_acc_real"] > 0:
        assert r["class_acc_ratio"] <= 1 / r["class_acc_real"]  # fake accuracy is at most 1
    assert 0 < r["pos_err_ratio"] < 100 and 0 < r["diversity_ratio"] < 100  # 3 steps of training: far off, not absurd
    assert r["fid_custom"] >= 0 and math.isfinite(r["fid_custom"])
    targets = [r["class_acc_ratio"] >= 0.9, r["pos_err_ratio"] <= 2.0, r["diversity_ratio"] >= 0.8]
    assert r["targets_met"] == all(targets)
    assert r["train_images_per_s"] > 0 and r["train_seconds"] > 0 and r["eval_seconds"] > 0
    assert r["total_seconds"] >= r["data_seconds"] + r["train_seconds"] + r["eval_seconds"]


def test_bad_input_is_one_line_and_exit_2(dataset, tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    no_ckpt = tmp_path / "no_ckpt"
    no_ckpt.mkdir()
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    (corrupt / "checkpoint.pt").write_bytes(b"not a checkpoint")
    d = str(dataset)
    train = ["gan", "train", "--data", d, "--out", str(tmp_path / "r"), "--size", str(SIZE)]
    cases = [
        (["gan", "train", "--data", str(tmp_path / "missing"), "--out", str(tmp_path / "r"), "--steps", "2"],
         "does not exist"),
        (["gan", "train", "--data", str(empty), "--out", str(tmp_path / "r"), "--steps", "2"], "not a dataset"),
        ([*train, "--steps", "2", "--cond", "colour"], "unknown condition"),
        ([*train, "--steps", "0"], "--steps"),
        ([*train, "--steps", "2", "--time-limit", "0"], "--time-limit"),
        ([*train, "--steps", "2", "--cond", "class", "--aux-class", "1"], "class and target"),
        (["gan", "train", "--data", d, "--out", str(tmp_path / "r"), "--steps", "2", "--size", "48"], "power of two"),
        (["gan", "sample", "--run", str(tmp_path / "nope"), "--n", "2", "--out", str(tmp_path / "s")],
         "does not exist"),
        (["gan", "sample", "--run", str(no_ckpt), "--n", "2", "--out", str(tmp_path / "s")], "no checkpoint"),
        (["gan", "sample", "--run", str(corrupt), "--n", "2", "--out", str(tmp_path / "s")], "corrupt"),
        (["gan", "sample", "--run", str(corrupt), "--n", "0", "--out", str(tmp_path / "s")], "--n"),
        (["gan", "eval", "--run", str(corrupt), "--data", d, "--n", "0"], "--n"),
        (["gan", "eval", "--run", str(no_ckpt), "--data", str(tmp_path / "missing")], "no checkpoint"),
    ]
    for argv, needle in cases:
        assert armlab(*argv) == 2, argv
        err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
        assert len(err) == 1 and needle in err[0], (argv, err)


def test_gpu_check_generative_runs_its_stages_on_cpu(dataset, tmp_path, capsys):
    from armlab_scripts.bench import gpu_generative as check

    out = tmp_path / "gpu"
    argv = ["--data", str(dataset), "--out", str(out), "--device", "cpu", "--quick", "--stages", "matmul,r1,gan-speed"]
    assert check.main(argv) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["matmul"]["matmul_tflops"] > 0 and result["matmul"]["device"] == "cpu"
    r1 = result["r1"]  # D's main pass, and R1's passes, timed; R1 (a double backward) costs more than the main pass
    assert len(r1["ms"]) == 6 and all(isinstance(v, float) and v > 0 for v in r1["ms"].values())
    assert r1["ms"]["r1_joint_bf16"] > r1["ms"]["main_pass_bf16"]
    assert any("ConvolutionBackwardBackward" in e["name"] for e in r1["top"])
    rows = result["gan-speed"]["configs"]
    assert [(row["arch"], row["pad_channels"], row["compile"]) for row in rows] == [
        ("dcgan", False, "off"), ("dcgan", True, "off"), ("stylegan2", True, "off")]
    for row in rows:
        assert row["steps"] >= 2 and row["images_per_s"] > 0 and row["achieved_tflops"] > 0 and "error" not in row
    assert rows[0]["train_gflop_per_image"] == rows[1]["train_gflop_per_image"] != rows[2]["train_gflop_per_image"]
    assert (out / "gan-speed.json").is_file() and not list((out / "runs").rglob("checkpoint.pt"))  # no checkpoints
    assert check.main([*argv[:4], "--stages", "matmul,warp"]) == 2
    assert "unknown stage 'warp'" in capsys.readouterr().err
    assert check.main([*argv, "--speed-archs", "stylegan3"]) == 2
    assert "unknown --speed-archs entry 'stylegan3'" in capsys.readouterr().err
    assert check.main([*argv, "--speed-rows", "2,99"]) == 2
    assert "--speed-rows entry '99' is not a row" in capsys.readouterr().err
    assert check.main([*argv[:6], "--quick", "--stages", "gan-speed", "--speed-archs", "stylegan2,dcgan",
                       "--speed-rows", "2,0"]) == 0  # the rows asked for, in that order
    assert [(row["arch"], row["pad_channels"]) for row in json.loads(
        capsys.readouterr().out.strip().splitlines()[-1])["gan-speed"]["configs"]] == [("stylegan2", True),
                                                                                       ("dcgan", False)]


def test_shipped_weights_match_their_provenance_and_sample():
    """generative/pretrained/cgan64: the bytes its PROVENANCE.json names, metrics that met the targets, and a
    generator that samples the same images for the same seed."""
    from pathlib import Path

    import generative
    from generative.gan import sample
    from robot_env.io.hashing import sha256_file

    root = Path(generative.__file__).parent / "pretrained" / "cgan64"
    note = json.loads((root / "PROVENANCE.json").read_text())
    assert sha256_file(root / "checkpoint.pt") == note["checkpoint_sha256"]
    assert note["metrics"]["class_acc_ratio"] >= 0.9 and note["metrics"]["pos_err_ratio"] <= 2.0
    assert note["commands"] and note["dataset"]["manifest_sha256"]
    a, y, _ = sample(root, 6, {"class_id": 2}, seed=0)
    b = sample(root, 6, {"class_id": 2}, seed=0)[0]
    assert a.shape == (6, 64, 64, 3) and np.array_equal(a, b) and (np.asarray(y) == 2).all()
    assert a.std() > 10  # an image, not a flat colour
