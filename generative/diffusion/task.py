"""A diffusion model as a :class:`~generative.training.TrainTask`: the denoising loss and the sample grids."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from generative.conditions import grid_conditions, label_state
from generative.diffusion.config import DiffusionConfig
from generative.diffusion.pipeline import Pipeline
from generative.diffusion.schedulers import _warmup, train_scheduler
from generative.diffusion.text import build_denoiser, text_grid_tokens
from generative.networks import target_bump
from generative.training import TrainTask

__all__ = ["DiffusionTask"]


def _grid_conditions(n: int, cfg: DiffusionConfig, targets: torch.Tensor | None, joints: torch.Tensor | None = None
                     ) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
    """Sample-grid conditions: one class per row, the target sweeping the 10th..90th percentile of the training
    ``u`` across the columns, at the 30th / 70th percentile of ``v`` (alternating per round of classes); the first
    joint sweeping its 10th..90th training percentile across the columns, the other joints at their training
    medians."""
    y, c, _, col = grid_conditions(n, cfg.n_classes, "target" in cfg.cond, targets)
    q = None
    if "joints" in cfg.cond:
        tr = joints[torch.isfinite(joints).all(1)].double() if joints is not None else None
        if tr is None or len(tr) == 0:
            low, high = cfg.joint_range()
            base, lo0, hi0 = (low + high) / 2, 0.9 * low[0] + 0.1 * high[0], 0.1 * low[0] + 0.9 * high[0]
        else:
            base, lo0, hi0 = tr.median(0).values, torch.quantile(tr[:, 0], 0.1), torch.quantile(tr[:, 0], 0.9)
        q = base.expand(n, cfg.n_joints).clone()
        ncol = max(1, math.ceil(math.sqrt(n)))
        q[:, 0] = lo0 + (hi0 - lo0) * col.double() / max(ncol - 1, 1)
    return y, c, q


class DiffusionTask(TrainTask):
    """A (conditional, pixel or latent) diffusion model as a :class:`TrainTask` (see the module docstring).

    The data the trainer hands ``train_step`` holds ``image`` (pixels, in [-1, 1]) or ``latent`` (scaled latents),
    plus ``class_id`` / ``target`` / ``joints`` when known. ``vae``: the frozen autoencoder of a latent model (kept as
    a module so that the checkpoint holds it). ``class_ids`` / ``targets`` / ``joints``: the training labels, kept in
    the checkpoint so that :func:`sample` can draw conditions from the training distribution.
    """

    def __init__(self, cfg: DiffusionConfig, class_ids: torch.Tensor | None = None,
                 targets: torch.Tensor | None = None, vae: nn.Module | None = None, init_seed: int = 0,
                 joints: torch.Tensor | None = None, text_state: dict[str, torch.Tensor] | None = None,
                 layout_state: dict[str, torch.Tensor] | None = None):
        if cfg.latent and (vae is None or cfg.scaling_factor is None or not cfg.vae_config):
            raise ValueError("a latent diffusion task needs the autoencoder, its config and the scaling factor")
        self.cfg = cfg
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(init_seed)
            self.unet = build_denoiser(cfg)
        if text_state is not None:
            self.unet.text.load_state_dict(text_state)
        if layout_state is not None:
            self.unet.layout.load_state_dict(layout_state)
        self.vae = vae.eval().requires_grad_(False) if vae is not None else None
        self.noise = train_scheduler(cfg.train_timesteps, cfg.beta_schedule, clip_sample=not cfg.latent)
        self.opt = torch.optim.AdamW(self.unet.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.sched = torch.optim.lr_scheduler.LambdaLR(self.opt, _warmup(cfg.warmup_steps))
        self.class_ids = None if class_ids is None else torch.as_tensor(class_ids).long().reshape(-1).cpu()
        self.targets = None if targets is None else torch.as_tensor(targets).float().reshape(-1, 2).cpu()
        self.joints = None
        if joints is not None and cfg.n_joints:
            self.joints = torch.as_tensor(joints).float().reshape(-1, cfg.n_joints).cpu()

    # -- TrainTask interface
    def modules(self) -> dict[str, nn.Module]:
        return {"unet": self.unet, **({"vae": self.vae} if self.vae is not None else {})}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"unet": self.opt}

    def schedulers(self) -> dict[str, Any]:
        return {"unet": self.sched}

    def ema_modules(self) -> list[str]:
        return ["unet"]

    def ddp_modules(self) -> list[str]:
        return ["unet"]

    def config(self) -> dict[str, Any]:
        return self.cfg.to_dict()

    def extra_state(self) -> dict[str, Any]:
        return label_state(class_ids=self.class_ids, targets=self.targets, joints=self.joints)

    def load_extra_state(self, state: dict[str, Any]) -> None:
        pass  # the labels come with the data the task was built from

    # -- the loss
    def _snr_weight(self, t: torch.Tensor) -> torch.Tensor:
        if self.cfg.snr_gamma <= 0:
            return torch.ones(t.shape, device=t.device)
        ac = self.noise.alphas_cumprod.to(t.device)[t].float()
        snr = ac / (1 - ac).clamp(min=1e-8)
        return torch.minimum(snr, torch.full_like(snr, self.cfg.snr_gamma)) / snr.clamp(min=1e-8)

    def _pixel_weight(self, x0: torch.Tensor, target: torch.Tensor | None) -> torch.Tensor | None:
        if target is None or self.cfg.target_weight <= 0:
            return None
        bump = target_bump(target, x0.shape[-1], self.cfg.size, self.cfg.target_sigma)
        return 1.0 + self.cfg.target_weight * bump

    def denoising_loss(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor,
                       class_ids: torch.Tensor | None = None, target: torch.Tensor | None = None,
                       drop: torch.Tensor | None = None, weighted: bool = True,
                       net: nn.Module | None = None, joints: torch.Tensor | None = None,
                       tokens: torch.Tensor | None = None) -> torch.Tensor:
        """Per-image loss ``(N,)`` of the noise prediction at timesteps ``t`` with ``noise``; ``weighted``:
        Min-SNR and target weighting (the training loss), else the plain mean squared error."""
        net = net if net is not None else self.net("unet")
        xt = self.noise.add_noise(x0, noise, t)
        with self.autocast():
            pred = net(xt, t, class_ids if self.cfg.n_classes or self.cfg.text_layout else None,
                       target if "target" in self.cfg.cond or self.cfg.text_layout else None, drop,
                       joints=joints if self.cfg.n_joints else None,
                       **({"tokens": tokens} if "text" in self.cfg.cond else {}))
        se = (pred.float() - noise.float()) ** 2
        if not weighted:
            return se.mean(dim=(1, 2, 3))
        w = self._pixel_weight(x0, target)
        per = se.mean(dim=(1, 2, 3)) if w is None else (se * w).sum(dim=(1, 2, 3)) / (w.sum(dim=(1, 2, 3))
                                                                                      * se.shape[1])
        return per * self._snr_weight(t)

    def train_step(self, batch: dict[str, torch.Tensor], step: int) -> dict[str, float | torch.Tensor]:
        x0 = batch["latent"] if self.cfg.latent else batch["image"]
        if self.trainer is not None and self.trainer.channels_last:
            x0 = x0.contiguous(memory_format=torch.channels_last)
        n, dev = x0.shape[0], x0.device
        t = torch.randint(0, self.cfg.train_timesteps, (n,), device=dev)
        noise = torch.randn_like(x0)
        drop = torch.rand(n, device=dev) < self.cfg.guidance_dropout if self.cfg.cond else None
        tokens = batch.get("tokens")
        if tokens is not None and tokens.ndim == 3:  # one of each frame's phrasings
            tokens = tokens[torch.arange(n, device=dev), torch.randint(0, tokens.shape[1], (n,), device=dev)]
        loss = self.denoising_loss(x0, t, noise, batch.get("class_id"), batch.get("target"), drop,
                                   joints=batch.get("joints"), tokens=tokens).mean()
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        return {"loss": loss.detach()}

    def sample(self, n: int) -> torch.Tensor:
        y, c, q = _grid_conditions(n, self.cfg, self.targets, self.joints)
        pipe = Pipeline(self.cfg, self.eval_net("unet"), self.vae, self.noise.config)
        gen = torch.Generator().manual_seed(int(torch.randint(0, 2**31 - 1, ()).item()))
        tok = text_grid_tokens(self.cfg, n) if "text" in self.cfg.cond else None
        return pipe.generate(n, y, c, self.cfg.grid_sampler, self.cfg.grid_steps, self.cfg.grid_guidance, gen,
                             joints=q, tokens=tok)
