"""Adaptive discriminator augmentation (ADA, Karras et al. 2020): a differentiable augmentation of every image D
sees, each transform applied with probability ``p``, and the controller that steers ``p`` by D's overfitting.

Two pipelines (``PIPELINES``; a run's ``ada_pipeline``), each transform drawn per image with probability ``p``:

- ``basic`` (what every run before ``ada_pipeline`` existed used): integer translation by up to 1/8 of the image
  (reflect padding; the target-position condition moves with the image), isotropic scaling by ``2^N(0, 0.2)`` about
  the image centre (the target moves with it), brightness (``+ N(0, 0.2)``), contrast (``x lognormal(0,
  0.5 ln 2)``), saturation (``lognormal(0, ln 2)`` about each pixel's grey) and cutout of a quarter-image square that
  never covers the target (a square drawn onto it is moved half an image away).
- ``full``, nearer the paper's geometric set: a horizontal flip first (the target's x becomes ``1 - x``), then the
  integer translation, and one affine warp of isotropic scaling, a rotation by an angle uniform in (-180, 180]
  degrees and anisotropic scaling (``2^N(0, 0.2)`` on one axis, its inverse on the other, along a random
  direction); the target moves with every one of them. Then the same colour transforms and cutout. The rotation
  and the anisotropic scaling are drawn with probability ``1 - sqrt(1 - p)`` each, as in the paper, so that the
  warp as a whole stays near p. The paper's luma flip and hue rotation are left out here: they change the
  target's colour, which is part of its class.

A horizontal flip or a rotation keeps the labels true because the target position moves with the image; the class
(shape and colour) is not touched by any transform. Random numbers come from torch's global RNG (the trainer seeds
it per step), so a run is repeatable and a resumed run draws what a straight one would.

The controller: ``r_t = E[sign(D(real))]`` over the last 4 steps; ``p += sign(r_t - target) * (images in those
steps) / (ada_kimg * 1000)``, clipped to ``[0, 1]``, so that p can go from 0 to 1 in ``ada_kimg`` thousand images.
Its state (``p``, the running sums) is checkpointed with the task.

Whether p settled: :func:`p_report` reads a run's logged p and r_t (``log.csv``) and reports p's peak and, over the
last quarter of the steps, its mean, spread and linear trend; p has *settled* when over that window it stays within
``SETTLED_RANGE`` (0.1) and its fitted trend moves it by at most ``SETTLED_TREND`` (0.05). ``armlab gan ada`` prints
and plots it; the training summary of an ADA run carries it as ``ada``.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from generative.gan.config import ADA_PIPELINES as PIPELINES  # the augmentation pipelines (module docstring)

__all__ = ["PIPELINES", "AdaController", "ada_augment", "p_report", "read_p_log"]

ADJUST_EVERY = 4  #: steps between adjustments of p
SETTLED_WINDOW = 0.25  #: the share of the steps, at the end, over which p is judged
SETTLED_RANGE = 0.1  #: p settled: its range over the window at most this ...
SETTLED_TREND = 0.05  #: ... and its least-squares trend over the window moves it by at most this


def _gate(p: float, n: int, device: torch.device) -> torch.Tensor:
    """``(N,)`` bools: which images get a transform (always draws, so the RNG stream does not depend on p)."""
    return torch.rand(n, device=device) < p


def _translate(x: torch.Tensor, c: torch.Tensor | None, on: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    n, _, h, w = x.shape
    sy, sx = max(1, h // 8), max(1, w // 8)
    dy = torch.randint(-sy, sy + 1, (n,), device=x.device) * on
    dx = torch.randint(-sx, sx + 1, (n,), device=x.device) * on
    pad = F.pad(x, (sx, sx, sy, sy), mode="reflect")
    rows = torch.arange(h, device=x.device).view(1, h) - dy.view(n, 1) + sy
    cols = torch.arange(w, device=x.device).view(1, w) - dx.view(n, 1) + sx
    idx_n = torch.arange(n, device=x.device).view(n, 1, 1)
    x = pad.permute(0, 2, 3, 1)[idx_n, rows.view(n, h, 1), cols.view(n, 1, w)].permute(0, 3, 1, 2)
    if c is not None:
        c = c + torch.stack([dx.to(c.dtype) / w, dy.to(c.dtype) / h], 1)
    return x, c


def _scale(x: torch.Tensor, c: torch.Tensor | None, on: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    n = x.shape[0]
    s = torch.where(on, torch.exp2(torch.randn(n, device=x.device) * 0.2), torch.ones(n, device=x.device))
    theta = torch.zeros(n, 2, 3, device=x.device, dtype=torch.float32)
    theta[:, 0, 0] = theta[:, 1, 1] = 1.0 / s  # the output pixel at u samples the input at u / s (about the centre)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    x = F.grid_sample(x.float(), grid, mode="bilinear", padding_mode="reflection", align_corners=False).to(x.dtype)
    if c is not None:
        c = 0.5 + (c - 0.5) * s[:, None].to(c.dtype)
    return x, c


def _flip(x: torch.Tensor, c: torch.Tensor | None, on: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    x = torch.where(on.view(-1, 1, 1, 1), x.flip(3), x)
    if c is not None:
        c = torch.stack([torch.where(on, 1.0 - c[:, 0], c[:, 0]), c[:, 1]], 1)
    return x, c


def _warp(x: torch.Tensor, c: torch.Tensor | None, p: float) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The full pipeline's affine warp about the image centre: isotropic scaling (probability p), rotation and
    anisotropic scaling (probability ``1 - sqrt(1 - p)`` each); the target moves with the image."""
    n, _, h, w = x.shape
    dev = x.device
    q = 1.0 - math.sqrt(max(0.0, 1.0 - p))
    iso = torch.where(_gate(p, n, dev), torch.exp2(torch.randn(n, device=dev) * 0.2), torch.ones(n, device=dev))
    ang = torch.where(_gate(q, n, dev), (torch.rand(n, device=dev) * 2 - 1) * math.pi, torch.zeros(n, device=dev))
    an = torch.where(_gate(q, n, dev), torch.exp2(torch.randn(n, device=dev) * 0.2), torch.ones(n, device=dev))
    phi = torch.rand(n, device=dev) * math.pi  # the direction of the anisotropic stretch

    def rot(a: torch.Tensor) -> torch.Tensor:
        cos, sin = torch.cos(a), torch.sin(a)
        return torch.stack([torch.stack([cos, -sin], 1), torch.stack([sin, cos], 1)], 1)

    stretch = torch.diag_embed(torch.stack([an, 1.0 / an], 1))
    # M maps an offset from the centre in pixels, input -> output: scale, then rotate, then stretch along phi
    m = rot(phi) @ stretch @ rot(-phi) @ rot(ang) * iso.view(n, 1, 1)
    half = torch.tensor([w / 2.0, h / 2.0], device=dev)
    theta = torch.zeros(n, 2, 3, device=dev, dtype=torch.float32)
    # grid_sample reads the input at theta @ (output position), in [-1, 1] units: theta = D^-1 M^-1 D
    theta[:, :, :2] = torch.diag(1.0 / half) @ torch.linalg.inv(m) @ torch.diag(half)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    x = F.grid_sample(x.float(), grid, mode="bilinear", padding_mode="reflection", align_corners=False).to(x.dtype)
    if c is not None:
        size = torch.tensor([float(w), float(h)], device=dev)
        off = ((c.float() - 0.5) * size).unsqueeze(2)  # (N, 2, 1) pixels from the centre
        c = (0.5 + (m @ off).squeeze(2) / size).to(c.dtype)
    return x, c


