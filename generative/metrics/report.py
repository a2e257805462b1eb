"""The metrics built on the probe: FID / KID in its feature space, diversity, mode coverage, the report."""

from __future__ import annotations

import math
import warnings
from typing import Any

import torch
from torch import nn

from generative.metrics.images import _as_tensor_nchw, _to_unit
from generative.metrics.probe import Probe, _probe_outputs, conditioning_error, evaluate_probe
from robot_env.io.errors import ConfigError

__all__ = ["ProbeFeatures", "diversity", "fid_kid", "generation_report", "mode_coverage"]


class ProbeFeatures(nn.Module):
    """``nn.Module`` giving the probe's features, as torchmetrics' FID/KID ``feature=`` argument.

    torchmetrics hands a custom feature module the images exactly as passed to ``update``
    (it converts to uint8 only for its own Inception). This wrapper takes uint8 images in
    [0, 255], or floats in [0, 1] when ``normalize=True``, or floats in [-1, 1] otherwise.
    ``num_features`` spares torchmetrics a dummy forward pass at Inception's 299 px.
    """

    def __init__(self, probe: Probe, normalize: bool = False):
        super().__init__()
        self.probe = probe
        self.normalize = normalize
        self.num_features = probe.feature_dim

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = _as_tensor_nchw(x)
        if x.dtype != torch.uint8 and self.normalize:
            x = x.float() * 2 - 1
        device = next(self.probe.parameters()).device
        return self.probe.features(_to_unit(x, self.probe.size, device)).cpu()


def fid_kid(
    probe: Probe,
    real_images: Any,
    fake_images: Any,
    kid_subset_size: int | None = None,
    kid_subsets: int = 50,
    seed: int = 0,
    batch_size: int = 256,
) -> dict[str, float]:
    """Fréchet and kernel distance between real and fake images in the probe's feature space.

    Computed by torchmetrics' ``FrechetInceptionDistance`` and ``KernelInceptionDistance``
    with ``feature=ProbeFeatures(probe)`` (no torch-fidelity, no download). KID is the
    unbiased squared MMD with the cubic polynomial kernel, averaged over ``kid_subsets``
    random subsets of ``kid_subset_size`` (default ``min(1000, n_real, n_fake)``), seeded.
    Returns ``{"fid": ..., "kid": ..., "kid_std": ...}``.

    WARNING: these are NOT the FID/KID of the literature. They use a probe trained on this
    dataset, not ImageNet's Inception-v3; the numbers are only comparable between models
    evaluated with the same probe (same dataset, size and probe seed), never with published
    values. A set against itself gives FID ~0. KID is an unbiased estimate, so two samples of one
    distribution (or a set against itself) can give small negative values.
    """
    from torchmetrics.image.fid import FrechetInceptionDistance
    from torchmetrics.image.kid import KernelInceptionDistance

    real = _as_tensor_nchw(real_images)
    fake = _as_tensor_nchw(fake_images)
    if len(real) < 2 or len(fake) < 2:
        raise ConfigError(f"FID/KID need at least 2 real and 2 fake images, got {len(real)} and {len(fake)}")
    subset = int(kid_subset_size or min(1000, len(real), len(fake)))
    subset = max(2, min(subset, len(real), len(fake)))
    feat = ProbeFeatures(probe).eval()
    fid = FrechetInceptionDistance(feature=feat, normalize=False)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*will save all extracted features.*")
        kid = KernelInceptionDistance(feature=feat, subsets=kid_subsets, subset_size=subset, normalize=False)
    for imgs, is_real in ((real, True), (fake, False)):
        for i in range(0, len(imgs), batch_size):
            fid.update(imgs[i : i + batch_size], real=is_real)
            kid.update(imgs[i : i + batch_size], real=is_real)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        kid_mean, kid_std = kid.compute()
    fid_value = float(fid.compute())
    return {"fid": max(fid_value, 0.0), "kid": float(kid_mean), "kid_std": float(kid_std)}


def _diversity_of(features: torch.Tensor, n_pairs: int, seed: int) -> float:
    n = len(features)
    if n < 2:
        return 0.0
    gen = torch.Generator().manual_seed(seed)
    i = torch.randint(0, n, (n_pairs,), generator=gen)
    j = (i + torch.randint(1, n, (n_pairs,), generator=gen)) % n  # j != i
    return float((features[i].double() - features[j].double()).norm(dim=1).mean())


def diversity(probe: Probe, images: Any, n_pairs: int = 2000, seed: int = 0) -> float:
    """Mean L2 distance between the probe features of ``n_pairs`` random pairs of distinct images.

    0 for a generator that always gives the same image; compare ``diversity(fake) /
    diversity(real)`` (``diversity_ratio`` in `generation_report`): well below 1 is mode collapse.
    """
    return _diversity_of(_probe_outputs(probe, images)["features"], n_pairs, seed)


