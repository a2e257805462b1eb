"""Building blocks of the StyleGAN2 and ProGAN architectures: equalized learning-rate layers, pixel norm,
minibatch standard deviation, the conditioning inputs (Fourier features of the target, the projection head) and
the losses and R1 penalty they share."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from generative.gan.config import GANConfig
from generative.gan.model import TargetEncoding
from generative.networks import condition_maps

__all__ = ["EqualConv2d", "EqualLinear", "FourierFeatures", "ProjectionHead", "condition_input", "minibatch_stddev",
           "pixel_norm", "r1_penalty"]


class EqualLinear(nn.Linear):
    """A linear layer with the equalized learning rate of Karras et al. 2018: weights drawn from N(0, 1 / lr_mul)
    and scaled by ``lr_mul / sqrt(fan_in)`` at run time (so Adam's steps are the same size for every layer);
    ``lr_mul`` < 1 slows a layer (StyleGAN's mapping network uses 0.01). An ``nn.Linear`` (for the FLOP count)
    with its own forward."""

    def __init__(self, n_in: int, n_out: int, bias: bool = True, bias_init: float = 0.0, lr_mul: float = 1.0):
        super().__init__(n_in, n_out, bias=bias)
        with torch.no_grad():
            self.weight.copy_(torch.randn(n_out, n_in) / lr_mul)
            if self.bias is not None:
                self.bias.fill_(float(bias_init) / lr_mul)
        self.scale, self.lr_mul = lr_mul / math.sqrt(n_in), lr_mul

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = self.bias * self.lr_mul if self.bias is not None else None
        return F.linear(x, self.weight * self.scale, b)


class EqualConv2d(nn.Conv2d):
    """A convolution with the equalized learning rate (weights N(0, 1) scaled by ``1 / sqrt(fan_in)``); an
    ``nn.Conv2d`` with its own forward."""

    def __init__(self, n_in: int, n_out: int, kernel: int, bias: bool = True):
        super().__init__(n_in, n_out, kernel, padding=kernel // 2, bias=bias)
        with torch.no_grad():
            self.weight.normal_()
            if self.bias is not None:
                self.bias.zero_()
        self.scale = 1.0 / math.sqrt(n_in * kernel * kernel)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight * self.scale, self.bias, padding=self.padding)


def pixel_norm(x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Each pixel's (or vector's) features scaled to unit mean square over dimension 1."""
    return x * torch.rsqrt(x.pow(2).mean(dim=1, keepdim=True) + eps)


def minibatch_stddev(x: torch.Tensor, group: int = 4) -> torch.Tensor:
    """``x`` with one more channel: the standard deviation of each feature over a group of up to ``group``
    consecutive images, averaged over features and pixels (Karras et al. 2018), so that D can see a batch without
    variety. Groups of consecutive images keep the halves of ``cat([real, fake])`` apart when ``group`` divides
    each half."""
    n, c, h, w = x.shape
    g = min(group, n)
    while n % g:
        g -= 1
    y = x.float().reshape(-1, g, c, h, w)
    y = (y - y.mean(1, keepdim=True)).pow(2).mean(1).add(1e-8).sqrt().mean(dim=(1, 2, 3))  # (n / g,)
    y = y.repeat_interleave(g).reshape(n, 1, 1, 1).expand(n, 1, h, w).to(x.dtype)
    return torch.cat([x, y], 1)


class FourierFeatures(nn.Module):
    """``(N, 2)`` target positions in ``[0, 1]`` -> ``(N, 4 * n_freq)``: sin and cos of each coordinate at
    frequencies ``pi * 2^k``, k = 0..n_freq-1 (fixed, no parameters)."""

    def __init__(self, n_freq: int = 6):
        super().__init__()
        self.register_buffer("freqs", math.pi * 2.0 ** torch.arange(n_freq).float(), persistent=False)
        self.dim = 4 * n_freq

    def forward(self, c: torch.Tensor) -> torch.Tensor:
        a = (c.float().unsqueeze(-1) * self.freqs).flatten(1)
        return torch.cat([a.sin(), a.cos()], 1)


class ProjectionHead(nn.Module):
    """D's output from its feature vector ``h``: ``linear(h) + <embed(y), h> + <W phi(c), h>`` (the projection
    discriminator of the dcgan arch: the class by an embedding, the target through :class:`TargetEncoding`)."""

    def __init__(self, cfg: GANConfig, feat: int):
        super().__init__()
        self.out = EqualLinear(feat, 1)
        self.embed = nn.Embedding(cfg.n_classes, feat) if cfg.n_classes else None
        if self.embed is not None:
            nn.init.normal_(self.embed.weight, std=1.0 / math.sqrt(feat))
        self.encode = TargetEncoding(cfg.target_bins) if cfg.cond_dim and cfg.target_bins else None
        cdim = 2 * cfg.target_bins if self.encode is not None else cfg.cond_dim
        self.cond = EqualLinear(cdim, feat, bias=False) if cfg.cond_dim else None

    def forward(self, h: torch.Tensor, y: torch.Tensor | None, c: torch.Tensor | None) -> torch.Tensor:
        out = self.out(h).squeeze(1)
        if self.embed is not None:
            out = out + (self.embed(y) * h).sum(1) / math.sqrt(h.shape[1])
        if self.cond is not None:
            e = self.encode(c.float()) if self.encode is not None else c.float()
            out = out + (self.cond(e.to(h.dtype)) * h).sum(1) / math.sqrt(h.shape[1])
        return out


def condition_input(cfg: GANConfig, x: torch.Tensor, y: torch.Tensor | None, c: torch.Tensor | None
                    ) -> torch.Tensor:
    """``x`` with the where-and-what maps of ``(y, c)`` at its resolution appended as channels (when the config has
    them), as the dcgan arch's D sees them."""
    if not cfg.map_channels:
        return x
    m = condition_maps(y if cfg.map_channels > 1 else None, c, cfg.n_classes, x.shape[-1], cfg.size, cfg.map_sigma)
    return torch.cat([x, m.to(x.dtype)], 1)


def r1_penalty(d_real: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of ``|grad_x D(x)|^2`` at the real images (``real`` must require grad; Mescheder et al.
    2018's R1), with the graph kept so that it can be back-propagated."""
    (grad,) = torch.autograd.grad(d_real.sum(), real, create_graph=True)
    return grad.float().pow(2).flatten(1).sum(1).mean()
