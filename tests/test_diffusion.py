"""generative.diffusion and `armlab diffusion`: tiny diffusers models, a few steps each, no network."""

import argparse
import dataclasses
import json
import math
import socket

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from armlab_scripts import cli as armlab_cli
from armlab_scripts import diffusion as cli
from armlab_scripts._common import UsageError
from generative import diffusion as D
from generative.diffusion.evaluate import _fill_labels
from generative.diffusion.task import _grid_conditions
from generative.training import TrainConfig

pytestmark = [
    pytest.mark.usefixtures("one_thread"),
    # diffusers' DPM-Solver builds a NumPy array from a tensor in the way NumPy 2 deprecates; not ours to fix
    pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning"),
]


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    """No hub access (HF_HUB_OFFLINE=1)."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="module")
def dataset(tiny_dataset):
    """A 24-frame, 16 px armlab dataset (shared, read-only)."""
    return tiny_dataset(n=24, size=16, seed=0)


TRAINER = {f.name for f in dataclasses.fields(TrainConfig)}


def fit(data_dir, out, steps, **kw):
    """`train_diffusion` with the trainer's options in a TrainConfig (over the diffusion TRAIN_DEFAULTS), the
    model's as keywords."""
    train = TrainConfig(out=out, steps=steps, **{**D.TRAIN_DEFAULTS, **{k: v for k, v in kw.items() if k in TRAINER}})
    return D.train_diffusion(data_dir, train, **{k: v for k, v in kw.items() if k not in TRAINER})


TINY = dict(size=16, model="tiny", batch_size=4, tensorboard=False, log_every=2, sample_every=1000,
            checkpoint_every=1000, n_samples=4, progress=False)


def tiny_task(cond=("class",), size=16, **kw) -> D.DiffusionTask:
    cfg = D.DiffusionConfig(size=size, cond=cond, model="tiny", classes=("a", "b"), **kw)
    return D.DiffusionTask(cfg, init_seed=0)


def cli_run(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="armlab diffusion")
    cli.add_arguments(p)
    return cli.run(p.parse_args(argv))


# ------------------------------------------------------------------------------------------------ construction
def test_every_model_and_scheduler_builds_offline(monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    for cond in ((), ("class",), ("target",), ("class", "target")):
        for latent in (False, True):
            vcfg = D.vae_arguments("tiny", 16) if latent else None
            cfg = D.DiffusionConfig(size=16, cond=cond, model="tiny", latent=latent, vae_config=vcfg,
                                    scaling_factor=1.0 if latent else None)
            net = D.ConditionedUNet(cfg)
            x = torch.randn(2, cfg.data_channels, cfg.data_size, cfg.data_size)
            kw = {}
            if "class" in cond:
                kw["class_ids"] = torch.tensor([0, 2])
            if "target" in cond:
                kw["target"] = torch.tensor([[0.2, 0.3], [0.7, 0.6]])
            out = net(x, torch.tensor([3, 900]), **kw, drop=torch.tensor([False, True]) if cond else None)
            assert out.shape == x.shape
    px = D.DiffusionConfig(size=64, cond=("class",), model="small")
    assert px.patch == 2 and px.resolution == 32 and D.ConditionedUNet(px).unet.config.in_channels == 12
    assert D.ConditionedUNet(px).class_embed.num_embeddings == 3 + 1  # the null label
    vae = D.build_vae(D.vae_arguments("small", 64))
    z = vae.encode(torch.zeros(1, 3, 64, 64)).latent_dist.mode()
    assert z.shape == (1, 4, 16, 16)
    train = D.train_scheduler()
    assert train.config.num_train_timesteps == 1000
    for name in D.SAMPLERS:
        s = D.make_sampler(name, train.config)
        s.set_timesteps(10)
        assert len(s.timesteps) == 10
        # DDPM and DDIM start at the last training step; DPM-Solver (no clipping) where alpha_bar is not ~0
        assert int(s.timesteps[0]) == 999 if name != "dpm" else train.alphas_cumprod[int(s.timesteps[0])] > 1e-3


def test_ddim_rederives_the_noise_from_the_clipped_image():
    """A pixel DDIM step whose inferred clean image is out of range uses the clipped image *and* the noise that
    goes with it (what makes guided DDIM work on the cosine schedule; see make_sampler)."""
    train = D.train_scheduler(clip_sample=True)
    ddim = D.make_sampler("ddim", train.config)
    ddim.set_timesteps(50)
    t, t_prev = int(ddim.timesteps[1]), int(ddim.timesteps[2])
    a, a_prev = train.alphas_cumprod[t], train.alphas_cumprod[t_prev]
    x = torch.linspace(-1.5, 1.5, 48).reshape(1, 3, 4, 4)
    eps = -torch.linspace(-2, 2, 48).reshape(1, 3, 4, 4)  # an x0 far outside [-1, 1]
    x0 = ((x - (1 - a).sqrt() * eps) / a.sqrt()).clamp(-1, 1)
    assert (x0.abs() == 1).float().mean() > 0.5
    eps_clipped = (x - a.sqrt() * x0) / (1 - a).sqrt()
    expected = a_prev.sqrt() * x0 + (1 - a_prev).sqrt() * eps_clipped
    got = ddim.step(eps, t, x, **D.sampler_step_kwargs("ddim")).prev_sample
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)
    inconsistent = a_prev.sqrt() * x0 + (1 - a_prev).sqrt() * eps
    assert (got - inconsistent).abs().max() > 0.1


