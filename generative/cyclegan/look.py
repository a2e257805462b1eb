"""The *look* generator: a light, physically motivated camera model for unpaired sim <-> real translation.

Where CycleGAN's ResNet generator can repaint anything, the gap between armlab's renders and a real camera is mostly
the camera's *look*: its optics, colour rendition, tone curve, light falloff and noise, plus some local shading.
:class:`LookGenerator` models exactly those with about 21 k parameters (base 16) and is trained with CycleGAN's
adversarial and cycle terms (``generator="look"`` in :class:`~generative.cyclegan.CycleGANTask`; the identity term
is off by default, as a look applies to real images too). Every part starts as the identity, so a fresh generator
returns its input (up to the sensor noise).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["LookGenerator"]


def _coords(n: int, h: int, w: int, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Normalised pixel-centre coordinates, each ``(n, 1, h, w)`` in ``(-1, 1)``: ``x`` across, ``y`` down."""
    ys = (torch.arange(h, device=like.device, dtype=like.dtype) + 0.5) * (2.0 / h) - 1.0
    xs = (torch.arange(w, device=like.device, dtype=like.dtype) + 0.5) * (2.0 / w) - 1.0
    return xs.view(1, 1, 1, w).expand(n, 1, h, w), ys.view(1, 1, h, 1).expand(n, 1, h, w)


def _zero_(conv: nn.Conv2d) -> nn.Conv2d:
    nn.init.zeros_(conv.weight)
    if conv.bias is not None:
        nn.init.zeros_(conv.bias)
    return conv


