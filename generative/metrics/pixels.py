"""Pixel metrics of paired uint8 images: PSNR and SSIM."""

from __future__ import annotations

import math
from typing import Any

import cv2
import numpy as np
import torch

__all__ = ["psnr", "ssim"]


def _as_nhwc_float(x: Any) -> np.ndarray:
    """uint8 image(s) as float64 ``(N, H, W, C)``: accepts HW, HWC, CHW, NHWC, NCHW (arrays or tensors)."""
    a = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    if a.ndim == 2:
        a = a[None, :, :, None]
    elif a.ndim == 3:
        a = a[None] if a.shape[-1] in (1, 3, 4) or a.shape[0] not in (1, 3, 4) else a.transpose(1, 2, 0)[None]
    elif a.ndim == 4:
        if a.shape[-1] not in (1, 3, 4) and a.shape[1] in (1, 3, 4):
            a = a.transpose(0, 2, 3, 1)
    else:
        raise ValueError(f"images must have 2 to 4 dimensions, not shape {a.shape}")
    return a.astype(np.float64)


def _pair(a: Any, b: Any) -> tuple[np.ndarray, np.ndarray]:
    x, y = _as_nhwc_float(a), _as_nhwc_float(b)
    if x.shape != y.shape:
        raise ValueError(f"images differ in shape: {x.shape} vs {y.shape}")
    return x, y


def psnr(a: Any, b: Any, data_range: float = 255.0) -> float:
    """Peak signal-to-noise ratio in dB of uint8 images ``a`` and ``b`` (one MSE over all pixels).

    ``10 log10(data_range^2 / MSE)``; ``inf`` for identical images.
    """
    x, y = _pair(a, b)
    mse = float(np.mean((x - y) ** 2))
    return float("inf") if mse == 0 else float(10 * math.log10(data_range**2 / mse))


def ssim(a: Any, b: Any, data_range: float = 255.0, sigma: float = 1.5, win: int = 11) -> float:
    """Structural similarity of uint8 images ``a`` and ``b`` (Wang et al. 2004), mean over pixels, channels, images.

    Local means, variances and covariance use a Gaussian window (``sigma`` 1.5, ``win`` x ``win``
    = 11 x 11, via ``cv2.GaussianBlur`` with reflected borders); ``C1 = (0.01 L)^2``,
    ``C2 = (0.03 L)^2`` with ``L = data_range``. The ``win // 2`` pixels at each border are left
    out of the mean when the image is large enough. 1 for identical images.
    """
    x, y = _pair(a, b)
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    pad = win // 2
    vals = []
    for n in range(x.shape[0]):
        for c in range(x.shape[-1]):
            p, q = x[n, :, :, c], y[n, :, :, c]

            def blur(img: np.ndarray) -> np.ndarray:
                return cv2.GaussianBlur(img, (win, win), sigma, borderType=cv2.BORDER_REFLECT)

            mu_p, mu_q = blur(p), blur(q)
            var_p = blur(p * p) - mu_p**2
            var_q = blur(q * q) - mu_q**2
            cov = blur(p * q) - mu_p * mu_q
            num = (2 * mu_p * mu_q + c1) * (2 * cov + c2)
            den = (mu_p**2 + mu_q**2 + c1) * (var_p + var_q + c2)
            m = num / den
            if m.shape[0] > 2 * pad and m.shape[1] > 2 * pad:
                m = m[pad:-pad, pad:-pad]
            vals.append(m.mean())
    return float(np.mean(vals))
