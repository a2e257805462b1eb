"""How much of the sim-to-real gap does a CycleGAN close? A downstream task measured three ways.

The task: regress where the target object is in the image (``target.pixel_norm``; errors in pixels). The same small
regressor (:class:`PositionRegressor`: a CoordConv CNN with a spatial soft-argmax head, seeded, the same number of
steps, batch size and learning-rate schedule every time, no augmentation) is trained

* on sim images -> error ``e_sim`` on held-out real images (the naive sim-trained model),
* on the same sim images translated sim -> real by the CycleGAN, with the sim labels -> ``e_trans``,
* on real images with their labels -> ``e_real`` (the oracle, which a real deployment would not have),

and ``gap_closure = (e_sim - e_trans) / (e_sim - e_real)``: 0 when translating does not help, 1 when it is as good
as labelled real data (it can fall outside [0, 1]). The real dataset is split by frame index: the first
``1 - holdout`` of its frames train the oracle, the last ``holdout`` are the test set; the sim frames with the same
indices as the oracle's train the other two, so all three see the same scenes when the datasets are paired.

Paired datasets (``armlab dataset generate`` with the same seed and settings, ``--style sim`` and ``--style real``:
the same 3-D scene per frame index) also give pixel metrics on the held-out frames: PSNR and SSIM of ``G(sim)``
against the real frame (``psnr_trans``, ``ssim_trans``) and of the untranslated sim frame (``psnr_sim``,
``ssim_sim``), and ``psnr_gain = psnr_trans - psnr_sim``. PSNR is the mean of the per-image values.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from generative.data import ArmlabDataset, DataError, is_armlab_dataset, load_tensors
from generative.regressor import CoordConvNet, fit, seeded
from generative.sim2real.benchmark import usable
from generative.training import flush_denormals
from robot_env.io.dataset_format import CAMERA_STYLES, MANIFEST
from robot_env.io.errors import ParamError
from robot_env.io.hashing import sha256_file

__all__ = [
    "PositionRegressor",
    "regressor_error",
    "sim2real_eval",
    "train_regressor",
]

QUICK_STEPS = 40
FULL_STEPS = 600


class PositionRegressor(CoordConvNet):
    """Small CNN predicting the target's ``pixel_norm`` (in [0, 1]^2) from an image in [-1, 1].

    Two coordinate channels are appended (CoordConv); five 3x3 conv layers (GroupNorm + SiLU; 16, 32, 32, 32, 32
    channels; the first two with stride 2, the last two dilated 2 and 4) give a 1/4-resolution map, a 1x1 conv a
    heatmap, and the spatial soft-argmax of the heatmap (plus a learned offset) the position. The shared
    :class:`~generative.regressor.CoordConvNet` with its soft-argmax head.
    """

    def __init__(self, width: int = 32):
        super().__init__(((16, 2, 1), (width, 2, 1), (width, 1, 1), (width, 1, 2), (width, 1, 4)), head="softargmax")


def train_regressor(
    images: torch.Tensor,
    targets: torch.Tensor,
    steps: int = FULL_STEPS,
    batch_size: int = 32,
    seed: int = 0,
    lr: float = 2e-3,
    device: str | torch.device = "cpu",
) -> PositionRegressor:
    """Train a :class:`PositionRegressor` on uint8 ``images`` (N, 3, H, W) and ``pixel_norm`` ``targets`` (N, 2).

    Smooth-L1 loss in pixels, Adam with a one-cycle schedule (10% warm-up), batches drawn with replacement from a
    generator seeded with ``seed`` (the weights too): the same inputs give the same model, and every call with the
    same ``steps`` and ``batch_size`` gets the same budget. The global RNG is left untouched.
    """
    if len(images) < 2 or len(images) != len(targets):
        raise DataError(f"the regressor needs at least 2 labelled images, got {len(images)} images and "
                        f"{len(targets)} targets")
    device = torch.device(device)
    net = seeded(PositionRegressor, seed)
    net.to(device).train()
    scale = torch.tensor([images.shape[-1], images.shape[-2]], dtype=torch.float32, device=device)
    targets = targets.float()

    def loss(idx: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        x = images[idx].to(device).float().div_(127.5).sub_(1.0)
        return F.smooth_l1_loss(net(x) * scale, targets[idx].to(device) * scale)

    with flush_denormals():
        fit(net, len(images), steps, batch_size, seed, optimizer=lambda params: torch.optim.Adam(params, lr=lr),
            scheduler=lambda opt: torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=max(steps, 1),
                                                                      pct_start=0.1),
            loss=loss)
    return net.eval()


@torch.no_grad()
def regressor_error(net: nn.Module, images: torch.Tensor, targets: torch.Tensor, batch_size: int = 256) -> float:
    """Mean Euclidean distance in pixels between predicted and given ``pixel_norm`` positions."""
    device = next(net.parameters()).device
    errs = []
    for i in range(0, len(images), batch_size):
        x = images[i : i + batch_size].to(device).float().div_(127.5).sub_(1.0)
        d = (net(x).cpu() - targets[i : i + batch_size].float()) * torch.tensor([images.shape[-1], images.shape[-2]])
        errs.append(d.norm(dim=1))
    return float(torch.cat(errs).mean())


# ----------------------------------------------------------------------------------------------------------- helpers
def _labelled(root: str | Path, what: str, size: int) -> tuple[dict[str, torch.Tensor], dict]:
    root = Path(root)
    if not root.exists():
        raise DataError(f"the {what} dataset folder {str(root)!r} does not exist")
    if not is_armlab_dataset(root):
        raise DataError(f"sim2real eval needs labelled armlab datasets, and the {what} folder {str(root)!r} has no "
                        "manifest.json")
    ds = ArmlabDataset(root, size=size)
    data = load_tensors(ds)
    data["frame"] = torch.tensor([r["frame"] for r in ds.records], dtype=torch.long)
    return data, ds.manifest


def _usable(data: dict[str, torch.Tensor]) -> torch.Tensor:
    return usable(data["target"])


def _paired(sim_manifest: dict, real_manifest: dict) -> bool:
    """Same seed and settings but the style (sim, and a camera style: real or photo): frame i shows the same scene
    in both."""
    def strip(m: dict) -> dict:
        return {k: v for k, v in (m.get("settings") or {}).items() if k not in ("style", "n", "translation")}

    return (sim_manifest.get("seed") is not None and sim_manifest.get("seed") == real_manifest.get("seed")
            and sim_manifest.get("style") == "sim" and real_manifest.get("style") in CAMERA_STYLES
            and strip(sim_manifest) == strip(real_manifest))


def _finite(v: float | None) -> float | None:
    return float(v) if v is not None and math.isfinite(v) else None


def _mean_psnr(a: np.ndarray, b: np.ndarray) -> float:
    from generative.metrics import psnr

    vals = [psnr(x, y) for x, y in zip(a, b)]
    vals = [min(v, 100.0) for v in vals]  # identical images (inf) counted as 100 dB
    return float(np.mean(vals))


# -------------------------------------------------------------------------------------------------------------- eval
def sim2real_eval(
    sim_dir: str | Path,
    real_dir: str | Path,
    run_dir: str | Path,
    quick: bool = False,
    seed: int = 0,
    holdout: float = 0.2,
    steps: int | None = None,
    batch_size: int = 32,
    n_seeds: int | None = None,
    device: str | torch.device = "cpu",
    baseline: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Gap closure and (for paired datasets) PSNR/SSIM of the CycleGAN run in ``run_dir``; see the module docstring.

    Both folders must be labelled armlab datasets; images are read at the run's model size. ``steps`` regressor
    training steps (default 600, 40 with ``quick``), ``batch_size`` 32; each error is the mean over ``n_seeds``
    regressors (seeds ``seed, seed + 1, ...``; default 2, 1 with ``quick``), because a single regressor's error
    moves by a good fraction of the gap from seed to seed. ``baseline``: an earlier report of this function for the
    same datasets and settings (checked through ``baseline_key``), whose ``e_sim`` and ``e_real`` regressors are
    reused, so that evaluating a second run trains only the ``e_trans`` ones.

    Returns a JSON-able dict: ``e_sim``, ``e_trans``, ``e_real`` (pixels at the model's image size; the per-seed
    values in ``e_*_seeds``), ``gap`` (``e_sim - e_real``), ``gap_closure`` (None when the gap is 0), ``paired``,
    ``psnr_sim``, ``psnr_trans``, ``psnr_gain``, ``ssim_sim``, ``ssim_trans`` (None unless paired; ``n_pairs``),
    ``task_consistency`` (whether the run used the task-consistency term) and ``task_weight``, ``n_train``,
    ``n_train_real``, ``n_test``, ``regressor_steps``, ``n_seeds``, ``size``, ``run``, ``run_step``,
    ``baseline_key``, ``seconds``.
    """
    from generative.cyclegan import load_generators, translate_images

    t0 = time.perf_counter()
    if not 0 < holdout < 1:
        raise ParamError("holdout", f"{{name}} must be between 0 and 1, got {holdout}")
    gens = load_generators(run_dir, device)
    size = gens.size
    steps = int(steps if steps is not None else (QUICK_STEPS if quick else FULL_STEPS))
    n_seeds = int(n_seeds if n_seeds is not None else (1 if quick else 2))
    for name, value in (("steps", steps), ("n_seeds", n_seeds)):
        if value < 1:
            raise ParamError(name, f"{{name}} must be at least 1, got {value}")
    sim, sim_manifest = _labelled(sim_dir, "sim", size)
    real, real_manifest = _labelled(real_dir, "real", size)

    # split the real frames by index: the first (1 - holdout) train the oracle, the rest are the test set
    order = torch.argsort(real["frame"])
    n_real = len(order)
    cut = int(round(n_real * (1 - holdout)))
    if cut < 2 or n_real - cut < 1:
        raise DataError(f"the real dataset {str(real_dir)!r} has {n_real} frames: too few to hold out "
                        f"{holdout:.0%} for testing and train on the rest")
    train_r, test_r = order[:cut], order[cut:]
    train_r = train_r[_usable(real)[train_r]]
    test_r = test_r[_usable(real)[test_r]]
    train_frames = set(real["frame"][train_r].tolist())
    sim_pos = {int(f): i for i, f in enumerate(sim["frame"].tolist())}
    train_s = torch.tensor([sim_pos[f] for f in sorted(train_frames) if f in sim_pos], dtype=torch.long)
    train_s = train_s[_usable(sim)[train_s]] if len(train_s) else train_s
    if len(train_s) < 2 or len(test_r) < 1:
        raise DataError(f"the sim dataset {str(sim_dir)!r} has fewer than 2 frames with the indices of the real "
                        f"training frames (0 .. {cut - 1}); generate both with the same number of frames")
    paired = _paired(sim_manifest, real_manifest)

    def pick(data: dict[str, torch.Tensor], idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return data["image"][idx], data["target"][idx]

    x_sim, y_sim = pick(sim, train_s)
    x_real, y_real = pick(real, train_r)
    x_test, y_test = pick(real, test_r)

    key = hashlib.sha256(json.dumps({
        "sim": sha256_file(Path(sim_dir) / MANIFEST), "real": sha256_file(Path(real_dir) / MANIFEST),
        "size": size, "steps": steps, "batch_size": batch_size, "seed": seed, "n_seeds": n_seeds, "holdout": holdout,
    }, sort_keys=True).encode()).hexdigest()[:16]

    def fit(images: torch.Tensor, targets: torch.Tensor) -> list[float]:
        return [regressor_error(train_regressor(images, targets, steps=steps, batch_size=batch_size, seed=s,
                                                device=device), x_test, y_test)
                for s in range(seed, seed + n_seeds)]

    if baseline is not None and baseline.get("baseline_key") == key:
        errs_sim, errs_real = list(baseline["e_sim_seeds"]), list(baseline["e_real_seeds"])
    else:
        errs_sim = fit(x_sim, y_sim)
        errs_real = fit(x_real, y_real)
    x_trans = translate_images(gens, x_sim, "sim2real")
    errs_trans = fit(x_trans, y_sim)
    e_sim, e_real, e_trans = (float(np.mean(e)) for e in (errs_sim, errs_real, errs_trans))
    gap = e_sim - e_real
    closure = (e_sim - e_trans) / gap if gap != 0 else None

    report: dict[str, Any] = {
        "e_sim": e_sim, "e_trans": e_trans, "e_real": e_real, "gap": gap, "gap_closure": _finite(closure),
        "paired": paired, "psnr_sim": None, "psnr_trans": None, "psnr_gain": None, "ssim_sim": None,
        "ssim_trans": None, "e_sim_seeds": errs_sim, "e_trans_seeds": errs_trans, "e_real_seeds": errs_real,
    }
    if paired:
        test_frames = real["frame"][test_r].tolist()
        both = [(sim_pos[f], int(r)) for f, r in zip(test_frames, test_r.tolist()) if f in sim_pos]
        if both:
            from generative.metrics import ssim

            s_idx = torch.tensor([b[0] for b in both])
            r_idx = torch.tensor([b[1] for b in both])
            s_img = sim["image"][s_idx].permute(0, 2, 3, 1).numpy()
            r_img = real["image"][r_idx].permute(0, 2, 3, 1).numpy()
            t_img = translate_images(gens, np.ascontiguousarray(s_img), "sim2real")
            report["psnr_sim"] = _mean_psnr(s_img, r_img)
            report["psnr_trans"] = _mean_psnr(t_img, r_img)
            report["psnr_gain"] = report["psnr_trans"] - report["psnr_sim"]
            report["ssim_sim"] = ssim(s_img, r_img)
            report["ssim_trans"] = ssim(t_img, r_img)
            report["n_pairs"] = len(both)
    task_weight = float(gens.config.get("task_weight") or 0.0)
    report.update({
        "task_consistency": task_weight > 0, "task_weight": task_weight, "n_train": len(train_s),
        "n_train_real": len(train_r), "n_test": len(test_r), "regressor_steps": steps,
        "regressor_batch_size": batch_size, "n_seeds": n_seeds, "size": size, "run": str(run_dir),
        "run_step": gens.step, "seed": seed, "holdout": holdout, "quick": bool(quick), "baseline_key": key,
        "seconds": time.perf_counter() - t0,
    })
    return report
