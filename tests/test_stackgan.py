"""The two-stage StackGAN on captions: tiny networks, a few steps each."""

import json

import numpy as np
import pytest
import torch

from armlab_scripts import cli as armlab_cli
from generative.stackgan import (
    TRAIN_DEFAULTS,
    CondAug,
    Stage1G,
    Stage2G,
    evaluate_stackgan,
    load_stackgan,
    sample_stackgan,
    train_stackgan,
)
from generative.text import SIDE_MARGIN
from generative.training import TrainConfig
from robot_env.io.errors import ParamError
from robot_env.io.threads import torch_threads

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = dict(batch_size=8, tensorboard=False, log_every=1, sample_every=1000, checkpoint_every=1000, n_samples=4,
            progress=False)


@pytest.fixture(scope="module")
def dataset(tiny_dataset):
    return tiny_dataset(n=24, size=16, seed=0)  # the one other tests render too


def fit(data, out, steps, **kw):
    train = TrainConfig(out=out, steps=steps, **{**TRAIN_DEFAULTS, **TINY})
    return train_stackgan(data, train, size=16, ch=8, text_steps=20, **kw)


@pytest.fixture(scope="module")
def run(dataset, tmp_path_factory):
    out = tmp_path_factory.mktemp("stackgan") / "run"
    with torch_threads(1):  # a module fixture runs before the function-scoped one_thread
        return out, fit(dataset, out, 12)


def test_conditioning_augmentation_and_stage_shapes():
    torch.manual_seed(0)
    ca = CondAug(16, 8)
    e = torch.randn(4, 16)
    c1, mu, logvar = ca(e)
    c2, _, _ = ca(e)
    assert not torch.equal(c1, c2) and torch.equal(ca(e, sample=False)[0], mu)
    assert CondAug.kl(torch.zeros(2, 8), torch.zeros(2, 8)).item() == 0.0 and CondAug.kl(mu, logvar).item() > 0
    g1, g2 = Stage1G(16, 8, 8, 8, 16), Stage2G(16, 8, 8, 32, 16)
    x1 = g1(torch.randn(4, 8), e)[0]
    assert x1.shape == (4, 3, 16, 16) and g2(x1, e)[0].shape == (4, 3, 32, 32)


def test_the_layout_maps_steer_both_stages_and_older_runs_load_without_them():
    from generative.stackgan import StackGANConfig
    from generative.stackgan.task import layout_maps

    cfg = StackGANConfig(size=32, ch=8, z_dim=8, c_dim=8, text_config={"vocab": {}, "encoder": {}})
    assert cfg.layout and cfg.map_ch == 3
    torch.manual_seed(0)
    g1, g2 = Stage1G(16, 8, 8, 8, 16, cfg.map_ch), Stage2G(16, 8, 8, 32, 16, cfg.map_ch)
    z, e, y = torch.randn(2, 8), torch.randn(2, 16), torch.tensor([0, 2])
    left = layout_maps(cfg, y, torch.tensor([[0.15, 0.5], [0.15, 0.5]]))
    right = layout_maps(cfg, y, torch.tensor([[0.85, 0.5], [0.85, 0.5]]))
    assert left(8).shape == (2, 3, 8, 8) and left(8)[0, 0].argmax() % 8 < 2 and left(8)[1, 2].sum() > 0
    a1, b1 = g1(z, e, False, left)[0], g1(z, e, False, right)[0]
    assert (a1 - b1).abs().max() > 1e-3
    assert (g2(a1, e, False, left)[0] - g2(a1, e, False, right)[0]).abs().max() > 1e-3
    # a refining stage II starts as stage I enlarged (its correction is zero-initialised), and still reads the maps
    g2r = Stage2G(16, 8, 8, 32, 16, cfg.map_ch, refine=True)
    base = torch.nn.functional.interpolate(a1, size=(32, 32), mode="bilinear", align_corners=False)
    torch.testing.assert_close(g2r(a1, e, False, left)[0], base.clamp(-0.995, 0.995), atol=1e-6, rtol=0)
    torch.nn.init.normal_(g2r.out.weight, std=0.1)
    assert (g2r(a1, e, False, left)[0] - g2r(a1, e, False, right)[0]).abs().max() > 1e-3
    old = cfg.to_dict()
    for k in ("layout", "map_sigma", "refine", "aux_class", "aux_crop"):
        old.pop(k)
    older = StackGANConfig.from_dict(old)
    assert not older.layout and older.map_ch == 0 and not older.refine and cfg.refine and older.aux_class == 0
    with pytest.raises(ParamError):
        StackGANConfig(map_sigma=0)