def _colour(x: torch.Tensor, p: float) -> torch.Tensor:
    n, dev = x.shape[0], x.device
    shape = (n, 1, 1, 1)
    b = torch.randn(shape, device=dev) * 0.2 * _gate(p, n, dev).view(shape)
    x = x + b.to(x.dtype)
    k = torch.exp(torch.randn(shape, device=dev) * (0.5 * math.log(2)) * _gate(p, n, dev).view(shape))
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    x = (x - mean) * k.to(x.dtype) + mean
    sat = torch.exp(torch.randn(shape, device=dev) * math.log(2) * _gate(p, n, dev).view(shape))
    grey = x.mean(dim=1, keepdim=True)
    return (x - grey) * sat.to(x.dtype) + grey


def _cutout(x: torch.Tensor, c: torch.Tensor | None, on: torch.Tensor, size: float = 0.25) -> torch.Tensor:
    n, _, h, w = x.shape
    centre = torch.rand(n, 2, device=x.device)
    if c is not None:  # a square that would cover the target goes half an image away from it
        t = c.detach().float().clamp(0, 1)
        near = ((centre - t).abs() < size / 2 + 1.5 / min(h, w)).all(1, keepdim=True)
        centre = torch.where(near, torch.remainder(t + 0.5, 1.0), centre)
    u = (torch.arange(w, device=x.device).float() + 0.5) / w
    v = (torch.arange(h, device=x.device).float() + 0.5) / h
    inside_u = ((u[None, :] - centre[:, :1]).abs() < size / 2)  # (N, W)
    inside_v = ((v[None, :] - centre[:, 1:]).abs() < size / 2)  # (N, H)
    cut = (inside_v[:, :, None] & inside_u[:, None, :] & on[:, None, None])[:, None]
    return x * (~cut).to(x.dtype)


