"""Training-free sim-to-real translations: the baselines a learned translator (the CycleGAN) has to beat.

Both map a batch of sim frames towards a set of real frames without learning anything, so the gap closure of a
learned translation can be read against what plain colour statistics already buy.

* :func:`histogram_match` -- global per-channel histogram (CDF) matching, the classic colour transfer: one lookup
  table per channel takes the pooled histogram of the whole ``images`` batch onto the pooled histogram of the whole
  ``reference`` set. Each histogram is read as a piecewise-linear CDF over ``bins`` equal cells of [0, 256); a
  grey level ``v`` (the cell [v, v + 1)) goes to the reference cell holding the source CDF at its centre ``v + 0.5``.
  The map is monotone per channel (the order of the pixels is kept) and the identity when both sets are the same.
* :func:`fda` -- Fourier Domain Adaptation (Y. Yang and S. Soatto, "FDA: Fourier Domain Adaptation for Semantic
  Segmentation", CVPR 2020): the low-frequency amplitude of each image's spectrum (per channel, a centred square of
  half-side ``b = floor(min(H, W) * beta)`` around the zero frequency, so side ``2b + 1`` as in the authors' code) is
  replaced by that of a reference image, the image's phase is kept, and the inverse transform is clipped to [0, 255]
  and rounded. The low frequencies carry the global colour and illumination ("style"); the phase and the high
  frequencies carry the content (edges, the position of the objects), which therefore stay put. Any ``beta > 0``
  swaps at least the zero-frequency (DC) term, so each image takes its reference's channel means; ``beta == 0``
  returns the images unchanged.

Images are RGB uint8, either numpy arrays ``(N, H, W, 3)`` or torch tensors ``(N, 3, H, W)`` (the layout of
:func:`generative.data.load_tensors`); the result has the type, layout and device of ``images``. Both functions are
deterministic: :func:`fda` draws its reference images from a numpy generator seeded with ``seed``.
"""

from __future__ import annotations

from typing import TypeVar

import cv2
import numpy as np
import torch

from generative.data import DataError
from robot_env.io.errors import ParamError

__all__ = ["fda", "histogram_match"]

ImagesT = TypeVar("ImagesT", np.ndarray, torch.Tensor)

_CHUNK_PIXELS = 1 << 18  # FFT chunks of about this many values (256 Ki): bounded memory, cache-friendly


def _as_nhwc(x: np.ndarray | torch.Tensor, what: str) -> np.ndarray:
    """``x`` as a numpy uint8 ``(N, H, W, 3)`` array (a view where possible); `DataError` for anything else."""
    if isinstance(x, torch.Tensor):
        if x.dtype != torch.uint8 or x.ndim != 4 or x.shape[1] != 3:
            raise DataError(f"{what} must be a uint8 tensor of shape (N, 3, H, W), got a {x.dtype} tensor of shape "
                            f"{tuple(x.shape)}.")
        return x.detach().cpu().permute(0, 2, 3, 1).numpy()
    if isinstance(x, np.ndarray):
        if x.dtype != np.uint8 or x.ndim != 4 or x.shape[3] != 3:
            raise DataError(f"{what} must be a uint8 array of shape (N, H, W, 3), got a {x.dtype} array of shape "
                            f"{x.shape}.")
        return x
    raise DataError(f"{what} must be a numpy array (N, H, W, 3) or a torch tensor (N, 3, H, W) of uint8 RGB "
                    f"images, got {type(x).__name__}.")