def test_stackgan_trains_with_finite_falling_losses(run):
    out, s = run
    rows = [line.split(",") for line in (out / "log.csv").read_text().splitlines()]
    head, rows = rows[0], rows[1:]
    col = {k: [float(r[head.index(k)]) for r in rows] for k in ("D1", "D2", "G1", "G2", "kl1", "kl2")}
    assert all(np.isfinite(v).all() for v in col.values())
    for k in ("G1", "G2", "kl1", "kl2"):  # the KL of conditioning augmentation falls first
        assert np.mean(col[k][-3:]) < np.mean(col[k][:3]), (k, col[k])
    assert s["stage1"] == 8 and s["size"] == 16 and (out / "vocab.json").is_file()
    assert s["layout_pretrain_loss"][1] < s["layout_pretrain_loss"][0] and load_stackgan(out).layout is not None


def test_a_captions_words_change_the_sample_and_seeds_repeat(run):
    out, _ = run
    a1, a2, _ = sample_stackgan(out, 3, "a red cube on the left of the table", seed=1)
    b1, b2, _ = sample_stackgan(out, 3, "a red sphere on the right of the table", seed=1)
    assert a1.shape == (3, 8, 8, 3) and a2.shape == (3, 16, 16, 3)
    assert np.abs(a2.astype(int) - b2.astype(int)).max() > 0
    assert np.array_equal(a2, sample_stackgan(out, 3, "a red cube on the left of the table", seed=1)[1])
    # unknown words are <unk>: the same image as any other unknown word
    u = sample_stackgan(out, 2, "a red cube on the left of the zorblax", seed=0)[1]
    assert np.array_equal(u, sample_stackgan(out, 2, "a red cube on the left of the qwerty", seed=0)[1])
    with pytest.raises(ParamError):
        load_stackgan(out).tokens(5, 2)


def test_resumed_equals_straight(dataset, tmp_path):
    fit(dataset, tmp_path / "a", 2)
    fit(dataset, tmp_path / "a", 4)
    fit(dataset, tmp_path / "b", 4)
    sa = torch.load(tmp_path / "a" / "checkpoint.pt", weights_only=True)
    sb = torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=True)
    for group in ("modules", "ema"):
        for name, state in sa[group].items():
            assert all(torch.equal(state[k], sb[group][name][k]) for k in state), (group, name)


def test_each_stage_has_a_local_class_loss_that_learns_the_real_shapes(run, dataset, tmp_path):
    out, s = run
    assert s["aux_class"] == 1.0
    rows = [line.split(",") for line in (out / "log.csv").read_text().splitlines()]
    head = rows[0]
    for k in ("g1_class", "g2_class", "a1_loss", "a2_loss"):
        assert all(np.isfinite(float(r[head.index(k)])) for r in rows[1:]), k
    ckpt = torch.load(out / "checkpoint.pt", weights_only=True)
    assert {"A1", "A2"} <= set(ckpt["modules"]) and {"A1", "A2"} <= set(ckpt["optimizers"])
    # the classifiers learn the shapes from the real crops around the target (chance: log 3)
    a = fit(dataset, tmp_path / "a", 40, aux_class=1.0)
    assert a["losses"]["a1_loss"] < 0.9 * np.log(3) and a["losses"]["a2_loss"] < 0.9 * np.log(3), a["losses"]
    # off: no classifier; a resumed run keeps its own weight, a changed one is refused; no layout, no local loss
    off = fit(dataset, tmp_path / "off", 1, aux_class=0.0)
    assert off["aux_class"] == 0.0 and "g1_class" not in off["losses"]
    assert fit(dataset, tmp_path / "off", 2)["aux_class"] == 0.0
    with pytest.raises(ValueError, match="aux_class"):
        fit(dataset, tmp_path / "off", 3, aux_class=1.0)
    assert fit(dataset, tmp_path / "plain", 1, layout=False)["aux_class"] == 0.0
    with pytest.raises(ParamError, match="layout"):
        fit(dataset, tmp_path / "bad", 1, layout=False, aux_class=1.0)