class LookGenerator(nn.Module):
    """A camera model plus a small residual net, mapping images in ``[-1, 1]`` ``(N, 3, H, W)`` to ``[-1, 1]``.

    It works on ``u = (x + 1) / 2`` in ``[0, 1]`` and applies, in this order:

    1. **optics** (blur or sharpening): one learnable 5 x 5 kernel per channel, applied depthwise with reflection
       padding (replication below 3 px). It starts as the delta (identity) and is normalised so its entries sum
       to 1 (the excess of the sum is taken evenly from every entry: brightness is left to the other parts,
       negative side lobes may sharpen).
    2. **local effects** (shadows, texture, defocus differences): a small residual conv net on ``u`` and two
       coordinate channels: 3 x 3 convs ``5 -> c`` at full resolution, ``c -> 2c`` with stride 2, then two at half
       resolution, ``2c -> 2c`` and ``2c -> c`` (GroupNorm, SiLU), bilinear upsampling to the exact input size (any
       ``H, W``), the full-resolution features concatenated, and a 3 x 3 conv ``2c -> 3``, zero-initialised;
       ``c = base``. (Upsampling ``c`` channels rather than ``2c`` makes the generator about a fifth cheaper on a
       CPU, where its full-resolution end dominates.)
    3. **spatial gain** (vignetting, light falloff): the image times ``exp(p(x, y))``, ``p`` a polynomial of degree
       2 in the normalised coordinates (``1, x, y, x^2, xy, y^2``; six coefficients, zero-initialised).
    4. **colour rendition and tone curve**: a per-pixel MLP (1 x 1 convs ``3 -> 16 -> 16 -> 3``, SiLU) added as a
       residual; its last layer is zero-initialised. It learns white balance, colour cross-talk (a colour
       matrix), exposure and any tone curve.
    5. **sensor noise**: per channel a learnable standard deviation (softplus of a parameter; about 0.005 at the
       start) times standard normal noise from torch's global RNG (the trainer seeds it per step; translation
       draws it under a fixed seed), only while the attribute ``noise`` is True (the default).

    The result is clamped to ``[0, 1]`` (gradients flow where it is inside) and mapped back to ``[-1, 1]``. The
    operations are per image (GroupNorm, not batch statistics), so a batch gives what separate calls would.
    """

    def __init__(self, base: int = 16, noise: bool = True, noise_std: float = 0.005, kernel: int = 5,
                 colour_width: int = 16):
        super().__init__()
        if base < 1 or kernel < 1 or kernel % 2 == 0:
            raise ValueError(f"base must be >= 1 and kernel odd, got base={base}, kernel={kernel}")
        self.base, self.kernel, self.noise = int(base), int(kernel), bool(noise)
        delta = torch.zeros(3, 1, kernel, kernel)
        delta[:, :, kernel // 2, kernel // 2] = 1.0
        self.blur = nn.Parameter(delta)
        self.colour = nn.Sequential(nn.Conv2d(3, colour_width, 1), nn.SiLU(),
                                    nn.Conv2d(colour_width, colour_width, 1), nn.SiLU(),
                                    _zero_(nn.Conv2d(colour_width, 3, 1)))
        self.gain = nn.Parameter(torch.zeros(6))
        c = self.base
        groups = math.gcd(8, 2 * c)
        self.local_in = nn.Sequential(nn.Conv2d(5, c, 3, padding=1), nn.SiLU())
        self.local_low = nn.Sequential(
            nn.Conv2d(c, 2 * c, 3, stride=2, padding=1), nn.GroupNorm(groups, 2 * c), nn.SiLU(),
            nn.Conv2d(2 * c, 2 * c, 3, padding=1), nn.GroupNorm(groups, 2 * c), nn.SiLU(),
            nn.Conv2d(2 * c, c, 3, padding=1), nn.GroupNorm(math.gcd(8, c), c), nn.SiLU())
        self.local_out = _zero_(nn.Conv2d(2 * c, 3, 3, padding=1))
        # softplus^-1(noise_std): the noise starts at noise_std
        self.noise_param = nn.Parameter(torch.full((3,), math.log(math.expm1(noise_std))))

    def kernel_weights(self) -> torch.Tensor:
        """The optics kernels ``(3, 1, k, k)``, each summing to 1."""
        k = self.blur
        return k - (k.sum(dim=(-2, -1), keepdim=True) - 1.0) / (self.kernel * self.kernel)

    def noise_std(self) -> torch.Tensor:
        """The sensor noise's standard deviation per channel (in ``[0, 1]`` units)."""
        return F.softplus(self.noise_param)

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The encoder features of ``x`` for a patch-wise contrastive loss (CUT's PatchNCE): the pixels ``u`` with
        their 3 x 3 neighbourhoods (27 channels), the full-resolution features and the half-resolution ones of the
        local-effects net. The coordinate channels are fed zeros here: features that carried the position would make
        every patch trivially identifiable, and the loss would constrain nothing."""
        n, _, h, w = x.shape
        u = (x + 1.0) * 0.5
        zeros = u.new_zeros(n, 2, h, w)
        feat = self.local_in(torch.cat([u, zeros], 1))
        return [F.unfold(F.pad(u, (1, 1, 1, 1), mode="replicate"), 3).view(n, 27, h, w), feat, self.local_low(feat)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, _, h, w = x.shape
        u = (x + 1.0) * 0.5
        pad = self.kernel // 2
        mode = "reflect" if min(h, w) > pad else "replicate"
        v = F.conv2d(F.pad(u, (pad, pad, pad, pad), mode=mode), self.kernel_weights().to(u.dtype), groups=3)
        # local effects
        cx, cy = _coords(n, h, w, u)
        feat = self.local_in(torch.cat([u, cx, cy], 1))
        low = F.interpolate(self.local_low(feat), size=(h, w), mode="bilinear", align_corners=False)
        v = v + self.local_out(torch.cat([feat, low], 1))
        # vignetting / light falloff
        a = self.gain.to(u.dtype)
        p = a[0] + a[1] * cx + a[2] * cy + a[3] * cx * cx + a[4] * cx * cy + a[5] * cy * cy
        v = v * torch.exp(p)
        # colour rendition and tone curve
        v = v + self.colour(v)
        if self.noise:
            v = v + self.noise_std().to(v.dtype).view(1, 3, 1, 1) * torch.randn_like(v)
        return v.clamp(0.0, 1.0) * 2.0 - 1.0
