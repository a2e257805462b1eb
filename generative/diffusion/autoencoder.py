"""Latent diffusion's autoencoder: its settings, training task, encoding, reconstruction and run folders."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from generative.diffusion.config import VAE_SIZES, _check_model, vae_arguments, vae_factor
from generative.diffusion.data import _load_data
from generative.diffusion.models import build_vae
from generative.diffusion.schedulers import _warmup
from generative.networks import target_bump
from generative.runs import pick_device, write_summary
from generative.training import CHECKPOINT, TrainConfig, Trainer, TrainTask, load_checkpoint
from robot_env.io.errors import ConfigError, DataError, ParamError

__all__ = ["AutoencoderConfig", "AutoencoderTask", "encode_images", "load_vae", "reconstruct", "reconstruction_psnr",
           "train_autoencoder"]


@dataclass
class AutoencoderConfig:
    """The autoencoder of latent diffusion: ``vae_config`` (AutoencoderKL arguments), loss and optimizer."""

    size: int = 64
    model: str = "small"
    latent_channels: int = 4
    kl_weight: float = 1e-6
    lr: float = 1e-3
    warmup_steps: int = 50
    target_weight: float = 20.0
    target_sigma: float = 0.04
    vae_config: dict[str, Any] | None = None
    data: dict[str, Any] = field(default_factory=dict)
    kind: str = "autoencoder"

    def __post_init__(self) -> None:
        _check_model(self.model, VAE_SIZES)
        if self.vae_config is None:
            self.vae_config = vae_arguments(self.model, self.size, self.latent_channels)
        f = vae_factor(self.vae_config)
        if self.size % f:
            raise ParamError("size", f"{{name}} {self.size} is not a multiple of the autoencoder's downsampling "
                                     f"factor {f}")
        if self.kl_weight < 0 or self.lr <= 0 or self.target_weight < 0:
            raise ConfigError("kl_weight and target_weight must be >= 0 and lr > 0")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> AutoencoderConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


class AutoencoderTask(TrainTask):
    """Trains an ``AutoencoderKL``: ``|x' - x| + (x' - x)^2`` (means over pixels, each pixel weighted by ``1 +
    target_weight * bump`` at the frame's target when the batch has ``target``) ``+ kl_weight * KL`` (KL summed over
    the latent of each image, averaged over the batch), decoding a sample of the posterior (reparameterised). The
    sample grid alternates originals and reconstructions of fixed frames."""

    def __init__(self, cfg: AutoencoderConfig, grid_images: torch.Tensor | None = None, init_seed: int = 0):
        self.cfg = cfg
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(init_seed)
            self.vae = build_vae(cfg.vae_config)
        self.opt = torch.optim.AdamW(self.vae.parameters(), lr=cfg.lr, weight_decay=0.0)
        self.sched = torch.optim.lr_scheduler.LambdaLR(self.opt, _warmup(cfg.warmup_steps))
        self.grid_images = grid_images

    def modules(self) -> dict[str, nn.Module]:
        return {"vae": self.vae}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"vae": self.opt}

    def schedulers(self) -> dict[str, Any]:
        return {"vae": self.sched}

    def config(self) -> dict[str, Any]:
        return self.cfg.to_dict()

    def losses(self, x: torch.Tensor, target: torch.Tensor | None = None, vae: nn.Module | None = None,
               sample_posterior: bool = True) -> dict[str, torch.Tensor]:
        vae = vae if vae is not None else self.net("vae")
        with self.autocast():
            post = vae.encode(x).latent_dist
            z = post.sample() if sample_posterior else post.mode()
            rec = vae.decode(z).sample.float()
        w = None
        if target is not None and self.cfg.target_weight > 0:
            w = 1.0 + self.cfg.target_weight * target_bump(target, x.shape[-1], self.cfg.size, self.cfg.target_sigma)
            w = w / w.mean(dim=(1, 2, 3), keepdim=True)
        err = rec - x
        l1 = err.abs().mean() if w is None else (err.abs() * w).mean()
        l2 = (err**2).mean() if w is None else (err**2 * w).mean()
        kl = post.kl().float().mean()
        return {"loss": l1 + l2 + self.cfg.kl_weight * kl, "l1": l1, "mse": l2, "kl": kl}

    def train_step(self, batch: dict[str, torch.Tensor], step: int) -> dict[str, float | torch.Tensor]:
        out = self.losses(batch["image"], batch.get("target"))
        self.opt.zero_grad(set_to_none=True)
        out["loss"].backward()
        self.opt.step()
        return {k: v.detach() for k, v in out.items()}

    def sample(self, n: int) -> torch.Tensor:
        if self.grid_images is None:
            return torch.zeros(n, 3, self.cfg.size, self.cfg.size)
        k = max(1, n // 2)
        x = self.grid_images[:k].to(self.device).float() / 127.5 - 1
        rec = self.vae.decode(self.vae.encode(x).latent_dist.mode()).sample.float()
        return torch.stack([x, rec], 1).flatten(0, 1)[:n]


@torch.no_grad()
def encode_images(vae: nn.Module, images: torch.Tensor, batch_size: int = 128) -> torch.Tensor:
    """uint8 images ``(N, 3, H, W)`` -> unscaled latents (posterior means), float32 on the CPU."""
    dev = next(vae.parameters()).device
    out = [vae.encode(images[i : i + batch_size].to(dev).float() / 127.5 - 1).latent_dist.mode().float().cpu()
           for i in range(0, len(images), batch_size)]
    return torch.cat(out)


@torch.no_grad()
def reconstruct(vae: nn.Module, images: torch.Tensor, batch_size: int = 128) -> torch.Tensor:
    """uint8 images -> uint8 reconstructions (posterior means decoded), ``(N, 3, H, W)``."""
    dev = next(vae.parameters()).device
    out = []
    for i in range(0, len(images), batch_size):
        x = images[i : i + batch_size].to(dev).float() / 127.5 - 1
        rec = vae.decode(vae.encode(x).latent_dist.mode()).sample.float().clamp(-1, 1)
        out.append(((rec + 1) * 127.5).round().to(torch.uint8).cpu())
    return torch.cat(out)


def reconstruction_psnr(vae: nn.Module, images: torch.Tensor, n: int = 256, seed: int = 0) -> float:
    """PSNR (dB) of the autoencoder's reconstructions of ``n`` frames of ``images`` (drawn with ``seed``)."""
    from generative.metrics import psnr

    g = torch.Generator().manual_seed(seed)
    idx = torch.randperm(len(images), generator=g)[: min(n, len(images))]
    x = images[idx]
    was = vae.training
    vae.eval()
    try:
        return psnr(x, reconstruct(vae, x))
    finally:
        vae.train(was)