def test_eval_compares_the_stages(run, dataset):
    out, _ = run
    r = evaluate_stackgan(out, dataset, n=8, probe_steps=5)
    assert r["side_margin"] == SIDE_MARGIN
    for stage in ("stage1", "stage2"):
        assert 0 <= r[stage]["side_acc_fake"] <= 1 and np.isfinite(r[stage]["fid_custom"])
        assert r[stage]["n_prompts"] == 8
    assert set(r["stage2_beats_stage1"]) == {"pos_err_fake_norm", "fid_custom"}


def test_cli_sample_and_errors(run, tmp_path, capsys):
    out, _ = run
    code = armlab_cli.main(["stackgan", "sample", "--run", str(out), "--n", "2", "--out", str(tmp_path / "s"),
                            "--prompt", "a red ball on the left of the zorblax"])
    assert code == 0
    manifest = json.loads((tmp_path / "s" / "manifest.json").read_text())
    assert manifest["settings"]["prompt"].startswith("a red ball") and (tmp_path / "s" / "stage1.png").is_file()
    assert "zorblax" in capsys.readouterr().err
    # the layout keeps SIDE_MARGIN from the side cuts unless told otherwise; a wider margin moves targets, so images
    assert manifest["settings"]["side_margin"] == SIDE_MARGIN
    prompt = "a red cube in the centre of the table"
    a = sample_stackgan(out, 8, prompt, seed=2)[1]
    assert np.array_equal(a, sample_stackgan(out, 8, prompt, seed=2, side_margin=SIDE_MARGIN)[1])
    assert not np.array_equal(a, sample_stackgan(out, 8, prompt, seed=2, side_margin=0.15)[1])
    broken = tmp_path / "empty_vocab"
    broken.mkdir()
    ckpt = torch.load(out / "checkpoint.pt", weights_only=True)
    ckpt["task_config"]["text_config"]["vocab"]["tokens"] = ["<pad>", "<unk>", "<cls>"]
    torch.save(ckpt, broken / "checkpoint.pt")
    assert armlab_cli.main(["stackgan", "sample", "--run", str(broken), "--out", str(tmp_path / "s2")]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and "vocabulary is empty" in err[0], err


def test_gan_sample_takes_a_prompt_for_a_text_run_and_refuses_it_elsewhere(run, tmp_path, capsys):
    out, _ = run
    prompt = "a blue cube on the right of the table"
    args = ["--run", str(out), "--n", "3", "--prompt", prompt, "--seed", "4"]
    assert armlab_cli.main(["gan", "sample", *args, "--out", str(tmp_path / "g")]) == 0
    assert armlab_cli.main(["stackgan", "sample", *args, "--out", str(tmp_path / "s")]) == 0
    manifest = json.loads((tmp_path / "g" / "manifest.json").read_text())
    assert manifest["settings"]["prompt"] == prompt and manifest["settings"]["model"] == "stackgan"
    assert (tmp_path / "g" / "grid.png").read_bytes() == (tmp_path / "s" / "grid.png").read_bytes()
    capsys.readouterr()
    # conditions in flags do not mix with a caption, and a run without a text model takes no caption
    for argv in (["gan", "sample", "--run", str(out), "--class", "cube", "--out", str(tmp_path / "x")],
                 ["gan", "sample", *args, "--target", "0.4,0.6", "--out", str(tmp_path / "x")]):
        assert armlab_cli.main(argv) == 2
        assert "--prompt" in capsys.readouterr().err
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "config.json").write_text(json.dumps({"task_class": "generative.gan.task.GANTask"}))
    for extra in (["--prompt", prompt], ["--side-margin", "0.05"]):
        argv = ["gan", "sample", "--run", str(plain), *extra, "--out", str(tmp_path / "y")]
        assert armlab_cli.main(argv) == 2
        err = capsys.readouterr().err.splitlines()
        assert len(err) == 1 and "text-conditioned" in err[0] and extra[0] in err[0] and not (tmp_path / "y").exists()
    # gan sample passes the side margin on to a text run
    margin = ["--side-margin", "0.15"]
    assert armlab_cli.main(["gan", "sample", *args, *margin, "--out", str(tmp_path / "gm")]) == 0
    assert armlab_cli.main(["stackgan", "sample", *args, *margin, "--out", str(tmp_path / "sm")]) == 0
    assert json.loads((tmp_path / "gm" / "manifest.json").read_text())["settings"]["side_margin"] == 0.15
    assert (tmp_path / "gm" / "grid.png").read_bytes() == (tmp_path / "sm" / "grid.png").read_bytes()
