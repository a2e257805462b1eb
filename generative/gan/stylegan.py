"""StyleGAN2 (Karras et al. 2020), sized for a CPU at 64 px: the mapping network, modulated / demodulated
convolutions with noise inputs, the skip generator and the residual discriminator.

Generator: z (pixel-normalised) with the class embedding and Fourier features of the target position goes through
``map_depth`` equalized-lr layers (learning rate x 0.01) to ``w`` (``w_dim``). The synthesis network starts from a
learned constant 4 x 4 map; each resolution has two 3 x 3 modulated convolutions (the first after a bilinear 2x
upsampling) whose weights are scaled per input channel by the style ``affine(w)`` and then demodulated (each output
channel's weights rescaled to unit norm, so activations keep a scale near 1), per-pixel noise with a learned
strength per layer, and a 1 x 1 modulated toRGB whose image is added to the upsampled image of the resolution
below (the skip architecture). With the target condition, every resolution also adds a learned 1 x 1 projection of
the where-and-what maps to its features. ``num_ws`` = 2 + 2 x (log2(size) - 2) styles: layer ``i`` reads
``ws[:, i]``, so style mixing and truncation act per layer.

Discriminator: a 1 x 1 fromRGB of the image (and the where-and-what maps as extra channels), residual blocks (two
3 x 3 convolutions and a 2x average-pool down, plus a 1 x 1 skip, summed / sqrt 2) down to 4 x 4, the minibatch
standard deviation, a 3 x 3 convolution and a linear layer to the feature vector, and the projection head on class
and target (:class:`~generative.gan.layers.ProjectionHead`). Channels (:func:`channels_at`): 64 up to 16 px, then
32 and 16 at 32 and 64 px with base 32.
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
from generative.networks import condition_maps

__all__ = ["MappingNetwork", "ModulatedConv", "ResidualDiscriminator", "StyleGenerator", "channels_at"]

_SQRT2 = math.sqrt(2.0)


def channels_at(res: int, size: int, base: int) -> int:
    """Channels at resolution ``res``: halved per doubling from ``2 * base`` at a quarter of ``size`` and below to
    ``base / 2`` at ``size`` (64, 64, 64, 32, 16 at 4 ... 64 px with base 32: the 3 x 3 convolutions at the top
    resolutions cost most on a CPU)."""
    return max(1, min(2 * base, base * size // (2 * res)))


def _lrelu(x: torch.Tensor) -> torch.Tensor:
    return F.leaky_relu(x, 0.2) * _SQRT2  # the gain keeps the activations' scale


class MappingNetwork(nn.Module):
    """``(z, y, c)`` -> ``w``: the normalised z, the class embedding and the target's Fourier features, concatenated,
    through ``depth`` equalized-lr layers (LeakyReLU, learning rate x 0.01)."""

    def __init__(self, cfg: GANConfig):
        super().__init__()
        self.embed = nn.Embedding(cfg.n_classes, cfg.embed_dim) if cfg.n_classes else None
        self.fourier = FourierFeatures() if cfg.cond_dim else None
        n_in = cfg.z_dim + (cfg.embed_dim if self.embed is not None else 0)
        n_in += self.fourier.dim if self.fourier is not None else 0
        dims = [n_in] + [cfg.w_dim] * cfg.map_depth
        self.layers = nn.ModuleList(EqualLinear(a, b, lr_mul=0.01) for a, b in zip(dims[:-1], dims[1:], strict=True))

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None, c: torch.Tensor | None = None) -> torch.Tensor:
        parts = [pixel_norm(z.flatten(1))]
        if self.embed is not None:
            parts.append(pixel_norm(self.embed(y)))
        if self.fourier is not None:
            parts.append(self.fourier(c).to(z.dtype))
        h = torch.cat(parts, 1)
        for layer in self.layers:
            h = _lrelu(layer(h))
        return h


class ModulatedConv(EqualConv2d):
    """A ``k`` x ``k`` convolution whose weights are scaled per input channel by the style ``affine(w)`` and, with
    ``demodulate``, rescaled per output channel and image to unit norm. Computed by modulating the activations
    (``conv(x * s) * d``: the same result as modulating the weights, with one shared weight and no grouped
    convolution)."""

    def __init__(self, n_in: int, n_out: int, k: int, w_dim: int, demodulate: bool = True, up: bool = False):
        super().__init__(n_in, n_out, k)
        self.affine = EqualLinear(w_dim, n_in, bias_init=1.0)
        self.demodulate, self.up = demodulate, up

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        s = self.affine(w)  # (N, in)
        weight = self.weight * self.scale
        if self.up:
            x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
        out = F.conv2d(x * s[:, :, None, None].to(x.dtype), weight.to(x.dtype), padding=self.padding)
        if self.demodulate:
            d = torch.rsqrt(s.float().pow(2) @ weight.float().pow(2).sum(dim=(2, 3)).t() + 1e-8)  # (N, out)
            out = out * d[:, :, None, None].to(out.dtype)
        return out + self.bias.view(1, -1, 1, 1).to(out.dtype)


class _StyleLayer(nn.Module):
    """Modulated 3 x 3 convolution, noise (a learned strength, initially 0), bias, LeakyReLU."""

    def __init__(self, n_in: int, n_out: int, w_dim: int, up: bool = False):
        super().__init__()
        self.conv = ModulatedConv(n_in, n_out, 3, w_dim, up=up)
        self.noise_strength = nn.Parameter(torch.zeros(()))

    def forward(self, x: torch.Tensor, w: torch.Tensor, noise: str | torch.Tensor = "random") -> torch.Tensor:
        x = self.conv(x, w)
        if isinstance(noise, torch.Tensor):
            x = x + noise.to(x.dtype) * self.noise_strength
        elif noise == "random":
            x = x + torch.randn(x.shape[0], 1, *x.shape[2:], device=x.device, dtype=x.dtype) * self.noise_strength
        return _lrelu(x)


class StyleGenerator(nn.Module):
    """The StyleGAN2 generator; ``G(z, y, c)`` -> ``(N, 3, size, size)`` in about ``[-1, 1]`` (see the module
    docstring). ``mapping(z, y, c)`` -> ``w``; ``synthesis(ws, y, c, noise)`` with ``ws`` ``(N, num_ws, w_dim)`` (or
    ``(N, w_dim)`` for one style everywhere) and ``noise`` ``"random"``, ``"const"`` (zeros: no noise) or a list
    of one tensor per layer."""

    def __init__(self, cfg: GANConfig):
        super().__init__()
        self.cfg, self.z_dim, self.w_dim, self.size = cfg, cfg.z_dim, cfg.w_dim, cfg.size
        self.n_classes, self.cond_dim = cfg.n_classes, cfg.cond_dim
        self.mapping = MappingNetwork(cfg)
        n_up = int(math.log2(cfg.size)) - 2
        self.resolutions = [4 * 2**i for i in range(n_up + 1)]
        ch = [channels_at(r, cfg.size, cfg.g_base) for r in self.resolutions]
        self.const = nn.Parameter(torch.randn(ch[0], 4, 4))
        self.layers = nn.ModuleList([_StyleLayer(ch[0], ch[0], cfg.w_dim)])
        self.to_rgb = nn.ModuleList([ModulatedConv(ch[0], 3, 1, cfg.w_dim, demodulate=False)])
        self.maps = nn.ModuleList()
        for i in range(1, n_up + 1):
            self.layers.append(_StyleLayer(ch[i - 1], ch[i], cfg.w_dim, up=True))
            self.layers.append(_StyleLayer(ch[i], ch[i], cfg.w_dim))
            self.to_rgb.append(ModulatedConv(ch[i], 3, 1, cfg.w_dim, demodulate=False))
        if cfg.map_channels:
            self.maps = nn.ModuleList(EqualConv2d(cfg.map_channels, c, 1, bias=False) for c in ch)
        self.num_ws = 2 + 2 * n_up

    def layer_resolutions(self) -> list[int]:
        """The resolution each style ``ws[:, i]`` is first read at: ``ws[:, 2k]`` and ``ws[:, 2k + 1]`` at
        ``4 * 2^k`` px (the toRGB of a resolution shares its style with the first convolution of the next, as in
        StyleGAN2), so "the styles up to 8 px" are ``ws[:, :4]``."""
        return [self.resolutions[i // 2] for i in range(self.num_ws)]

    def _maps(self, k: int, h: torch.Tensor, y: torch.Tensor | None, c: torch.Tensor | None) -> torch.Tensor:
        if not self.maps:
            return h
        cfg = self.cfg
        m = condition_maps(y if cfg.map_channels > 1 else None, c, cfg.n_classes, h.shape[-1], cfg.size,
                           cfg.map_sigma)
        return h + self.maps[k](m.to(h.dtype))

    def synthesis(self, ws: torch.Tensor, y: torch.Tensor | None = None, c: torch.Tensor | None = None,
                  noise: str | list[torch.Tensor] = "random") -> torch.Tensor:
        if ws.dim() == 2:
            ws = ws.unsqueeze(1).expand(-1, self.num_ws, -1)
        n = ws.shape[0]

        def noise_of(j: int) -> str | torch.Tensor:
            return noise[j] if isinstance(noise, list) else noise

        h = self.const.unsqueeze(0).expand(n, -1, -1, -1).to(ws.dtype)
        h = self._maps(0, self.layers[0](h, ws[:, 0], noise_of(0)), y, c)
        img = self.to_rgb[0](h, ws[:, 1])
        for k in range(1, len(self.resolutions)):
            h = self.layers[2 * k - 1](h, ws[:, 2 * k - 1], noise_of(2 * k - 1))
            h = self._maps(k, h, y, c)
            h = self.layers[2 * k](h, ws[:, 2 * k], noise_of(2 * k))
            img = F.interpolate(img, scale_factor=2, mode="bilinear", align_corners=False)
            img = img + self.to_rgb[k](h, ws[:, 2 * k + 1])
        return img

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None, c: torch.Tensor | None = None,
                noise: str | list[torch.Tensor] = "random") -> torch.Tensor:
        return self.synthesis(self.mapping(z, y, c), y, c, noise)


class _ResBlock(nn.Module):
    def __init__(self, n_in: int, n_out: int):
        super().__init__()
        self.conv0, self.conv1 = EqualConv2d(n_in, n_in, 3), EqualConv2d(n_in, n_out, 3)
        self.skip = EqualConv2d(n_in, n_out, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = F.avg_pool2d(self.skip(x), 2)
        h = F.avg_pool2d(_lrelu(self.conv1(_lrelu(self.conv0(x)))), 2)
        return (s + h) / _SQRT2


class ResidualDiscriminator(nn.Module):
    """The StyleGAN2 residual discriminator with the projection head; ``D(x, y, c)`` -> ``(N,)`` logits."""

    def __init__(self, cfg: GANConfig):
        super().__init__()
        self.cfg, self.n_classes, self.cond_dim = cfg, cfg.n_classes, cfg.cond_dim
        n_down = int(math.log2(cfg.size)) - 2
        res = [cfg.size // 2**i for i in range(n_down + 1)]  # size ... 4
        ch = [channels_at(r, cfg.size, cfg.d_base) for r in res]
        self.from_rgb = EqualConv2d(3 + cfg.map_channels, ch[0], 1)
        self.blocks = nn.ModuleList(_ResBlock(ch[i], ch[i + 1]) for i in range(n_down))
        self.conv = EqualConv2d(ch[-1] + 1, ch[-1], 3)
        self.fc = EqualLinear(ch[-1] * 16, ch[-1])
        self.head = ProjectionHead(cfg, ch[-1])

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None, c: torch.Tensor | None = None) -> torch.Tensor:
        h = _lrelu(self.from_rgb(condition_input(self.cfg, x, y, c)))
        for block in self.blocks:
            h = block(h)
        h = _lrelu(self.conv(minibatch_stddev(h)))
        h = _lrelu(self.fc(h.flatten(1)))
        return self.head(h, y, c)