def _coverage_of(logits: torch.Tensor, n_classes: int, threshold: float | None) -> dict:
    threshold = 0.25 / n_classes if threshold is None else threshold
    counts = torch.bincount(logits.argmax(1), minlength=n_classes)[:n_classes].double()
    frac = counts / counts.sum().clamp(min=1)
    nz = frac[frac > 0]
    entropy = float((nz * nz.log()).sum().abs() / math.log(n_classes)) if n_classes > 1 else 1.0
    return {"fractions": [float(f) for f in frac], "entropy": entropy,
            "modes_covered": int((frac >= threshold).sum()), "threshold": float(threshold)}


def mode_coverage(probe: Probe, images: Any, n_classes: int | None = None, threshold: float | None = None) -> dict:
    """Which classes the generated images show, as the probe sees them: mode collapse measured.

    Returns ``fractions`` (histogram of predicted classes, sums to 1), ``entropy`` (its entropy
    divided by ``log(n_classes)``: 1 = all classes equally often, 0 = one class only) and
    ``modes_covered`` (classes with a fraction of at least ``threshold``, by default a quarter
    of the uniform share, ``0.25 / n_classes``).
    """
    n_classes = probe.n_classes if n_classes is None else int(n_classes)
    return _coverage_of(_probe_outputs(probe, images)["logits"], n_classes, threshold)


def _ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or not (math.isfinite(a) and math.isfinite(b)):
        return None
    return float(a / max(b, 1e-12))


def _finite(v: float) -> float | None:
    return float(v) if v is not None and math.isfinite(v) else None


def generation_report(
    probe: Probe,
    real: dict[str, torch.Tensor],
    fake: dict[str, torch.Tensor],
    kid_subset_size: int | None = None,
    n_pairs: int = 2000,
    seed: int = 0,
) -> dict[str, Any]:
    """Every probe metric of generated images ``fake`` against real images ``real``, as a JSON-able dict.

    ``real``: `load_tensors` output of the dataset (``image``, ``class_id``, ``target``).
    ``fake``: ``image`` plus the *requested* ``class_id`` / ``target`` (omit them for an
    unconditional model: the conditioning entries are then ``None``).

    Keys: ``class_acc_real``/``_fake``/``_ratio``; ``pos_err_real``/``_fake``/``_ratio`` (pixels
    of the images given; ``pos_err_real_norm``/``pos_err_fake_norm`` in image widths);
    ``diversity_real``/``_fake``/``_ratio``; ``fid_custom``, ``kid_custom``, ``kid_custom_std``
    (probe features: NOT comparable with published FID/KID, see `fid_kid`); ``mode_coverage``
    (fractions of the fakes per class), ``mode_entropy``, ``modes_covered`` and the same for the
    real images (``mode_coverage_real``, ``modes_covered_real``); ``n_real``, ``n_fake``,
    ``probe_size``. Values are floats, ints, lists or ``None`` (undefined).
    """
    real_x = _as_tensor_nchw(real["image"])
    fake_x = _as_tensor_nchw(fake["image"])
    ro = _probe_outputs(probe, real_x)
    fo = _probe_outputs(probe, fake_x)
    er = evaluate_probe(probe, real_x, real["class_id"], real["target"]) if "class_id" in real else None
    ef = None
    if fake.get("class_id") is not None or fake.get("target") is not None:
        n = len(fake_x)
        cid = fake.get("class_id")
        cid = torch.full((n,), -1, dtype=torch.long) if cid is None else cid
        tgt = fake.get("target")
        tgt = torch.full((n, 2), float("nan")) if tgt is None else tgt
        ef = conditioning_error(probe, fake_x, cid, tgt)
    dists = fid_kid(probe, real_x, fake_x, kid_subset_size=kid_subset_size, seed=seed)
    div_r = _diversity_of(ro["features"], n_pairs, seed)
    div_f = _diversity_of(fo["features"], n_pairs, seed)
    cov_r = _coverage_of(ro["logits"], probe.n_classes, None)
    cov_f = _coverage_of(fo["logits"], probe.n_classes, None)

    def get(e: dict | None, k: str) -> float | None:
        return None if e is None else _finite(e[k])

    report = {
        "class_acc_real": get(er, "class_acc"),
        "class_acc_fake": get(ef, "class_acc"),
        "class_acc_ratio": _ratio(get(ef, "class_acc"), get(er, "class_acc")),
        "pos_err_real": get(er, "pos_err_px"),
        "pos_err_fake": get(ef, "pos_err_px"),
        "pos_err_ratio": _ratio(get(ef, "pos_err"), get(er, "pos_err")),
        "pos_err_real_norm": get(er, "pos_err"),
        "pos_err_fake_norm": get(ef, "pos_err"),
        "diversity_real": div_r,
        "diversity_fake": div_f,
        "diversity_ratio": _ratio(div_f, div_r),
        "fid_custom": dists["fid"],
        "kid_custom": dists["kid"],
        "kid_custom_std": dists["kid_std"],
        "mode_coverage": cov_f["fractions"],
        "mode_entropy": cov_f["entropy"],
        "modes_covered": cov_f["modes_covered"],
        "mode_coverage_real": cov_r["fractions"],
        "modes_covered_real": cov_r["modes_covered"],
        "n_real": len(real_x),
        "n_fake": len(fake_x),
        "probe_size": probe.size,
    }
    return report
