"""Metrics for generated camera images that need no download: a probe network trained on the data.

Published FID/KID use an Inception-v3 trained on ImageNet, whose weights would have to be
downloaded and which knows nothing about a robot arm and three target shapes. Here the feature
network is a `Probe`: a small CNN trained (in about a minute on a CPU) on the armlab dataset
itself to predict the two conditions of the generative models, the target's shape class and
where the target is in the image. Its features therefore measure what matters for this data,
and its heads measure whether generated images obey the requested conditions.

* `train_probe`, `probe_for` (trained once per dataset and cached), `evaluate_probe`.
* `conditioning_error`: does the generated image show the requested class at the requested place?
* `fid_kid`: Fréchet and kernel distances in probe-feature space (through torchmetrics).
* `diversity`, `mode_coverage`: mode collapse measured (feature spread; predicted class histogram).
* `generation_report`: all of the above as one JSON-able dict (``armlab gan/diffusion eval --json``).
* `psnr`, `ssim`: pixel metrics for paired uint8 images (reconstructions, translations).

Image inputs are uint8 ``(N, 3, H, W)`` tensors (numpy arrays and ``(N, H, W, 3)`` are accepted
too), or float tensors already scaled to [-1, 1]. They are resized to the probe's size.

.. warning::
   ``fid_custom`` and ``kid_custom`` are NOT comparable with published (Inception) FID/KID
   numbers, nor across probes: they depend on the probe's weights, hence on the dataset, the
   image size and the probe's training seed. Compare them only between models evaluated with
   the same cached probe.
"""

from __future__ import annotations

import io
import json
import math
import time
import warnings
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from generative.data import ArmlabDataset, DataError, atomic_write_bytes, load_tensors, sha256_file

PROBE_VERSION = 1
FEATURE_DIM = 128

__all__ = [
    "FEATURE_DIM",
    "Probe",
    "ProbeFeatures",
    "conditioning_error",
    "diversity",
    "evaluate_probe",
    "fid_kid",
    "generation_report",
    "mode_coverage",
    "probe_for",
    "psnr",
    "ssim",
    "train_probe",
]


# ----------------------------------------------------------------------------- input handling


def _as_tensor_nchw(images: Any) -> torch.Tensor:
    """Images as a ``(N, C, H, W)`` tensor (uint8 or float), from NCHW/NHWC tensors or arrays."""
    x = images if isinstance(images, torch.Tensor) else torch.as_tensor(np.asarray(images))
    if x.dim() == 3:
        x = x[None]
    if x.dim() != 4:
        raise ValueError(f"images must be (N, C, H, W) or (N, H, W, C), not shape {tuple(x.shape)}")
    if x.shape[1] not in (1, 3) and x.shape[-1] in (1, 3):
        x = x.permute(0, 3, 1, 2)
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    if x.shape[1] != 3:
        raise ValueError(f"images must have 1 or 3 channels, not shape {tuple(x.shape)}")
    return x


def _to_unit(x: torch.Tensor, size: int | None, device: torch.device | str | None = None) -> torch.Tensor:
    """uint8 -> float in [-1, 1] (floats are taken as already in [-1, 1]), resized to ``size``."""
    if device is not None:
        x = x.to(device)
    x = x.float() / 127.5 - 1.0 if x.dtype == torch.uint8 else x.float()
    if size is not None and (x.shape[-1] != size or x.shape[-2] != size):
        if x.shape[-1] != x.shape[-2]:
            side = min(x.shape[-2:])
            y0, x0 = (x.shape[-2] - side) // 2, (x.shape[-1] - side) // 2
            x = x[..., y0 : y0 + side, x0 : x0 + side]
        mode = "area" if x.shape[-1] > size else "bilinear"
        x = F.interpolate(x, size=(size, size), mode=mode, **({"align_corners": False} if mode == "bilinear" else {}))
    return x


# ----------------------------------------------------------------------------- the probe


