"""Training a diffusion run (pixel or latent): the resume checks and :func:`train_diffusion`."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from generative import trainer_defaults
from generative.diffusion.autoencoder import encode_images, load_vae, train_autoencoder
from generative.diffusion.config import DiffusionConfig, parse_cond, vae_factor
from generative.diffusion.data import _load_data, _load_text_data, _manifest, manifest_joint_limits
from generative.diffusion.models import build_vae
from generative.diffusion.task import DiffusionTask
from generative.runs import check_resume, pick_device, read_summary, write_summary
from generative.text import Vocabulary
from generative.training import CHECKPOINT, TrainConfig, Trainer, load_checkpoint
from robot_env.io.errors import ConfigError

__all__ = ["TRAIN_DEFAULTS", "train_diffusion"]

#: The trainer settings of ``armlab diffusion train`` that differ from :class:`~generative.training.TrainConfig`'s.
TRAIN_DEFAULTS = trainer_defaults.DIFFUSION


def _train_flops(net: nn.Module, *args: Any, **kwargs: Any) -> int | None:
    """FLOPs of one training step per image: 3 x one forward (forward + backward), counted by torch's
    ``FlopCounterMode`` on one image."""
    try:
        from torch.utils.flop_counter import FlopCounterMode

        with torch.no_grad(), FlopCounterMode(display=False) as fc:
            net(*args, **kwargs)
        return int(3 * fc.get_total_flops())
    except Exception:  # counting is informative only
        return None


def _check_resume(out: Path, cfg: DiffusionConfig) -> dict[str, Any] | None:
    """The checkpoint of a run being resumed (None for a new run), after checking that it was trained with the
    same model settings and data."""
    if not (out / CHECKPOINT).is_file():
        return None
    ckpt = load_checkpoint(out / CHECKPOINT)
    saved = ckpt.get("task_config") or {}
    try:
        old = DiffusionConfig.from_dict(saved)
        if "guidance_dropout" not in saved:
            raise TypeError("no diffusion settings")
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{out} holds a checkpoint that is not a diffusion run; use another output folder") from exc
    check_resume(out, cfg.model_dict(), old.model_dict(), cfg.data, old.data)
    return ckpt


def train_diffusion(
    data_dir: str | Path,
    train: TrainConfig,
    size: int = 64,
    cond: str | Sequence[str] | None = (),
    latent: bool = False,
    vae: str | Path | None = None,
    vae_steps: int = 2000,
    model: str = "small",
    vae_model: str | None = None,
    vae_batch_size: int | None = None,
    guidance_dropout: float = 0.1,
    lr: float = 1e-3,
    patch: int | None = None,
    target_weight: float = 20.0,
    snr_gamma: float = 5.0,
    limit: int | None = None,
    text_steps: int = 300,
    layout: bool = True,
    layout_steps: int = 400,
) -> dict[str, Any]:
    """Train a diffusion model on the dataset at ``data_dir`` into ``train.out`` for ``train.steps`` steps as
    ``train`` (:class:`~generative.training.TrainConfig`; ``armlab diffusion train`` starts from
    :data:`TRAIN_DEFAULTS`) says; returns (and writes to
    ``out/summary.json``) a summary: ``steps``, ``steps_run``, ``images_per_s``, ``steps_per_s``,
    ``wall_time_s``, ``losses``, ``params``, ``train_flops_per_image``, ... and, for latent runs, ``vae`` (the
    autoencoder's summary with its ``psnr``) and ``scaling_factor``.

    The same call after a kill resumes; a finished run called with a larger ``steps`` continues. ``latent``: train
    on autoencoder latents; the autoencoder is ``vae`` (a run folder: an autoencoder run, or a latent diffusion run
    whose autoencoder is reused) or, without it, trained first into ``out/vae`` for ``vae_steps`` steps at batch
    ``vae_batch_size`` (default ``train.batch_size``), with the other trainer settings of ``train`` (no time limit,
    see :func:`train_autoencoder`). A resumed latent run keeps the autoencoder and scaling factor in its
    checkpoint.

    ``cond="text"``: a caption-conditioned model (``generative.diffusion.text``); the captions are made from the
    labels (four phrasings per frame, seeded by ``train.seed``), the text encoder is pre-trained for ``text_steps``
    steps first (a resumed run keeps the checkpoint's) and the vocabulary is written to ``out/vocab.json``; with
    ``layout`` a layout head is fitted on the encoder's embeddings for ``layout_steps`` steps and the UNet reads
    its where-and-what maps (``generative.diffusion.text``).
    """
    cond_t = parse_cond(cond)
    out, batch_size, device = train.out, int(train.batch_size), train.device
    t0 = time.perf_counter()
    texts = labels = text_state = None
    if "text" in cond_t:
        data, classes, info, texts, labels = _load_text_data(data_dir, size, limit, train.seed, train.progress)
    else:
        data, classes, info = _load_data(data_dir, size, cond_t, limit=limit, progress=train.progress)
    base = dict(size=size, cond=cond_t, classes=tuple(classes), model=model, latent=bool(latent), patch=patch,
                guidance_dropout=guidance_dropout, lr=lr, target_weight=target_weight, snr_gamma=snr_gamma, data=info)
    if "joints" in cond_t:  # normalised by the training range; the robot's limits check requested joints
        q = data["joints"]
        base.update(n_joints=q.shape[1], joint_low=q.min(0).values.tolist(), joint_high=q.max(0).values.tolist(),
                    joint_limits=manifest_joint_limits(_manifest(data_dir), q.shape[1]))
    text_losses: list[float] = []
    layout_losses: list[float] = []
    layout_state = None
    if texts is not None:  # the vocabulary and the encoder, pre-trained here or (resuming) from the checkpoint
        from generative.text import prepare_text

        vocab, encoder, data["tokens"], text_losses = prepare_text(
            texts, labels, steps=text_steps, seed=train.seed, pretrain=not (out / CHECKPOINT).is_file())
        base["text_config"] = {"vocab": vocab.to_json(), "encoder": encoder.arguments(), "pretrain_steps": text_steps}
        base["text_layout"] = bool(layout)
        text_state = encoder.state_dict() if text_losses else None
        if layout and text_losses:  # a new run: fit the layout head on the frozen encoder
            from generative.text import fit_layout_head

            layout_state, layout_losses = fit_layout_head(encoder, data["tokens"], data["class_id"], data["target"],
                                                          len(classes), steps=layout_steps, seed=train.seed)
    DiffusionConfig(**base)  # validate the settings before any autoencoder training
    vae_net, vae_summary, scaling, vae_cfg, vae_source = None, None, None, None, None
    resumed = _check_resume(out, DiffusionConfig(**base)) if not latent else None
    if latent:
        prior = (out / CHECKPOINT).is_file()
        if prior:  # resume: the autoencoder and the scaling of the checkpoint
            ckpt = load_checkpoint(out / CHECKPOINT)
            tc = ckpt.get("task_config") or {}
            if not tc.get("latent") or "vae" not in ckpt.get("modules", {}):
                raise ConfigError(f"run {out} is not a latent diffusion run; use another output folder")
            vae_cfg, scaling, vae_source = tc["vae_config"], float(tc["scaling_factor"]), tc.get("vae_source")
            vae_net = build_vae(vae_cfg)
            vae_net.load_state_dict(ckpt["modules"]["vae"])
            vae_summary = (read_summary(out) or {}).get("vae")
        elif vae is not None:
            vae_net, vae_cfg = load_vae(vae)
            vae_source = str(vae)
            vae_summary = read_summary(vae) or {}
            if vae_summary.get("kind") != "autoencoder":  # a latent diffusion run: its autoencoder's summary
                vae_summary = vae_summary.get("vae")
        else:
            vae_dir = out / "vae"
            vae_train = dataclasses.replace(train, out=vae_dir, steps=vae_steps,
                                            batch_size=vae_batch_size or batch_size, time_limit_s=None)
            vae_summary = train_autoencoder(data_dir, vae_train, size=size, model=vae_model or model,
                                            target_weight=target_weight, limit=limit, data=(data, classes, info))
            vae_net, vae_cfg = load_vae(vae_dir)
            vae_source = str(vae_dir)
        if vae_cfg.get("sample_size") != size or size % vae_factor(vae_cfg):
            raise ConfigError(f"the autoencoder was trained on {vae_cfg.get('sample_size')} px images, not {size} px")
        vae_net = vae_net.to(pick_device(device)).eval().requires_grad_(False)
        latents = encode_images(vae_net, data["image"])
        if scaling is None:
            scaling = float(1.0 / latents.std().clamp(min=1e-6))
        vae_net = vae_net.cpu()
        train_data = {"latent": latents * scaling, **{k: v for k, v in data.items() if k != "image"}}
        cfg = DiffusionConfig(**base, vae_config=vae_cfg, scaling_factor=scaling, vae_source=vae_source)
        resumed = _check_resume(out, cfg)
    else:
        cfg = DiffusionConfig(**base)
        train_data = data
    task = DiffusionTask(cfg, data.get("class_id"), data.get("target"), vae=vae_net, init_seed=train.seed,
                         joints=data.get("joints"), text_state=text_state, layout_state=layout_state)
    trainer = Trainer(task, train_data, train)
    summary = trainer.fit()
    x1 = torch.zeros(1, cfg.data_channels, cfg.data_size, cfg.data_size, device=trainer.device)
    kw = {}
    if cfg.n_classes or cfg.text_layout:
        kw["class_ids"] = torch.zeros(1, dtype=torch.long, device=trainer.device)
    if "target" in cfg.cond or cfg.text_layout:
        kw["target"] = torch.full((1, 2), 0.5, device=trainer.device)
    if cfg.n_joints:
        low, high = cfg.joint_range()
        kw["joints"] = ((low + high) / 2).float()[None].to(trainer.device)
    if "text" in cfg.cond:
        kw["tokens"] = torch.zeros(1, 2, dtype=torch.long, device=trainer.device)
        kw["tokens"][:, 0] = 2  # <cls>: the empty caption
        Vocabulary.from_json(cfg.text_config["vocab"]).save(out / "vocab.json")
        summary["text_pretrain_loss"] = [text_losses[0], text_losses[-1]] if text_losses else None
        summary["layout_pretrain_loss"] = [layout_losses[0], layout_losses[-1]] if layout_losses else None
    flops = _train_flops(task.unet, x1, torch.zeros(1, dtype=torch.long, device=trainer.device), **kw)
    ips = summary.get("images_per_s")
    summary.update({
        "out": str(out), "cond": list(cfg.cond), "n_joints": cfg.n_joints, "size": size, "latent": cfg.latent,
        "model": model,
        "patch": cfg.patch, "batch_size": int(batch_size), "n_train": len(train_data[next(iter(train_data))]),
        "steps_per_s": ips / batch_size if ips else None,
        "params": sum(p.numel() for p in task.unet.parameters()), "train_flops_per_image": flops,
        "gflops_per_s": ips * flops / 1e9 if ips and flops else None, "device": str(trainer.device),
        "threads": torch.get_num_threads(), "resumed": resumed is not None or summary.get("start_step", 0) > 0,
        "total_wall_time_s": time.perf_counter() - t0,
    })
    if cfg.latent:
        summary.update({"scaling_factor": cfg.scaling_factor, "vae_source": cfg.vae_source,
                        "latent_shape": [cfg.data_channels, cfg.data_size, cfg.data_size],
                        "vae": {k: v for k, v in (vae_summary or {}).items() if k != "history"} or None})
    return write_summary(out, summary)
