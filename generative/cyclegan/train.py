"""Training a CycleGAN run: the two image domains, the optional task-consistency probe, :func:`train_cyclegan`."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch

from generative import trainer_defaults
from generative.cyclegan.cut import CUTTask, check_method
from generative.cyclegan.model import DEFAULT_LR, _check_size, check_generator
from generative.cyclegan.task import CycleGANTask
from generative.data import DataError, is_armlab_dataset, load_tensors, open_images
from generative.training import TrainConfig, Trainer, flush_denormals
from robot_env.io.errors import ParamError

__all__ = ["TRAIN_DEFAULTS", "train_cyclegan"]

#: The trainer settings of ``armlab cyclegan train`` that differ from :class:`~generative.training.TrainConfig`'s.
TRAIN_DEFAULTS = trainer_defaults.CYCLEGAN


def _load_domain(root: str | Path, size: int, limit: int | None, what: str) -> torch.Tensor:
    root = Path(root)
    if not root.exists():
        raise DataError(f"the {what} folder {str(root)!r} does not exist")
    ds = open_images(root, size=size)
    return load_tensors(ds, limit=limit)["image"]


def _check_pairs(sim_dir, real_dir, pairs: int, n_sim: int, n_real: int) -> None:
    """`DataError` unless the first ``pairs`` frames of both folders can be pairs (and, for armlab datasets, are:
    the same frame index, arm pose, camera pose and objects)."""
    if pairs < 0 or pairs > min(n_sim, n_real):
        raise ParamError("pairs", f"{{name}} must be between 0 and {min(n_sim, n_real)} (the images of the smaller "
                         f"folder), got {pairs}")
    if not (is_armlab_dataset(sim_dir) and is_armlab_dataset(real_dir)):
        return
    a, b = open_images(sim_dir), open_images(real_dir)

    def scene(label: dict) -> tuple:
        return (label.get("frame"), label.get("joint_positions"), label.get("T_cam_world"),
                [(o.get("category"), o.get("position")) for o in label.get("objects", [])])

    for la, lb in zip(a.labels()[:pairs], b.labels()[:pairs]):
        if scene(la) != scene(lb):
            raise DataError(f"frame {la.get('frame')} of {str(sim_dir)!r} and frame {lb.get('frame')} of "
                            f"{str(real_dir)!r} do not show the same scene, so they cannot be pairs; generate both "
                            "with the same seed and settings (styles apart)")


def train_cyclegan(
    sim_dir: str | Path,
    real_dir: str | Path,
    train: TrainConfig,
    size: int = 64,
    task_weight: float = 0.0,
    base: int | None = None,
    n_blocks: int = 6,
    n_down: int | None = None,
    d_base: int = 64,
    lr: float | None = None,
    lr_steps: int | None = None,
    cycle_weight: float = 10.0,
    identity_weight: float | None = None,
    pool_size: int = 50,
    sim_limit: int | None = None,
    real_limit: int | None = None,
    probe_steps: int | None = None,
    generator: str = "resnet",
    pairs: int = 0,
    paired_weight: float = 10.0,
    method: str = "cycle",
    nce_weight: float | None = None,
) -> dict[str, Any]:
    """Train a CycleGAN between the images in ``sim_dir`` and ``real_dir`` into the run folder ``train.out``, for
    ``train.steps`` steps as ``train`` (:class:`~generative.training.TrainConfig`; ``armlab cyclegan train`` starts
    from :data:`TRAIN_DEFAULTS`) says; ``train.batch_size`` images of each domain per step, sample grids of
    ``train.n_samples`` rounded down to rows of four (at least one).

    Either folder may be an armlab dataset or any folder of images (read with :func:`generative.data.open_images`,
    center-cropped and resized to ``size``); ``sim_limit`` / ``real_limit`` use only the first images of each (e.g.
    to keep held-out real frames unseen). With ``task_weight > 0`` the sim folder must be a labelled armlab dataset:
    its probe is trained once (``probe_steps``, default 1000) and cached in ``sim_dir/.probe``.

    ``generator`` picks the generators: ``"resnet"`` (CycleGAN's, ``base`` 32 wide by default) or ``"look"``, the
    light camera model :class:`~generative.cyclegan.look.LookGenerator` (colour, tone, vignetting, blur, noise and a
    small residual net; ``base`` 16 by default, ``n_blocks`` and ``n_down`` unused), trained with the same adversarial
    and cycle terms and much faster on a CPU. ``identity_weight`` defaults to 0.5 for resnet and 0 for look (a look
    applies to real images too: the identity term would pin it to the identity).

    ``out`` holds ``checkpoint.pt``, ``config.json``, ``log.csv``, ``samples/`` and ``tb/``. A run started again
    resumes from its checkpoint: killed runs continue exactly, and a finished run called with a larger ``steps``
    trains on (the LR schedule then follows the new length unless ``lr_steps`` fixes it).

    ``pairs``: the first ``pairs`` frames of both folders show the same scenes (for example labelled real frames and
    their scenes re-rendered in sim: datasets generated with the same seed in ``sim`` and a camera style); the
    pix2pix-style paired term ``paired_weight * |G(sim) - real|_1`` is added for them. Armlab datasets are checked
    (the same frame index, arm pose, camera pose and objects in each pair; `DataError` otherwise).

    ``method``: ``"cycle"`` (CycleGAN: two generators, the cycle term), or the one-sided ``"cut"`` / ``"fastcut"``
    (:class:`~generative.cyclegan.cut.CUTTask`: one generator, PatchNCE instead of the cycle; ``nce_weight``
    overrides the method's weight of it). A one-sided run translates sim -> real only.

    Returns the trainer's summary (``steps``, ``images_per_s``, ``losses``, ...) plus ``out`` and ``task_weight``.
    """
    size = _check_size(size)
    generator = check_generator(generator)
    method = check_method(method)
    lr = DEFAULT_LR[generator] if lr is None else float(lr)
    if not lr > 0:
        raise ParamError("lr", f"{{name}} must be positive, got {lr}")
    steps, seed = int(train.steps), train.seed
    if steps < 1:
        raise ParamError("steps", f"{{name}} must be at least 1, got {steps}")
    sim = _load_domain(sim_dir, size, sim_limit, "sim")
    real = _load_domain(real_dir, size, real_limit, "real")
    if pairs:
        _check_pairs(sim_dir, real_dir, int(pairs), len(sim), len(real))
    probe = None
    if task_weight > 0:
        from generative.metrics import probe_for

        if not is_armlab_dataset(sim_dir):
            raise DataError(f"the task-consistency term needs a labelled armlab sim dataset, and {str(sim_dir)!r} "
                            "has no manifest.json")
        with flush_denormals():
            probe = probe_for(sim_dir, size=size, steps=probe_steps, seed=seed, progress=train.progress)
    info = {"sim_dir": str(sim_dir), "real_dir": str(real_dir), "sim_limit": sim_limit, "real_limit": real_limit,
            "n_sim": len(sim), "probe_steps": probe_steps if task_weight > 0 else None}
    k = max(1, train.n_samples // 4)
    common = dict(size=size, steps=steps, lr_steps=lr_steps, base=base, n_blocks=n_blocks, n_down=n_down,
                  d_base=d_base, lr=lr, pool_size=pool_size, task_weight=task_weight, probe=probe, init_seed=seed,
                  sample_images=(sim[:k].clone(), real[:k].clone()), info=info, generator=generator, pairs=pairs,
                  paired_weight=paired_weight)
    if method == "cycle":
        task = CycleGANTask(real, cycle_weight=cycle_weight, identity_weight=identity_weight, **common)
    else:
        task = CUTTask(real, method=method, nce_weight=nce_weight, **common)
    trainer = Trainer(task, {"image": sim}, dataclasses.replace(train, n_samples=4 * k))
    if probe is not None:
        probe.to(trainer.device)
    with flush_denormals():
        summary = trainer.fit()
    summary.update({"out": str(train.out), "generator": generator, "method": method, "task_weight": float(task_weight),
                    "n_sim": len(sim), "n_real": len(real), "batch_size": train.batch_size, "size": size})
    return summary
