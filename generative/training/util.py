"""Small helpers of the training loop: image ranges, device copies, sample grids, seeds, ranks, denormals."""

from __future__ import annotations

import contextlib
import hashlib
import math
import os
import random
from collections.abc import Iterator

import numpy as np
import torch
import torch.distributed as dist

from robot_env.io.errors import DeviceError, ParamError

__all__ = ["derive_seed", "flush_denormals", "is_main_process", "make_grid", "pick_device", "to_device",
           "to_model_range"]


def to_model_range(images: torch.Tensor) -> torch.Tensor:
    """uint8 images (0..255) -> float32 in ``[-1, 1]``: ``x / 127.5 - 1``, on the tensor's device."""
    if images.dtype != torch.uint8:
        raise ValueError(f"to_model_range expects uint8 images, got {images.dtype}")
    return images.float().div_(127.5).sub_(1.0)


def to_device(t: torch.Tensor, device: torch.device | str) -> torch.Tensor:
    """``t`` on ``device``. A CPU tensor bound for a CUDA device goes through pinned memory without blocking the host:
    a plain copy from pageable memory first waits for every kernel queued on the GPU, a host-device sync that keeps
    the host from queueing the next step while the GPU works on this one."""
    device = torch.device(device)
    if device.type == "cuda" and t.device.type == "cpu":
        return t.pin_memory().to(device, non_blocking=True)
    return t.to(device)


def make_grid(images: torch.Tensor, nrow: int | None = None, padding: int = 2, pad_value: int = 0) -> np.ndarray:
    """Tile images in ``[-1, 1]`` (N, C, H, W; C = 1 or 3) into one uint8 RGB array (H', W', 3).

    ``nrow`` images per row (default ``ceil(sqrt(N))``), ``padding`` pixels of ``pad_value`` between and around them.
    Values outside ``[-1, 1]`` are clipped.
    """
    if images.ndim != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"make_grid expects (N, 1 or 3, H, W) images, got shape {tuple(images.shape)}")
    x = images.detach().float().cpu()
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    n, _, h, w = x.shape
    nrow = max(1, min(nrow or math.ceil(math.sqrt(n)), n))
    rows = math.ceil(n / nrow)
    grid = np.full((rows * (h + padding) + padding, nrow * (w + padding) + padding, 3), pad_value, np.uint8)
    pixels = ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    for i in range(n):
        r, c = divmod(i, nrow)
        y0, x0 = padding + r * (h + padding), padding + c * (w + padding)
        grid[y0 : y0 + h, x0 : x0 + w] = pixels[i]
    return grid


def derive_seed(*parts: object) -> int:
    """A 63-bit seed derived from ``parts`` (e.g. ``(seed, "step", step, rank)``) by hashing: stable across runs,
    processes and platforms, and without the collisions of arithmetic like ``seed * 1000 + step``."""
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & ((1 << 63) - 1)


def _seed_everything(seed: int) -> None:
    torch.manual_seed(seed)  # CPU and every CUDA device
    np.random.seed(seed % 2**32)
    random.seed(seed)


def _dist_on() -> bool:
    return dist.is_available() and dist.is_initialized()


def is_main_process() -> bool:
    """True on rank 0 of a distributed run, or when not distributed (``RANK`` unset or 0)."""
    if _dist_on():
        return dist.get_rank() == 0
    return int(os.environ.get("RANK", "0")) == 0


@contextlib.contextmanager
def flush_denormals() -> Iterator[None]:
    """Treat denormal floats as zero inside the block (``torch.set_flush_denormal``), restored to torch's default
    (off) after it. On the CPU, denormals (e.g. in Adam's second moments of tiny gradients) otherwise slow the
    training steps down several times."""
    torch.set_flush_denormal(True)
    try:
        yield
    finally:
        torch.set_flush_denormal(False)


def pick_device(device: str | torch.device) -> torch.device:
    """``device`` as a ``torch.device``; ``"auto"`` is CUDA when available, else the CPU."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ParamError("device", f"{{name}} must be auto, cpu, cuda or cuda:N, got {str(device)!r}") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise DeviceError(f"device {str(device)!r} asks for a CUDA GPU, and this machine (this torch build) has "
                          "none; use --device cpu or auto")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise DeviceError(f"device {str(device)!r}: this machine has {torch.cuda.device_count()} CUDA GPU(s)")
    return dev