def _like(out: np.ndarray, images: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
    """The uint8 NHWC result ``out`` in the type, layout and device of ``images``."""
    if isinstance(images, torch.Tensor):
        return torch.from_numpy(np.ascontiguousarray(out.transpose(0, 3, 1, 2))).to(images.device)
    return out


def _check_reference(ref: np.ndarray) -> None:
    if ref.shape[0] == 0 or ref.shape[1] == 0 or ref.shape[2] == 0:
        raise DataError(f"reference must hold at least one non-empty image, got shape {ref.shape} (as N, H, W, C).")


def _channel_counts(x: np.ndarray) -> np.ndarray:
    """Pooled per-channel histogram of the uint8 NHWC ``x``: counts of shape (3, 256)."""
    return np.stack([np.bincount(x[..., c].ravel(), minlength=256) for c in range(x.shape[-1])]).astype(np.float64)


def _cell_cdf(counts: np.ndarray, bins: int) -> tuple[np.ndarray, np.ndarray]:
    """Edges of ``bins`` equal cells of [0, 256) and the CDF of ``counts`` (per grey level) at those edges."""
    edges = np.linspace(0.0, 256.0, bins + 1)
    cell = np.minimum((np.arange(256) * bins) // 256, bins - 1)  # the cell of each grey level
    binned = np.zeros(bins)
    np.add.at(binned, cell, counts)
    cdf = np.concatenate([[0.0], np.cumsum(binned)])
    return edges, cdf / cdf[-1]


def _inverse_cdf(q: np.ndarray, edges: np.ndarray, cdf: np.ndarray) -> np.ndarray:
    """Where the piecewise-linear CDF (``cdf`` at ``edges``) reaches ``q``: the left end of a flat stretch."""
    k = np.clip(np.searchsorted(cdf, q, side="left"), 1, len(cdf) - 1)  # cdf[k - 1] < q <= cdf[k] inside (0, 1]
    rise = cdf[k] - cdf[k - 1]
    t = np.where(rise > 0, (q - cdf[k - 1]) / np.where(rise > 0, rise, 1.0), 0.0)
    return edges[k - 1] + np.clip(t, 0.0, 1.0) * (edges[k] - edges[k - 1])


def histogram_match(images: ImagesT, reference: np.ndarray | torch.Tensor, bins: int = 256) -> ImagesT:
    """Per-channel CDF matching of the pooled histogram of ``images`` to the pooled histogram of ``reference``.

    One lookup table per channel, built from the histograms of the whole batch and the whole reference set (a global
    colour transfer, not a per-image one), applied to every image. ``reference`` may hold another number of images,
    of another size, in the other layout. ``bins`` (2..256) cells of [0, 256) make up each histogram; 256 is exact.
    Returns the matched images in the type and layout of ``images``.
    """
    if isinstance(bins, bool) or not isinstance(bins, int | np.integer) or not 2 <= bins <= 256:
        raise ParamError("bins", f"{{name}} must be an integer from 2 to 256, got {bins!r}.")
    src = _as_nhwc(images, "images")
    ref = _as_nhwc(reference, "reference")
    _check_reference(ref)
    if src.size == 0:
        return _like(src.copy(), images)
    centres = np.arange(256) + 0.5
    lut = np.empty((3, 256), np.uint8)
    src_counts, ref_counts = _channel_counts(src), _channel_counts(ref)
    for c in range(3):
        edges, src_cdf = _cell_cdf(src_counts[c], int(bins))
        _, ref_cdf = _cell_cdf(ref_counts[c], int(bins))
        q = np.interp(centres, edges, src_cdf)  # the source CDF at the centre of each grey level
        lut[c] = np.clip(np.floor(_inverse_cdf(q, edges, ref_cdf)), 0, 255).astype(np.uint8)
    out = lut[np.arange(3), src]  # (N, H, W, 3): channel c of every pixel through lut[c]
    return _like(out, images)


def _fda_reference_indices(n: int, n_ref: int, seed: int) -> np.ndarray:
    """The reference image of each of ``n`` images: ``rng.integers(n_ref)`` drawn in order, ``rng`` seeded."""
    return np.random.default_rng(seed).integers(n_ref, size=n)


def _low_rows(h: int, b: int) -> np.ndarray:
    """Rows (or columns) of an unshifted full spectrum of size ``h`` at the frequencies -b..b."""
    return np.concatenate([np.arange(0, b + 1), np.arange(h - b, h)]).astype(np.intp)


def fda(images: ImagesT, reference: np.ndarray | torch.Tensor, beta: float = 0.01, seed: int = 0) -> ImagesT:
    """Fourier Domain Adaptation (Yang & Soatto, CVPR 2020) of every image towards a reference image.

    Image ``i`` takes reference ``rng.integers(len(reference))`` (the ``i``-th draw of a numpy generator seeded with
    ``seed``), resized to the image size with ``cv2.INTER_AREA`` if it differs. Per channel the amplitude of the
    image's 2-D spectrum at the frequencies ``|fy|, |fx| <= b``, ``b = floor(min(H, W) * beta)``, becomes the
    reference's, the phase stays the image's; the inverse transform is clipped to [0, 255] and rounded. ``beta``
    must be in [0, 0.5); 0 returns a copy of ``images``, any ``beta > 0`` swaps at least the DC term (the means).
    Returns the adapted images in the type and layout of ``images``.
    """
    if isinstance(beta, bool) or not isinstance(beta, int | float | np.integer | np.floating) or not (
        0.0 <= beta < 0.5
    ):
        raise ParamError("beta", f"{{name}} must be a number with 0 <= beta < 0.5, got {beta!r}.")
    src = _as_nhwc(images, "images")
    ref = _as_nhwc(reference, "reference")
    _check_reference(ref)
    n, h, w, _ = src.shape
    if beta == 0 or n == 0 or h == 0 or w == 0:
        return _like(src.copy(), images)
    b = int(np.floor(min(h, w) * float(beta)))
    rows, cols = _low_rows(h, b), np.arange(b + 1)  # rfft2: the columns hold the frequencies 0..W/2 only
    which = _fda_reference_indices(n, ref.shape[0], seed)
    used, inverse = np.unique(which, return_inverse=True)
    ref_used = ref[used]
    if ref_used.shape[1:3] != (h, w):
        ref_used = np.stack([cv2.resize(np.ascontiguousarray(r), (w, h), interpolation=cv2.INTER_AREA)
                             for r in ref_used])
    # The reference amplitudes of the low-frequency block, once per used reference: (U, 3, 2b + 1, b + 1).
    ref_planes = ref_used.transpose(0, 3, 1, 2).astype(np.float32, order="C")
    ref_amp = np.abs(np.fft.rfft2(ref_planes)[:, :, rows][:, :, :, cols])
    out = np.empty_like(src)
    step = max(1, _CHUNK_PIXELS // (3 * h * w))
    for start in range(0, n, step):
        planes = src[start:start + step].transpose(0, 3, 1, 2).astype(np.float32, order="C")  # (n, 3, H, W)
        spec = np.fft.rfft2(planes)
        block = spec[:, :, rows][:, :, :, cols]
        swapped = ref_amp[inverse[start:start + step]] * np.exp(1j * np.angle(block))
        spec[:, :, rows[:, None], cols[None, :]] = swapped
        back = np.fft.irfft2(spec, s=(h, w))
        out[start:start + step] = np.rint(np.clip(back, 0.0, 255.0)).astype(np.uint8).transpose(0, 2, 3, 1)
    return _like(out, images)
