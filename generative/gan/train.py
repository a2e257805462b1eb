"""Training a GAN run: the data, the resume checks, :func:`train_gan` and its FLOP count."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from generative import trainer_defaults
from generative.data.labelled import labelled_tensors
from generative.gan.ada import p_report, read_p_log
from generative.gan.config import (
    ARCH_FIELDS,
    DEFAULT_AUX_AUGMENT,
    DEFAULT_AUX_CLASS,
    DEFAULT_AUX_FAKE,
    GANConfig,
    arch_defaults,
    check_size,
    parse_cond,
)
from generative.gan.model import build_discriminator, build_generator
from generative.gan.task import GANTask
from generative.networks import count_params, flops_per_image
from generative.runs import check_resume, pick_device, saved_task_config, write_summary
from generative.training import TrainConfig, Trainer
from robot_env.io.dataset_format import MANIFEST
from robot_env.io.errors import ConfigError, ParamError
from robot_env.io.hashing import sha256_file

__all__ = ["TRAIN_DEFAULTS", "train_gan"]

#: The trainer settings of ``armlab gan train`` that differ from :class:`~generative.training.TrainConfig`'s.
TRAIN_DEFAULTS = trainer_defaults.GAN


def _load_data(data_dir: str | Path, size: int, cond: tuple[str, ...], limit: int | None = None,
               progress: bool = False) -> tuple[dict[str, torch.Tensor], list[str], dict[str, Any]]:
    """The training tensors, the class names and a description of the data (path, manifest hash, frames)."""
    ds, data, classes = labelled_tensors(data_dir, size, cond, "a GAN", limit=limit, progress=progress)
    root = Path(data_dir)
    wanted = ["image"] + (["class_id"] if "class" in cond else []) + (["target"] if "target" in cond else [])
    data = {k: data[k] for k in wanted}
    manifest = root / MANIFEST
    info = {"path": str(root), "frames": len(data["image"]),
            "manifest_sha256": sha256_file(manifest) if manifest.is_file() else None}
    return data, classes, info


def _check_resume(out: Path, cfg: GANConfig, saved: dict[str, Any] | None) -> None:
    """A run folder with a checkpoint (``saved``: its task configuration, see
    :func:`generative.runs.saved_task_config`) must have been trained with the same model settings and data."""
    if saved is None:
        return
    try:
        old = GANConfig.from_dict(saved)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{out} holds a checkpoint that is not a GAN run; use another output folder") from exc
    if old.arch != cfg.arch:
        raise ConfigError(f"run {out} was trained with --arch {old.arch}, not {cfg.arch}; use another output folder "
                          "to train another architecture")
    check_resume(out, cfg.model_dict(), old.model_dict(), cfg.data, old.data)


def train_gan(
    data_dir: str | Path,
    train: TrainConfig,
    cond: str | Sequence[str] | None = (),
    size: int = 64,
    *,
    g_base: int = 32,
    d_base: int = 32,
    z_dim: int = 128,
    target_bins: int = 16,
    loss: str = "hinge",
    lr: float | None = None,
    beta1: float | None = None,
    augment: str | Sequence[str] | None = (),
    spatial_cond: bool | None = None,
    aux_class: float | None = None,
    aux_augment: bool | None = None,
    aux_fake: bool | None = None,
    limit: int | None = None,
    pad_channels: bool | None = None,
    arch: str | None = None,
    **arch_options: Any,
) -> dict[str, Any]:
    """Train a (conditional) GAN on the dataset at ``data_dir`` into the run folder ``train.out``, for ``train.steps``
    steps as ``train`` (:class:`~generative.training.TrainConfig`; ``armlab gan train`` starts from
    :data:`TRAIN_DEFAULTS`) says; returns a summary.

    Resumes from ``out/checkpoint.pt`` when there is one (a finished run given a larger ``steps`` continues); the
    model settings and the data must then be those of the checkpoint (a ValueError otherwise). The summary (also
    written to ``out/summary.json``): the trainer's (``steps``, ``start_step``, ``steps_run``, ``images_per_s``,
    ``wall_time_s``, ``losses``) plus ``out``, ``cond``, ``n_train``, parameter counts, ``train_flops_per_image``
    (about 3 x the forward FLOPs of G and 8 x those of D per image, counted on the model's own layers) and
    ``gflops_per_s``.

    Speed settings (they change how, not what, is computed, and a resumed run may change them):
    ``pad_channels`` pads the convolutions' channel counts to multiples of 8 (:class:`GANTask`'s
    ``channel_multiple``; None = on CUDA only: cuDNN's bf16 kernels want them, and the condition maps make counts
    like 515); ``train.compile`` a ``torch.compile`` mode for G, D and the local classifier (default off);
    ``train.checkpoints=False`` writes no checkpoint (throughput measurements only).

    ``arch``: ``dcgan`` (the conditional GAN above; the default, and what a resumed run without it keeps),
    ``stylegan2`` or ``progan``; ``arch_options`` are their :class:`GANConfig` settings (``w_dim``, ``map_depth``,
    ``r1_gamma``, ``r1_every``, ``ada``, ``ada_target``, ``ada_kimg``, ``ada_pipeline``, ``phase_steps``). ``lr`` /
    ``beta1`` default to the architecture's (:func:`~generative.gan.config.arch_defaults`). Their summaries add
    ``arch``, for ADA ``ada_p`` and ``ada_rt`` (the last) and ``ada`` (:func:`~generative.gan.ada.p_report`: p's
    peak, and its level, spread, trend and whether it settled over the last quarter of the steps), and for progan
    ``phases`` (per phase: resolution, steps, mean D accuracy, the last alpha).
    """
    if int(train.steps) < 1:
        raise ParamError("steps", f"{{name}} must be at least 1, got {train.steps}")
    check_size(size)
    cond_t = parse_cond(cond)
    out = train.out
    data, classes, info = _load_data(data_dir, size, cond_t, limit=limit, progress=train.progress)
    saved = saved_task_config(out)
    if spatial_cond is None:  # a new run: on; a resumed one: as it was trained
        spatial_cond = bool(saved.get("spatial_cond", False)) if saved is not None else True
    if arch is None:
        arch = str(saved.get("arch", "dcgan")) if saved is not None else "dcgan"
    if aux_class is None:  # a new run: the arch's weight with both conditions, else 0; a resumed one: as it was
        both = {"class", "target"} <= set(cond_t)  # (without them, a resume fails on the conditions, named first)
        aux_class = (float(saved.get("aux_class", 0.0)) if saved is not None and both
                     else DEFAULT_AUX_CLASS.get(arch, 1.0) * both)
    if aux_augment is None:  # a new run: the architecture's default; a resumed one: as it was trained
        aux_augment = (bool(saved.get("aux_augment", False)) if saved is not None
                       else DEFAULT_AUX_AUGMENT.get(arch, False))
    if aux_fake is None:
        aux_fake = bool(saved.get("aux_fake", False)) if saved is not None else DEFAULT_AUX_FAKE.get(arch, False)
    unknown = sorted(set(arch_options) - set(ARCH_FIELDS))
    if unknown:
        raise TypeError(f"train_gan() got unexpected keyword arguments {unknown}")
    lr0, beta1_0, beta2 = arch_defaults(arch)
    lr = lr0 if lr is None else lr
    cfg = GANConfig(size=size, cond=cond_t, classes=tuple(classes), z_dim=z_dim, g_base=g_base, d_base=d_base,
                    target_bins=target_bins, loss=loss if arch == "dcgan" else "ns", lr_g=lr, lr_d=lr,
                    beta1=beta1_0 if beta1 is None else beta1, beta2=beta2, augment=augment,
                    spatial_cond=spatial_cond, aux_class=aux_class, aux_augment=aux_augment,
                    aux_fake=aux_fake, data=info, arch=arch, **arch_options)
    _check_resume(out, cfg, saved)
    if pad_channels is None:
        pad_channels = pick_device(train.device).type == "cuda"
    if cfg.arch != "dcgan" and train.channels_last == "auto":  # their 3 x 3 convolutions run ~1.4x faster so on CPUs
        train = dataclasses.replace(train, channels_last="on")
    task = GANTask(cfg, data.get("class_id"), data.get("target"), init_seed=train.seed,
                   channel_multiple=8 if pad_channels else 0)
    trainer = Trainer(task, data, train)
    summary = trainer.fit()
    flops = _train_flops(cfg)
    ips = summary.get("images_per_s")
    summary.update({
        "out": str(out), "cond": list(cfg.cond), "size": size, "batch_size": int(train.batch_size),
        "spatial_cond": cfg.spatial_cond, "aux_class": cfg.aux_class, "aux_augment": cfg.aux_augment,
        "aux_fake": cfg.aux_fake,
        "pad_channels": bool(pad_channels), "compile": train.compile, "amp_bf16": trainer.amp,
        "n_train": len(data["image"]),
        "params_g": count_params(task.G), "params_d": count_params(task.D), "train_flops_per_image": flops,
        "gflops_per_s": ips * flops / 1e9 if ips else None, "device": str(trainer.device),
        "threads": torch.get_num_threads(),
    })
    if cfg.arch != "dcgan":
        summary["arch"] = cfg.arch
    if task.ada is not None:
        summary.update({"ada_p": task.ada.p, "ada_rt": task.ada.rt})
        try:  # how p moved over the whole run (resumed segments included), from log.csv
            summary["ada"] = p_report(read_p_log(out))
        except (OSError, ValueError):  # nothing logged yet (--log-every beyond the steps)
            pass
    if cfg.arch == "progan":
        summary["phases"] = [{"phase": int(k.split(":")[0]), "res": int(k.split(":")[1]), "steps": int(v[1]),
                              "d_acc": v[0] / max(v[1], 1), "alpha_end": v[2]}
                             for k, v in sorted(task.phase_stats.items(), key=lambda kv: int(kv[0].split(":")[0]))]
    return write_summary(out, summary)


def _train_flops(cfg: GANConfig) -> int:
    """Approximate training FLOPs per image: G forward + backward (3x), D forward + backward on real and fake, and
    D forward + input backward in the G step (about 2 x 3x + 2x)."""
    def count(device: str) -> int:
        with torch.random.fork_rng(devices=[]), torch.device(device):
            G, D = build_generator(cfg), build_discriminator(cfg)
            for net in (G, D):
                if hasattr(net, "set_progress"):  # progan: counted at its final resolution
                    net.set_progress(len(net.to_rgb if net is G else net.from_rgb) - 1, 1.0)
            kw: dict[str, torch.Tensor] = {}
            if cfg.n_classes:
                kw["y"] = torch.zeros(1, dtype=torch.long)
            if cfg.cond_dim:
                kw["c"] = torch.full((1, 2), 0.5)
        fg = flops_per_image(G, (cfg.z_dim,), **kw)
        fd = flops_per_image(D, (3, cfg.size, cfg.size), **kw)
        return int(3 * fg + 8 * fd)

    try:  # shapes only: the "meta" device allocates and initialises nothing (seconds saved on wide networks)
        return count("meta")
    except (NotImplementedError, RuntimeError):
        return count("cpu")
