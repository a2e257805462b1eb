"""generative.cyclegan's look generator: a light camera model trained with CycleGAN's losses (``generator="look"``).

A fresh generator is the identity; a few dozen steps between sim images and a colour-cast copy of other sim images
move the translation's colours towards the cast; the run loads, translates deterministically and resumes; the
ResNet generator stays the default and its old runs still load.
"""

from __future__ import annotations

import dataclasses
import json

import cv2
import numpy as np
import pytest
import torch

from generative.cyclegan import (
    TRAIN_DEFAULTS,
    CycleGANTask,
    CyclePair,
    LookGenerator,
    load_generators,
    train_cyclegan,
    translate_dataset,
    translate_images,
)
from generative.data import ArmlabDataset, load_tensors
from generative.networks import ResnetGenerator
from generative.training import TrainConfig
from robot_env.io.errors import ParamError
from robot_env.io.threads import torch_threads

pytestmark = pytest.mark.usefixtures("one_thread")

SIZE = 32
N_SIM = 24  # the first 24 frames are the sim domain, the other 24 (colour cast) the real one
CAST = np.array([1.4, 1.0, 0.6])  # RGB gains of the "real" camera
STEPS = 60
TRAINER = {f.name for f in dataclasses.fields(TrainConfig)}
LOOK = {"size": SIZE, "generator": "look", "d_base": 8, "batch_size": 4, "lr": 5e-3,
        "progress": False, "tensorboard": False, "log_every": 10, "sample_every": 1000, "checkpoint_every": 1000}


def fit(sim_dir, real_dir, out, steps, **kw):
    """`train_cyclegan` with the trainer's options in a TrainConfig, the model's as keywords."""
    train = TrainConfig(out=out, steps=steps, **{**TRAIN_DEFAULTS, **{k: v for k, v in kw.items() if k in TRAINER}})
    return train_cyclegan(sim_dir, real_dir, train, sim_limit=N_SIM,
                          **{k: v for k, v in kw.items() if k not in TRAINER})


@pytest.fixture(scope="module")
def sim_dir(tiny_dataset):
    """48 sim-style frames, 32 px (the same as test_cyclegan's, so a session renders them once)."""
    return tiny_dataset(n=48, size=SIZE, seed=3, style="sim")


@pytest.fixture(scope="module")
def sim_images(sim_dir):
    return load_tensors(ArmlabDataset(sim_dir, size=SIZE))["image"]  # uint8 (48, 3, 32, 32)


@pytest.fixture(scope="module")
def real_dir(sim_images, tmp_path_factory, cast_folder):
    """A plain image folder: the last 24 sim frames seen by a camera with a strong red cast (unpaired)."""
    return cast_folder(sim_images[N_SIM:], tmp_path_factory.mktemp("look") / "real", CAST)


