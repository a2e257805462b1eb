"""StackGAN's networks at armlab's scale: conditioning augmentation, the two generators and their discriminators.

* :class:`CondAug` (conditioning augmentation, Zhang et al. 2017): the sentence embedding -> ``mu``, ``log var``
  of a Gaussian; the generator gets a sample ``c = mu + sigma * eps`` and the loss a KL term towards ``N(0, I)``,
  which smooths the few captions of a small dataset into a continuous condition manifold.
* :class:`Stage1G`: ``(z, c)`` -> a fully connected 4 x 4 map (a fully connected layer can put "left" in the left
  columns) -> nearest-neighbour upsampling + 3 x 3 convolutions -> ``stage1`` px (32).
* :class:`Stage2G`: stage I's image, downsampled twice to ``stage1 / 4`` px, joined with its *own* augmented
  caption condition (replicated over the map), two residual blocks, then upsampling to ``size`` px (64): it
  corrects and adds detail to what stage I drew, reading the caption again. With ``refine`` (new runs) its output
  is a correction of stage I's image: ``tanh(atanh(up(stage I)) + out)``, the output convolution zero-initialised,
  so stage II starts as stage I enlarged and can only learn to do better from there (without it, a stage II that
  draws from scratch collapsed onto one class within 2,000 steps while stage I covered all three).
* :class:`TextD`: strided convolutions (spectral norm, LeakyReLU) to a 4 x 4 map; an unconditional logit and a
  conditional one (the map joined with a projection of the sentence embedding), as in StackGAN-v2.

With a layout (``map_ch > 0``: ``generative.text.layout``), every network also reads the where-and-what maps of
the target's class and position (:func:`generative.networks.condition_maps`, ``map_ch`` channels, ``map_sigma``
image widths) at each resolution it works on: the generators before every upsampling block and their output
convolution, the discriminators beside their input image. "A cube *here*" is then a local job for the
convolutions, as in armlab's conditional GAN; the caption's embedding still conditions everything else (colour,
distractors, texture). ``forward`` then takes ``maps``: a function ``res -> (N, map_ch, res, res)``.

Generators use GroupNorm (no running statistics: an EMA copy samples like the trained one from the first step).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import spectral_norm

__all__ = ["CondAug", "Stage1G", "Stage2G", "TextD"]

Maps = Callable[[int], torch.Tensor] | None


def _with(h: torch.Tensor, maps: Maps) -> torch.Tensor:
    """``h`` joined with the layout's maps at its resolution (``h`` itself without a layout)."""
    return h if maps is None else torch.cat([h, maps(h.shape[-1]).to(h.dtype)], 1)


def _norm(c: int) -> nn.GroupNorm:
    return nn.GroupNorm(min(8, c), c)


def _up(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(cin, cout, 3, padding=1),
                         _norm(cout), nn.SiLU())


class CondAug(nn.Module):
    """Sentence embedding ``(N, text_dim)`` -> ``(c, mu, logvar)``, ``c`` ``(N, c_dim)``; ``sample=False`` gives
    ``c = mu``."""

    def __init__(self, text_dim: int, c_dim: int):
        super().__init__()
        self.fc = nn.Linear(text_dim, 2 * c_dim)

    def forward(self, e: torch.Tensor, sample: bool = True) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        mu, logvar = self.fc(e).chunk(2, dim=1)
        logvar = logvar.clamp(-10, 10)
        c = mu + torch.randn_like(mu) * (0.5 * logvar).exp() if sample else mu
        return c, mu, logvar

    @staticmethod
    def kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        """KL(N(mu, sigma^2) || N(0, I)), summed over dimensions, averaged over the batch."""
        return 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar).sum(1).mean()