class Probe(nn.Module):
    """Small CNN that predicts the target's class and position; its penultimate layer is the feature space.

    Input: float ``(N, 3, size, size)`` in [-1, 1] (other sizes are resized). Two coordinate
    channels (x and y in [-1, 1], "CoordConv") are appended so the globally pooled features
    can encode *where* things are. Four 3x3 conv layers (32, 64, 128, 128 channels; the first
    three with stride 2, so the last works at 1/8 resolution; GroupNorm + SiLU), global average
    pooling, then a 128-unit layer: `features` (``FEATURE_DIM`` = 128). Heads: class logits
    (``n_classes``) and target position (sigmoid, ``pixel_norm`` in [0, 1]).
    """

    def __init__(self, size: int = 64, n_classes: int = 3):
        super().__init__()
        self.size = int(size)
        self.n_classes = int(n_classes)
        self.feature_dim = FEATURE_DIM

        def block(cin: int, cout: int, stride: int) -> nn.Sequential:
            return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1), nn.GroupNorm(8, cout), nn.SiLU())

        self.body = nn.Sequential(block(5, 32, 2), block(32, 64, 2), block(64, 128, 2), block(128, 128, 1))
        self.fc = nn.Sequential(nn.Linear(128, FEATURE_DIM), nn.SiLU())
        self.cls_head = nn.Linear(FEATURE_DIM, self.n_classes)
        self.pos_head = nn.Linear(FEATURE_DIM, 2)

    def _resize(self, x: torch.Tensor) -> torch.Tensor:
        return _to_unit(x, self.size) if x.shape[-1] != self.size or x.shape[-2] != self.size else x

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate features ``(N, FEATURE_DIM)`` of float images in [-1, 1]."""
        x = self._resize(x)
        n, _, h, w = x.shape
        ys = torch.linspace(-1, 1, h, device=x.device, dtype=x.dtype).view(1, 1, h, 1).expand(n, 1, h, w)
        xs = torch.linspace(-1, 1, w, device=x.device, dtype=x.dtype).view(1, 1, 1, w).expand(n, 1, h, w)
        z = self.body(torch.cat([x, xs, ys], dim=1))
        return self.fc(z.mean(dim=(2, 3)))

    def heads(self, f: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Class logits ``(N, n_classes)`` and position ``(N, 2)`` in [0, 1] from features."""
        return self.cls_head(f), torch.sigmoid(self.pos_head(f))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Class logits and predicted ``pixel_norm`` of float images in [-1, 1]."""
        return self.heads(self.features(x))


@torch.no_grad()
def _probe_outputs(probe: Probe, images: Any, batch_size: int = 256) -> dict[str, torch.Tensor]:
    """Features, class logits and positions of ``images`` (CPU tensors), in batches, eval mode."""
    x = _as_tensor_nchw(images)
    device = next(probe.parameters()).device
    was_training = probe.training
    probe.eval()
    feats, logits, pos = [], [], []
    try:
        for i in range(0, len(x), batch_size):
            f = probe.features(_to_unit(x[i : i + batch_size], probe.size, device))
            lg, p = probe.heads(f)
            feats.append(f.cpu())
            logits.append(lg.cpu())
            pos.append(p.cpu())
    finally:
        probe.train(was_training)
    if not feats:
        raise ValueError("no images given")
    return {"features": torch.cat(feats), "logits": torch.cat(logits), "pos": torch.cat(pos)}


def train_probe(
    data: dict[str, torch.Tensor],
    size: int = 64,
    steps: int = 1000,
    batch_size: int = 64,
    seed: int = 0,
    device: str | torch.device = "cpu",
    progress: bool = False,
    n_classes: int | None = None,
    lr: float = 2e-3,
) -> Probe:
    """Train a `Probe` on ``data`` (from `load_tensors`: ``image`` uint8, ``class_id``, ``target``).

    Loss: cross-entropy on ``class_id`` plus 10 x MSE on ``target`` (``pixel_norm``); frames
    without a class (``-1``) or with a non-finite target are left out of the respective term.
    Augmentation is photometric only (per-image brightness and contrast jitter, a little
    Gaussian noise): flips or shifts would move the target and break the position label.
    AdamW with cosine learning-rate decay. Seeded: the same data, seed and device give identical
    weights (the global torch RNG is left untouched). Returns the probe in eval mode, with
    ``probe.train_log`` a list of ``(step, loss)``.
    """
    if "class_id" not in data or "target" not in data:
        raise DataError("the probe needs labelled data (class_id and target): an armlab dataset, not an image folder")
    images = _as_tensor_nchw(data["image"])
    class_ids = torch.as_tensor(data["class_id"]).long().reshape(-1)
    targets = torch.as_tensor(data["target"]).float().reshape(-1, 2)
    n = len(images)
    if n < 2:
        raise DataError(f"the probe needs at least 2 labelled images, got {n}")
    if n_classes is None:
        n_classes = max(int(class_ids.max()) + 1, 1)
    device = torch.device(device)
    # resize once, keep uint8 in memory (floats are made per batch)
    if images.dtype == torch.uint8 and (images.shape[-1] != size or images.shape[-2] != size):
        images = torch.cat(
            [((_to_unit(images[i : i + 512], size) + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)
             for i in range(0, n, 512)]
        )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        probe = Probe(size, n_classes)
    probe.to(device).train()
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(probe.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(steps, 1), eta_min=lr * 0.05)
    log: list[tuple[int, float]] = []
    it = range(steps)
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(it, desc="training probe", unit="step")
    for step in it:
        idx = torch.randint(0, n, (min(batch_size, n),), generator=gen)
        x = _to_unit(images[idx], size)
        b = len(idx)
        contrast = 1 + (torch.rand(b, 1, 1, 1, generator=gen) - 0.5) * 0.4
        bright = (torch.rand(b, 1, 1, 1, generator=gen) - 0.5) * 0.2
        noise = torch.randn(x.shape, generator=gen) * 0.03
        x = ((x - x.mean(dim=(1, 2, 3), keepdim=True)) * contrast + x.mean(dim=(1, 2, 3), keepdim=True) + bright
             + noise).clamp(-1, 1)
        x, cid, tgt = x.to(device), class_ids[idx].to(device), targets[idx].to(device)
        logits, pos = probe(x)
        loss = torch.zeros((), device=device)
        if (cid >= 0).any():
            loss = loss + F.cross_entropy(logits, cid, ignore_index=-1)
        ok = torch.isfinite(tgt).all(dim=1)
        if ok.any():
            loss = loss + 10.0 * F.mse_loss(pos[ok], tgt[ok])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if step % 25 == 0 or step == steps - 1:
            log.append((step, float(loss.detach())))
            if progress:
                it.set_postfix(loss=f"{log[-1][1]:.3f}")
    probe.eval()
    probe.train_log = log
    return probe


def _probe_key(manifest_sha: str, size: int, steps: int, batch_size: int, seed: int, limit: int | None) -> str:
    return json.dumps(
        {"probe_version": PROBE_VERSION, "manifest_sha256": manifest_sha, "size": size, "steps": steps,
         "batch_size": batch_size, "seed": seed, "limit": limit},
        sort_keys=True,
    )


def probe_for(
    dataset_dir: str | Path,
    size: int = 64,
    cache_dir: str | Path | None = None,
    quick: bool = False,
    steps: int | None = None,
    batch_size: int = 64,
    seed: int = 0,
    device: str | torch.device = "cpu",
    progress: bool = False,
    limit: int | None = None,
) -> Probe:
    """The probe of the armlab dataset at ``dataset_dir`` for ``size`` px images, trained once and cached.

    The cache file is ``DIR/.probe/probe_{size}.pt`` (``probe_{size}_quick.pt`` with ``quick``;
    in ``cache_dir`` when given). It holds the state dict and a key made of the SHA-256 of
    ``manifest.json`` and the training settings (steps, batch size, seed, limit, probe version),
    so a changed dataset (whose manifest lists every file's hash) or other settings retrain it.
    It is written atomically and loaded with ``torch.load(weights_only=True)``. ``quick`` trains
    250 steps instead of 1000 (``steps`` overrides both; on a 2-core CPU a 64 px step of batch 64
    takes about 0.13 s, so about half a minute against two or three minutes, once per dataset).
    ``probe.from_cache`` tells which happened. If the cache cannot be written (read-only
    dataset), a warning is given and the probe is returned all the same.
    """
    root = Path(dataset_dir)
    manifest = root / "manifest.json"
    if not manifest.is_file():
        raise DataError(f"{str(root)!r} is not an armlab dataset: no manifest.json (the probe needs its labels)")
    steps = int(steps if steps is not None else (250 if quick else 1000))
    key = _probe_key(sha256_file(manifest), size, steps, batch_size, seed, limit)
    folder = Path(cache_dir) if cache_dir is not None else root / ".probe"
    path = folder / f"probe_{size}{'_quick' if quick else ''}.pt"
    if path.is_file():
        try:
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
            if ckpt.get("key") == key:
                probe = Probe(int(ckpt["size"]), int(ckpt["n_classes"]))
                probe.load_state_dict(ckpt["state_dict"])
                probe.to(device).eval()
                probe.from_cache = True
                probe.cache_path = path
                return probe
        except Exception as e:  # unreadable or incompatible cache: retrain
            warnings.warn(f"ignoring unusable probe cache {str(path)!r}: {e}", stacklevel=2)
    ds = ArmlabDataset(root, size=size)
    data = load_tensors(ds, limit=limit, progress=progress)
    t0 = time.perf_counter()
    probe = train_probe(data, size=size, steps=steps, batch_size=batch_size, seed=seed, device=device,
                        progress=progress, n_classes=len(ds.classes))
    buf = io.BytesIO()
    state = {k: v.detach().cpu() for k, v in probe.state_dict().items()}
    torch.save({"key": key, "size": int(size), "n_classes": len(ds.classes), "classes": list(ds.classes),
                "train_seconds": time.perf_counter() - t0, "state_dict": state}, buf)
    try:
        atomic_write_bytes(path, buf.getvalue())
    except OSError as e:
        warnings.warn(f"could not cache the probe at {str(path)!r}: {e}", stacklevel=2)
    probe.from_cache = False
    probe.cache_path = path
    return probe


# ----------------------------------------------------------------------------- probe-based metrics


def _pos_errors(pred: torch.Tensor, targets: torch.Tensor, h: int, w: int) -> dict[str, float]:
    ok = torch.isfinite(targets).all(dim=1)
    if not ok.any():
        return {"pos_err": float("nan"), "pos_err_px": float("nan")}
    d = pred[ok].double() - targets[ok].double()
    px = d * torch.tensor([w, h], dtype=torch.float64)
    return {"pos_err": float(d.norm(dim=1).mean()), "pos_err_px": float(px.norm(dim=1).mean())}


def evaluate_probe(probe: Probe, images: Any, class_ids: Any, targets: Any, batch_size: int = 256) -> dict:
    """How well ``probe`` reads labelled images.

    Returns ``class_acc`` (fraction of frames whose predicted class is ``class_ids``; frames
    with class ``-1`` left out), ``pos_err`` (mean Euclidean distance between predicted and
    given ``pixel_norm``, in image widths) and ``pos_err_px`` (the same in pixels of the given
    images), and ``n``.
    """
    x = _as_tensor_nchw(images)
    out = _probe_outputs(probe, x, batch_size)
    cid = torch.as_tensor(class_ids).long().reshape(-1)
    tgt = torch.as_tensor(targets).float().reshape(-1, 2)
    if len(cid) != len(x) or len(tgt) != len(x):
        raise ValueError(f"{len(x)} images but {len(cid)} class ids and {len(tgt)} targets")
    has = cid >= 0
    acc = float((out["logits"].argmax(1)[has] == cid[has]).double().mean()) if has.any() else float("nan")
    return {"class_acc": acc, **_pos_errors(out["pos"], tgt, x.shape[-2], x.shape[-1]), "n": len(x)}


def conditioning_error(probe: Probe, generated_images: Any, requested_class: Any, requested_target: Any) -> dict:
    """Do generated images show what was asked for? The probe reads them and is compared with the request.

    ``class_acc``: fraction whose probe class is ``requested_class``; ``pos_err`` /
    ``pos_err_px``: mean distance between the probe's target position and ``requested_target``
    (``pixel_norm``), normalized / in pixels. Judge them against `evaluate_probe` on real
    images: the probe's own error there is the floor.
    """
    return evaluate_probe(probe, generated_images, requested_class, requested_target)


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
        raise ValueError(f"FID/KID need at least 2 real and 2 fake images, got {len(real)} and {len(fake)}")
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


# ----------------------------------------------------------------------------- pixel metrics


def _as_nhwc_float(x: Any) -> np.ndarray:
    """uint8 image(s) as float64 ``(N, H, W, C)``: accepts HW, HWC, CHW, NHWC, NCHW (arrays or tensors)."""
    a = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    if a.ndim == 2:
        a = a[None, :, :, None]
    elif a.ndim == 3:
        a = a[None] if a.shape[-1] in (1, 3, 4) or a.shape[0] not in (1, 3, 4) else a.transpose(1, 2, 0)[None]
    elif a.ndim == 4:
        if a.shape[-1] not in (1, 3, 4) and a.shape[1] in (1, 3, 4):
            a = a.transpose(0, 2, 3, 1)
    else:
        raise ValueError(f"images must have 2 to 4 dimensions, not shape {a.shape}")
    return a.astype(np.float64)


def _pair(a: Any, b: Any) -> tuple[np.ndarray, np.ndarray]:
    x, y = _as_nhwc_float(a), _as_nhwc_float(b)
    if x.shape != y.shape:
        raise ValueError(f"images differ in shape: {x.shape} vs {y.shape}")
    return x, y


def psnr(a: Any, b: Any, data_range: float = 255.0) -> float:
    """Peak signal-to-noise ratio in dB of uint8 images ``a`` and ``b`` (one MSE over all pixels).

    ``10 log10(data_range^2 / MSE)``; ``inf`` for identical images.
    """
    x, y = _pair(a, b)
    mse = float(np.mean((x - y) ** 2))
    return float("inf") if mse == 0 else float(10 * math.log10(data_range**2 / mse))


def ssim(a: Any, b: Any, data_range: float = 255.0, sigma: float = 1.5, win: int = 11) -> float:
    """Structural similarity of uint8 images ``a`` and ``b`` (Wang et al. 2004), mean over pixels, channels, images.

    Local means, variances and covariance use a Gaussian window (``sigma`` 1.5, ``win`` x ``win``
    = 11 x 11, via ``cv2.GaussianBlur`` with reflected borders); ``C1 = (0.01 L)^2``,
    ``C2 = (0.03 L)^2`` with ``L = data_range``. The ``win // 2`` pixels at each border are left
    out of the mean when the image is large enough. 1 for identical images.
    """
    x, y = _pair(a, b)
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    pad = win // 2
    vals = []
    for n in range(x.shape[0]):
        for c in range(x.shape[-1]):
            p, q = x[n, :, :, c], y[n, :, :, c]

            def blur(img: np.ndarray) -> np.ndarray:
                return cv2.GaussianBlur(img, (win, win), sigma, borderType=cv2.BORDER_REFLECT)

            mu_p, mu_q = blur(p), blur(q)
            var_p = blur(p * p) - mu_p**2
            var_q = blur(q * q) - mu_q**2
            cov = blur(p * q) - mu_p * mu_q
            num = (2 * mu_p * mu_q + c1) * (2 * cov + c2)
            den = (mu_p**2 + mu_q**2 + c1) * (var_p + var_q + c2)
            m = num / den
            if m.shape[0] > 2 * pad and m.shape[1] > 2 * pad:
                m = m[pad:-pad, pad:-pad]
            vals.append(m.mean())
    return float(np.mean(vals))
