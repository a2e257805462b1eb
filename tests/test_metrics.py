"""generative.metrics: the probe learns the toy dataset, and its metrics see collapse and bad conditioning.

One small probe (32 px) is trained per module on half of a toy armlab dataset (tests/test_data.py);
the other half is "a generator that samples the real distribution", against which collapsed
generators (one image repeated, one class only) and wrongly conditioned ones are compared.
"""

from __future__ import annotations

import json
import math
import time

import numpy as np
import pytest
import torch
from test_data import toy_frame, write_toy_dataset

from generative.data import ArmlabDataset, DataError, load_tensors
from generative.metrics import (
    Probe,
    ProbeFeatures,
    conditioning_error,
    diversity,
    evaluate_probe,
    fid_kid,
    generation_report,
    mode_coverage,
    probe_for,
    psnr,
    ssim,
    train_probe,
)

SIZE = 32


def _split(data, a, b):
    return {k: v[a:b] for k, v in data.items()}


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    root = write_toy_dataset(tmp_path_factory.mktemp("toy") / "ds", n=240, size=SIZE, seed=0)
    data = load_tensors(ArmlabDataset(root))
    return {"root": root, "train": _split(data, 0, 120), "test": _split(data, 120, 240)}


@pytest.fixture(scope="module")
def probe(toy):
    return train_probe(toy["train"], size=SIZE, steps=120, batch_size=32, seed=0)


def _one_class_images(n, class_id, seed=5):
    rng = np.random.default_rng(seed)
    imgs, targets = [], []
    for _ in range(n):
        img, _, t = toy_frame(rng, SIZE, class_id=class_id)
        imgs.append(img[:, :, ::-1].transpose(2, 0, 1))  # BGR HWC -> RGB CHW
        targets.append(t)
    return torch.from_numpy(np.stack(imgs).copy()), torch.tensor(targets, dtype=torch.float32)


# ----------------------------------------------------------------------------- the probe


def test_probe_learns_class_and_position(toy, probe):
    test = toy["test"]
    untrained = train_probe(toy["train"], size=SIZE, steps=0, seed=0)
    before = evaluate_probe(untrained, test["image"], test["class_id"], test["target"])
    after = evaluate_probe(probe, test["image"], test["class_id"], test["target"])
    assert after["n"] == 120
    assert after["class_acc"] >= 0.9 > 0.6 > before["class_acc"]  # chance is 1/3
    assert after["pos_err"] < 0.5 * before["pos_err"]
    assert after["pos_err_px"] < 3.0  # of 32 px
    assert math.isclose(after["pos_err_px"], after["pos_err"] * SIZE, rel_tol=1e-6)  # square images
    assert probe.train_log[-1][1] < probe.train_log[0][1]
    f = probe.features(torch.zeros(2, 3, SIZE, SIZE))
    assert f.shape == (2, 128)


def test_train_probe_is_seeded(toy):
    a = train_probe(toy["train"], size=SIZE, steps=4, batch_size=8, seed=3)
    state = torch.get_rng_state()
    b = train_probe(toy["train"], size=SIZE, steps=4, batch_size=8, seed=3)
    c = train_probe(toy["train"], size=SIZE, steps=4, batch_size=8, seed=4)
    assert torch.equal(state, torch.get_rng_state())  # the global RNG is untouched
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)


def test_train_probe_needs_labels(toy):
    with pytest.raises(DataError, match="labelled"):
        train_probe({"image": toy["train"]["image"]}, size=SIZE, steps=1)


def test_probe_for_caches_and_retrains_on_a_changed_manifest(tmp_path):
    root = write_toy_dataset(tmp_path / "ds", n=24, size=16, seed=1)
    with pytest.raises(DataError, match="no manifest.json"):
        probe_for(root / "rgb", size=16)

    first = probe_for(root, size=16, quick=True, steps=6, batch_size=8)
    path = root / ".probe" / "probe_16_quick.pt"
    assert first.from_cache is False and first.cache_path == path and path.is_file()
    mtime = path.stat().st_mtime_ns

    t = time.perf_counter()
    second = probe_for(root, size=16, quick=True, steps=6, batch_size=8)
    assert time.perf_counter() - t < 5.0
    assert second.from_cache is True and path.stat().st_mtime_ns == mtime
    s1, s2 = first.state_dict(), second.state_dict()
    assert all(torch.equal(s1[k], s2[k]) for k in s1)

    manifest = json.loads((root / "manifest.json").read_text())
    manifest["settings"]["changed"] = True
    (root / "manifest.json").write_text(json.dumps(manifest))
    third = probe_for(root, size=16, quick=True, steps=6, batch_size=8)
    assert third.from_cache is False and path.stat().st_mtime_ns != mtime
    assert probe_for(root, size=16, quick=True, steps=6, batch_size=8).from_cache is True

    other = probe_for(root, size=16, steps=6, batch_size=8, cache_dir=tmp_path / "cache")
    assert other.from_cache is False and (tmp_path / "cache" / "probe_16.pt").is_file()


# ----------------------------------------------------------------------------- generation metrics


def test_conditioning_error_real_vs_shuffled_labels(toy, probe):
    test = toy["test"]
    good = conditioning_error(probe, test["image"], test["class_id"], test["target"])
    g = torch.Generator().manual_seed(0)
    perm = torch.randperm(len(test["image"]), generator=g)
    bad = conditioning_error(probe, test["image"], test["class_id"][perm], test["target"][perm])
    assert good["class_acc"] >= 0.9 and bad["class_acc"] < 0.6
    assert bad["pos_err_px"] > 3 * good["pos_err_px"]


