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
from robot_env.io.dataset_format import MANIFEST
from robot_env.io.errors import MissingPathError, ParamError
from robot_env.io.hashing import sha256_file

__all__ = ["FRAMES", "evaluate_gan", "evaluate_snapshots", "frame_pool"]

FRAMES = ("all", "train", "heldout")  #: which real frames ``evaluate_gan`` draws


def frame_pool(data: dict[str, Any] | None, root: Path, frames: str) -> tuple[int, int | None] | None:
    """The frames ``(first, end)`` (file order; end None: to the last frame) that ``frames`` (:data:`FRAMES`)
    names for a run whose configuration describes its training data as ``data`` (``path``, ``frames``,
    ``manifest_sha256``), evaluated on the dataset at ``root``; None for ``all``. A ParamError in one sentence
    when ``train`` or ``heldout`` is asked of another dataset than the run's. (A run that trained on every frame
    leaves none held out: :func:`~generative.data.labelled.real_sample` then says so.)"""
    if frames not in FRAMES:
        raise ParamError("frames", f"{{name}} must be one of {', '.join(FRAMES)}, got {frames!r}")
    if frames == "all":
        return None
    manifest = root / MANIFEST
    if not data or data.get("manifest_sha256") is None or not manifest.is_file() \
            or sha256_file(manifest) != data["manifest_sha256"]:
        raise ParamError("frames", f"{{name}} {frames} needs the dataset the run trained on "
                         f"({(data or {}).get('path', 'not recorded')}); {str(root)!r} is another one")
    n_train = int(data["frames"])
    return (0, n_train) if frames == "train" else (n_train, None)


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
    frames: str = "all",
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

    ``frames`` says which real frames are drawn (:data:`FRAMES`): ``all`` (the default), ``train`` (the frames the
    run trained on: the first ``data.frames`` of its dataset, in file order, as ``train --limit`` takes them) or
    ``heldout`` (the frames after those). ``train`` and ``heldout`` need the run's own dataset (the same
    manifest); comparing the two at the same ``n`` shows how far the generator has learned its training frames
    rather than the scenes they come from. The report adds ``frames`` and ``pool`` (``[first, end]``, end None
    for the dataset's last frame; None for ``all``).
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
    pool = frame_pool(cfg.data, root, frames)
    real, gen = real_sample(root, cfg.size, n, seed, progress=progress, pool=pool)
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
        "probe_from_cache": bool(getattr(probe, "from_cache", False)), "psi": psi, "frames": frames,
        "pool": None if pool is None else list(pool),
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
