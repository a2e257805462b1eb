"""The downstream camera model every sim-to-real figure is measured with: where is the target, and what is it?

:class:`TargetNet` reads an image and returns the target object's pixel position (``pixel_norm``) and its class
(cube, cylinder, sphere): the two things a grasping policy needs from its camera, one geometric and one about
appearance. A CoordConv CNN (:class:`~generative.regressor.CoordConvNet`'s blocks) gives a 1/4-resolution map; a
1x1 conv makes a heatmap whose spatial soft-argmax is the position, and the class is read from the features pooled
*under that heatmap* (attention at the predicted target) together with the globally pooled ones.

Training (:func:`train_downstream`) is built to be stable from seed to seed, so that the spread of a figure over
seeds is well below the gaps it measures: AdamW with a one-cycle schedule, enough steps (1,500 by default), an
exponential moving average of the weights (the EMA model is the one evaluated), and geometric augmentation only
(random horizontal flips and shifts of up to ``size / 16`` pixels, the position label moved with the image): no
colour or noise augmentation, which would be a form of domain randomization and blur what the benchmark compares.
Loss: smooth-L1 on the position in pixels plus cross-entropy on the class. One generator seeded with ``seed``
draws the weights, the batches and the augmentation, so the same inputs and seed give the same model; the global
RNG is left untouched.

:func:`evaluate_downstream` returns per-frame figures (pixel error, 0/1 class correctness) so that statistics can
resample the test frames (`generative.sim2real.stats`).
"""

from __future__ import annotations

import copy

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from generative.data import DataError
from generative.regressor import CoordConvNet, fit, seeded
from generative.training import flush_denormals
from robot_env.io.dataset_format import CLASSES
from robot_env.io.errors import ParamError

__all__ = ["DEFAULT_STEPS", "TargetNet", "evaluate_downstream", "train_downstream"]

DEFAULT_STEPS = 1500


class TargetNet(CoordConvNet):
    """Image in [-1, 1] -> ``(position, class logits)``: the position in ``[0, 1]^2`` (``pixel_norm``) from the
    soft-argmax of a heatmap, the class from the features pooled under the heatmap and over the whole image."""

    def __init__(self, width: int = 32, n_classes: int = len(CLASSES)):
        super().__init__(((16, 2, 1), (width, 2, 1), (width, 1, 1), (width, 1, 2), (width, 1, 4)), head="softargmax")
        self.cls = nn.Sequential(nn.Linear(2 * width, 64), nn.SiLU(), nn.Linear(64, int(n_classes)))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        n = x.shape[0]
        f = self.trunk(x)
        hh, ww = f.shape[-2:]
        p = self.head(f).flatten(1).softmax(1).view(n, 1, hh, ww)
        gx = (torch.arange(ww, device=x.device, dtype=p.dtype) + 0.5) / ww
        gy = (torch.arange(hh, device=x.device, dtype=p.dtype) + 0.5) / hh
        pos = torch.stack([(p.sum(2).squeeze(1) * gx).sum(1), (p.sum(3).squeeze(1) * gy).sum(1)], 1) + self.offset
        attended = (f * p).sum(dim=(2, 3))
        return pos, self.cls(torch.cat([attended, f.mean(dim=(2, 3))], 1))


