"""The GAN's networks beyond the shared ones: the target encoding, the discriminator, the local classifier, and
DiffAugment."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from generative.gan.config import GANConfig
from generative.networks import DCGANDiscriminator, DCGANGenerator, condition_maps

__all__ = ["Discriminator", "LocalClassifier", "TargetEncoding", "build_discriminator", "build_generator",
           "diff_augment"]


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
    resampled to 16 x 16 (bilinear, zeros outside the image), -> ``(N, n_classes)`` logits (one more with
    ``fake_class``).

    Trained on real images (cross-entropy against the frame's class; without ``fake_class``, on real images only,
    so it learns what the data's shapes look like and never what G's fakes look like); G's loss adds
    ``aux_class`` x its cross-entropy on G's crop at the requested target against the requested class (Odena et
    al.'s AC-GAN, made local: the class is a 4-7 px object at a known place, which a classifier of the whole image
    sees poorly).

    ``augment``: both the classifier's steps and G's loss see each crop through a random transformation (its centre
    moved by up to 1.5 px, its scale by up to 15 %, a horizontal flip, brightness, contrast and saturation, pixel
    noise): G must then be read right over a whole neighbourhood of views (an expectation over transformations,
    Athalye et al. 2018) and cannot satisfy the classifier with a few pixels that only it reads.

    ``fake_class``: the classifier has one more class, G's own crops (Salimans et al. 2016's K + 1 classifier, made
    local): its steps also see the fakes' crops (detached) as that class, so what G draws at the target must look
    like a real object of the requested class to a classifier that keeps learning G's tells."""

    out_px = 16

    def __init__(self, n_classes: int, crop: float = 0.25, width: int = 32, augment: bool = False,
                 fake_class: bool = False):
        super().__init__()
        self.crop = float(crop)
        self.augment = bool(augment)
        self.n_classes, self.fake_class = int(n_classes), bool(fake_class)
        w = int(width)
        self.net = nn.Sequential(
            nn.Conv2d(3, w, 3, padding=1), nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(w, 2 * w, 4, stride=2, padding=1), nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(2 * w, 4 * w, 4, stride=2, padding=1), nn.LeakyReLU(0.2, inplace=True),
            nn.Flatten(1), nn.Linear(4 * w * (self.out_px // 4) ** 2, self.n_classes + self.fake_class),
        )

    def crops(self, x: torch.Tensor, c: torch.Tensor, jitter: bool = False) -> torch.Tensor:
        """``(N, 3, 16, 16)`` crops of ``x`` centred on ``c`` (``(N, 2)`` pixel positions / image size; pixel
        centres at ``(i + 0.5) / size``); ``jitter``: through this classifier's random views (``augment``; torch's
        global RNG, seeded per step by the trainer), differentiable in ``x``."""
        n, size = x.shape[0], x.shape[-1]
        theta = torch.zeros(n, 2, 3, device=x.device, dtype=torch.float32)
        theta[:, 0, 0] = theta[:, 1, 1] = self.crop
        theta[:, :, 2] = 2.0 * c.float() - 1.0 + 1.0 / size
        jitter = jitter and self.augment
        if jitter:
            scale = 1.0 + 0.15 * (2.0 * torch.rand(n, device=x.device) - 1.0)
            flip = torch.where(torch.rand(n, device=x.device) < 0.5, -1.0, 1.0)
            theta[:, 0, 0] = self.crop * scale * flip
            theta[:, 1, 1] = self.crop * scale
            theta[:, :, 2] += (2.0 * torch.rand(n, 2, device=x.device) - 1.0) * (2.0 * 1.5 / size)
        grid = F.affine_grid(theta, [n, x.shape[1], self.out_px, self.out_px], align_corners=False)
        out = F.grid_sample(x.float(), grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        if jitter:
            u = torch.rand(n, 3, 1, 1, 1, device=x.device)
            out = out + 0.4 * (u[:, 0] - 0.5)  # brightness
            mean = out.mean(dim=1, keepdim=True)
            out = (out - mean) * (0.5 + u[:, 1]) + mean  # saturation
            mean = out.mean(dim=(1, 2, 3), keepdim=True)
            out = (out - mean) * (0.7 + 0.6 * u[:, 2]) + mean  # contrast
            out = out + 0.05 * torch.randn_like(out)
        return out

    def forward(self, crops: torch.Tensor) -> torch.Tensor:
        return self.net(crops)

    def learn(self, opt: torch.optim.Optimizer, real: torch.Tensor, c: torch.Tensor, y: torch.Tensor,
              net: nn.Module | None = None, fake: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """One step of ``opt`` on the real images' crops at ``c`` against their classes ``y`` (with ``fake_class``,
        also on ``fake``'s crops at ``c``, detached, against the fake class); ``net``: this module or its DDP
        wrapper. Returns the (detached) loss and the accuracy on the reals."""
        n = real.shape[0]
        x = self.crops(real, c, jitter=True)
        target = y
        if self.fake_class and fake is not None:
            x = torch.cat([x, self.crops(fake.detach(), c, jitter=True)])
            target = torch.cat([y, torch.full_like(y, self.n_classes)])
        logits = (net or self)(x).float()
        loss = F.cross_entropy(logits, target)
        logits = logits[:n]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss.detach(), (logits.argmax(1) == y).float().mean().detach()

    def class_loss(self, fake: torch.Tensor, c: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The generator's local class loss: the cross-entropy of the crops of ``fake`` at ``c`` against the
        requested ``y`` (its gradient reaches ``fake`` only: the classifier is frozen until the caller sets
        ``requires_grad_(True)`` again) and the (detached) accuracy."""
        self.requires_grad_(False)
        logits = self(self.crops(fake, c, jitter=True)).float()
        return F.cross_entropy(logits, y), (logits.argmax(1) == y).float().mean().detach()


def build_generator(cfg: GANConfig) -> nn.Module:
    """G of ``cfg.arch``: the DCGAN generator, :class:`~generative.gan.stylegan.StyleGenerator` or
    :class:`~generative.gan.progan.ProGenerator`; every one is called ``G(z, y, c)`` and has ``z_dim``."""
    if cfg.arch == "stylegan2":
        from generative.gan.stylegan import StyleGenerator

        return StyleGenerator(cfg)
    if cfg.arch == "progan":
        from generative.gan.progan import ProGenerator

        return ProGenerator(cfg)
    return DCGANGenerator(z_dim=cfg.z_dim, size=cfg.size, base=cfg.g_base, n_classes=cfg.n_classes,
                          cond_dim=cfg.cond_dim, embed_dim=cfg.embed_dim, map_channels=cfg.map_channels,
                          map_sigma=cfg.map_sigma)


def build_discriminator(cfg: GANConfig) -> nn.Module:
    """D of ``cfg.arch`` (:class:`Discriminator`, the residual or the growing one); ``D(x, y, c)`` -> logits."""
    if cfg.arch == "stylegan2":
        from generative.gan.stylegan import ResidualDiscriminator

        return ResidualDiscriminator(cfg)
    if cfg.arch == "progan":
        from generative.gan.progan import ProDiscriminator

        return ProDiscriminator(cfg)
    return Discriminator(cfg)


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
