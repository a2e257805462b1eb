"""Probe metrics of a trained GAN run against a dataset."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch

from generative.data.labelled import real_sample
from generative.gan.sample import _generate, _generator_from, _load_run, check_psi
from generative.runs import pick_device, read_summary
from generative.training import CHECKPOINT, SNAPSHOTS
from robot_env.io.errors import MissingPathError, ParamError

__all__ = ["evaluate_gan", "evaluate_snapshots"]


def evaluate_gan(
    run_dir: str | Path,
    data_dir: str | Path,
    quick: bool = False,
    n: int = 500,
    seed: int = 0,
    device: str | torch.device = "cpu",
    probe_steps: int | None = None,
    ema: bool = True,
    progress: bool = False,
    psi: float = 1.0,
) -> dict[str, Any]:
    """Probe metrics of the run's generator against the armlab dataset at ``data_dir``.

    The probe is :func:`generative.metrics.probe_for` ``(data_dir, size, quick=quick)`` (trained once per dataset
    and cached; ``probe_steps`` overrides its training length). ``n`` real frames are drawn from the dataset
    (seeded); ``n`` fakes are generated with the *same frames'* labels as conditions, so real and fake share one
    label distribution. Returns :func:`generative.metrics.generation_report` (``class_acc_ratio``,
    ``pos_err_ratio``, ``diversity_ratio``, ``fid_custom``, ...; the conditioning keys None for conditions the
    model does not take) plus ``cond``, ``steps`` (the checkpoint's), ``train_images_per_s`` (from the run's
    summary, if recorded), ``probe_from_cache``, ``psi`` and ``eval_seconds``. ``psi`` < 1 samples the fakes with
    the truncation trick (:func:`generative.gan.sample.truncate`; 1, the default, is plain sampling).
    """
    from generative.metrics import generation_report, probe_for

    t0 = time.perf_counter()
    psi = check_psi(psi)
    if int(n) < 2:
        raise ParamError("n", f"{{name}} must be at least 2 (FID needs two images), got {n}")
    dev = pick_device(device)
    cfg, ckpt = _load_run(run_dir, dev)
    G = _generator_from(cfg, ckpt, Path(run_dir) / CHECKPOINT, dev, ema)
    root = Path(data_dir)
    real, gen = real_sample(root, cfg.size, n, seed, progress=progress)
    n_use = len(real["image"])
    probe = probe_for(root, cfg.size, quick=quick, steps=probe_steps, device=dev, progress=progress)
    y = real["class_id"].clone() if cfg.n_classes else None
    c = real["target"].clone() if cfg.cond_dim else None
    if y is not None and ((y < 0) | (y >= cfg.n_classes)).any():
        bad = (y < 0) | (y >= cfg.n_classes)
        y[bad] = torch.randint(0, cfg.n_classes, (int(bad.sum()),), generator=gen)
    if c is not None and not torch.isfinite(c).all():
        bad = ~torch.isfinite(c).all(1)
        c[bad] = 0.5
    fake_images = _generate(G, n_use, y, c, gen, psi=psi)
    fake: dict[str, Any] = {"image": torch.from_numpy(fake_images).permute(0, 3, 1, 2)}
    if y is not None:
        fake["class_id"] = y
    if c is not None:
        fake["target"] = c
    report = generation_report(probe, real, fake, seed=int(seed))
    summary = read_summary(run_dir) or {}
    report.update({
        "cond": list(cfg.cond), "steps": int(ckpt.get("step", 0)), "size": cfg.size,
        "train_images_per_s": summary.get("images_per_s"),
        "probe_from_cache": bool(getattr(probe, "from_cache", False)), "psi": psi,
        "eval_seconds": time.perf_counter() - t0,
    })
    return report


SNAPSHOT_KEYS = ("fid_custom", "class_acc_ratio", "pos_err_ratio", "diversity_ratio")


def evaluate_snapshots(run_dir: str | Path, data_dir: str | Path, **kwargs: Any) -> dict[str, Any]:
    """:func:`evaluate_gan` (same ``kwargs``: the same frames, noise and probe for each) of every snapshot of the run
    (``train --snapshot-every``) and of its checkpoint when that is at a later step. Returns ``run``, ``rows`` (per
    step: ``step``, ``source`` (the folder), :data:`SNAPSHOT_KEYS`), ``best`` (the row of the lowest ``fid_custom``)
    and ``last``; a MissingPathError in one sentence for a run without snapshots."""
    run = Path(run_dir)
    folders = sorted(p for p in (run / SNAPSHOTS).glob("step-*") if (p / CHECKPOINT).is_file())
    if not folders:
        raise MissingPathError(f"run folder {str(run)!r} holds no snapshots ({SNAPSHOTS}/step-*): train it with "
                               "--snapshot-every N")
    rows = []
    for folder in folders + [run]:
        if folder == run and not (run / CHECKPOINT).is_file():
            continue
        r = evaluate_gan(folder, data_dir, **kwargs)
        if folder == run and rows and r["steps"] <= rows[-1]["step"]:
            continue  # the checkpoint is at the last snapshot's step
        rows.append({"step": r["steps"], "source": str(folder), **{k: r.get(k) for k in SNAPSHOT_KEYS}})
    rows.sort(key=lambda row: row["step"])
    best = min(rows, key=lambda row: row["fid_custom"])
    return {"run": str(run), "rows": rows, "best": best, "last": rows[-1]}
