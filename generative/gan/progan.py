"""Progressive GAN (Karras et al. 2018): a generator and discriminator that grow 8 -> 16 -> ... -> size px with
fade-in, equalized learning rate, pixel norm and the minibatch standard deviation, conditioned on class and target.

Schedule (:func:`progress`): phase 0 trains 8 px for ``phase_steps`` steps; each later phase adds the next
resolution and lasts ``phase_steps`` steps, its first half fading the new layers in (``alpha`` 0 -> 1: the output
is ``lerp(upsample(toRGB_old(h_old)), toRGB_new(h_new), alpha)``, D's input ``lerp(fromRGB_old(downsample(x)),
block_new(fromRGB_new(x)), alpha)``), its second half stable; the last phase runs on. The step fixes the phase and
alpha, so a run resumed mid-phase continues exactly. G and D keep the level and alpha as buffers (checkpointed;
the EMA copy follows), and ``G(z, y, c)`` returns the image at the current resolution, upsampled to ``size``.

Generator: pixel-normalised z with the class embedding and the target's Fourier features, a linear layer to 4 x 4,
a 3 x 3 convolution, then per resolution a 2x nearest upsampling and two 3 x 3 convolutions (LeakyReLU, pixel norm
after each), the where-and-what maps concatenated at each resolution's input; a 1 x 1 toRGB per resolution.
Discriminator: the mirror image (fromRGB of the image and the maps per resolution, two 3 x 3 convolutions and a 2x
average pool per resolution, minibatch stddev, 3 x 3 convolution and a linear layer at 4 x 4) with the projection
head. Channels as StyleGAN2's (:func:`~generative.gan.stylegan.channels_at`).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from generative.gan.config import GANConfig
from generative.gan.layers import (
    EqualConv2d,
    EqualLinear,
    FourierFeatures,
    ProjectionHead,
    condition_input,
    minibatch_stddev,
    pixel_norm,
)
from generative.gan.stylegan import channels_at
from generative.networks import condition_maps

__all__ = ["ProDiscriminator", "ProGenerator", "n_levels", "progress", "resolution_of"]


def n_levels(size: int) -> int:
    """Resolutions trained: 8, 16, ..., size."""
    return int(math.log2(size)) - 2


def resolution_of(level: int) -> int:
    return 8 * 2**level


def progress(step: int, phase_steps: int, size: int) -> tuple[int, float, int]:
    """``(level, alpha, phase)`` at training step ``step`` (0-based): the resolution ``8 * 2^level`` and the fade-in
    ``alpha`` of its new layers (see the module docstring)."""
    last = n_levels(size) - 1
    phase = min(step // phase_steps, last)
    if phase == 0:
        return 0, 1.0, 0
    t = step - phase * phase_steps
    half = max(phase_steps // 2, 1)
    return phase, min(1.0, (t + 1) / half), phase


def _act(x: torch.Tensor) -> torch.Tensor:
    return F.leaky_relu(x, 0.2)


class _Grown(nn.Module):
    """The level / alpha buffers shared by G and D."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("level", torch.zeros((), dtype=torch.long))
        self.register_buffer("alpha", torch.ones(()))

    def set_progress(self, level: int, alpha: float) -> None:
        self.level.fill_(int(level))
        self.alpha.fill_(float(alpha))

    def _progress(self) -> tuple[int, float]:
        return int(self.level), float(self.alpha)


