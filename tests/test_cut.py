"""generative.cyclegan's one-sided CUT / FastCUT (``method="cut"``): PatchNCE, training, loading, resuming.

PatchNCE is low when each patch of the query features matches its own key patch and high when the patches are
shuffled; a few dozen CUT steps between sim images and a colour-cast copy of other sim images move the translation's
colours towards the cast while keeping each image's layout; the run loads as a sim2real translator only, and a
killed run resumes exactly.
"""
# ruff: noqa: F811  (the fixtures imported from test_look_translator are redefined as arguments)

from __future__ import annotations

import numpy as np
import pytest
import torch

# the look translator's toy domains (sim frames and a colour-cast camera; module fixtures) and its helpers
from test_look_translator import N_SIM, SIZE, colour_distances, fit, real_dir, sim_dir, sim_images  # noqa: F401

from generative.cyclegan import (
    LookGenerator,
    PatchNCE,
    load_generators,
    translate_images,
)
from generative.cyclegan.cut import CUTTask, OneSided, encoder_features
from generative.networks import ResnetGenerator
from generative.training import load_checkpoint
from robot_env.io.errors import ParamError
from robot_env.io.threads import torch_threads

pytestmark = pytest.mark.usefixtures("one_thread")

STEPS = 60
CUT = {"size": SIZE, "generator": "look", "method": "cut", "d_base": 8, "batch_size": 4, "lr": 5e-3,
       "progress": False, "tensorboard": False, "log_every": 10, "sample_every": 1000, "checkpoint_every": 1000}


@pytest.fixture(scope="module")
def cut_run(sim_dir, real_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("cut") / "run"
    with torch_threads(1):  # a module fixture runs before the function-scoped one_thread
        return out, fit(sim_dir, real_dir, out, steps=STEPS, **CUT)


def channel_means(images: torch.Tensor) -> np.ndarray:
    return images.float().mean(dim=(0, 2, 3)).numpy()


# ---------------------------------------------------------------------------------------------------- PatchNCE
def test_patchnce_rewards_patches_that_match_their_own_place():
    torch.manual_seed(0)
    feats = [torch.randn(2, 8, 6, 6), torch.randn(2, 16, 3, 3)]
    nce = PatchNCE([8, 16], dim=16, n_patches=32)
    same = nce(feats, feats)
    shuffled = [f.flatten(2)[:, :, torch.randperm(f.shape[2] * f.shape[3])].view_as(f) for f in feats]
    assert float(same.detach()) < float(nce(shuffled, feats).detach()) - 0.5
    # the keys are detached: only the query side carries gradients into the features
    q = [f.clone().requires_grad_(True) for f in feats]
    k = [f.clone().requires_grad_(True) for f in feats]
    nce(q, k).backward()
    assert all(t.grad is not None and t.grad.abs().sum() > 0 for t in q) and all(t.grad is None for t in k)
    with pytest.raises(ParamError):
        PatchNCE([8], n_patches=1)


def test_encoder_features_of_both_generator_kinds():
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    look = encoder_features(LookGenerator(8), x)
    assert [tuple(f.shape[1:]) for f in look] == [(27, 32, 32), (8, 32, 32), (8, 16, 16)]
    # the look generator's features do not carry the pixel's position: a constant image gives constant features
    # away from the border
    flat = encoder_features(LookGenerator(8), torch.zeros(1, 3, 32, 32))[1][0, :, 4:-4, 4:-4]
    assert float((flat - flat[:, :1, :1]).abs().max().detach()) < 1e-6
    res = encoder_features(ResnetGenerator(3, 3, base=8, n_blocks=3, n_down=1), x)
    assert [tuple(f.shape[1:]) for f in res] == [(3, 32, 32), (8, 32, 32), (16, 16, 16), (16, 16, 16),
                                                 (16, 16, 16)]


# ---------------------------------------------------------------------------------------------------- training
def test_cut_moves_the_colours_towards_the_real_camera_and_keeps_the_layout(sim_images, real_dir, cut_run):
    out, summary = cut_run
    assert summary["steps"] == STEPS and summary["method"] == "cut"
    assert {"nce", "nce_idt", "g_gan", "d_real"} <= set(summary["losses"])
    before, after, fake = colour_distances(out, sim_images, real_dir)
    assert after < before * 2 / 3, (before, after)
    # the layout is kept: each translation's brightness pattern correlates with its own sim frame's
    a, b = sim_images[:N_SIM].float().mean(1).flatten(1), fake.float().mean(1).flatten(1)
    a, b = a - a.mean(1, keepdim=True), b - b.mean(1, keepdim=True)
    corr = (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1) + 1e-6)
    assert float(corr.mean()) > 0.8, corr


