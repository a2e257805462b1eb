"""DCGAN and conditional GAN on armlab camera images, trained by the shared :class:`~generative.training.Trainer`.

Conditions (``cond``, a subset of ``("class", "target")``; empty = unconditional DCGAN):

* ``class``: the target object's shape class (``class_id``: cube, cylinder, sphere);
* ``target``: where the target's centre is in the image (``target``, ``pixel_norm`` in ``[0, 1]^2``).

Model
-----
Generator: :class:`~generative.networks.DCGANGenerator` with ``n_classes`` = 3 when conditioned on the class and
``cond_dim`` = 2 when conditioned on the target position (the raw ``(u, v)``). Discriminator: the spectrally
normalised projection discriminator :class:`~generative.networks.DCGANDiscriminator`, ``D(x, y, c) = w.h +
<embed(y), h> + <W phi(c), h>``. With ``target_bins`` > 0 (default 16) the discriminator sees the target position
through ``phi``, a fixed encoding of each coordinate by ``target_bins`` Gaussian bumps on ``[0, 1]`` (2 x 16
numbers): a projection on the raw ``(u, v)`` is linear in the position, so it can only reward "further right" but
never "exactly here"; with the bumps the projection term can peak at the right place. ``target_bins=0`` projects
the raw position.

Where-and-what maps (``spatial_cond``, on by default for new runs with the target condition): the same idea that
made the diffusion models learn the class (``generative.diffusion``): both networks also get, as extra image
channels, a Gaussian bump at the requested target position (``map_sigma`` = 0.04 image widths) in the channel of
the requested class (one channel per class; one channel when conditioned on the target alone). G gets them,
resized, at the input of every transposed convolution; D with the image. "A cube *here*" then becomes a local check
that a convolution can make, instead of a global vector that D must relate to a 4-7 px object somewhere in the
image.

Local class loss (``aux_class``; 1 by default for new runs conditioned on class and target, 0 = off): Odena et al.'s
AC-GAN, made local. A small :class:`LocalClassifier` is trained on real images only, on the crop of ``aux_crop``
image widths around the frame's target, to tell the class; G's loss adds ``aux_class`` times that classifier's
cross-entropy on G's crop at the requested target for the requested class. The projection and the maps tell D *what*
to check and *where*; this term gives G a direct gradient towards the requested shape, which a 4-7 px object
otherwise gets only through D's real/fake verdict. On the CPU benchmark it raised the probe's class accuracy on
generated images from 0.50x to 1.10x that on real renders (docs/benchmarks.md).

Loss: the hinge loss (Lim & Ye 2017; Miyato et al. 2018), ``L_D = E relu(1 - D(x)) + E relu(1 + D(G(z)))``,
``L_G = -E D(G(z))``; ``loss="ns"`` gives the non-saturating loss of Goodfellow et al. instead. Adam with learning
rate 2e-4 and betas (0.5, 0.999) for both networks (DCGAN's choice; one D step per G step). The trainer keeps an
EMA copy of G, which sampling and evaluation use. Each step draws one batch of fakes, updates D on
``concat(real, fake)`` (one forward pass) and then G through the updated D on the same fakes.

Augmentation (``augment``, off by default): DiffAugment-style differentiable augmentation (Zhao et al. 2020) of
every image D sees, real and fake, in both steps: ``color`` (brightness, saturation, contrast) and ``translation``
(shifts of up to 1/8 of the image, zero fill). A translation moves the target, so the ``target`` condition given
to D is shifted with it; flips and cutout are not offered (a flip would need the label flipped too, and cutout can
hide the target). It helps D not to memorise small datasets (a few hundred images); on thousands of images and
short runs it only slows learning.

API
---
* :class:`GANConfig`, :class:`GANTask` - the model as a :class:`~generative.training.TrainTask`.
* :func:`train_gan` - load a dataset, train (resumes automatically), write ``summary.json``.
* :func:`load_generator`, :func:`sample` - rebuild G from a run folder and draw images with given or
  data-distributed conditions.
* :func:`evaluate_gan` - probe metrics (:func:`generative.metrics.generation_report`) against a dataset.

A run folder holds ``config.json`` (the training and model settings), ``checkpoint.pt``, ``log.csv``, ``tb/``,
``samples/step_NNNNNN.png`` (grids: one class per row, the target sweeping left to right) and ``summary.json``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from generative.data import (
    DEFAULT_CLASSES,
    IMAGE_EXTENSIONS,
    DataError,
    atomic_write_bytes,
    is_armlab_dataset,
    load_tensors,
    open_images,
    sha256_file,
)
from generative.networks import (
    DCGANDiscriminator,
    DCGANGenerator,
    condition_maps,
    count_params,
    flops_per_image,
)
from generative.training import CHECKPOINT, TrainConfig, Trainer, TrainTask, load_checkpoint

__all__ = [
    "CONDITIONS",
    "GANConfig",
    "GANTask",
    "LocalClassifier",
    "evaluate_gan",
    "load_generator",
    "parse_cond",
    "sample",
    "train_gan",
]

CONDITIONS = ("class", "target")
LOSSES = ("hinge", "ns")
AUGMENTATIONS = ("color", "translation")
SUMMARY = "summary.json"
DEFAULT_AUX_CLASS = 1.0  #: the local class loss's weight for new runs conditioned on class and target


# ------------------------------------------------------------------------------------------------------ settings
def parse_cond(cond: str | Sequence[str] | None) -> tuple[str, ...]:
    """``"class,target"`` / ``["target"]`` / ``""`` / ``"none"`` / None -> the conditions in canonical order.

    A ValueError for anything but ``class`` and ``target``."""
    if cond is None:
        return ()
    items = cond.split(",") if isinstance(cond, str) else list(cond)
    items = [str(c).strip().lower() for c in items if str(c).strip()]
    if items in (["none"], ["uncond"], ["unconditional"]):
        return ()
    bad = [c for c in items if c not in CONDITIONS]
    if bad:
        raise ValueError(f"unknown condition {bad[0]!r}: --cond takes class, target or class,target")
    return tuple(c for c in CONDITIONS if c in items)


def parse_augment(augment: str | Sequence[str] | None) -> tuple[str, ...]:
    """``"color,translation"`` / ``""`` / ``"none"`` -> augmentations in canonical order; a ValueError otherwise."""
    if augment is None:
        return ()
    items = augment.split(",") if isinstance(augment, str) else list(augment)
    items = [str(a).strip().lower() for a in items if str(a).strip()]
    if items in (["none"], ["off"]):
        return ()
    bad = [a for a in items if a not in AUGMENTATIONS]
    if bad:
        raise ValueError(f"unknown augmentation {bad[0]!r}: choose from {', '.join(AUGMENTATIONS)} or none")
    return tuple(a for a in AUGMENTATIONS if a in items)


def check_size(size: int) -> int:
    """``size`` if it is a power of two of at least 8, else a ValueError in one sentence."""
    if not isinstance(size, int) or size < 8 or size & (size - 1):
        raise ValueError(f"--size must be a power of two of at least 8 (16, 32, 64, 128, ...), got {size!r}")
    return size


@dataclass
class GANConfig:
    """Everything that defines the model (saved in ``config.json`` and the checkpoint; enough to rebuild G).

    ``g_base`` / ``d_base``: the networks' base widths (G's 4x4 map has ``g_base * size / 8`` channels);
    ``target_bins``: Gaussian bumps per coordinate in D's encoding of the target position (0: raw position);
    ``loss``: ``hinge`` or ``ns``; ``augment``: a subset of ``("color", "translation")``; ``spatial_cond``: with the
    target condition, G and D also see the where-and-what maps of ``(class, target)`` (``map_sigma`` image widths;
    see the module docstring). Configs saved before it existed load with ``spatial_cond=False``. ``aux_class``: weight
    of the local class loss (AC-GAN style, 0 = off; needs the class and target conditions; `train_gan` turns it on
    for new runs that have both; configs saved before it existed load with 0): a small classifier
    trained on real crops of ``aux_crop`` image widths around the target must read the requested class from G's
    crop at the requested target (:class:`LocalClassifier`).
    """

    size: int = 64
    cond: tuple[str, ...] = ()
    classes: tuple[str, ...] = DEFAULT_CLASSES
    z_dim: int = 128
    g_base: int = 32
    d_base: int = 32
    embed_dim: int = 32
    target_bins: int = 16
    loss: str = "hinge"
    lr_g: float = 2e-4
    lr_d: float = 2e-4
    beta1: float = 0.5
    beta2: float = 0.999
    augment: tuple[str, ...] = ()
    spatial_cond: bool = True
    map_sigma: float = 0.04
    aux_class: float = 0.0
    aux_crop: float = 0.25
    data: dict[str, Any] = field(default_factory=dict)  # where the training data came from (informative)

    def __post_init__(self) -> None:
        check_size(self.size)
        self.cond = parse_cond(self.cond)
        self.augment = parse_augment(self.augment)
        self.classes = tuple(str(c) for c in self.classes)
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {', '.join(LOSSES)}, got {self.loss!r}")
        if min(self.z_dim, self.g_base, self.d_base, self.embed_dim) < 1 or self.target_bins < 0:
            raise ValueError("z_dim, g_base, d_base and embed_dim must be >= 1 and target_bins >= 0")
        if "class" in self.cond and len(self.classes) < 2:
            raise ValueError(f"a class-conditional GAN needs at least 2 classes, got {list(self.classes)}")
        if not (math.isfinite(self.aux_class) and self.aux_class >= 0):
            raise ValueError(f"aux_class must be a finite number >= 0, got {self.aux_class!r}")
        if self.aux_class > 0 and not {"class", "target"} <= set(self.cond):
            raise ValueError("the local class loss (aux_class > 0) needs the class and target conditions "
                             "(--cond class,target)")
        if not 0 < self.aux_crop <= 1:
            raise ValueError(f"aux_crop must be in (0, 1], got {self.aux_crop!r}")

    @property
    def n_classes(self) -> int:
        return len(self.classes) if "class" in self.cond else 0

    @property
    def cond_dim(self) -> int:
        return 2 if "target" in self.cond else 0

    @property
    def map_channels(self) -> int:
        """Channels of the where-and-what maps: one per class with the class condition, else one; 0 without the
        target condition or with ``spatial_cond`` off."""
        if not (self.spatial_cond and self.cond_dim):
            return 0
        return self.n_classes or 1

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        for k in ("cond", "classes", "augment"):
            d[k] = list(d[k])
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> GANConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{"spatial_cond": False, **{k: v for k, v in d.items() if k in names}})  # older runs: no maps

    def model_dict(self) -> dict[str, Any]:
        """The settings a resumed run must share with the checkpoint (all but ``data``)."""
        d = self.to_dict()
        d.pop("data")
        return d


# ------------------------------------------------------------------------------------------------------ networks
class TargetEncoding(nn.Module):
    """``(N, 2)`` positions in ``[0, 1]`` -> ``(N, 2 * bins)``: per coordinate, ``bins`` Gaussian bumps centred on
    ``linspace(0, 1, bins)`` with a standard deviation of one bin spacing. No parameters."""

    def __init__(self, bins: int):
        super().__init__()
        self.bins = int(bins)
        self.register_buffer("centres", torch.linspace(0.0, 1.0, self.bins), persistent=False)
        self.width = 1.0 / max(self.bins - 1, 1)

    def forward(self, c: torch.Tensor) -> torch.Tensor:
        d = (c.unsqueeze(-1) - self.centres.to(c.dtype)) / self.width  # (N, 2, bins)
        return torch.exp(-0.5 * d * d).flatten(1)


class Discriminator(nn.Module):
    """The projection discriminator, with the target position passed through :class:`TargetEncoding` first."""

    def __init__(self, cfg: GANConfig):
        super().__init__()
        self.encode = TargetEncoding(cfg.target_bins) if cfg.cond_dim and cfg.target_bins else None
        cond_dim = 2 * cfg.target_bins if self.encode is not None else cfg.cond_dim
        self.n_classes, self.map_channels, self.map_sigma, self.size = (cfg.n_classes, cfg.map_channels,
                                                                        cfg.map_sigma, cfg.size)
        self.net = DCGANDiscriminator(size=cfg.size, channels=3 + cfg.map_channels, base=cfg.d_base,
                                      n_classes=cfg.n_classes, cond_dim=cond_dim, spectral=True)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None, c: torch.Tensor | None = None) -> torch.Tensor:
        if self.map_channels:  # the image and, per pixel, where the target is asked for and which class
            m = condition_maps(y if self.map_channels > 1 else None, c, self.n_classes, x.shape[-1], self.size,
                               self.map_sigma)
            x = torch.cat([x, m.to(x.dtype)], 1)
        if c is not None and self.encode is not None:
            c = self.encode(c.float())
        return self.net(x, y, c)


class LocalClassifier(nn.Module):
    """What is at the target? A small CNN on the crop of side ``crop`` image widths centred on the target position,
    resampled to 16 x 16 (bilinear, zeros outside the image), -> ``(N, n_classes)`` logits.

    Trained on real images only (cross-entropy against the frame's class), so it learns what the data's shapes look
    like and never what G's fakes look like; G's loss adds ``aux_class`` x its cross-entropy on G's crop at the
    requested target against the requested class (Odena et al.'s AC-GAN, made local: the class is a 4-7 px object
    at a known place, which a classifier of the whole image sees poorly)."""

    out_px = 16

    def __init__(self, n_classes: int, crop: float = 0.25, width: int = 32):
        super().__init__()
        self.crop = float(crop)
        w = int(width)
        self.net = nn.Sequential(
            nn.Conv2d(3, w, 3, padding=1), nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(w, 2 * w, 4, stride=2, padding=1), nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(2 * w, 4 * w, 4, stride=2, padding=1), nn.LeakyReLU(0.2, inplace=True),
            nn.Flatten(1), nn.Linear(4 * w * (self.out_px // 4) ** 2, n_classes),
        )

    def crops(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """``(N, 3, 16, 16)`` crops of ``x`` centred on ``c`` (``(N, 2)`` pixel positions / image size; pixel
        centres at ``(i + 0.5) / size``)."""
        n, size = x.shape[0], x.shape[-1]
        theta = torch.zeros(n, 2, 3, device=x.device, dtype=torch.float32)
        theta[:, 0, 0] = theta[:, 1, 1] = self.crop
        theta[:, :, 2] = 2.0 * c.float() - 1.0 + 1.0 / size
        grid = F.affine_grid(theta, [n, x.shape[1], self.out_px, self.out_px], align_corners=False)
        return F.grid_sample(x.float(), grid, mode="bilinear", padding_mode="zeros", align_corners=False)

    def forward(self, crops: torch.Tensor) -> torch.Tensor:
        return self.net(crops)


def build_generator(cfg: GANConfig) -> DCGANGenerator:
    return DCGANGenerator(z_dim=cfg.z_dim, size=cfg.size, base=cfg.g_base, n_classes=cfg.n_classes,
                          cond_dim=cfg.cond_dim, embed_dim=cfg.embed_dim, map_channels=cfg.map_channels,
                          map_sigma=cfg.map_sigma)


# -------------------------------------------------------------------------------------------------- augmentation
def diff_augment(x: torch.Tensor, target: torch.Tensor | None, policy: Sequence[str]
                 ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Differentiable augmentation of images in ``[-1, 1]`` (N, C, H, W); translations shift ``target`` with the
    image. Random numbers come from torch's global RNG on ``x``'s device (seeded per step by the trainer)."""
    n = x.shape[0]
    if "color" in policy:
        x = x + (torch.rand(n, 1, 1, 1, device=x.device, dtype=x.dtype) - 0.5)  # brightness
        mean = x.mean(dim=1, keepdim=True)
        x = (x - mean) * (torch.rand(n, 1, 1, 1, device=x.device, dtype=x.dtype) * 2) + mean  # saturation
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        x = (x - mean) * (torch.rand(n, 1, 1, 1, device=x.device, dtype=x.dtype) + 0.5) + mean  # contrast
    if "translation" in policy:
        h, w = x.shape[-2:]
        sy, sx = max(1, h // 8), max(1, w // 8)
        dy = torch.randint(-sy, sy + 1, (n,), device=x.device)
        dx = torch.randint(-sx, sx + 1, (n,), device=x.device)
        pad = F.pad(x, (sx, sx, sy, sy))
        rows = (torch.arange(h, device=x.device).view(1, h) - dy.view(n, 1) + sy)  # (N, H) source rows
        cols = (torch.arange(w, device=x.device).view(1, w) - dx.view(n, 1) + sx)  # (N, W) source columns
        idx_n = torch.arange(n, device=x.device).view(n, 1, 1)
        x = pad.permute(0, 2, 3, 1)[idx_n, rows.view(n, h, 1), cols.view(n, 1, w)].permute(0, 3, 1, 2)
        if target is not None:
            shift = torch.stack([dx.to(target.dtype) / w, dy.to(target.dtype) / h], dim=1)
            target = target + shift
    return x.contiguous(), target


# ------------------------------------------------------------------------------------------------------- the task
class GANTask(TrainTask):
    """DCGAN / conditional GAN as a :class:`TrainTask` (see the module docstring).

    ``class_ids`` / ``targets``: the training labels (CPU tensors, ``(N,)`` and ``(N, 2)``). They are kept in the
    checkpoint (``extra_state``) so that :func:`sample` can draw conditions from the training distribution, and
    they set the sample grid's target sweep. ``init_seed`` seeds the networks' initial weights.
    ``channel_multiple`` > 1 pads G's and D's convolutions to channel counts that are multiples of it
    (:func:`generative.networks.aligned_conv`: the same function and parameters, tensor-core-friendly shapes; an
    execution setting, not part of the model or its checkpoint).
    """

    def __init__(self, cfg: GANConfig, class_ids: torch.Tensor | None = None, targets: torch.Tensor | None = None,
                 init_seed: int = 0, channel_multiple: int = 0):
        self.cfg = cfg
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(init_seed)
            self.G = build_generator(cfg)
            self.D = Discriminator(cfg)
            self.A = LocalClassifier(cfg.n_classes, cfg.aux_crop) if cfg.aux_class > 0 else None
        self.G.channel_multiple = self.D.net.channel_multiple = int(channel_multiple)
        betas = (cfg.beta1, cfg.beta2)
        self.opt_g = torch.optim.Adam(self.G.parameters(), lr=cfg.lr_g, betas=betas)
        self.opt_d = torch.optim.Adam(self.D.parameters(), lr=cfg.lr_d, betas=betas)
        self.opt_a = torch.optim.Adam(self.A.parameters(), lr=1e-3) if self.A is not None else None
        self.class_ids = None if class_ids is None else torch.as_tensor(class_ids).long().reshape(-1).cpu()
        self.targets = None if targets is None else torch.as_tensor(targets).float().reshape(-1, 2).cpu()

    # -- TrainTask interface
    def modules(self) -> dict[str, nn.Module]:
        return {"G": self.G, "D": self.D, **({"A": self.A} if self.A is not None else {})}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"G": self.opt_g, "D": self.opt_d, **({"A": self.opt_a} if self.opt_a is not None else {})}

    def ema_modules(self) -> list[str]:
        return ["G"]

    def config(self) -> dict[str, Any]:
        return self.cfg.to_dict()

    def extra_state(self) -> dict[str, Any]:
        state: dict[str, Any] = {}
        if self.class_ids is not None:
            state["class_ids"] = self.class_ids
        if self.targets is not None:
            state["targets"] = self.targets
        return state

    def load_extra_state(self, state: dict[str, Any]) -> None:
        pass  # the labels come with the data the task was built from

    def _conditions(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        y = batch["class_id"] if self.cfg.n_classes else None
        c = batch["target"].float() if self.cfg.cond_dim else None
        return y, c

    def _d_input(self, x: torch.Tensor, c: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        return diff_augment(x, c, self.cfg.augment) if self.cfg.augment else (x, c)

    def train_step(self, batch: dict[str, torch.Tensor], step: int) -> dict[str, float | torch.Tensor]:
        real = batch["image"]
        y, c = self._conditions(batch)
        n = real.shape[0]
        z = torch.randn(n, self.cfg.z_dim, device=real.device)
        with self.autocast():
            fake = self.net("G")(z, y, c)  # the fakes get the real batch's conditions: the label distribution
        # -- D step on real and fake in one forward pass
        fake_d, c_fake = self._d_input(fake, c)
        real_d, c_real = self._d_input(real, c)
        x_all = torch.cat([real_d, fake_d.detach().to(real_d.dtype)])
        y_all = torch.cat([y, y]) if y is not None else None
        c_all = torch.cat([c_real, c_fake]) if c is not None else None
        self.D.requires_grad_(True)
        with self.autocast():
            logits = self.net("D")(x_all, y_all, c_all).float()
        d_real, d_fake = logits[:n], logits[n:]
        if self.cfg.loss == "hinge":
            d_loss = F.relu(1 - d_real).mean() + F.relu(1 + d_fake).mean()
        else:
            d_loss = F.softplus(-d_real).mean() + F.softplus(d_fake).mean()
        self.opt_d.zero_grad(set_to_none=True)
        d_loss.backward()
        self.opt_d.step()
        out: dict[str, float | torch.Tensor] = {}
        if self.A is not None:  # the local classifier learns the real shapes at the real targets
            a_logits = self.net("A")(self.A.crops(real, c)).float()
            a_loss = F.cross_entropy(a_logits, y)
            self.opt_a.zero_grad(set_to_none=True)
            a_loss.backward()
            self.opt_a.step()
            out["a_loss"] = a_loss.detach()
            out["a_acc_real"] = (a_logits.argmax(1) == y).float().mean().detach()
        # -- G step through the updated D (unwrapped: no gradient is wanted for D here)
        self.D.requires_grad_(False)
        with self.autocast():
            g_logits = self.D(fake_d, y, c_fake).float()
        g_loss = -g_logits.mean() if self.cfg.loss == "hinge" else F.softplus(-g_logits).mean()
        if self.A is not None:
            self.A.requires_grad_(False)
            fake_logits = self.A(self.A.crops(fake, c)).float()
            g_class = F.cross_entropy(fake_logits, y)
            g_loss = g_loss + self.cfg.aux_class * g_class
            out["g_class"] = g_class.detach()
            out["a_acc_fake"] = (fake_logits.argmax(1) == y).float().mean().detach()
        self.opt_g.zero_grad(set_to_none=True)
        g_loss.backward()
        self.opt_g.step()
        self.D.requires_grad_(True)
        if self.A is not None:
            self.A.requires_grad_(True)
        with torch.no_grad():
            d_acc = 0.5 * ((d_real > 0).float().mean() + (d_fake < 0).float().mean())
        return {"d_loss": d_loss.detach(), "g_loss": g_loss.detach(), "d_real": d_real.detach().mean(),
                "d_fake": d_fake.detach().mean(), "d_acc": d_acc, **out}

    def grid_conditions(self, n: int) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """The sample grid's fixed conditions: one class per row (cycling through the classes), the target sweeping
        from the 10th to the 90th percentile of the training ``u`` across the columns, at the 30th / 70th percentile
        of ``v`` (alternating per round of classes)."""
        ncol = max(1, math.ceil(math.sqrt(n)))
        i = torch.arange(n)
        row, col = i // ncol, i % ncol
        y = (row % self.cfg.n_classes) if self.cfg.n_classes else None
        c = None
        if self.cfg.cond_dim:
            t = self.targets
            t = t[torch.isfinite(t).all(1)] if t is not None else None
            if t is None or len(t) == 0:
                t = torch.tensor([[0.2, 0.4], [0.8, 0.6]])
            u_lo, u_hi = torch.quantile(t[:, 0], 0.1).item(), torch.quantile(t[:, 0], 0.9).item()
            v_lo, v_hi = torch.quantile(t[:, 1], 0.3).item(), torch.quantile(t[:, 1], 0.7).item()
            u = u_lo + (u_hi - u_lo) * col.float() / max(ncol - 1, 1)
            rounds = row // max(self.cfg.n_classes, 1)
            v = torch.where(rounds % 2 == 0, torch.tensor(v_lo), torch.tensor(v_hi))
            c = torch.stack([u, v], 1)
        return y, c

    def sample(self, n: int) -> torch.Tensor:
        y, c = self.grid_conditions(n)
        z = torch.randn(n, self.cfg.z_dim)
        dev = self.device
        return self.eval_net("G")(z.to(dev), None if y is None else y.to(dev), None if c is None else c.to(dev))


# ------------------------------------------------------------------------------------------------------ training
def _load_data(data_dir: str | Path, size: int, cond: tuple[str, ...], limit: int | None = None,
               progress: bool = False) -> tuple[dict[str, torch.Tensor], list[str], dict[str, Any]]:
    """The training tensors, the class names and a description of the data (path, manifest hash, frames)."""
    root = Path(data_dir)
    if not root.exists():
        raise DataError(f"dataset folder {str(root)!r} does not exist")
    if not root.is_dir():
        raise DataError(f"{str(root)!r} is not a dataset folder")
    if not is_armlab_dataset(root) and not any(p.suffix.lower() in IMAGE_EXTENSIONS for p in root.rglob("*")):
        raise DataError(f"{str(root)!r} is not a dataset: no manifest.json (armlab dataset) and no images")
    ds = open_images(root, size)
    classes = list(getattr(ds, "classes", DEFAULT_CLASSES))
    if cond and not hasattr(ds, "classes"):
        raise DataError(f"{str(root)!r} is a plain image folder (no manifest.json): a GAN conditioned on "
                        f"{','.join(cond)} needs an armlab dataset with labels")
    data = load_tensors(ds, limit=limit, progress=progress)
    keep = torch.ones(len(data["image"]), dtype=torch.bool)
    if "class" in cond:
        keep &= (data["class_id"] >= 0) & (data["class_id"] < len(classes))
    if "target" in cond:
        keep &= torch.isfinite(data["target"]).all(1)
    if not keep.all():
        data = {k: v[keep] for k, v in data.items()}
    if len(data["image"]) == 0:
        raise DataError(f"dataset {str(root)!r} holds no frames with the labels {','.join(cond)}")
    wanted = ["image"] + (["class_id"] if "class" in cond else []) + (["target"] if "target" in cond else [])
    data = {k: data[k] for k in wanted}
    manifest = root / "manifest.json"
    info = {"path": str(root), "frames": len(data["image"]),
            "manifest_sha256": sha256_file(manifest) if manifest.is_file() else None}
    return data, classes, info


def _saved_task_config(out: Path) -> dict[str, Any] | None:
    """The task configuration in ``out``'s checkpoint ({} if it has none), or None without a checkpoint."""
    if not (out / CHECKPOINT).is_file():
        return None
    saved = load_checkpoint(out / CHECKPOINT).get("task_config")
    return saved if isinstance(saved, dict) else {}


def _check_resume(out: Path, cfg: GANConfig, saved: dict[str, Any] | None) -> None:
    """A run folder with a checkpoint (``saved``: its task configuration, see :func:`_saved_task_config`) must have
    been trained with the same model settings and data."""
    if saved is None:
        return
    try:
        old = GANConfig.from_dict(saved)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{out} holds a checkpoint that is not a GAN run; use another output folder") from exc
    mine, theirs = cfg.model_dict(), old.model_dict()
    diff = [k for k in mine if mine[k] != theirs.get(k)]
    if diff:
        k = diff[0]
        raise ValueError(f"run {out} was trained with {k}={theirs.get(k)!r}, not {mine[k]!r}; use another output "
                         "folder to train with new settings")
    sha_old, sha_new = old.data.get("manifest_sha256"), cfg.data.get("manifest_sha256")
    if sha_old and sha_new and sha_old != sha_new:
        raise ValueError(f"run {out} was trained on another dataset ({old.data.get('path')}); use another output "
                         "folder or the same data")


def train_gan(
    data_dir: str | Path,
    out: str | Path,
    steps: int,
    cond: str | Sequence[str] | None = (),
    size: int = 64,
    batch_size: int = 64,
    seed: int = 0,
    device: str = "auto",
    *,
    g_base: int = 32,
    d_base: int = 32,
    z_dim: int = 128,
    target_bins: int = 16,
    loss: str = "hinge",
    lr: float = 2e-4,
    beta1: float = 0.5,
    augment: str | Sequence[str] | None = (),
    spatial_cond: bool | None = None,
    aux_class: float | None = None,
    limit: int | None = None,
    log_every: int = 50,
    sample_every: int = 500,
    checkpoint_every: int = 500,
    ema_decay: float = 0.999,
    n_samples: int = 36,
    progress: bool = True,
    tensorboard: bool = True,
    time_limit_s: float | None = None,
    pad_channels: bool | None = None,
    compile: str | bool = "off",
    checkpoints: bool = True,
) -> dict[str, Any]:
    """Train a (conditional) GAN on the dataset at ``data_dir`` into the run folder ``out``; returns a summary.

    Resumes from ``out/checkpoint.pt`` when there is one (a finished run given a larger ``steps`` continues); the
    model settings and the data must then be those of the checkpoint (a ValueError otherwise). The summary (also
    written to ``out/summary.json``): the trainer's (``steps``, ``start_step``, ``steps_run``, ``images_per_s``,
    ``wall_time_s``, ``losses``) plus ``out``, ``cond``, ``n_train``, parameter counts, ``train_flops_per_image``
    (about 3 x the forward FLOPs of G and 8 x those of D per image, counted on the model's own layers) and
    ``gflops_per_s``.

    Speed settings (they change how, not what, is computed, and a resumed run may change them):
    ``pad_channels`` pads the convolutions' channel counts to multiples of 8 (:class:`GANTask`'s
    ``channel_multiple``; None = on CUDA only: cuDNN's bf16 kernels want them, and the condition maps make counts
    like 515); ``compile`` a ``torch.compile`` mode for G, D and the local classifier
    (``generative.training.TrainConfig``; default off); ``checkpoints=False`` writes no checkpoint (throughput
    measurements only).
    """
    if int(steps) < 1:
        raise ValueError(f"--steps must be at least 1, got {steps}")
    check_size(size)
    if int(batch_size) < 1:
        raise ValueError(f"--batch-size must be at least 1, got {batch_size}")
    cond_t = parse_cond(cond)
    out = Path(out)
    data, classes, info = _load_data(data_dir, size, cond_t, limit=limit, progress=progress)
    saved = _saved_task_config(out)
    if spatial_cond is None:  # a new run: on; a resumed one: as it was trained
        spatial_cond = bool(saved.get("spatial_cond", False)) if saved is not None else True
    if aux_class is None:  # a new run: 1 with both conditions, else 0; a resumed one: as it was trained
        both = {"class", "target"} <= set(cond_t)  # (without them, a resume fails on the conditions, named first)
        aux_class = float(saved.get("aux_class", 0.0)) if saved is not None and both else DEFAULT_AUX_CLASS * both
    cfg = GANConfig(size=size, cond=cond_t, classes=tuple(classes), z_dim=z_dim, g_base=g_base, d_base=d_base,
                    target_bins=target_bins, loss=loss, lr_g=lr, lr_d=lr, beta1=beta1, augment=augment,
                    spatial_cond=spatial_cond, aux_class=aux_class, data=info)
    _check_resume(out, cfg, saved)
    if pad_channels is None:
        pad_channels = _pick_device(device).type == "cuda"
    task = GANTask(cfg, data.get("class_id"), data.get("target"), init_seed=seed,
                   channel_multiple=8 if pad_channels else 0)
    tcfg = TrainConfig(out=out, steps=int(steps), batch_size=int(batch_size), seed=seed, device=device,
                       log_every=log_every, sample_every=sample_every, checkpoint_every=checkpoint_every,
                       ema_decay=ema_decay, progress=progress, tensorboard=tensorboard, n_samples=n_samples,
                       time_limit_s=time_limit_s, compile=compile, checkpoints=checkpoints)
    trainer = Trainer(task, data, tcfg)
    summary = trainer.fit()
    flops = _train_flops(cfg)
    ips = summary.get("images_per_s")
    summary.update({
        "out": str(out), "cond": list(cfg.cond), "size": size, "batch_size": int(batch_size),
        "spatial_cond": cfg.spatial_cond, "aux_class": cfg.aux_class,
        "pad_channels": bool(pad_channels), "compile": tcfg.compile, "amp_bf16": trainer.amp,
        "n_train": len(data["image"]),
        "params_g": count_params(task.G), "params_d": count_params(task.D), "train_flops_per_image": flops,
        "gflops_per_s": ips * flops / 1e9 if ips else None, "device": str(trainer.device),
        "threads": torch.get_num_threads(),
    })
    old = _read_summary(out)
    history = list(old.get("history", [])) if old else []
    history.append({k: summary[k] for k in ("start_step", "steps", "steps_run", "images_per_s", "wall_time_s")})
    summary["history"] = history
    atomic_write_bytes(out / SUMMARY, (json.dumps(summary, indent=2, default=str) + "\n").encode())
    return summary


def _train_flops(cfg: GANConfig) -> int:
    """Approximate training FLOPs per image: G forward + backward (3x), D forward + backward on real and fake, and
    D forward + input backward in the G step (about 2 x 3x + 2x)."""
    def count(device: str) -> int:
        with torch.random.fork_rng(devices=[]), torch.device(device):
            G, D = build_generator(cfg), Discriminator(cfg)
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


def _read_summary(run_dir: Path) -> dict[str, Any] | None:
    try:
        return json.loads((Path(run_dir) / SUMMARY).read_text())
    except (OSError, ValueError):
        return None


# ------------------------------------------------------------------------------------------------------ sampling
def _load_run(run_dir: str | Path, device: str | torch.device = "cpu") -> tuple[GANConfig, dict[str, Any]]:
    """The run's :class:`GANConfig` and checkpoint; a ValueError in one sentence for missing or broken runs."""
    run = Path(run_dir)
    if not run.exists():
        raise ValueError(f"run folder {str(run)!r} does not exist")
    if not run.is_dir():
        raise ValueError(f"{str(run)!r} is not a run folder")
    path = run / CHECKPOINT
    if not path.is_file():
        raise ValueError(f"run folder {str(run)!r} holds no checkpoint ({CHECKPOINT}): train it first")
    ckpt = load_checkpoint(path, map_location=device)
    task_config = ckpt.get("task_config")
    cfg_path = run / "config.json"
    if cfg_path.is_file():
        try:
            saved = json.loads(cfg_path.read_text())
        except (OSError, ValueError):
            saved = {}
        if saved.get("task_class") and not str(saved["task_class"]).endswith(".GANTask"):
            raise ValueError(f"run folder {str(run)!r} holds a {saved['task_class']} run, not a GAN")
    try:
        if not isinstance(task_config, dict) or "z_dim" not in task_config:
            raise TypeError("no GAN settings")
        cfg = GANConfig.from_dict(task_config)
        if "G" not in ckpt["modules"]:
            raise KeyError("G")
    except (TypeError, ValueError, KeyError) as exc:
        raise ValueError(f"checkpoint {path} is not a GAN checkpoint ({exc})") from exc
    return cfg, ckpt


def _pick_device(device: str | torch.device) -> torch.device:
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def _generator_from(cfg: GANConfig, ckpt: dict[str, Any], path: Path, device: torch.device,
                    ema: bool) -> DCGANGenerator:
    G = build_generator(cfg)
    state = ckpt["ema"].get("G") if ema and ckpt.get("ema") else None
    state = state if state is not None else ckpt["modules"]["G"]
    try:
        G.load_state_dict(state)
    except RuntimeError as exc:
        raise ValueError(f"checkpoint {path} does not fit its GAN settings ({str(exc).splitlines()[0]})") from exc
    return G.to(device).eval().requires_grad_(False)


def load_generator(run_dir: str | Path, device: str | torch.device = "cpu", ema: bool = True) -> DCGANGenerator:
    """G of the run in ``run_dir`` (its EMA copy with ``ema``, if the run kept one), in eval mode on ``device``,
    rebuilt from the run's settings; ``G.gan_config`` is its :class:`GANConfig`. A ValueError for a missing run,
    one without a checkpoint, or a corrupt / foreign checkpoint."""
    dev = _pick_device(device)
    cfg, ckpt = _load_run(run_dir, dev)
    G = _generator_from(cfg, ckpt, Path(run_dir) / CHECKPOINT, dev, ema)
    G.gan_config = cfg
    return G


def _as_class_ids(value: Any, classes: Sequence[str], n: int) -> torch.Tensor:
    if isinstance(value, (str, int, np.integer)):
        value = [value]
    ids = []
    for v in list(value):
        if isinstance(v, str) and not v.strip().lstrip("-").isdigit():
            if v.strip().lower() not in [c.lower() for c in classes]:
                raise ValueError(f"unknown class {v!r}: this model knows {', '.join(classes)}")
            ids.append([c.lower() for c in classes].index(v.strip().lower()))
        else:
            i = int(v)
            if not 0 <= i < len(classes):
                raise ValueError(f"class id {i} is outside 0..{len(classes) - 1} ({', '.join(classes)})")
            ids.append(i)
    t = torch.tensor(ids, dtype=torch.long)
    if len(t) == 1:
        t = t.expand(n).clone()
    if len(t) != n:
        raise ValueError(f"{len(t)} class ids for {n} images")
    return t


def _as_targets(value: Any, n: int) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(value, dtype=np.float32)).reshape(-1, 2)
    if len(t) == 1:
        t = t.expand(n, 2).clone()
    if len(t) != n:
        raise ValueError(f"{len(t)} targets for {n} images")
    if not (torch.isfinite(t).all() and (t >= 0).all() and (t <= 1).all()):
        raise ValueError("target positions must be pixel_norm values in [0, 1], e.g. 0.4,0.6")
    return t


def _draw_conditions(cfg: GANConfig, ckpt: dict[str, Any], n: int, cond: dict[str, Any] | None,
                     gen: torch.Generator) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """Requested conditions, completed by drawing training frames' labels (seeded by ``gen``): conditions not given
    are drawn from the training frames (of the requested class, when the class is given)."""
    cond = dict(cond or {})
    unknown = [k for k in cond if k not in ("class_id", "target")]
    if unknown:
        raise ValueError(f"unknown condition key {unknown[0]!r}: use class_id and target")
    if cond.get("class_id") is not None and not cfg.n_classes:
        raise ValueError("this GAN is not conditioned on the class: leave the class out")
    if cond.get("target") is not None and not cfg.cond_dim:
        raise ValueError("this GAN is not conditioned on the target position: leave the target out")
    y = _as_class_ids(cond["class_id"], cfg.classes, n) if cond.get("class_id") is not None else None
    c = _as_targets(cond["target"], n) if cond.get("target") is not None else None
    extra = ckpt.get("extra") or {}
    tr_y = extra.get("class_ids")
    tr_c = extra.get("targets")
    tr_y = tr_y.cpu() if tr_y is not None else None
    tr_c = tr_c.cpu().float() if tr_c is not None else None
    need_y = cfg.n_classes and y is None
    need_c = cfg.cond_dim and c is None
    if need_y:
        if tr_y is None or len(tr_y) == 0:
            y = torch.randint(0, cfg.n_classes, (n,), generator=gen)
        else:
            idx = torch.randint(0, len(tr_y), (n,), generator=gen)
            y = tr_y[idx].long()
            if need_c and tr_c is not None and len(tr_c) == len(tr_y):
                c = tr_c[idx]  # the joint distribution: class and target of the same frames
    if cfg.cond_dim and c is None:
        if tr_c is None or len(tr_c) == 0:
            c = 0.25 + 0.5 * torch.rand(n, 2, generator=gen)
        elif y is not None and tr_y is not None and len(tr_y) == len(tr_c):
            c = torch.empty(n, 2)
            for k in y.unique().tolist():  # targets of training frames of the requested class
                sel = y == k
                pool = tr_c[tr_y == k] if (tr_y == k).any() else tr_c
                c[sel] = pool[torch.randint(0, len(pool), (int(sel.sum()),), generator=gen)]
        else:
            c = tr_c[torch.randint(0, len(tr_c), (n,), generator=gen)]
    return y, c


@torch.no_grad()
def _generate(G: DCGANGenerator, n: int, y: torch.Tensor | None, c: torch.Tensor | None, gen: torch.Generator,
              batch_size: int = 256) -> np.ndarray:
    """uint8 NHWC images from G (eval mode); z drawn from ``gen`` on the CPU."""
    dev = next(G.parameters()).device
    z = torch.randn(n, G.z_dim, generator=gen)
    out = []
    for i in range(0, n, batch_size):
        sl = slice(i, i + batch_size)
        x = G(z[sl].to(dev), None if y is None else y[sl].to(dev), None if c is None else c[sl].to(dev))
        out.append(((x.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).cpu())
    return torch.cat(out).numpy()


def sample(
    run_dir: str | Path,
    n: int,
    cond: dict[str, Any] | None = None,
    seed: int = 0,
    device: str | torch.device = "cpu",
    ema: bool = True,
    batch_size: int = 256,
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """``n`` images from the run's generator: ``(uint8 images (n, H, W, 3), class_ids (n,) or None, targets (n, 2)
    or None)``, the last two the conditions used (None for conditions the model does not take).

    ``cond``: None to draw the conditions from the training frames' labels (class and target of the same frames),
    or a dict with ``class_id`` (an id, a class name, or one per image) and / or ``target`` (one ``(u, v)`` in
    ``[0, 1]`` or one per image); what is left out is drawn from the training frames (of the given class).
    Everything random is a function of ``seed``."""
    if int(n) < 1:
        raise ValueError(f"--n must be at least 1, got {n}")
    dev = _pick_device(device)
    cfg, ckpt = _load_run(run_dir, dev)
    G = _generator_from(cfg, ckpt, Path(run_dir) / CHECKPOINT, dev, ema)
    gen = torch.Generator().manual_seed(int(seed))
    y, c = _draw_conditions(cfg, ckpt, int(n), cond, gen)
    images = _generate(G, int(n), y, c, gen, batch_size)
    return images, (None if y is None else y.numpy()), (None if c is None else c.numpy())


def run_config(run_dir: str | Path) -> GANConfig:
    """The :class:`GANConfig` of a run (from its checkpoint)."""
    return _load_run(run_dir)[0]


# ---------------------------------------------------------------------------------------------------- evaluation
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
) -> dict[str, Any]:
    """Probe metrics of the run's generator against the armlab dataset at ``data_dir``.

    The probe is :func:`generative.metrics.probe_for` ``(data_dir, size, quick=quick)`` (trained once per dataset
    and cached; ``probe_steps`` overrides its training length). ``n`` real frames are drawn from the dataset
    (seeded); ``n`` fakes are generated with the *same frames'* labels as conditions, so real and fake share one
    label distribution. Returns :func:`generative.metrics.generation_report` (``class_acc_ratio``,
    ``pos_err_ratio``, ``diversity_ratio``, ``fid_custom``, ...; the conditioning keys None for conditions the
    model does not take) plus ``cond``, ``steps`` (the checkpoint's), ``train_images_per_s`` (from the run's
    summary, if recorded), ``probe_from_cache`` and ``eval_seconds``.
    """
    from generative.metrics import generation_report, probe_for

    t0 = time.perf_counter()
    if int(n) < 2:
        raise ValueError(f"--n must be at least 2 (FID needs two images), got {n}")
    dev = _pick_device(device)
    cfg, ckpt = _load_run(run_dir, dev)
    G = _generator_from(cfg, ckpt, Path(run_dir) / CHECKPOINT, dev, ema)
    root = Path(data_dir)
    if not root.exists():
        raise DataError(f"dataset folder {str(root)!r} does not exist")
    if not (root / "manifest.json").is_file():
        raise DataError(f"{str(root)!r} is not an armlab dataset: no manifest.json (the probe needs its labels)")
    ds = open_images(root, cfg.size)
    gen = torch.Generator().manual_seed(int(seed))
    n_use = min(int(n), len(ds))
    idx = torch.randperm(len(ds), generator=gen)[:n_use].sort().values.tolist()
    real = load_tensors(_Subset(ds, idx), progress=progress)
    probe = probe_for(root, cfg.size, quick=quick, steps=probe_steps, device=dev, progress=progress)
    y = real["class_id"].clone() if cfg.n_classes else None
    c = real["target"].clone() if cfg.cond_dim else None
    if y is not None and ((y < 0) | (y >= cfg.n_classes)).any():
        bad = (y < 0) | (y >= cfg.n_classes)
        y[bad] = torch.randint(0, cfg.n_classes, (int(bad.sum()),), generator=gen)
    if c is not None and not torch.isfinite(c).all():
        bad = ~torch.isfinite(c).all(1)
        c[bad] = 0.5
    fake_images = _generate(G, n_use, y, c, gen)
    fake: dict[str, Any] = {"image": torch.from_numpy(fake_images).permute(0, 3, 1, 2)}
    if y is not None:
        fake["class_id"] = y
    if c is not None:
        fake["target"] = c
    report = generation_report(probe, real, fake, seed=int(seed))
    summary = _read_summary(Path(run_dir)) or {}
    report.update({
        "cond": list(cfg.cond), "steps": int(ckpt.get("step", 0)), "size": cfg.size,
        "train_images_per_s": summary.get("images_per_s"),
        "probe_from_cache": bool(getattr(probe, "from_cache", False)),
        "eval_seconds": time.perf_counter() - t0,
    })
    return report


class _Subset(torch.utils.data.Dataset):
    def __init__(self, ds: torch.utils.data.Dataset, idx: list[int]):
        self.ds, self.idx = ds, idx

    def __len__(self) -> int:
        return len(self.idx)

    def __getitem__(self, i: int) -> Any:
        return self.ds[self.idx[i]]