def test_latent_samplers_keep_the_clean_estimate_in_range():
    """A latent model's ddpm and ddim samplers clip the inferred clean latents at LATENT_CLIP: from pure noise at
    the schedule's last step, a network off by 0.1 leaves the first step's latents within a few standard deviations
    (unclipped, the cosine schedule's alpha_bar of 2e-9 blows the error up to tens of them: what decoded as colour
    noise). Pixel samplers keep their own range of 1."""
    train = D.train_scheduler(clip_sample=False)  # what a latent model trains with
    x = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    for name in ("ddim", "ddpm"):
        free, clipped = D.make_sampler(name, train.config), D.make_sampler(name, train.config, D.LATENT_CLIP)
        assert clipped.config.clip_sample and clipped.config.clip_sample_range == D.LATENT_CLIP
        outs = []
        for sch in (free, clipped):
            sch.set_timesteps(50)
            t = sch.timesteps[0]
            eps = x + 0.1  # the true noise is x itself at t = 999; the network is off by 0.1
            kw = {"generator": torch.Generator().manual_seed(1), **D.sampler_step_kwargs(name)}
            outs.append(sch.step(eps, t, x, **kw).prev_sample)
        assert outs[0].abs().max() > 10 and outs[1].abs().max() < 5, (name, outs[0].abs().max(), outs[1].abs().max())
    assert D.make_sampler("ddim", D.train_scheduler(clip_sample=True).config).config.clip_sample_range == 1.0


# ----------------------------------------------------------------------------------------------------- learning
def _constant_images(n: int, size: int, classes: torch.Tensor) -> torch.Tensor:
    """Class 0: a muted red, class 1: a muted blue (room for guidance to push further), in [-1, 1]."""
    red = torch.tensor([0.4, 0.0, -0.4])
    blue = torch.tensor([-0.4, 0.0, 0.4])
    cols = torch.where(classes[:, None] == 0, red, blue)
    return cols[:, :, None, None].expand(n, 3, size, size).clone()


def test_denoising_loss_falls_on_a_fixed_batch():
    task = tiny_task(cond=(), lr=3e-3, warmup_steps=1)
    g = torch.Generator().manual_seed(0)
    low = torch.rand(8, 3, 4, 4, generator=g) * 2 - 1
    x0 = F.interpolate(low, size=16, mode="bilinear", align_corners=False)
    t = torch.linspace(50, 950, 8).long()
    noise = torch.randn(x0.shape, generator=g)

    def loss() -> float:
        with torch.no_grad():
            return float(task.denoising_loss(x0, t, noise, weighted=False).mean())

    before = loss()
    torch.manual_seed(0)
    for step in range(50):
        task.train_step({"image": x0}, step)
    after = loss()
    assert after < 0.6 * before, (before, after)


def test_guidance_pushes_samples_towards_the_class():
    task = tiny_task(cond=("class",), lr=3e-3, warmup_steps=1, guidance_dropout=0.25, snr_gamma=0.0)
    torch.manual_seed(0)
    for step in range(120):
        y = torch.randint(0, 2, (16,))
        task.train_step({"image": _constant_images(16, 16, y), "class_id": y}, step)
    task.unet.eval()
    pipe = D.Pipeline(task.cfg, task.unet, None, task.noise.config)

    def blueness(guidance: float) -> tuple[float, float]:
        y = torch.tensor([0] * 6 + [1] * 6)
        x = pipe.generate(12, y, None, "ddim", 10, guidance, torch.Generator().manual_seed(1))
        b = (x[:, 2] - x[:, 0]).mean(dim=(1, 2))  # blue minus red
        return float(b[:6].mean()), float(b[6:].mean())

    red0, blue0 = blueness(0.0)  # unconditional
    red1, blue1 = blueness(1.0)  # conditional, no guidance
    red3, blue3 = blueness(4.0)  # guided
    assert blue1 > red1
    assert blue3 - red3 > blue1 - red1 > blue0 - red0, ((red0, blue0), (red1, blue1), (red3, blue3))


