"""The probe: a small CNN trained on the dataset to read the target's class and position, cached per dataset."""

from __future__ import annotations

import io
import json
import time
import warnings
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from generative.data import ArmlabDataset, DataError, load_tensors
from generative.metrics.images import _as_tensor_nchw, _to_unit
from generative.regressor import CoordConvNet, fit, seeded
from robot_env.io.atomic import atomic_write_bytes
from robot_env.io.dataset_format import MANIFEST
from robot_env.io.hashing import sha256_file

__all__ = ["FEATURE_DIM", "PROBE_VERSION", "Probe", "conditioning_error", "evaluate_probe", "probe_for",
           "train_probe"]

PROBE_VERSION = 1
FEATURE_DIM = 128


class Probe(CoordConvNet):
    """Small CNN that predicts the target's class and position; its penultimate layer is the feature space.

    Input: float ``(N, 3, size, size)`` in [-1, 1] (other sizes are resized). Two coordinate
    channels (x and y in [-1, 1], "CoordConv") are appended so the globally pooled features
    can encode *where* things are. Four 3x3 conv layers (32, 64, 128, 128 channels; the first
    three with stride 2, so the last works at 1/8 resolution; GroupNorm + SiLU), global average
    pooling, then a 128-unit layer: `features` (``FEATURE_DIM`` = 128). Heads: class logits
    (``n_classes``) and target position (sigmoid, ``pixel_norm`` in [0, 1]). The shared
    :class:`~generative.regressor.CoordConvNet` with its pooled head.
    """

    BLOCKS = ((32, 2, 1), (64, 2, 1), (128, 2, 1), (128, 1, 1))  #: (channels, stride, dilation) per conv block

    def __init__(self, size: int = 64, n_classes: int = 3):
        super().__init__(self.BLOCKS, head="pool", n_classes=int(n_classes), feature_dim=FEATURE_DIM)
        self.size = int(size)
        self.n_classes = int(n_classes)

    def _resize(self, x: torch.Tensor) -> torch.Tensor:
        return _to_unit(x, self.size) if x.shape[-1] != self.size or x.shape[-2] != self.size else x

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate features ``(N, FEATURE_DIM)`` of float images in [-1, 1]."""
        return super().features(self._resize(x))


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
    probe = seeded(lambda: Probe(size, n_classes), seed)
    probe.to(device).train()

    def loss(idx: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        x = _to_unit(images[idx], size)
        b = len(idx)
        contrast = 1 + (torch.rand(b, 1, 1, 1, generator=gen) - 0.5) * 0.4
        bright = (torch.rand(b, 1, 1, 1, generator=gen) - 0.5) * 0.2
        noise = torch.randn(x.shape, generator=gen) * 0.03
        x = ((x - x.mean(dim=(1, 2, 3), keepdim=True)) * contrast + x.mean(dim=(1, 2, 3), keepdim=True) + bright
             + noise).clamp(-1, 1)
        x, cid, tgt = x.to(device), class_ids[idx].to(device), targets[idx].to(device)
        logits, pos = probe(x)
        value = torch.zeros((), device=device)
        if (cid >= 0).any():
            value = value + F.cross_entropy(logits, cid, ignore_index=-1)
        ok = torch.isfinite(tgt).all(dim=1)
        if ok.any():
            value = value + 10.0 * F.mse_loss(pos[ok], tgt[ok])
        return value

    log = fit(probe, n, steps, batch_size, seed,
              optimizer=lambda params: torch.optim.AdamW(params, lr=lr, weight_decay=1e-4),
              scheduler=lambda opt: torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(steps, 1),
                                                                               eta_min=lr * 0.05),
              loss=loss, log_every=25, progress="training probe" if progress else None)
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
    manifest = root / MANIFEST
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