class ProGenerator(_Grown):
    """``G(z, y, c, full=True)`` -> ``(N, 3, size, size)`` (``full=False``: at the current resolution)."""

    def __init__(self, cfg: GANConfig):
        super().__init__()
        self.cfg, self.z_dim, self.size = cfg, cfg.z_dim, cfg.size
        self.n_classes, self.cond_dim, self.mc = cfg.n_classes, cfg.cond_dim, cfg.map_channels
        self.embed = nn.Embedding(cfg.n_classes, cfg.embed_dim) if cfg.n_classes else None
        self.fourier = FourierFeatures() if cfg.cond_dim else None
        n_in = cfg.z_dim + (cfg.embed_dim if self.embed is not None else 0)
        n_in += self.fourier.dim if self.fourier is not None else 0
        ch4 = channels_at(4, cfg.size, cfg.g_base)
        self.stem = EqualLinear(n_in, ch4 * 16)
        self.stem_conv = EqualConv2d(ch4 + self.mc, ch4, 3)
        self.blocks, self.to_rgb = nn.ModuleList(), nn.ModuleList()
        prev = ch4
        for level in range(n_levels(cfg.size)):
            ch = channels_at(resolution_of(level), cfg.size, cfg.g_base)
            self.blocks.append(nn.ModuleList([EqualConv2d(prev + self.mc, ch, 3), EqualConv2d(ch, ch, 3)]))
            self.to_rgb.append(EqualConv2d(ch, 3, 1))
            prev = ch

    def _with_maps(self, h: torch.Tensor, y: torch.Tensor | None, c: torch.Tensor | None) -> torch.Tensor:
        if not self.mc:
            return h
        m = condition_maps(y if self.mc > 1 else None, c, self.n_classes, h.shape[-1], self.size, self.cfg.map_sigma)
        return torch.cat([h, m.to(h.dtype)], 1)

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None, c: torch.Tensor | None = None,
                full: bool = True) -> torch.Tensor:
        level, alpha = self._progress()
        parts = [pixel_norm(z.flatten(1))]
        if self.embed is not None:
            parts.append(pixel_norm(self.embed(y)))
        if self.fourier is not None:
            parts.append(self.fourier(c).to(z.dtype))
        h = pixel_norm(_act(self.stem(torch.cat(parts, 1)).view(z.shape[0], -1, 4, 4)))
        h = pixel_norm(_act(self.stem_conv(self._with_maps(h, y, c))))
        prev_h = h
        for k in range(level + 1):
            prev_h = h
            h = F.interpolate(h, scale_factor=2, mode="nearest")
            conv0, conv1 = self.blocks[k]
            h = pixel_norm(_act(conv0(self._with_maps(h, y, c))))
            h = pixel_norm(_act(conv1(h)))
        img = self.to_rgb[level](h)
        if level > 0 and alpha < 1.0:
            old = F.interpolate(self.to_rgb[level - 1](prev_h), scale_factor=2, mode="nearest")
            img = old.lerp(img, alpha)
        if full and img.shape[-1] != self.size:
            img = F.interpolate(img, size=(self.size, self.size), mode="nearest")
        return img


class ProDiscriminator(_Grown):
    """``D(x, y, c)`` -> ``(N,)`` logits for images at the current resolution (or larger: they are average-pooled
    down to it)."""

    def __init__(self, cfg: GANConfig):
        super().__init__()
        self.cfg, self.n_classes, self.cond_dim = cfg, cfg.n_classes, cfg.cond_dim
        self.from_rgb, self.blocks = nn.ModuleList(), nn.ModuleList()
        for level in range(n_levels(cfg.size)):
            res = resolution_of(level)
            ch, out = channels_at(res, cfg.size, cfg.d_base), channels_at(res // 2, cfg.size, cfg.d_base)
            self.from_rgb.append(EqualConv2d(3 + cfg.map_channels, ch, 1))
            self.blocks.append(nn.ModuleList([EqualConv2d(ch, ch, 3), EqualConv2d(ch, out, 3)]))
        ch4 = channels_at(4, cfg.size, cfg.d_base)
        self.conv = EqualConv2d(ch4 + 1, ch4, 3)
        self.fc = EqualLinear(ch4 * 16, ch4)
        self.head = ProjectionHead(cfg, ch4)

    def _block(self, k: int, h: torch.Tensor) -> torch.Tensor:
        conv0, conv1 = self.blocks[k]
        return F.avg_pool2d(_act(conv1(_act(conv0(h)))), 2)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None, c: torch.Tensor | None = None) -> torch.Tensor:
        level, alpha = self._progress()
        res = resolution_of(level)
        if x.shape[-1] != res:
            x = F.adaptive_avg_pool2d(x, res)
        h = self._block(level, _act(self.from_rgb[level](condition_input(self.cfg, x, y, c))))
        if level > 0 and alpha < 1.0:
            small = F.avg_pool2d(x, 2)
            old = _act(self.from_rgb[level - 1](condition_input(self.cfg, small, y, c)))
            h = old.lerp(h, alpha)
        for k in range(level - 1, -1, -1):
            h = self._block(k, h)
        h = _act(self.conv(minibatch_stddev(h)))
        h = _act(self.fc(h.flatten(1)))
        return self.head(h, y, c)


def match_real(real: torch.Tensor, level: int, alpha: float) -> torch.Tensor:
    """The real images as D sees them at ``level`` while the new resolution fades in: pooled to the resolution, and
    blended with their half-resolution version by ``1 - alpha`` (as G's output is)."""
    res = resolution_of(level)
    x = F.adaptive_avg_pool2d(real, res) if real.shape[-1] != res else real
    if level > 0 and alpha < 1.0:
        x = F.interpolate(F.avg_pool2d(x, 2), scale_factor=2, mode="nearest").lerp(x, alpha)
    return x