def test_autoencoder_reconstruction_improves():
    cfg = D.AutoencoderConfig(size=16, model="tiny", lr=3e-3, warmup_steps=1)
    task = D.AutoencoderTask(cfg)
    g = torch.Generator().manual_seed(0)
    low = torch.rand(16, 3, 4, 4, generator=g)
    images = (F.interpolate(low, size=16, mode="bilinear", align_corners=False) * 255).round().to(torch.uint8)
    before = D.reconstruction_psnr(task.vae, images)
    torch.manual_seed(0)
    x = images.float() / 127.5 - 1
    for step in range(40):
        task.train_step({"image": x}, step)
    after = D.reconstruction_psnr(task.vae, images)
    assert after > before + 3.0, (before, after)


# ----------------------------------------------------------------------------------------------- runs, resume
@pytest.mark.parametrize("latent", [False, True])
def test_resume_equals_straight_training(dataset, tmp_path, latent):
    kw = dict(TINY, cond="class,target", latent=latent, vae_steps=3)
    fit(dataset, tmp_path / "a", 4, **kw)
    s = fit(dataset, tmp_path / "a", 8, **kw)  # a finished run continued to 8
    assert s["start_step"] == 4 and s["steps"] == 8
    fit(dataset, tmp_path / "b", 8, **kw)
    a = torch.load(tmp_path / "a" / "checkpoint.pt", weights_only=True)
    b = torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=True)
    for group in ("modules", "ema"):
        for name, state in b[group].items():
            for k, v in state.items():
                assert torch.equal(a[group][name][k], v), (group, name, k)
    if latent:
        assert a["task_config"]["scaling_factor"] == b["task_config"]["scaling_factor"] > 0
        assert (tmp_path / "a" / "vae" / "summary.json").is_file()


def test_samplers_give_images_of_the_right_shape_and_range(dataset, tmp_path):
    fit(dataset, tmp_path / "run", 2, **TINY, cond="class,target")
    for sampler, steps in (("ddpm", 5), ("ddim", 4), ("dpm", 3)):
        images, y, c, q = D.sample(tmp_path / "run", 3, {"class_id": "cylinder", "target": [0.4, 0.6]},
                                   sampler=sampler, steps=steps, guidance=2.0, seed=1)
        assert images.shape == (3, 16, 16, 3) and images.dtype == np.uint8
        assert images.std() > 0
        assert (y == 1).all() and np.allclose(c, [[0.4, 0.6]] * 3) and q is None
    a = D.sample(tmp_path / "run", 2, sampler="dpm", steps=3, seed=5)[0]
    b = D.sample(tmp_path / "run", 2, sampler="dpm", steps=3, seed=5)[0]
    assert np.array_equal(a, b)