def test_cut_run_is_a_one_sided_translator(cut_run, sim_images):
    out, _ = cut_run
    gens = load_generators(out)
    assert isinstance(gens.sim2real, LookGenerator) and gens.real2sim is None
    assert gens.config["model"] == "cut" and gens.config["method"] == "cut"
    with pytest.raises(ParamError, match="sim2real only"):
        translate_images(gens, sim_images[:2], "real2sim")
    ckpt = load_checkpoint(out / "checkpoint.pt")
    assert {"gens", "nce", "d_real"} == set(ckpt["modules"]) and "d_sim" not in ckpt["modules"]


def test_a_killed_cut_run_resumes_exactly(sim_dir, real_dir, tmp_path):
    kw = {**CUT, "method": "fastcut", "checkpoint_every": 3, "lr_steps": 6}  # one schedule for both
    fit(sim_dir, real_dir, tmp_path / "whole", steps=6, **kw)
    fit(sim_dir, real_dir, tmp_path / "split", steps=3, **kw)
    s = fit(sim_dir, real_dir, tmp_path / "split", steps=6, **kw)  # the same run, continued
    assert s["steps"] == 6 and "nce_idt" not in s["losses"]  # fastcut: no identity term
    a = load_checkpoint(tmp_path / "whole" / "checkpoint.pt")["modules"]
    b = load_checkpoint(tmp_path / "split" / "checkpoint.pt")["modules"]
    for name in a:
        for key in a[name]:
            assert torch.equal(a[name][key], b[name][key]), (name, key)


def test_cut_methods_are_checked(sim_images):
    with pytest.raises(ParamError) as err:
        CUTTask(sim_images[:4], size=SIZE, method="bogus")
    assert err.value.param == "method"
    with pytest.raises(ParamError):
        CUTTask(sim_images[:4], size=SIZE, method="cycle")
    task = CUTTask(sim_images[:4], size=SIZE, method="fastcut", generator="resnet", base=8, n_blocks=2)
    assert task.nce_weight == 10.0 and not task.nce_identity and isinstance(task.gens, OneSided)
    assert task.config()["model"] == "cut" and "cycle_weight" not in task.config()


def test_cli_trains_cut_and_refuses_real2sim(sim_dir, real_dir, tmp_path, capsys):
    from armlab_scripts.cli import main

    out = tmp_path / "cli"
    rc = main(["cyclegan", "train", "--sim", str(sim_dir), "--real", str(real_dir), "--out", str(out), "--steps", "2",
               "--size", str(SIZE), "--batch-size", "2", "--method", "cut", "--generator", "look", "--d-base", "8",
               "--threads", "1", "--no-progress"])
    assert rc == 0 and capsys.readouterr().out.startswith("cut ")
    rc = main(["cyclegan", "translate", "--run", str(out), "--in", str(sim_dir), "--out", str(tmp_path / "t"),
               "--direction", "real2sim"])
    err = capsys.readouterr().err
    assert rc == 2 and "sim2real only" in err and "Traceback" not in err
    assert not (tmp_path / "t").exists()


def test_sim2real_eval_takes_a_cut_run(sim_dir, cut_run, tiny_dataset):
    """`armlab sim2real eval` accepts a one-sided run too (it translates sim -> real only)."""
    from generative.sim2real import sim2real_eval

    photo = tiny_dataset(n=48, size=SIZE, seed=3, style="photo")
    r = sim2real_eval(sim_dir, photo, cut_run[0], quick=True, steps=5)
    assert r["paired"] and r["psnr_trans"] is not None and r["run_step"] == STEPS and r["e_trans"] > 0
