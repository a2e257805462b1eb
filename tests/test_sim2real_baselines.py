"""generative.sim2real.baselines (histogram matching, FDA) and generative.sim2real.stats (bootstrap intervals)."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
import torch

from generative.data import DataError
from generative.sim2real import baselines, stats
from generative.sim2real.baselines import fda, histogram_match
from generative.sim2real.stats import bootstrap_mean_ci, gap_standard_error, hierarchical_bootstrap
from robot_env.io.errors import ParamError

QUANTILES = [0.05, 0.25, 0.5, 0.75, 0.95]


def _gaussian_images(rng: np.random.Generator, n: int, h: int, w: int, means, sds) -> np.ndarray:
    x = rng.normal(means, sds, size=(n, h, w, 3))
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


def _textured(rng: np.random.Generator, n: int, size: int, lo: float, hi: float) -> np.ndarray:
    """Mid-range images with structure at every scale: smoothed noise plus a bright square and fine noise."""
    out = np.empty((n, size, size, 3), np.uint8)
    for i in range(n):
        base = cv2.GaussianBlur(rng.normal(0.0, 1.0, (size, size, 3)), (0, 0), 3.0)
        base = (base - base.min()) / (base.max() - base.min())
        img = lo + (hi - lo) * (0.6 * base + 0.2 * rng.random((size, size, 3)))
        r, c = rng.integers(2, size // 2, size=2)
        img[r:r + size // 3, c:c + size // 3] += 0.2 * (hi - lo)
        out[i] = np.clip(np.rint(img), 0, 255).astype(np.uint8)
    return out


def _nchw(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))


def _high_pass(x: np.ndarray) -> np.ndarray:
    f = x.astype(np.float64)
    return f - np.stack([cv2.GaussianBlur(im, (0, 0), 1.0) for im in f])


# ----------------------------------------------------------------------------------------------- histogram_match


def test_histogram_match_moves_channel_quantiles_to_the_reference_and_keeps_type():
    rng = np.random.default_rng(0)
    dark_blue = _gaussian_images(rng, 24, 16, 16, (35, 45, 120), (10, 12, 25))
    reddish = _gaussian_images(rng, 40, 24, 20, (185, 90, 70), (25, 18, 15))  # other N, other H, W
    out = histogram_match(dark_blue, _nchw(reddish))  # reference in the other layout and type
    assert isinstance(out, np.ndarray) and out.dtype == np.uint8 and out.shape == dark_blue.shape
    for c in range(3):
        before = np.quantile(dark_blue[..., c], QUANTILES)
        got = np.quantile(out[..., c], QUANTILES)
        want = np.quantile(reddish[..., c], QUANTILES)
        assert np.abs(got - want).max() <= 3, (c, got, want)
        assert abs(out[..., c].mean() - reddish[..., c].mean()) <= 2
        assert np.abs(before - want).max() > 30  # it did have to move

    as_tensor = histogram_match(_nchw(dark_blue), reddish)
    assert isinstance(as_tensor, torch.Tensor) and as_tensor.dtype == torch.uint8
    assert tuple(as_tensor.shape) == (24, 3, 16, 16)
    assert np.array_equal(as_tensor.permute(0, 2, 3, 1).numpy(), out)


def test_histogram_match_is_monotone_per_channel_and_the_identity_on_itself():
    rng = np.random.default_rng(1)
    images = _gaussian_images(rng, 10, 12, 12, (60, 140, 200), (30, 40, 20))
    reference = _gaussian_images(rng, 7, 9, 9, (150, 80, 40), (50, 20, 30))
    out = histogram_match(images, reference)
    for c in range(3):
        src, dst = images[..., c].ravel(), out[..., c].ravel()
        order = np.argsort(src, kind="stable")
        assert np.all(np.diff(dst[order].astype(int)) >= 0)  # pixel order preserved
        assert len(np.unique(dst)) > 20  # not collapsed onto a few levels
    assert np.array_equal(histogram_match(images, images), images)
    coarse = histogram_match(images, reference, bins=32)
    assert coarse.shape == images.shape
    for c in range(3):
        assert abs(coarse[..., c].mean() - reference[..., c].mean()) <= 6


# --------------------------------------------------------------------------------------------------------- fda


def test_fda_beta_zero_is_the_identity():
    rng = np.random.default_rng(2)
    images = rng.integers(0, 256, (5, 16, 16, 3), dtype=np.uint8)
    reference = rng.integers(0, 256, (3, 16, 16, 3), dtype=np.uint8)
    assert np.array_equal(fda(images, reference, beta=0.0), images)
    out = fda(_nchw(images), reference, beta=0)
    assert isinstance(out, torch.Tensor) and torch.equal(out, _nchw(images))


@pytest.mark.parametrize("ref_size", [32, 48])
def test_fda_swaps_the_means_and_keeps_high_frequencies(ref_size):
    rng = np.random.default_rng(3)
    images = _textured(rng, 12, 32, 50, 130)
    reference = _textured(rng, 6, ref_size, 110, 200)
    if ref_size != 32:  # fda resizes the reference with INTER_AREA: compare with what it sees
        seen = np.stack([cv2.resize(r, (32, 32), interpolation=cv2.INTER_AREA) for r in reference])
    else:
        seen = reference
    out = fda(images, _nchw(reference), beta=0.05, seed=7)  # b = floor(32 * 0.05) = 1
    assert isinstance(out, np.ndarray) and out.shape == images.shape and out.dtype == np.uint8
    which = np.random.default_rng(7).integers(len(reference), size=len(images))
    assert len(set(which.tolist())) > 1
    got = out.reshape(12, -1, 3).mean(axis=1)
    want = seen[which].reshape(12, -1, 3).mean(axis=1)
    before = images.reshape(12, -1, 3).mean(axis=1)
    assert np.abs(before - want).min() > 20
    assert np.abs(got - want).max() < 1.0
    hp_in, hp_out = _high_pass(images), _high_pass(out)
    assert np.abs(hp_out - hp_in).mean() < 0.1 * np.abs(hp_in).mean()


def test_fda_is_deterministic_given_the_seed_and_varies_across_seeds():
    rng = np.random.default_rng(4)
    images = _textured(rng, 16, 16, 60, 160)
    reference = np.stack([np.full((16, 16, 3), v, np.uint8) for v in (40, 80, 120, 160, 200, 230)])
    reference[..., 0] = reference[..., 0][::-1]  # a different colour per image, not only a different grey
    a, b = fda(images, reference, beta=0.1, seed=0), fda(images, reference, beta=0.1, seed=0)
    assert np.array_equal(a, b)
    c = fda(images, reference, beta=0.1, seed=1)
    assert not np.array_equal(a, c)
    t = fda(_nchw(images), _nchw(reference), beta=0.1, seed=0)
    assert np.array_equal(t.permute(0, 2, 3, 1).numpy(), a)


@pytest.mark.parametrize("beta", [-0.01, 0.5, 0.9, float("nan"), "0.1", True])
def test_fda_rejects_a_bad_beta(beta):
    images = np.zeros((2, 8, 8, 3), np.uint8)
    with pytest.raises(ParamError, match="beta must be") as err:
        fda(images, images, beta=beta)
    assert err.value.param == "beta"


@pytest.mark.parametrize("fn", [histogram_match, fda])
def test_bad_images_raise_data_error(fn):
    good = np.zeros((2, 8, 8, 3), np.uint8)
    for bad in (good.astype(np.float32), good[..., 0], np.zeros((2, 8, 8, 4), np.uint8),
                _nchw(good).float(), _nchw(good)[:, :2], [[1, 2, 3]]):
        with pytest.raises(DataError):
            fn(bad, good)
        with pytest.raises(DataError):
            fn(good, bad)
    with pytest.raises(DataError):
        fn(good, good[:0])  # no reference images


def test_modules_export_what_the_package_reexports():
    import generative.sim2real as pkg

    for mod in (baselines, stats):
        for name in mod.__all__:
            assert getattr(pkg, name) is getattr(mod, name)


# ------------------------------------------------------------------------------------------------------- stats


def test_bootstrap_mean_ci_contains_the_mean_and_narrows_with_n():
    rng = np.random.default_rng(5)
    widths = []
    for n in (20, 2000):
        x = rng.normal(3.0, 1.0, n)
        mean, lo, hi = bootstrap_mean_ci(x, n_boot=1000, seed=0)
        assert mean == pytest.approx(x.mean())
        assert lo < mean < hi
        widths.append(hi - lo)
        assert bootstrap_mean_ci(x, n_boot=1000, seed=0) == (mean, lo, hi)
    assert widths[1] < widths[0] / 4  # about 1 / sqrt(100) = 0.1 times
    assert bootstrap_mean_ci([2.5, 2.5, 2.5]) == (2.5, 2.5, 2.5)
    with pytest.raises(ParamError):
        bootstrap_mean_ci([])
    with pytest.raises(ParamError):
        bootstrap_mean_ci([1.0, 2.0], level=1.0)


def _seeded_errors(rng: np.random.Generator, mean: float, seed_sd: float, frame_sd: float, s: int, n: int):
    return mean + seed_sd * rng.normal(size=(s, 1)) + frame_sd * rng.normal(size=(1, n))


def test_hierarchical_bootstrap_constant_method_and_derived_point_estimate():
    rng = np.random.default_rng(6)
    n = 60
    errors = {
        "sim": _seeded_errors(rng, 10.0, 0.5, 2.0, 5, n),
        "trans": _seeded_errors(rng, 6.0, 0.5, 2.0, 3, n),
        "real": _seeded_errors(rng, 2.0, 0.5, 2.0, 4, n),
        "flat": np.full((3, n), 0.1),
    }
    closure = lambda m: (m["sim"] - m["trans"]) / (m["sim"] - m["real"])
    out = hierarchical_bootstrap(errors, {"closure": closure}, n_boot=1000, seed=0)
    assert out["flat"] == {"mean": 0.1, "lo": 0.1, "hi": 0.1, "n_seeds": 3}
    means = {k: float(np.mean(v)) for k, v in errors.items()}
    assert out["closure"]["mean"] == pytest.approx(closure(means))
    assert 0.35 < out["closure"]["mean"] < 0.65
    assert out["closure"]["lo"] < out["closure"]["mean"] < out["closure"]["hi"]
    for k in ("sim", "trans", "real"):
        assert out[k]["mean"] == pytest.approx(means[k])
        assert out[k]["lo"] < out[k]["mean"] < out[k]["hi"]
        assert out[k]["n_seeds"] == errors[k].shape[0]
    assert "n_seeds" not in out["closure"]
    assert hierarchical_bootstrap(errors, {"closure": closure}, n_boot=1000, seed=0) == out
    other = hierarchical_bootstrap(errors, {"closure": closure}, n_boot=1000, seed=1)
    assert other["sim"]["mean"] == out["sim"]["mean"] and other["sim"]["lo"] != out["sim"]["lo"]


def test_hierarchical_bootstrap_pairs_the_frames_across_methods():
    rng = np.random.default_rng(7)
    frames = rng.normal(5.0, 3.0, size=(1, 80))  # one seed each: only the frames vary
    out = hierarchical_bootstrap({"a": frames + 1.0, "b": frames}, {"diff": lambda m: m["a"] - m["b"]},
                                 n_boot=500)
    assert out["a"]["hi"] - out["a"]["lo"] > 0.5  # each method alone is uncertain ...
    assert out["diff"]["lo"] == pytest.approx(1.0) and out["diff"]["hi"] == pytest.approx(1.0)  # ... not the pair


def test_hierarchical_bootstrap_widens_with_the_seed_spread():
    widths = []
    for seed_sd in (0.05, 0.5, 2.0):
        rng = np.random.default_rng(8)  # the same frame noise each time; only the seed spread changes
        errors = {"m": _seeded_errors(rng, 4.0, seed_sd, 1.0, 5, 100)}
        out = hierarchical_bootstrap(errors, n_boot=800, seed=0)["m"]
        widths.append(out["hi"] - out["lo"])
    assert widths[0] < widths[1] < widths[2]


def test_hierarchical_bootstrap_drops_non_finite_replicates_and_checks_its_input():
    n = 30
    errors = {"sim": np.full((2, n), 3.0), "real": np.full((2, n), 3.0), "trans": np.full((2, n), 2.0)}
    out = hierarchical_bootstrap(errors, {"closure": lambda m: (m["sim"] - m["trans"]) / (m["sim"] - m["real"])},
                                 n_boot=200)
    assert math.isnan(out["closure"]["mean"])
    assert out["closure"]["lo"] is None and out["closure"]["hi"] is None
    with pytest.raises(ParamError, match="same test frames"):
        hierarchical_bootstrap({"a": np.zeros((2, 5)), "b": np.zeros((2, 6))})
    with pytest.raises(ParamError):
        hierarchical_bootstrap({"a": np.zeros(5)})
    with pytest.raises(ParamError):
        hierarchical_bootstrap({"a": np.zeros((2, 5))}, {"a": lambda m: m["a"]})


def test_hierarchical_bootstrap_is_fast_enough():
    rng = np.random.default_rng(9)
    errors = {f"m{i}": rng.random((5, 500)) for i in range(10)}
    import time

    start = time.perf_counter()
    out = hierarchical_bootstrap(errors, {"d": lambda m: m["m0"] - m["m1"]}, n_boot=2000)
    assert time.perf_counter() - start < 3.0
    assert set(out) == {*errors, "d"}


def test_gap_standard_error():
    a, b = [1.0, 2.0, 4.0], [0.5, 0.7]
    want = math.sqrt(np.var(a, ddof=1) / 3 + np.var(b, ddof=1) / 2)
    assert gap_standard_error(a, b) == pytest.approx(want)
    assert gap_standard_error(np.array(a), np.array(a)) == pytest.approx(math.sqrt(2 * np.var(a, ddof=1) / 3))
    assert math.isnan(gap_standard_error([1.0], b))
    assert math.isnan(gap_standard_error(a, []))