# ---------------------------------------------------------------------------------------------------------- CLI
def test_cli_train_sample_eval_round_trip(dataset, tmp_path, capsys):
    run = tmp_path / "run"
    assert cli_run(["train", "--data", str(dataset), "--out", str(run), "--size", "16", "--steps", "3",
                    "--cond", "class,target", "--model", "tiny", "--batch-size", "4", "--latent", "--vae-steps",
                    "2", "--sample-every", "1000", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["steps"] == 3 and summary["latent"] and summary["vae"]["psnr"] > 0
    out = tmp_path / "samples"
    assert cli_run(["sample", "--run", str(run), "--n", "4", "--class", "sphere", "--target", "0.3,0.7",
                    "--sampler", "dpm", "--steps", "3", "--out", str(out)]) == 0
    capsys.readouterr()
    assert (out / "grid.png").is_file()
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["style"] == "generated" and manifest["n"] == 4
    assert manifest["settings"]["guidance"] == 2.0  # a label run's default scale (a text run's is TEXT_GUIDANCE)
    label = json.loads((out / "labels" / "000002.json").read_text())
    assert label["class_name"] == "sphere" and label["target"]["pixel_norm"] == [0.3, 0.7]
    assert cli_run(["eval", "--run", str(run), "--data", str(dataset), "--quick", "--n", "8", "--steps", "3",
                    "--probe-steps", "10", "--json"]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    for key in ("class_acc_ratio", "pos_err_ratio", "diversity_ratio", "fid_custom", "kid_custom", "mode_coverage",
                "class_acc_real", "class_acc_fake", "pos_err_real", "pos_err_fake", "n_fake", "steps", "cond"):
        assert key in report
    assert report["n_fake"] == 8 and report["steps"] == 3 and report["guidance"] == 2.0


def _one_sentence(exc: BaseException) -> None:
    text = str(exc)
    assert text and "\n" not in text and "Traceback" not in text


def test_bad_input_is_one_sentence(dataset, tmp_path):
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "readme.txt").write_text("not images")
    cases = [
        ["train", "--data", str(tmp_path / "missing"), "--out", str(tmp_path / "r"), "--steps", "2"],
        ["train", "--data", str(dataset), "--out", str(tmp_path / "r"), "--steps", "0"],
        ["train", "--data", str(dataset), "--out", str(tmp_path / "r"), "--steps", "2", "--time-limit", "-5"],
        ["train", "--data", str(dataset), "--out", str(tmp_path / "r"), "--steps", "2", "--cond", "colour"],
        ["train", "--data", str(dataset), "--out", str(tmp_path / "r"), "--steps", "2", "--vae", str(tmp_path)],
        ["train", "--data", str(dataset), "--out", str(tmp_path / "r"), "--steps", "2", "--model", "huge"],
        ["sample", "--run", str(tmp_path / "missing"), "--out", str(tmp_path / "s")],
        ["sample", "--run", str(tmp_path), "--out", str(tmp_path / "s"), "--sampler", "euler"],
        ["sample", "--run", str(tmp_path), "--out", str(tmp_path / "s"), "--steps", "0"],
        ["sample", "--run", str(tmp_path), "--out", str(tmp_path / "s"), "--guidance", "-1"],
        ["eval", "--run", str(tmp_path), "--data", str(notes)],
        ["eval", "--run", str(tmp_path), "--data", str(tmp_path / "missing")],
    ]
    for argv in cases:
        with pytest.raises((UsageError, ValueError)) as info:
            cli_run(argv)
        _one_sentence(info.value)
    with pytest.raises(ValueError) as info:  # a plain image folder has no labels to condition on
        fit(notes, tmp_path / "r", 2, **TINY, cond="class")
    _one_sentence(info.value)
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "checkpoint.pt").write_bytes(b"not a checkpoint")
    for argv in (["sample", "--run", str(broken), "--out", str(tmp_path / "s")],
                 ["eval", "--run", str(broken), "--data", str(dataset)]):
        with pytest.raises(ValueError) as info:
            cli_run(argv)
        _one_sentence(info.value)
        assert "broken" in str(info.value)
    with pytest.raises(ValueError):
        D.check_sampler("ddim", 0, 1.0)
    with pytest.raises(ValueError):
        D.check_sampler("ddim", 5, -0.5)


def test_gpu_check_script_runs_on_cpu(capsys):
    from armlab_scripts.bench import gpu_diffusion as gpu_check_diffusion

    assert gpu_check_diffusion.main(["--device", "cpu", "--seconds", "1", "--size", "16", "--sample-n", "2"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    for key in ("device", "train_images_per_s", "sample_images_per_s_ddim50", "achieved_tflops",
                "train_flops_per_image"):
        assert result[key] is not None
    assert result["device"] == "cpu" and result["sample_finite"]
    # each rate is recomputed from the counts and timings the same JSON reports
    assert result["train_images_per_s"] == pytest.approx(
        result["train_measured_images"] / result["train_measured_seconds"], rel=1e-9, abs=0)
    assert result["sample_images_per_s_ddim50"] == pytest.approx(result["sample_n"] / result["sample_seconds"],
                                                                  rel=1e-9, abs=0)
    assert result["train_flops_per_image"] == pytest.approx(3 * result["forward_flops_per_image"], rel=1e-9, abs=0)
    assert result["achieved_tflops"] == pytest.approx(
        result["train_images_per_s"] * result["train_flops_per_image"] / 1e12, rel=1e-9, abs=0)
    # plausible ranges: whole batches after one warm-up step, timed within the run; a CPU far below 10 TFLOP/s
    assert result["train_measured_images"] >= result["batch_size"] and \
        result["train_measured_images"] % result["batch_size"] == 0
    assert result["train_measured_images"] == (result["train_steps"] - 1) * result["batch_size"]
    assert 0 < result["train_measured_seconds"] <= result["train_seconds"] and result["sample_seconds"] > 0
    assert result["sample_n"] == 2 and result["forward_flops_per_image"] > 0
    assert 0 < result["achieved_tflops"] < 10
    assert math.isfinite(result["loss_first"]) and math.isfinite(result["loss_last"])


@pytest.mark.slow
def test_bench_quick_runs(tmp_path, capsys):
    from armlab_scripts.cli import main

    argv = ["bench", "diffusion", "--quick", "--out", str(tmp_path / "bench"), "--frames", "64", "--test", "16",
            "--steps", "3", "--pixel-steps", "2", "--vae-steps", "3", "--n", "6", "--n-ddpm", "2",
            "--downstream-n", "8", "--probe-steps", "5", "--model", "tiny", "--json"]
    assert main(argv) == 0
    figures = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    for key in ("latent_class_acc_ratio", "pixel_class_acc_ratio", "latent_vs_pixel_train_steps_per_s",
                "latent_ddim50_speedup", "autoencoder_psnr", "downstream_class_acc_ratio", "latent_fid_custom"):
        assert key in figures
    assert (tmp_path / "bench" / "results.json").is_file()
    f = figures

    def check(ratio: str, a: str, b: str, floor: float = 0.0) -> None:
        """``ratio`` is a / b of figures the same JSON reports (None where b is 0 or a figure is missing)."""
        if f[a] is None or f[b] is None or not (f[b] or floor):
            assert f[ratio] is None, ratio
        else:
            assert f[ratio] == pytest.approx(f[a] / max(f[b], floor), rel=1e-9, abs=0), ratio

    # every ratio of the JSON, recomputed (the probe metrics floor the real figure at 1e-12, as generation_report)
    for m in ("latent", "pixel"):
        check(f"{m}_class_acc_ratio", f"{m}_class_acc_fake", f"{m}_class_acc_real", 1e-12)
        check(f"{m}_pos_err_ratio", f"{m}_pos_err_fake_norm", f"{m}_pos_err_real_norm", 1e-12)
        check(f"{m}_diversity_ratio", f"{m}_diversity_fake", f"{m}_diversity_real", 1e-12)
        check(f"{m}_ddim50_vs_ddpm1000_class_acc", f"{m}_ddim50_class_acc", f"{m}_ddpm1000_class_acc")
        check(f"{m}_ddim50_speedup", f"{m}_ddim50_images_per_s", f"{m}_ddpm1000_images_per_s")
    check("latent_no_guidance_class_acc_ratio", "latent_no_guidance_class_acc_fake",
          "latent_no_guidance_class_acc_real", 1e-12)
    check("latent_no_guidance_pos_err_ratio", "latent_no_guidance_pos_err_fake_norm",
          "latent_no_guidance_pos_err_real_norm", 1e-12)
    check("latent_vs_pixel_train_steps_per_s", "latent_train_steps_per_s", "pixel_train_steps_per_s")
    for sm, k in (("ddpm", 1000), ("ddim", 50), ("dpm", 20)):
        check(f"latent_vs_pixel_{sm}_images_per_s", f"latent_{sm}{k}_images_per_s", f"pixel_{sm}{k}_images_per_s")
    check("autoencoder_class_acc_ratio", "autoencoder_class_acc_reconstructed", "autoencoder_class_acc_real")
    check("downstream_class_acc_ratio", "downstream_class_acc_generated", "downstream_class_acc_real")
    check("downstream_pos_err_ratio", "downstream_pos_err_px_generated", "downstream_pos_err_px_real")
    ratios = [k for k in f if "ratio" in k or "_vs_" in k or k.endswith("speedup")]
    checked = {f"{m}_{k}" for m in ("latent", "pixel") for k in ("class_acc_ratio", "pos_err_ratio", "diversity_ratio",
                                                                  "ddim50_vs_ddpm1000_class_acc", "ddim50_speedup")}
    checked |= {"latent_no_guidance_class_acc_ratio", "latent_no_guidance_pos_err_ratio",
                "latent_vs_pixel_train_steps_per_s", "autoencoder_class_acc_ratio", "downstream_class_acc_ratio",
                "downstream_pos_err_ratio"} | {f"latent_vs_pixel_{sm}_images_per_s" for sm in ("ddpm", "ddim", "dpm")}
    assert set(ratios) == checked, set(ratios) ^ checked  # a ratio added later is recomputed here too
    # plausible ranges: accuracies are fractions; speeds, errors and diversities positive and finite; DDIM-50 is
    # faster than DDPM-1000 (the pixel DDPM is timed over 50 steps and scaled: about 20 times); a ratio of
    # rates, errors or diversities within a factor of 1000; the autoencoder's PSNR in dB of 8-bit images
    for k, v in f.items():
        if k.endswith(("class_acc", "class_acc_fake", "class_acc_real", "class_acc_generated",
                       "class_acc_reconstructed")) and "_vs_" not in k and v is not None:
            assert 0 <= v <= 1, (k, v)
        if k.endswith(("images_per_s", "_norm", "diversity_fake", "diversity_real", "pos_err_px_real",
                       "pos_err_px_generated")):
            assert v is not None and 0 < v < math.inf, (k, v)
        if k.endswith("steps_per_s"):  # None where a run's summary times no steady interval
            assert v is None or 0 < v < math.inf, (k, v)
    for k in checked:
        if f[k] is not None and "class_acc" not in k:
            assert 1e-3 < f[k] < 1e3, (k, f[k])
        elif f[k] is not None:
            assert 0 <= f[k] < math.inf, (k, f[k])
    assert f["latent_ddim50_speedup"] > 1 and 5 < f["pixel_ddim50_speedup"] < 80
    assert f["pixel_ddpm1000_class_acc"] is None and f["pixel_ddim50_vs_ddpm1000_class_acc"] is None  # not sampled
    assert 0 < f["autoencoder_psnr"] < 100 and f["latent_fid_custom"] >= 0 and f["pixel_fid_custom"] >= 0


# ------------------------------------------------------------------------------------------------ joint conditions
def joint_cfg(cond=("class", "joints"), **kw) -> D.DiffusionConfig:
    return D.DiffusionConfig(size=16, cond=cond, model="tiny", classes=("a", "b"), n_joints=3,
                             joint_low=(-1.4, -0.5, 0.0), joint_high=(1.4, 1.0, 2.0), **kw)


def test_parse_cond_takes_joints(capsys):
    assert D.parse_cond("joints") == ("joints",)
    assert D.parse_cond("joints, class") == ("class", "joints")
    assert D.parse_cond(["joints", "target", "class"]) == ("class", "target", "joints")
    assert D.parse_cond("target,joints") == ("target", "joints")
    for bad in ("joint", "class,angles"):
        with pytest.raises(ValueError, match="class, target, joints") as info:
            D.parse_cond(bad)
        _one_sentence(info.value)
    assert armlab_cli.main(["diffusion", "train", "--data", ".", "--out", "x", "--steps", "1",
                            "--cond", "class,elbow"]) == 2
    err = capsys.readouterr().err.strip()
    assert "unknown condition 'elbow'" in err and "\n" not in err
    with pytest.raises(ValueError, match="n_joints"):
        D.DiffusionConfig(size=16, cond="joints", model="tiny")  # no joint count
    assert D.DiffusionConfig(size=16, cond="class", model="tiny", n_joints=3).n_joints == 0


def test_joint_embedding_changes_the_output_unless_dropped(monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    for cond in (("joints",), ("class", "joints"), ("class", "target", "joints")):
        net = D.ConditionedUNet(joint_cfg(cond)).eval()
        assert net.joint_embed is not None and net.n_joints == 3
        x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
        t = torch.tensor([10, 600])
        kw = {"class_ids": torch.tensor([0, 1])} if "class" in cond else {}
        if "target" in cond:
            kw["target"] = torch.tensor([[0.3, 0.4], [0.6, 0.5]])
        q1 = torch.tensor([[0.1, -0.3, 1.0], [0.5, 0.2, 0.4]])
        q2 = q1 + torch.tensor([0.4, 0.0, -0.2])
        drop = torch.ones(2, dtype=torch.bool)
        with torch.no_grad():
            a, b = net(x, t, **kw, joints=q1), net(x, t, **kw, joints=q2)
            assert a.shape == x.shape and (a - b).abs().max() > 1e-4
            da, db = net(x, t, **kw, joints=q1, drop=drop), net(x, t, **kw, joints=q2, drop=drop)
            assert torch.equal(da, db)
        with pytest.raises(ValueError, match="3 joint positions"):
            net(x, t, **kw, joints=q1[:, :2])
    # normalised by the training range: its ends are -1 and 1
    z = net.normalise_joints(torch.tensor([[-1.4, -0.5, 0.0], [1.4, 1.0, 2.0]]))
    assert torch.allclose(z, torch.tensor([[-1.0] * 3, [1.0] * 3]))
    train_q = torch.tensor([[0.0, 0.1, 0.5], [1.0, 0.3, 1.5], [0.5, 0.2, 1.0]])
    task = D.DiffusionTask(joint_cfg(grid_steps=2), joints=train_q)
    grid = task.sample(4)  # the sample grid with joints: the first joint sweeps its training range
    assert grid.shape == (4, 3, 16, 16) and torch.isfinite(grid).all()
    _, _, q = _grid_conditions(4, task.cfg, None, task.joints)
    assert q[0, 0] < q[1, 0] and torch.allclose(q[:, 1:], torch.tensor([0.2, 1.0], dtype=q.dtype).expand(4, 2))


def test_joint_conditioned_denoising_loss_falls(dataset):
    from generative.data import ArmlabDataset, load_tensors

    data = load_tensors(ArmlabDataset(dataset, size=16), limit=8)
    assert data["joints"].shape == (8, 3) and torch.isfinite(data["joints"]).all()
    q = data["joints"]
    cfg = D.DiffusionConfig(size=16, cond="joints", model="tiny", n_joints=3, joint_low=q.min(0).values.tolist(),
                            joint_high=q.max(0).values.tolist(), lr=3e-3, warmup_steps=1)
    task = D.DiffusionTask(cfg, joints=q)
    x0 = data["image"].float() / 127.5 - 1
    g = torch.Generator().manual_seed(0)
    t = torch.linspace(50, 950, 8).long()
    noise = torch.randn(x0.shape, generator=g)

    def loss() -> float:
        with torch.no_grad():
            return float(task.denoising_loss(x0, t, noise, weighted=False, joints=q).mean())

    before = loss()
    torch.manual_seed(0)
    for step in range(30):
        task.train_step({"image": x0, "joints": q}, step)
    assert loss() < 0.8 * before


def test_joint_runs_train_resume_and_sample_the_requested_joints(dataset, tmp_path, capsys):
    from generative.data import ArmlabDataset, load_tensors

    run = tmp_path / "run"
    kw = dict(TINY, cond="class,joints", sample_every=3, n_samples=4)
    fit(dataset, run, 3, **kw)
    s = fit(dataset, run, 5, **kw)  # resumed and continued
    assert s["start_step"] == 3 and s["steps"] == 5 and s["cond"] == ["class", "joints"] and s["n_joints"] == 3
    assert all(np.isfinite(v) for v in s["losses"].values())
    assert (run / "samples" / "step_000003.png").is_file()  # the grid works with joints
    ckpt = torch.load(run / "checkpoint.pt", weights_only=True)
    real = load_tensors(ArmlabDataset(dataset, size=16))["joints"]
    assert torch.equal(ckpt["extra"]["joints"], real)  # every frame of the tiny set has joints
    tc = ckpt["task_config"]
    assert tc["n_joints"] == 3 and tc["data"]["robot"] == "arm3"
    assert np.allclose(tc["joint_low"], real.min(0).values) and np.allclose(tc["joint_high"], real.max(0).values)
    assert np.allclose(tc["joint_limits"], [[-2.9671, 2.9671], [-1.5708, 1.5708], [-2.618, 2.618]])

    # joints drawn from the training frames, with their class, when none are requested
    _, y, c, q = D.sample(run, 5, None, steps=2, seed=3)
    assert c is None and q.shape == (5, 3)
    rows = {tuple(r) for r in real.double().numpy().tolist()}
    assert all(tuple(r) in rows for r in q.tolist())

    out = tmp_path / "samples"
    assert armlab_cli.main(["diffusion", "sample", "--run", str(run), "--n", "3", "--class", "sphere",
                            "--joints", "0.1,-0.3,1.0", "--steps", "2", "--out", str(out)]) == 0
    capsys.readouterr()
    label = json.loads((out / "labels" / "000001.json").read_text())
    assert label["joint_positions"] == [0.1, -0.3, 1.0] and label["class_name"] == "sphere"
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["settings"]["conditioned_on_joints"] and manifest["settings"]["robot"] == "arm3"
    assert torch.allclose(load_tensors(ArmlabDataset(out))["joints"], torch.tensor([[0.1, -0.3, 1.0]] * 3))
    for given in (["-0.3,0.1,1.0"], ["-0.3", "0.1", "1.0"]):  # a leading minus sign; space-separated values
        assert cli_run(["sample", "--run", str(run), "--n", "1", "--joints", *given, "--steps", "1", "--out",
                        str(out)]) == 0
        capsys.readouterr()
        label = json.loads((out / "labels" / "000000.json").read_text())
        assert label["joint_positions"] == [-0.3, 0.1, 1.0] and "class_id" in label  # the class is drawn

    errors = {}
    for bad in ("0.1,0.2", "0.1,nan,0.2", "0,2.0,0", "a,b,c", "0.1,0.2,0.3,0.4"):
        assert armlab_cli.main(["diffusion", "sample", "--run", str(run), "--n", "2", "--joints", bad,
                                "--steps", "2", "--out", str(tmp_path / "bad")]) == 2, bad
        errors[bad] = err = capsys.readouterr().err.strip()
        assert err.startswith("armlab: error:") and "\n" not in err and "joint" in err, err
    assert "takes 3 joint positions" in errors["0.1,0.2"] and "finite" in errors["0.1,nan,0.2"]
    assert "joint 2 position 2 rad is outside its limits [-1.5708, 1.5708] of arm3" in errors["0,2.0,0"]
    assert not (tmp_path / "bad").exists()
    with pytest.raises(ValueError, match="not conditioned on the target"):
        D.sample(run, 2, {"target": [0.5, 0.5]}, steps=2)

    # eval conditions the fakes on the real frames' joints; a frame without joints gets the middle of the range
    cfg = D.run_config(run)
    frames = {"image": torch.zeros(2, 3, 16, 16), "class_id": torch.tensor([0, 2]),
              "joints": torch.tensor([[0.1, 0.2, 0.3], [float("nan")] * 3])}
    y, c, q = _fill_labels(cfg, frames, torch.Generator())
    mid = (torch.tensor(tc["joint_low"]) + torch.tensor(tc["joint_high"])) / 2
    assert c is None and torch.allclose(q, torch.stack([frames["joints"][0], mid]))


def test_export_of_a_latent_run_samples_like_the_run(dataset, tmp_path, capsys):
    """`armlab diffusion export`: the EMA UNet and the autoencoder in float16, read by `sample` as a run (the same
    images to float16 precision), with the dataset's manifest hash in PROVENANCE.json; not trainable."""
    import json

    from robot_env.io.errors import ConfigError
    from robot_env.io.hashing import sha256_file

    run, weights = tmp_path / "run", tmp_path / "weights"
    kw = dict(TINY, cond="class,target", latent=True, vae_steps=3)
    fit(dataset, run, 3, **kw)
    assert cli_run(["export", "--run", str(run), "--data", str(dataset), "--out", str(weights), "--json"]) == 0
    note = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert note["modules"] == ["unet", "vae"] and note["model"] == "latent diffusion" and note["step"] == 3
    assert note["dataset"]["manifest_sha256"] == sha256_file(dataset / "manifest.json")
    assert json.loads((weights / "PROVENANCE.json").read_text()) == note
    a = D.sample(run, 4, {"class_id": 1}, sampler="ddim", steps=4, seed=2)[0].astype(int)
    b = D.sample(weights, 4, {"class_id": 1}, sampler="ddim", steps=4, seed=2)[0].astype(int)
    assert np.abs(a - b).max() <= 4 and np.abs(a - b).mean() < 0.5
    with pytest.raises(ConfigError, match="exported inference weights"):
        fit(dataset, weights, 5, **kw)
    from armlab_scripts.cli import main

    assert main(["diffusion", "export", "--run", str(tmp_path / "none"), "--data", str(dataset), "--out",
                 str(tmp_path / "x")]) == 2 and not (tmp_path / "x").exists()


def test_shipped_latent_diffusion_weights_match_their_provenance_and_sample():
    """generative/pretrained/ldm64 (what the demo samples): the bytes its PROVENANCE.json names, the commands and
    the dataset's hash that made them, and images of the requested class that are scenes (not flat, not colour
    noise: their colours stay near the renders' table, arm and objects), the same for the same seed."""
    import json
    from pathlib import Path

    import generative
    from robot_env.io.hashing import sha256_file

    root = Path(generative.__file__).parent / "pretrained" / "ldm64"
    note = json.loads((root / "PROVENANCE.json").read_text())
    assert sha256_file(root / "checkpoint.pt") == note["checkpoint_sha256"] and note["modules"] == ["unet", "vae"]
    assert note["commands"] and note["dataset"]["manifest_sha256"] and note["metrics"]["class_acc_ratio"] > 0
    assert (root / "checkpoint.pt").stat().st_size < 8e6
    a, y, c, _ = D.sample(root, 4, {"class_id": 2}, sampler="ddim", steps=10, guidance=3.0, seed=0)
    b = D.sample(root, 4, {"class_id": 2}, sampler="ddim", steps=10, guidance=3.0, seed=0)[0]
    assert a.shape == (4, 64, 64, 3) and np.array_equal(a, b) and (np.asarray(y) == 2).all() and c is not None
    assert a.std() > 10  # an image, not a flat colour
    saturated = ((a.max(-1).astype(int) - a.min(-1).astype(int)) > 200).mean()
    assert saturated < 0.05, saturated  # the colour noise of unclipped latents saturates most pixels
