"""Image inputs of the metrics: NCHW / NHWC tensors or arrays, uint8 or floats in [-1, 1], resized to a size."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F


def _as_tensor_nchw(images: Any) -> torch.Tensor:
    """Images as a ``(N, C, H, W)`` tensor (uint8 or float), from NCHW/NHWC tensors or arrays."""
    x = images if isinstance(images, torch.Tensor) else torch.as_tensor(np.asarray(images))
    if x.dim() == 3:
        x = x[None]
    if x.dim() != 4:
        raise ValueError(f"images must be (N, C, H, W) or (N, H, W, C), not shape {tuple(x.shape)}")
    if x.shape[1] not in (1, 3) and x.shape[-1] in (1, 3):
        x = x.permute(0, 3, 1, 2)
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    if x.shape[1] != 3:
        raise ValueError(f"images must have 1 or 3 channels, not shape {tuple(x.shape)}")
    return x


def _to_unit(x: torch.Tensor, size: int | None, device: torch.device | str | None = None) -> torch.Tensor:
    """uint8 -> float in [-1, 1] (floats are taken as already in [-1, 1]), resized to ``size``."""
    if device is not None:
        x = x.to(device)
    x = x.float() / 127.5 - 1.0 if x.dtype == torch.uint8 else x.float()
    if size is not None and (x.shape[-1] != size or x.shape[-2] != size):
        if x.shape[-1] != x.shape[-2]:
            side = min(x.shape[-2:])
            y0, x0 = (x.shape[-2] - side) // 2, (x.shape[-1] - side) // 2
            x = x[..., y0 : y0 + side, x0 : x0 + side]
        mode = "area" if x.shape[-1] > size else "bilinear"
        x = F.interpolate(x, size=(size, size), mode=mode, **({"align_corners": False} if mode == "bilinear" else {}))
    return x
