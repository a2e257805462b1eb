"""`armlab gan latent` and generative.gan.latent: interpolation videos cv2 can read, the truncation and
style-mixing grids (rows share the coarse styles' structure), the projection of an image into W, bad input."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import cv2
import pytest
import torch
import torch.nn.functional as F

from generative.gan import TRAIN_DEFAULTS, GANConfig, train_gan
from generative.gan import latent as L
from generative.gan.model import build_generator
from generative.training import TrainConfig

pytestmark = pytest.mark.usefixtures("one_thread")

SIZE = 16
TINY = dict(g_base=8, d_base=8, z_dim=16, log_every=5, sample_every=1000, checkpoint_every=1000, progress=False,
            tensorboard=False, n_samples=4, batch_size=8)
TRAINER = {f.name for f in dataclasses.fields(TrainConfig)}


def armlab(*argv: str) -> int:
    from armlab_scripts.cli import main

    return main([str(a) for a in argv])


@pytest.fixture(scope="module")
def runs(tiny_dataset, tmp_path_factory):
    """A tiny stylegan2 run and a tiny progan run (a few steps each) and their dataset."""
    data = tiny_dataset(n=24, size=SIZE, seed=0, style="sim")
    root = tmp_path_factory.mktemp("latent_runs")
    from robot_env.io.threads import torch_threads

    out = {"data": data}
    with torch_threads(1):  # a module fixture runs outside the tests' one_thread
        for arch, kw in (("stylegan2", {"w_dim": 16}), ("progan", {"phase_steps": 2})):
            train = TrainConfig(out=root / arch, steps=4, **{**TRAIN_DEFAULTS, **{k: v for k, v in TINY.items()
                                                                                 if k in TRAINER}})
            train_gan(data, train, "class,target", size=SIZE, arch=arch,
                      **{k: v for k, v in {**TINY, **kw}.items() if k not in TRAINER})
            out[arch] = root / arch
    return out


def _frames(path: Path) -> int:
    cap = cv2.VideoCapture(str(path))
    assert cap.isOpened(), path
    n = 0
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        assert frame.shape[0] >= 64
        n += 1
    cap.release()
    return n


def test_latent_writes_readable_videos_and_grids(runs, tmp_path, capsys):
    out = tmp_path / "sg"
    assert armlab("gan", "latent", "--run", runs["stylegan2"], "--out", out, "--n-frames", "6", "--psi", "1,0.5,0",
                  "--json") == 0
    r = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(r["files"]) == {"interp_z", "interp_w", "truncation", "mixing"}
    assert _frames(out / "interp_z.webm") > 1 and _frames(out / "interp_w.webm") > 1
    grid = cv2.imread(str(out / "truncation.png"))
    assert grid is not None and grid.shape[:2] == (4 * (SIZE + 2) + 2, 3 * (SIZE + 2) + 2)  # 4 seeds x 3 psi
    assert cv2.imread(str(out / "mixing.png")) is not None
    assert json.loads((out / "latent.json").read_text())["psi"] == [1.0, 0.5, 0.0]
    assert not list(out.glob(".*tmp*"))  # atomic writes leave no temporary files
    pg = tmp_path / "pg"
    assert armlab("gan", "latent", "--run", runs["progan"], "--out", pg, "--n-frames", "3") == 0
    assert _frames(pg / "interp_z.webm") > 1 and (pg / "truncation.png").is_file()
    assert not (pg / "mixing.png").exists() and not (pg / "interp_w.webm").exists()


def test_slerp_keeps_the_ends_and_the_norm_of_equal_vectors():
    a, b = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]])
    assert torch.allclose(L.slerp(a, b, 0.0), a, atol=1e-6) and torch.allclose(L.slerp(a, b, 1.0), b, atol=1e-6)
    assert float(L.slerp(a, b, 0.3).norm()) == pytest.approx(1.0, abs=1e-5)


def test_mixing_grid_rows_share_the_coarse_structure(tmp_path):
    """Cells of a row take the coarse styles (up to 8 px) of one source: their 8 px features are identical, and
    over four seeded generators their low-pass images spread less within rows than within columns (which share
    the fine styles)."""
    rows = cols = 0.0
    for seed in range(4):
        torch.manual_seed(seed)
        cfg = GANConfig(size=SIZE, cond=("class", "target"), g_base=8, d_base=8, z_dim=16, w_dim=16,
                        arch="stylegan2", spatial_cond=True)
        m = L._Model.__new__(L._Model)
        m.cfg, m.G, m.device, m.style = cfg, build_generator(cfg).eval(), torch.device("cpu"), True
        m.y1, m.c1, m.gen = torch.tensor([0]), torch.tensor([[0.5, 0.5]]), torch.Generator().manual_seed(seed)
        _, mixed = L.mixing_grid(m, tmp_path / f"mix{seed}.png", n=4)
        low = F.avg_pool2d(mixed, 4).flatten(1).reshape(4, 4, -1)

        def spread(t):
            return float(sum(torch.cdist(t[i], t[i]).sum() for i in range(4))) / (4 * 4 * 3)

        rows += spread(low)
        cols += spread(low.transpose(0, 1))
    assert rows < 0.8 * cols, (rows, cols)
    assert (tmp_path / "mix0.png").is_file()


def test_projection_reduces_the_reconstruction_error(runs, tmp_path):
    image = sorted((Path(runs["data"]) / "rgb").glob("*.png"))[0]
    m = L._Model(runs["stylegan2"], "cpu", 0)
    one = L.project(m, image, tmp_path / "p1.png", steps=1)
    many = L.project(m, image, tmp_path / "p40.png", steps=40)
    assert many["mse"] < one["mse"] and many["psnr_db"] > one["psnr_db"]
    assert cv2.imread(str(tmp_path / "p40.png")) is not None


def test_sampling_with_truncation_pulls_each_image_towards_its_conditions_mean(runs, tmp_path, capsys):
    import numpy as np

    from generative.gan import sample
    from generative.gan.sample import _generator_from, _load_run, truncate

    run = runs["stylegan2"]
    cond = {"class_id": "cube", "target": (0.3, 0.6)}
    plain = sample(run, 6, cond, seed=3)[0].astype(float)
    assert np.array_equal(sample(run, 6, cond, seed=3, psi=1.0)[0], plain)  # psi 1 is plain sampling, byte for byte
    spread = [sample(run, 6, cond, seed=3, psi=p)[0].astype(float).std(0).mean() for p in (1.0, 0.5, 0.0)]
    assert spread[0] > spread[1] > spread[2], spread  # the closer to the mean w, the less the images differ
    # the mean is each image's own condition's: psi 0 maps every z of a condition to one w, and two conditions apart
    cfg, ckpt = _load_run(run)
    G = _generator_from(cfg, ckpt, Path(run) / "checkpoint.pt", torch.device("cpu"), ema=True)
    z = torch.randn(4, cfg.z_dim, generator=torch.Generator().manual_seed(0))
    y, c = torch.tensor([0, 0, 2, 2]), torch.tensor([[0.2, 0.5]] * 2 + [[0.8, 0.5]] * 2)
    w0 = truncate(G, z, y, c, 0.0)
    torch.testing.assert_close(w0[0], w0[1]) and torch.testing.assert_close(w0[2], w0[3])
    assert (w0[0] - w0[2]).abs().max() > 1e-4
    torch.testing.assert_close(truncate(G, z, y, c, 1.0), G.mapping(z, y, c))
    assert armlab("gan", "sample", "--run", run, "--n", "2", "--psi", "0.7", "--out", tmp_path / "s") == 0
    assert json.loads((tmp_path / "s" / "manifest.json").read_text())["settings"]["psi"] == 0.7
    for bad in ("1.5", "-0.1", "nan"):
        assert armlab("gan", "sample", "--run", run, "--n", "2", "--psi", bad, "--out", tmp_path / "t") == 2
    assert "--psi" in capsys.readouterr().err


def test_latent_bad_input_is_one_sentence(runs, tmp_path, capsys):
    image = sorted((Path(runs["data"]) / "rgb").glob("*.png"))[0]
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"\x89PNG\r\n\x1a\n not an image")
    cases = [
        (["--run", tmp_path / "nope", "--out", tmp_path / "o"], "nope"),
        (["--run", runs["progan"], "--out", tmp_path / "o", "--project", image], "stylegan2"),
        (["--run", runs["stylegan2"], "--out", tmp_path / "o", "--project", tmp_path / "missing.png"], "missing"),
        (["--run", runs["stylegan2"], "--out", tmp_path / "o", "--project", junk], "junk.png"),
        (["--run", runs["stylegan2"], "--out", tmp_path / "o", "--psi", "a,b"], "--psi"),
        (["--run", runs["stylegan2"], "--out", tmp_path / "o", "--n-frames", "1"], "--n-frames"),
    ]
    for argv, needle in cases:
        capsys.readouterr()
        assert armlab("gan", "latent", *argv) == 2, argv
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and needle in err[0], (argv, err)
    assert not (tmp_path / "o").exists()  # nothing written