@pytest.fixture(scope="module")
def look_run(sim_dir, real_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("look") / "run"
    with torch_threads(1):
        summary = fit(sim_dir, real_dir, out, steps=STEPS, **LOOK)
    return out, summary


def channel_means(images: torch.Tensor) -> np.ndarray:
    return images.float().mean(dim=(0, 2, 3)).numpy()


# ------------------------------------------------------------------------------------------------------ generator
def test_a_fresh_look_generator_is_the_identity_up_to_its_noise():
    torch.manual_seed(0)
    g = LookGenerator()
    x = torch.rand(2, 3, 40, 40) * 2 - 1
    noisy = g(x)
    assert noisy.shape == x.shape and 0 < (noisy - x).abs().max() < 0.1  # std 0.005 in [0, 1] is 0.01 here
    assert float(g.noise_std().detach().mean()) == pytest.approx(0.005, rel=1e-3)
    g.noise = False
    torch.testing.assert_close(g(x), x, atol=1e-5, rtol=0)
    torch.testing.assert_close(g.kernel_weights().sum(dim=(-2, -1)), torch.ones(3, 1))


def test_look_generator_is_small_and_takes_any_size():
    g = LookGenerator()
    n_params = sum(p.numel() for p in g.parameters())
    assert n_params < 50_000
    resnet = ResnetGenerator(3, 3, base=16, n_blocks=6, n_down=1)
    assert n_params < sum(p.numel() for p in resnet.parameters()) / 4
    for h, w in ((60, 60), (48, 64), (33, 17)):
        y = g(torch.rand(3, 3, h, w) * 2 - 1)
        assert y.shape == (3, 3, h, w) and y.abs().max() <= 1
    y.mean().backward()  # gradients reach every part, the zero-initialised last layers included
    assert all(p.grad is not None for p in g.parameters())


def test_generator_kind_is_chosen_and_checked():
    look = CyclePair(generator="look")
    assert isinstance(look.g, LookGenerator) and isinstance(look.f, LookGenerator) and look.g.base == 16
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(5)
        default = CyclePair(16, 2, 1)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(5)
        resnet = CyclePair(16, 2, 1, generator="resnet")
    assert isinstance(default.g, ResnetGenerator)
    for (k, a), b in zip(default.state_dict().items(), resnet.state_dict().values()):
        assert torch.equal(a, b), k  # "resnet" is the default, built exactly as before
    task = CycleGANTask(torch.zeros(2, 3, SIZE, SIZE, dtype=torch.uint8), size=SIZE, d_base=4, generator="look")
    assert task.config()["generator"] == "look" and task.config()["base"] == 16
    assert task.config()["identity_weight"] == 0  # a look applies to real images too: no identity term
    plain = CycleGANTask(torch.zeros(2, 3, SIZE, SIZE, dtype=torch.uint8), size=SIZE, base=4, n_blocks=1, d_base=4)
    assert plain.config()["generator"] == "resnet" and plain.config()["identity_weight"] == 0.5
    with pytest.raises(ParamError, match="unknown generator 'bogus'; choose resnet or look") as err:
        CyclePair(generator="bogus")
    assert err.value.param == "generator"


# ------------------------------------------------------------------------------------------------------- training
def test_training_moves_the_colours_towards_the_real_camera(sim_images, real_dir, look_run):
    out, summary = look_run
    assert summary["steps"] == STEPS and summary["generator"] == "look"
    before, after, _ = colour_distances(out, sim_images, real_dir)
    assert after < before * 2 / 3, (before, after)


def colour_distances(run, sim_images, real_dir) -> tuple[float, float, torch.Tensor]:
    """The distance of the sim frames' channel means to the real folder's, before and after the run's
    translation, and the translations."""
    sim = sim_images[:N_SIM]
    real = torch.from_numpy(np.stack([cv2.imread(str(p))[:, :, ::-1] for p in sorted(real_dir.glob("*.png"))]))
    real_means = channel_means(real.permute(0, 3, 1, 2))
    fake = translate_images(run, sim, "sim2real")
    before = np.linalg.norm(channel_means(sim) - real_means)
    return before, np.linalg.norm(channel_means(fake) - real_means), fake


def test_look_run_loads_and_translates_deterministically(sim_images, look_run, tmp_path):
    out, _ = look_run
    gens = load_generators(out)
    assert isinstance(gens.sim2real, LookGenerator) and isinstance(gens.real2sim, LookGenerator)
    assert gens.sim2real.noise and gens.config["generator"] == "look"
    sim = sim_images[:10]
    torch.manual_seed(123)
    state = torch.get_rng_state()
    a = translate_images(gens, sim, batch_size=4)
    b = translate_images(gens, sim, batch_size=4)
    assert torch.equal(a, b) and torch.equal(torch.get_rng_state(), state)
    assert not torch.equal(translate_images(gens, sim, batch_size=4, seed=1), a)  # the noise is seeded
    # a plain image folder, translated twice: the same bytes
    src = tmp_path / "in"
    src.mkdir()
    for i, img in enumerate(sim.permute(0, 2, 3, 1).numpy()):
        cv2.imwrite(str(src / f"{i}.png"), np.ascontiguousarray(img[:, :, ::-1]))
    for name in ("one", "two"):
        translate_dataset(gens, src, tmp_path / name, batch_size=4)
    assert all((tmp_path / "one" / p.name).read_bytes() == (tmp_path / "two" / p.name).read_bytes()
               for p in src.glob("*.png"))


def test_look_run_resumes_with_more_steps(sim_dir, real_dir, look_run, tmp_path):
    import shutil

    out, _ = look_run
    run = shutil.copytree(out, tmp_path / "run")
    s = fit(sim_dir, real_dir, run, steps=STEPS + 4, **LOOK)
    assert (s["start_step"], s["steps_run"], s["steps"]) == (STEPS, 4, STEPS + 4)
    assert json.loads((run / "config.json").read_text())["task"]["generator"] == "look"


def test_old_resnet_runs_without_the_key_still_load(sim_dir, tmp_path):
    """A run written before the choice existed (no "generator" in its task config) loads as resnet."""
    real = load_tensors(ArmlabDataset(sim_dir, size=SIZE))["image"][:4]
    task = CycleGANTask(real, size=SIZE, base=4, n_blocks=1, d_base=4)
    cfg = {k: v for k, v in task.config().items() if k != "generator"}
    ema = {"gens": task.gens.state_dict()}
    torch.save({"format": "armlab-train-checkpoint", "version": 1, "step": 7, "config": {}, "task_config": cfg,
                "ema": ema, "modules": {}}, tmp_path / "checkpoint.pt")
    gens = load_generators(tmp_path)
    assert isinstance(gens.sim2real, ResnetGenerator) and gens.step == 7
    x = real[:2].float() / 127.5 - 1
    torch.testing.assert_close(gens.sim2real(x), task.gens.g.eval()(x))


@pytest.fixture(scope="module")
def paired_real_dir(sim_images, tmp_path_factory, cast_folder):
    """The first 24 sim frames themselves through the cast camera: frame i of both folders is one scene."""
    return cast_folder(sim_images[:N_SIM], tmp_path_factory.mktemp("look") / "paired", CAST)


def test_the_paired_term_pulls_translations_onto_their_real_frames(sim_dir, paired_real_dir, sim_images,
                                                                  tmp_path):
    """pix2pix's L1 on pairs: after the same steps, G(sim) is closer to its own real frame with pairs than
    without; the loss is logged; pairs beyond the smaller folder are refused."""
    target = np.clip(sim_images[:N_SIM].permute(0, 2, 3, 1).numpy() * CAST, 0, 255)
    sim = np.ascontiguousarray(sim_images[:N_SIM].permute(0, 2, 3, 1).numpy())
    dist = {}
    with torch_threads(1):
        for pairs in (0, N_SIM):
            out = tmp_path / f"pairs{pairs}"
            s = fit(sim_dir, paired_real_dir, out, steps=30, pairs=pairs, **{**LOOK, "lr": 2e-3})
            assert ("paired_l1" in s["losses"]) == (pairs > 0)
            dist[pairs] = np.abs(translate_images(load_generators(out), sim).astype(float) - target).mean()
    assert dist[N_SIM] < 0.8 * dist[0]
    with pytest.raises(ParamError):
        fit(sim_dir, paired_real_dir, tmp_path / "too_many", steps=1, pairs=N_SIM + 1, **LOOK)


def test_pairs_of_different_scenes_are_refused(sim_dir, tiny_dataset, tmp_path):
    from generative.data import DataError

    other = tiny_dataset(n=48, size=SIZE, seed=4, style="sim")
    with pytest.raises(DataError, match="do not show the same scene"):
        fit(sim_dir, other, tmp_path / "run", steps=1, pairs=4, **LOOK)


def test_sim2real_eval_takes_a_look_run(sim_dir, look_run, tiny_dataset):
    """`armlab sim2real eval` accepts any translator run: a look run against a paired photo-style dataset."""
    from generative.sim2real import sim2real_eval

    photo = tiny_dataset(n=48, size=SIZE, seed=3, style="photo")
    r = sim2real_eval(sim_dir, photo, look_run[0], quick=True, steps=5)
    assert r["paired"] and r["psnr_trans"] is not None and r["n_pairs"] > 0
    assert r["run_step"] == STEPS and r["e_trans"] > 0


def test_pairs_are_checked_in_sharded_datasets_too(sim_dir, tiny_dataset, look_run, tmp_path):
    """The paired term's scene check reads the labels of a sharded (wds) dataset as well, and `translate` points a
    sharded dataset to its folder form instead of failing on missing files."""
    from generative.data import DataError
    from robot_env.dataset.sharded import convert

    photo = convert(tiny_dataset(n=48, size=SIZE, seed=3, style="photo"), tmp_path / "photo", "wds", shard_size=16)
    assert photo["layout"] == "wds"
    s = fit(sim_dir, tmp_path / "photo", tmp_path / "ok", steps=1, pairs=4, **LOOK)  # the same scenes: accepted
    assert s["steps"] == 1
    other = convert(tiny_dataset(n=48, size=SIZE, seed=4, style="sim"), tmp_path / "other", "wds", shard_size=16)
    assert other["layout"] == "wds"
    with pytest.raises(DataError, match="do not show the same scene"):
        fit(sim_dir, tmp_path / "other", tmp_path / "bad", steps=1, pairs=4, **LOOK)
    with pytest.raises(DataError, match="dataset convert"):
        translate_dataset(look_run[0], tmp_path / "photo", tmp_path / "translated")
    assert not (tmp_path / "translated").exists()