def ada_augment(x: torch.Tensor, c: torch.Tensor | None, p: float,
                pipeline: str = "basic") -> tuple[torch.Tensor, torch.Tensor | None]:
    """Images ``x`` in ``[-1, 1]`` (N, C, H, W) and their target positions ``c`` (``(N, 2)`` pixel_norm, or None)
    augmented by ``pipeline`` (``basic`` or ``full``, see the module docstring), each transform with probability
    ``p`` per image; differentiable in ``x``. With ``p == 0`` the input comes back unchanged (and no random numbers
    are drawn)."""
    if pipeline not in PIPELINES:
        raise ValueError(f"unknown ADA pipeline {pipeline!r}: one of {', '.join(PIPELINES)}")
    if p <= 0:
        return x, c
    n, dev = x.shape[0], x.device
    if pipeline == "full":
        x, c = _flip(x, c, _gate(p, n, dev))
    x, c = _translate(x, c, _gate(p, n, dev))
    if pipeline == "full":
        x, c = _warp(x, c, p)
    else:
        x, c = _scale(x, c, _gate(p, n, dev))
    x = _colour(x, p)
    x = _cutout(x, c, _gate(p, n, dev))
    return x.contiguous(), c


class AdaController:
    """Steers ``p`` by the overfitting heuristic ``r_t = E[sign(D(real))]`` (see the module docstring)."""

    def __init__(self, target: float = 0.6, kimg: float = 500.0, p: float = 0.0):
        self.target, self.kimg = float(target), float(kimg)
        self.p, self.rt = float(p), 0.0
        self._sum, self._n, self._steps = 0.0, 0, 0

    def observe(self, d_real: torch.Tensor) -> None:
        """Count the signs of one step's D outputs on the real images (summed over the processes of a distributed
        run, so that every rank steers the same p); every ``ADJUST_EVERY`` steps adjust p."""
        counts = torch.stack([torch.sign(d_real.detach().float()).sum(),
                              torch.tensor(float(d_real.numel()), device=d_real.device)])
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.all_reduce(counts)
        self._sum += float(counts[0])
        self._n += int(counts[1])
        self._steps += 1
        if self._steps >= ADJUST_EVERY:
            self.rt = self._sum / max(self._n, 1)
            step = math.copysign(1.0, self.rt - self.target) * self._n / (self.kimg * 1000.0)
            self.p = min(max(self.p + step, 0.0), 1.0)
            self._sum, self._n, self._steps = 0.0, 0, 0

    def state(self) -> dict[str, Any]:
        return {"p": self.p, "rt": self.rt, "sum": self._sum, "n": self._n, "steps": self._steps}

    def load(self, state: dict[str, Any]) -> None:
        self.p, self.rt = float(state["p"]), float(state["rt"])
        self._sum, self._n, self._steps = float(state["sum"]), int(state["n"]), int(state["steps"])