def load_vae(run_dir: str | Path, device: str | torch.device = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    """The autoencoder of ``run_dir`` (an autoencoder run or a latent diffusion run) in eval mode, and its
    constructor arguments; a ValueError in one sentence if there is none."""
    run = Path(run_dir)
    if not (run / CHECKPOINT).is_file():
        raise DataError(f"autoencoder run {str(run)!r} holds no checkpoint ({CHECKPOINT})")
    ckpt = load_checkpoint(run / CHECKPOINT, map_location=device)
    tc = ckpt.get("task_config") or {}
    vcfg = tc.get("vae_config")
    if not vcfg or "vae" not in ckpt.get("modules", {}):
        raise DataError(f"run {str(run)!r} holds no autoencoder (only autoencoder runs and latent diffusion runs "
                         "have one)")
    vae = build_vae(vcfg)
    try:
        vae.load_state_dict(ckpt["modules"]["vae"])
    except RuntimeError as exc:
        raise DataError(f"the autoencoder in {str(run)!r} does not fit its settings ({str(exc).splitlines()[0]})"
                         ) from exc
    vae = vae.to(pick_device(device)).eval().requires_grad_(False)
    vae.armlab_run_config = tc
    return vae, dict(vcfg)


def train_autoencoder(
    data_dir: str | Path,
    train: TrainConfig,
    size: int = 64,
    model: str = "small",
    lr: float = 1e-3,
    kl_weight: float = 1e-6,
    target_weight: float = 20.0,
    limit: int | None = None,
    data: tuple[dict[str, torch.Tensor], list[str], dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Train an ``AutoencoderKL`` on the dataset into ``train.out`` as ``train`` says (without an EMA copy, and with
    sample grids of 16 images: ``ema_decay`` and ``n_samples`` are set here; resumes; a finished run continues to a
    larger ``steps``); writes and returns a summary with ``psnr`` (dB, reconstructions of 256 dataset frames),
    ``images_per_s``, ``steps_per_s`` and ``latent_shape``. ``data``: already loaded :func:`_load_data` output."""
    train = dataclasses.replace(train, ema_decay=0.0, n_samples=16)
    out, seed, batch_size = train.out, train.seed, int(train.batch_size)
    data, _classes, info = data if data is not None else _load_data(data_dir, size, (), limit=limit,
                                                                     progress=train.progress)
    cfg = AutoencoderConfig(size=size, model=model, kl_weight=kl_weight, lr=lr, target_weight=target_weight,
                            data=info)
    if (out / CHECKPOINT).is_file():
        saved = load_checkpoint(out / CHECKPOINT).get("task_config") or {}
        if saved.get("kind") != "autoencoder":
            raise ConfigError(f"{out} holds a checkpoint that is not an autoencoder run; use another output folder")
        old = AutoencoderConfig.from_dict(saved)
        for k in ("size", "model", "latent_channels", "kl_weight", "lr", "target_weight", "vae_config"):
            if getattr(old, k) != getattr(cfg, k):
                raise ConfigError(f"autoencoder run {out} was trained with {k}={getattr(old, k)!r}, not "
                                 f"{getattr(cfg, k)!r}; use another output folder")
    images = data["image"]
    g = torch.Generator().manual_seed(seed)
    grid = images[torch.randperm(len(images), generator=g)[:8]]
    task = AutoencoderTask(cfg, grid, init_seed=seed)
    ae_data = {"image": images}
    if "target" in data and cfg.target_weight > 0:
        ae_data["target"] = data["target"]
    trainer = Trainer(task, ae_data, train)
    summary = trainer.fit()
    f = vae_factor(cfg.vae_config)
    ips = summary.get("images_per_s")
    summary.update({
        "out": str(out), "kind": "autoencoder", "size": size, "model": model, "batch_size": batch_size,
        "n_train": len(images), "psnr": reconstruction_psnr(task.vae, images, seed=seed),
        "steps_per_s": ips / batch_size if ips else None,
        "latent_shape": [cfg.latent_channels, size // f, size // f], "downsampling": f,
        "params": sum(p.numel() for p in task.vae.parameters()), "device": str(trainer.device),
        "threads": torch.get_num_threads(),
    })
    return write_summary(out, summary)