def _augment(x: torch.Tensor, pos: torch.Tensor, pad: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Random horizontal flip and integer shift (reflection padding) of a float batch, the positions moved along."""
    n, _, h, w = x.shape
    flip = torch.rand(n, generator=gen) < 0.5
    x = torch.where(flip.view(n, 1, 1, 1), x.flip(-1), x)
    pos = pos.clone()
    pos[flip, 0] = 1.0 - pos[flip, 0]
    if pad > 0:
        off = torch.randint(0, 2 * pad + 1, (n, 2), generator=gen)
        xp = F.pad(x, (pad, pad, pad, pad), mode="reflect")
        rows = off[:, :1] + torch.arange(h)
        cols = off[:, 1:] + torch.arange(w)
        x = xp[torch.arange(n).view(n, 1, 1, 1), torch.arange(x.shape[1]).view(1, -1, 1, 1),
               rows.view(n, 1, h, 1), cols.view(n, 1, 1, w)]
        # the crop starting at `off` moves the content by (pad - off) pixels
        pos[:, 0] += (pad - off[:, 1]).float() / w
        pos[:, 1] += (pad - off[:, 0]).float() / h
    return x, pos


def train_downstream(
    images: torch.Tensor,
    targets: torch.Tensor,
    classes: torch.Tensor,
    steps: int = DEFAULT_STEPS,
    batch_size: int = 32,
    seed: int = 0,
    lr: float = 3e-3,
    ema_decay: float = 0.99,
    augment: bool = True,
    progress: str | None = None,
) -> TargetNet:
    """Train a :class:`TargetNet` on uint8 ``images`` (N, 3, H, W), ``pixel_norm`` ``targets`` (N, 2) and class ids
    ``classes`` (N,); returns the EMA model in eval mode (see the module docstring)."""
    n = len(images)
    if n < 2 or len(targets) != n or len(classes) != n:
        raise DataError(f"the downstream model needs at least 2 labelled images, got {n} images, {len(targets)} "
                        f"targets and {len(classes)} classes")
    if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] != 3:
        raise DataError(f"images must be uint8 (N, 3, H, W), got {images.dtype} {tuple(images.shape)}")
    for name, value in (("steps", steps), ("batch_size", batch_size)):
        if int(value) < 1:
            raise ParamError(name, f"{{name}} must be at least 1, got {value}")
    if not 0 <= ema_decay < 1:
        raise ParamError("ema_decay", f"{{name}} must be in [0, 1), got {ema_decay}")
    net = seeded(TargetNet, seed)
    net.train()
    ema = copy.deepcopy(net).requires_grad_(False)
    h, w = images.shape[-2:]
    scale = torch.tensor([w, h], dtype=torch.float32)
    targets, classes = targets.float(), classes.long()
    pad = max(1, w // 16) if augment else 0

    def loss(idx: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        x = images[idx].float().div_(127.5).sub_(1.0)
        pos = targets[idx]
        if augment:
            x, pos = _augment(x, pos, pad, gen)
        p, logits = net(x)
        return F.smooth_l1_loss(p * scale, pos * scale) + F.cross_entropy(logits, classes[idx])

    def scheduler(opt: torch.optim.Optimizer):
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=max(int(steps), 1), pct_start=0.15)

        class _WithEma:  # the EMA follows every optimizer step
            def step(self) -> None:
                sched.step()
                with torch.no_grad():
                    for pe, pn in zip(ema.parameters(), net.parameters()):
                        pe.lerp_(pn, 1.0 - ema_decay)
                    for be, bn in zip(ema.buffers(), net.buffers()):
                        be.copy_(bn)

        return _WithEma()

    with flush_denormals():
        fit(net, n, int(steps), int(batch_size), seed,
            optimizer=lambda params: torch.optim.AdamW(params, lr=lr, weight_decay=1e-4),
            scheduler=scheduler, loss=loss, progress=progress)
    return ema.eval()


@torch.no_grad()
def evaluate_downstream(net: nn.Module, images: torch.Tensor, targets: torch.Tensor, classes: torch.Tensor,
                        batch_size: int = 256) -> dict[str, np.ndarray]:
    """Per-frame figures of ``net`` on labelled uint8 images: ``error_px`` (Euclidean distance of the predicted
    and true position, pixels) and ``correct`` (1.0 when the class is right, else 0.0)."""
    errs, correct = [], []
    scale = torch.tensor([images.shape[-1], images.shape[-2]], dtype=torch.float32)
    for i in range(0, len(images), batch_size):
        x = images[i : i + batch_size].float().div_(127.5).sub_(1.0)
        pos, logits = net(x)
        errs.append(((pos - targets[i : i + batch_size].float()) * scale).norm(dim=1))
        correct.append((logits.argmax(1) == classes[i : i + batch_size].long()).float())
    return {"error_px": torch.cat(errs).numpy().astype(np.float64),
            "correct": torch.cat(correct).numpy().astype(np.float64)}