def test_fid_kid_self_heldout_and_collapsed(toy, probe):
    real, held_out = toy["train"]["image"], toy["test"]["image"]
    same = fid_kid(probe, held_out, held_out)
    good = fid_kid(probe, real, held_out)
    collapsed = fid_kid(probe, real, held_out[:1].expand(len(held_out), -1, -1, -1))
    assert same["fid"] < 1e-3 * max(good["fid"], 1e-3) + 1e-6
    assert collapsed["fid"] > 10 * good["fid"]
    assert collapsed["kid"] > good["kid"] + 0.1
    assert all(isinstance(v, float) for v in good.values())
    # the same feature module works for uint8 [0, 255] and float [0, 1] with normalize=True
    u8 = held_out[:4]
    assert torch.allclose(ProbeFeatures(probe)(u8), ProbeFeatures(probe, normalize=True)(u8.float() / 255), atol=1e-5)


def test_diversity_and_mode_coverage_see_collapse(toy, probe):
    real, held_out = toy["train"]["image"], toy["test"]["image"]
    identical = held_out[:1].expand(60, -1, -1, -1)
    one_class, _ = _one_class_images(60, class_id=2)
    d_real = diversity(probe, real)
    assert diversity(probe, held_out) / d_real == pytest.approx(1.0, abs=0.3)
    assert diversity(probe, identical) / d_real < 0.01
    assert diversity(probe, one_class) / d_real < 0.9

    cov = mode_coverage(probe, held_out)
    assert cov["modes_covered"] == 3 and cov["entropy"] > 0.9 and sum(cov["fractions"]) == pytest.approx(1.0)
    collapsed = mode_coverage(probe, one_class)
    assert collapsed["modes_covered"] == 1 and collapsed["entropy"] < 0.3
    assert collapsed["fractions"][2] > 0.9


def test_generation_report(toy, probe):
    real, held_out = toy["train"], toy["test"]
    one_class, targets = _one_class_images(60, class_id=0)
    good = generation_report(probe, real, held_out)
    # a collapsed conditional generator: asked for every class, it draws class 0 only
    asked = torch.arange(60) % 3
    bad = generation_report(probe, real, {"image": one_class, "class_id": asked, "target": targets})
    keys = {"class_acc_real", "class_acc_fake", "class_acc_ratio", "pos_err_real", "pos_err_fake", "pos_err_ratio",
            "diversity_real", "diversity_fake", "diversity_ratio", "fid_custom", "kid_custom", "mode_coverage",
            "modes_covered"}
    assert keys <= set(good)
    json.dumps(good, allow_nan=False)
    json.dumps(bad, allow_nan=False)
    assert good["class_acc_ratio"] > 0.9 and good["modes_covered"] == 3 and good["modes_covered_real"] == 3
    assert bad["class_acc_fake"] < 0.5 and bad["modes_covered"] == 1
    assert bad["diversity_ratio"] < good["diversity_ratio"]
    assert bad["fid_custom"] > 5 * good["fid_custom"]
    assert isinstance(good["mode_coverage"], list) and len(good["mode_coverage"]) == 3

    uncond = generation_report(probe, real, {"image": held_out["image"]})
    assert uncond["class_acc_fake"] is None and uncond["pos_err_fake"] is None and uncond["fid_custom"] >= 0
    json.dumps(uncond, allow_nan=False)


# ----------------------------------------------------------------------------- pixel metrics


def test_psnr_known_values():
    a = np.full((16, 16, 3), 128, np.uint8)
    assert psnr(a, a) == math.inf
    b = a.copy()
    b[::2] += 10
    b[1::2] -= 10  # every pixel off by 10: MSE 100
    assert psnr(a, b) == pytest.approx(10 * math.log10(255**2 / 100))
    # layouts: HWC arrays and CHW tensors give the same
    assert psnr(torch.from_numpy(a).permute(2, 0, 1), torch.from_numpy(b).permute(2, 0, 1)) == pytest.approx(psnr(a, b))


def test_ssim_known_values():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)
    assert ssim(x, x) == pytest.approx(1.0)
    # constant images: SSIM = (2 m1 m2 + C1) / (m1^2 + m2^2 + C1) exactly
    c1 = (0.01 * 255) ** 2
    a, b = np.full((32, 32), 100, np.uint8), np.full((32, 32), 150, np.uint8)
    assert ssim(a, b) == pytest.approx((2 * 100 * 150 + c1) / (100**2 + 150**2 + c1))
    # more noise, less similar; an inverted image is anti-correlated
    smooth = np.clip(np.cumsum(np.ones((40, 40, 3)), axis=1) * 5, 0, 255).astype(np.uint8)
    noisy = [np.clip(smooth + rng.normal(0, s, smooth.shape), 0, 255).astype(np.uint8) for s in (2, 10, 40)]
    vals = [ssim(smooth, n) for n in noisy]
    assert 1 > vals[0] > vals[1] > vals[2] > 0
    assert ssim(x, 255 - x) < 0
    batch = np.stack([x, x])
    assert ssim(batch, batch) == pytest.approx(1.0)
    assert ssim(torch.from_numpy(smooth).permute(2, 0, 1), torch.from_numpy(noisy[1]).permute(2, 0, 1)) == (
        pytest.approx(vals[1])
    )


def test_probe_handles_other_sizes(probe):
    imgs = torch.randint(0, 256, (3, 3, 48, 64), dtype=torch.uint8)  # non-square, larger: cropped and resized
    out = evaluate_probe(probe, imgs, torch.tensor([0, 1, 2]), torch.full((3, 2), 0.5))
    assert 0 <= out["class_acc"] <= 1 and out["pos_err"] >= 0
    assert isinstance(Probe(16, 4).features(torch.zeros(1, 3, 16, 16)), torch.Tensor)