class Stage1G(nn.Module):
    """``forward(z, e, sample=True, maps=None)`` -> ``(image (N, 3, size, size) in [-1, 1], mu, logvar)``."""

    def __init__(self, text_dim: int, z_dim: int = 32, c_dim: int = 32, ch: int = 16, size: int = 32,
                 map_ch: int = 0):
        super().__init__()
        self.z_dim = int(z_dim)
        self.ca = CondAug(text_dim, c_dim)
        ups = int(math.log2(size // 4))
        widths = [ch * 2 ** (ups - i) for i in range(ups + 1)]  # 4 px: ch * 2^ups ... size px: ch
        self.fc = nn.Sequential(nn.Linear(z_dim + c_dim, widths[0] * 16), nn.SiLU())
        self.blocks = nn.ModuleList([_up(widths[i] + map_ch, widths[i + 1]) for i in range(ups)])
        self.out = nn.Conv2d(widths[-1] + map_ch, 3, 3, padding=1)
        self.w0 = widths[0]

    def forward(self, z: torch.Tensor, e: torch.Tensor, sample: bool = True, maps: Maps = None):
        c, mu, logvar = self.ca(e, sample)
        h = self.fc(torch.cat([z, c], 1)).view(-1, self.w0, 4, 4)
        for block in self.blocks:
            h = block(_with(h, maps))
        return torch.tanh(self.out(_with(h, maps))), mu, logvar


class _Res(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(c, c, 3, padding=1), _norm(c), nn.SiLU(), nn.Conv2d(c, c, 3, padding=1),
                                  _norm(c))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.silu(x + self.body(x))


class Stage2G(nn.Module):
    """``forward(stage1_image, e, sample=True, maps=None)`` -> ``(image (N, 3, size, size), mu, logvar)``."""

    def __init__(self, text_dim: int, c_dim: int = 32, ch: int = 16, size: int = 64, stage1: int = 32,
                 map_ch: int = 0, refine: bool = False):
        super().__init__()
        self.ca = CondAug(text_dim, c_dim)
        w = ch * 4
        self.down = nn.Sequential(nn.Conv2d(3, ch, 3, padding=1), nn.SiLU(),
                                  nn.Conv2d(ch, ch * 2, 4, 2, 1), _norm(ch * 2), nn.SiLU(),
                                  nn.Conv2d(ch * 2, w, 4, 2, 1), _norm(w), nn.SiLU())
        self.join = nn.Sequential(nn.Conv2d(w + c_dim + map_ch, w, 3, padding=1), _norm(w), nn.SiLU())
        self.res = nn.Sequential(_Res(w), _Res(w))
        ups = int(math.log2(size // (stage1 // 4)))
        widths = [max(ch, w // 2 ** i) for i in range(ups + 1)]
        self.up = nn.ModuleList([_up(widths[i] + map_ch, widths[i + 1]) for i in range(ups)])
        self.out = nn.Conv2d(widths[-1] + map_ch, 3, 3, padding=1)
        self.refine, self.size = bool(refine), int(size)
        if self.refine:
            nn.init.zeros_(self.out.weight)
            nn.init.zeros_(self.out.bias)

    def forward(self, x1: torch.Tensor, e: torch.Tensor, sample: bool = True, maps: Maps = None):
        c, mu, logvar = self.ca(e, sample)
        h = self.down(x1)
        h = self.join(_with(torch.cat([h, c[:, :, None, None].expand(-1, -1, *h.shape[-2:])], 1), maps))
        h = self.res(h)
        for block in self.up:
            h = block(_with(h, maps))
        delta = self.out(_with(h, maps))
        if not self.refine:
            return torch.tanh(delta), mu, logvar
        base = F.interpolate(x1, size=(self.size, self.size), mode="bilinear", align_corners=False)
        return torch.tanh(torch.atanh(base.clamp(-0.995, 0.995)) + delta), mu, logvar


class TextD(nn.Module):
    """``forward(x, e, maps=None)`` -> ``(unconditional logit (N,), conditional logit (N,))`` for ``size`` px
    images and sentence embeddings ``e`` (and the layout's maps beside the image)."""

    def __init__(self, text_dim: int, size: int, ch: int = 16, c_dim: int = 32, map_ch: int = 0):
        super().__init__()
        downs = int(math.log2(size // 4))
        layers, cin = [], 3 + map_ch
        for i in range(downs):
            cout = ch * 2 ** i
            layers += [spectral_norm(nn.Conv2d(cin, cout, 4, 2, 1)), nn.LeakyReLU(0.2)]
            cin = cout
        self.body = nn.Sequential(*layers)
        self.text = nn.Linear(text_dim, c_dim)
        self.uncond = spectral_norm(nn.Conv2d(cin, 1, 4))
        self.cond = nn.Sequential(spectral_norm(nn.Conv2d(cin + c_dim, cin, 1)), nn.LeakyReLU(0.2),
                                  spectral_norm(nn.Conv2d(cin, 1, 4)))

    def forward(self, x: torch.Tensor, e: torch.Tensor, maps: Maps = None) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.body(_with(x, maps))
        t = self.text(e)[:, :, None, None].expand(-1, -1, *h.shape[-2:])
        return self.uncond(h).flatten(), self.cond(torch.cat([h, t], 1)).flatten()