def read_p_log(path: str | Path) -> list[dict[str, float]]:
    """The ``step``, ``ada_p`` and ``ada_rt`` columns of a run's ``log.csv`` (a run folder or the file), one row per
    step (the last logged one), in step order. A ``ValueError`` when the file has no ADA columns; ``OSError`` when it
    cannot be read."""
    path = Path(path)
    if path.is_dir():
        path = path / "log.csv"
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        if not {"step", "ada_p", "ada_rt"} <= set(reader.fieldnames or ()):
            raise ValueError(f"{path} has no ada_p / ada_rt columns: the run was not trained with --ada")
        rows: dict[int, dict[str, float]] = {}
        for r in reader:
            try:
                step, p, rt = int(r["step"]), float(r["ada_p"]), float(r["ada_rt"])
            except (TypeError, ValueError):
                continue  # a row logged before the columns existed, or a torn last line
            if math.isfinite(p) and math.isfinite(rt):
                rows[step] = {"step": step, "ada_p": p, "ada_rt": rt}
    return [rows[k] for k in sorted(rows)]


def p_report(rows: Iterable[Mapping[str, float]], window: float = SETTLED_WINDOW) -> dict[str, Any]:
    """How p moved over a run (rows of ``step``, ``ada_p``, ``ada_rt``, as :func:`read_p_log` gives them).

    Returns ``steps`` (the last logged step), ``p_last``, ``p_peak`` and ``p_peak_step``, and over the last
    ``window`` of the steps (``from_step`` on): ``p_mean``, ``p_sd``, ``p_min``, ``p_max``, ``p_trend`` (the
    least-squares slope times the window's length: how far p moved across it), ``rt_mean``, ``rt_min``, ``rt_max``
    and ``settled`` (range <= ``SETTLED_RANGE`` and ``|p_trend|`` <= ``SETTLED_TREND``, with at least 3 rows); and,
    whatever the window, ``band_from``: the earliest logged step from which p stays within ``SETTLED_RANGE`` to the
    end (how long p has held its level).
    """
    if not 0.0 < window <= 1.0:
        raise ValueError(f"window must be in (0, 1], got {window}")
    rows = sorted(({"step": int(r["step"]), "ada_p": float(r["ada_p"]), "ada_rt": float(r["ada_rt"])}
                   for r in rows), key=lambda r: r["step"])
    if not rows:
        raise ValueError("no logged ADA steps")
    last = rows[-1]["step"]
    from_step = last - window * last
    tail = [r for r in rows if r["step"] >= from_step] or rows[-1:]
    ps = [r["ada_p"] for r in tail]
    rts = [r["ada_rt"] for r in tail]
    steps = [r["step"] for r in tail]
    n = len(ps)
    mean = sum(ps) / n
    sd = math.sqrt(sum((p - mean) ** 2 for p in ps) / n)
    ms = sum(steps) / n
    sxx = sum((t - ms) ** 2 for t in steps)
    slope = sum((t - ms) * (p - mean) for t, p in zip(steps, ps)) / sxx if sxx > 0 else 0.0
    trend = slope * (steps[-1] - steps[0])
    peak = max(rows, key=lambda r: r["ada_p"])
    lo = hi = rows[-1]["ada_p"]
    band_from = rows[-1]["step"]
    for r in reversed(rows):  # the earliest step from which p stays within SETTLED_RANGE to the end
        lo, hi = min(lo, r["ada_p"]), max(hi, r["ada_p"])
        if hi - lo > SETTLED_RANGE + 1e-9:
            break
        band_from = r["step"]
    return {
        "steps": last, "p_last": rows[-1]["ada_p"], "p_peak": peak["ada_p"], "p_peak_step": peak["step"],
        "window": window, "from_step": steps[0], "p_mean": mean, "p_sd": sd, "p_min": min(ps), "p_max": max(ps),
        "p_trend": trend, "rt_mean": sum(rts) / n, "rt_min": min(rts), "rt_max": max(rts), "band_from": band_from,
        "settled": bool(n >= 3 and max(ps) - min(ps) <= SETTLED_RANGE + 1e-9 and abs(trend) <= SETTLED_TREND),
    }
