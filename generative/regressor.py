"""The one small image regressor: a CoordConv CNN that reads where the target is (and, with a pooled head, its class),
and the one seeded loop that trains it.

Two uses build it: the metrics' :class:`~generative.metrics.Probe` (pooled head: class logits and a sigmoid
position, its penultimate layer the feature space of the custom FID) and sim-to-real's
:class:`~generative.sim2real.PositionRegressor` (soft-argmax head over a heatmap). Each builds its layers in the same
order as before this module existed, so the same seed gives the same initial weights, and :func:`fit` draws its
batches and noise from one generator seeded with ``seed`` in the same order as each use's former loop.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch
from torch import nn

from robot_env.io.errors import ConfigError

__all__ = ["CoordConvNet", "fit", "seeded"]

HEADS = ("pool", "softargmax")


def _block(cin: int, cout: int, stride: int, dilation: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, dilation, dilation=dilation), nn.GroupNorm(8, cout),
                         nn.SiLU())


class CoordConvNet(nn.Module):
    """Two coordinate channels (x and y in [-1, 1], "CoordConv") appended to an RGB image in [-1, 1], then 3x3 conv
    blocks (GroupNorm + SiLU) given as ``(channels, stride, dilation)``, then a head:

    * ``"pool"``: global average pooling, a ``feature_dim`` linear layer + SiLU (:meth:`features`), class logits
      (``n_classes``) and a sigmoid position in ``[0, 1]^2`` (:meth:`heads`); ``forward`` returns both.
    * ``"softargmax"``: a 1x1 conv heatmap whose spatial soft-argmax (pixel centres at ``(i + 0.5) / n``) plus a
      learned offset is the position; ``forward`` returns it.
    """

    def __init__(self, blocks: Sequence[tuple[int, int, int]], head: str = "pool", n_classes: int = 0,
                 feature_dim: int = 128):
        super().__init__()
        if head not in HEADS:
            raise ConfigError(f"head must be one of {', '.join(HEADS)}, got {head!r}")
        self.head_kind = head
        layers, cin = [], 5
        for cout, stride, dilation in blocks:
            layers.append(_block(cin, cout, stride, dilation))
            cin = cout
        self.body = nn.Sequential(*layers)
        if head == "pool":
            self.feature_dim = int(feature_dim)
            self.fc = nn.Sequential(nn.Linear(cin, self.feature_dim), nn.SiLU())
            self.cls_head = nn.Linear(self.feature_dim, int(n_classes))
            self.pos_head = nn.Linear(self.feature_dim, 2)
        else:
            self.head = nn.Conv2d(cin, 1, 1)
            self.offset = nn.Parameter(torch.zeros(2))

    def trunk(self, x: torch.Tensor) -> torch.Tensor:
        """The conv blocks' output for images ``x`` (the coordinate channels appended first)."""
        n, _, h, w = x.shape
        ys = torch.linspace(-1, 1, h, device=x.device, dtype=x.dtype).view(1, 1, h, 1).expand(n, 1, h, w)
        xs = torch.linspace(-1, 1, w, device=x.device, dtype=x.dtype).view(1, 1, 1, w).expand(n, 1, h, w)
        return self.body(torch.cat([x, xs, ys], 1))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled head: the penultimate features ``(N, feature_dim)``."""
        return self.fc(self.trunk(x).mean(dim=(2, 3)))

    def heads(self, f: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Pooled head: class logits ``(N, n_classes)`` and position ``(N, 2)`` in [0, 1] from features."""
        return self.cls_head(f), torch.sigmoid(self.pos_head(f))

    def soft_argmax(self, x: torch.Tensor) -> torch.Tensor:
        """Soft-argmax head: the position ``(N, 2)`` (``pixel_norm``) read from the heatmap."""
        n = x.shape[0]
        heat = self.head(self.trunk(x))
        hh, ww = heat.shape[-2:]
        p = heat.flatten(1).softmax(1).view(n, hh, ww)
        gx = (torch.arange(ww, device=x.device, dtype=p.dtype) + 0.5) / ww
        gy = (torch.arange(hh, device=x.device, dtype=p.dtype) + 0.5) / hh
        return torch.stack([(p.sum(1) * gx).sum(1), (p.sum(2) * gy).sum(1)], 1) + self.offset

    def forward(self, x: torch.Tensor) -> Any:
        if self.head_kind == "pool":
            return self.heads(self.features(x))
        return self.soft_argmax(x)


def seeded(build: Callable[[], nn.Module], seed: int) -> nn.Module:
    """``build()`` with torch's global RNG seeded with ``seed`` for the initial weights, the RNG restored after."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build()


def fit(
    net: nn.Module,
    n: int,
    steps: int,
    batch_size: int,
    seed: int,
    optimizer: Callable[[Iterable[nn.Parameter]], torch.optim.Optimizer],
    scheduler: Callable[[torch.optim.Optimizer], Any],
    loss: Callable[[torch.Tensor, torch.Generator], torch.Tensor],
    log_every: int = 0,
    progress: str | None = None,
) -> list[tuple[int, float]]:
    """Train ``net`` for ``steps`` steps on ``n`` examples: each step draws ``min(batch_size, n)`` indices with
    replacement from a generator seeded with ``seed``, ``loss(idx, generator)`` computes the loss of that batch
    (drawing any augmentation noise from the same generator), then a step of ``optimizer`` and of ``scheduler``
    (built here from the net's parameters). The global RNG is left untouched. Returns ``(step, loss)`` every
    ``log_every`` steps and at the last (none with 0); ``progress``: a tqdm bar with that description."""
    gen = torch.Generator().manual_seed(seed)
    opt = optimizer(net.parameters())
    sched = scheduler(opt)
    log: list[tuple[int, float]] = []
    it: Any = range(steps)
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(it, desc=progress, unit="step")
    for step in it:
        idx = torch.randint(0, n, (min(batch_size, n),), generator=gen)
        value = loss(idx, gen)
        opt.zero_grad(set_to_none=True)
        value.backward()
        opt.step()
        sched.step()
        if log_every and (step % log_every == 0 or step == steps - 1):
            log.append((step, float(value.detach())))
            if progress:
                it.set_postfix(loss=f"{log[-1][1]:.3f}")
    return log
