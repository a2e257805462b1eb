"""Text to layout: what a caption says about *where* and *what*, learned from the captions and their labels.

Why: a generator that has to learn "on the left" from a 64-number sentence embedding through its noisy adversarial
(or denoising) gradient does not learn it in the minutes a CPU gives it (``docs/benchmarks.md``: both text models
placed the target at chance after 20 minutes). Hong et al. (2018, "Inferring semantic layout for hierarchical
text-to-image synthesis") split the job: infer a layout from the text, then draw the image from the layout. Here
the layout is the one armlab's conditional GAN already draws well from: the target's class and its position,
turned into where-and-what maps (:func:`generative.networks.condition_maps`).

:class:`LayoutHead` reads the frozen encoder's sentence embedding and gives the class (``n_classes`` logits) and
the target position as two factorised categorical distributions over ``bins`` columns and ``bins`` rows of the
image (a caption names a region, "the left of the table, near the camera", not a point: a categorical fits any
region's shape, a Gaussian would spill over the region's edges). ``bins = 24`` puts the caption's side cuts (1/3,
2/3) on bin edges. :func:`pretrain_layout_head` fits it with cross-entropy on the training frames' own classes and
positions (seconds; seeded); :meth:`LayoutHead.sample` draws ``(class_id, target)`` for new captions: the class and
a bin from the softmaxes, a uniform place inside the bin.

A side margin (:data:`SIDE_MARGIN`, ``side_margin`` of :meth:`LayoutHead.sample`) keeps a drawn target that far from
the side cuts: each third of the table is squeezed linearly away from its cuts (the table's own edges stay), so a
prompt's "left" is drawn clearly on the left and not on the line a reader (or the probe, whose position error on
real renders is about 0.04 image widths) could read either way. The draws are the same with or without it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from generative.text.captions import SIDE_CUTS
from robot_env.io.errors import ParamError

__all__ = ["LAYOUT_BINS", "SIDE_MARGIN", "LayoutHead", "fit_layout_head", "pretrain_layout_head", "side_margin",
           "squeeze_sides"]

#: Columns and rows of the position's categorical distributions (a multiple of 3: the side cuts are bin edges).
LAYOUT_BINS = 24
#: Image widths a sampled target keeps from the side cuts unless told otherwise (chosen on held-out draws,
#: ``docs/benchmarks.md``, session 23).
SIDE_MARGIN = 0.04
_MAX_MARGIN = min(b - a for a, b in zip((0.0, *SIDE_CUTS), (*SIDE_CUTS, 1.0))) / 2


def side_margin(value: float | None) -> float:
    """The side margin to use: :data:`SIDE_MARGIN` for None; a `ParamError` (``side_margin``) unless ``0 <= value <
    1/6`` (half the centre third)."""
    m = SIDE_MARGIN if value is None else value
    try:
        m = float(m)
    except (TypeError, ValueError):
        raise ParamError("side_margin", f"{{name}} must be a number, got {value!r}") from None
    if not 0.0 <= m < _MAX_MARGIN:
        raise ParamError("side_margin", f"{{name}} must be at least 0 and below {_MAX_MARGIN:.4f} (half the centre "
                                        f"third of the table), got {value!r}")
    return m


def squeeze_sides(u: torch.Tensor, margin: float) -> torch.Tensor:
    """Horizontal positions ``u`` in ``[0, 1]`` moved at least ``margin`` away from the side cuts, each on its own
    side: every third maps linearly onto itself less ``margin`` at each cut (order within a third is kept)."""
    if margin <= 0:
        return u
    cuts = torch.tensor(SIDE_CUTS, dtype=torch.float64)
    edges = torch.cat([cuts.new_zeros(1), cuts, cuts.new_ones(1)])
    x = u.double()
    k = (x[..., None] >= cuts).sum(-1)  # the third: 0 left, 1 centre, 2 right (as ``side_of`` reads it)
    lo, hi = edges[k], edges[k + 1]
    lo2 = lo + margin * (k > 0).double()
    hi2 = hi - margin * (k < len(SIDE_CUTS)).double()
    return (lo2 + (x - lo) / (hi - lo) * (hi2 - lo2)).to(u.dtype)


class LayoutHead(nn.Module):
    """Sentence embedding ``(N, text_dim)`` -> ``(class logits (N, n_classes), u logits (N, bins), v logits (N,
    bins))``. ``arguments()`` are the plain constructor arguments."""

    def __init__(self, text_dim: int, n_classes: int, bins: int = LAYOUT_BINS, hidden: int = 128):
        super().__init__()
        self.args = {"text_dim": int(text_dim), "n_classes": int(n_classes), "bins": int(bins),
                     "hidden": int(hidden)}
        self.body = nn.Sequential(nn.Linear(int(text_dim), int(hidden)), nn.SiLU(),
                                  nn.Linear(int(hidden), int(hidden)), nn.SiLU())
        self.out = nn.Linear(int(hidden), int(n_classes) + 2 * int(bins))

    def arguments(self) -> dict[str, int]:
        return dict(self.args)

    def forward(self, e: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        k, b = self.args["n_classes"], self.args["bins"]
        h = self.out(self.body(e))
        return h[:, :k], h[:, k: k + b], h[:, k + b:]

    def bin_of(self, x: torch.Tensor) -> torch.Tensor:
        """The bin (long) of positions ``x`` in ``[0, 1]``."""
        b = self.args["bins"]
        return (x.float() * b).floor().long().clamp(0, b - 1)

    @torch.no_grad()
    def sample(self, e: torch.Tensor, gen: torch.Generator, side_margin: float = 0.0
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(class_id (N,) long, target (N, 2) in [0, 1])`` drawn for sentence embeddings ``e``; every draw from
        ``gen`` (a CPU generator), so the same generator state gives the same layout on any device. ``side_margin``:
        the target's ``u`` is then at least that far from the side cuts (:func:`squeeze_sides`; same draws)."""
        logits = [t.float().cpu() for t in self(e)]
        draws = [torch.multinomial(F.softmax(t, 1), 1, generator=gen)[:, 0] for t in logits]
        jitter = torch.rand(len(e), 2, generator=gen)
        uv = (torch.stack(draws[1:], 1).float() + jitter) / self.args["bins"]
        uv[:, 0] = squeeze_sides(uv[:, 0], float(side_margin))
        return draws[0].to(e.device), uv.to(e.device)


def pretrain_layout_head(head: LayoutHead, embed, tokens: torch.Tensor, class_ids: torch.Tensor,
                         targets: torch.Tensor, steps: int = 400, batch_size: int = 128, lr: float = 2e-3,
                         seed: int = 0) -> list[float]:
    """Fit ``head`` in place: cross-entropy of the class and of the target's column and row bins, for the
    sentence embeddings ``embed(tokens)`` of the frames' captions (``tokens`` ``(N, K, L)``: one of the K phrasings
    drawn per frame and step; ``embed`` a frozen encoder's ``(N, L) -> (N, dim)``). Everything random comes from
    ``seed``. Returns the loss of every step; the head is left in eval mode without gradients."""
    gen = torch.Generator().manual_seed(int(seed))
    head.train().requires_grad_(True)
    opt = torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=0.01)
    n, k = tokens.shape[:2]
    y, bu, bv = class_ids.long(), head.bin_of(targets[:, 0]), head.bin_of(targets[:, 1])
    losses = []
    for _ in range(int(steps)):
        idx = torch.randint(0, n, (min(int(batch_size), n),), generator=gen)
        pick = torch.randint(0, k, (len(idx),), generator=gen)
        with torch.no_grad():
            e = embed(tokens[idx, pick])
        lc, lu, lv = head(e)
        loss = F.cross_entropy(lc, y[idx]) + F.cross_entropy(lu, bu[idx]) + F.cross_entropy(lv, bv[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    head.eval().requires_grad_(False)
    return losses


def fit_layout_head(encoder: nn.Module, tokens: torch.Tensor, class_ids: torch.Tensor, targets: torch.Tensor,
                    n_classes: int, steps: int = 400, seed: int = 0) -> tuple[dict[str, torch.Tensor], list[float]]:
    """A new run's layout head: initialised from ``seed`` and fitted (:func:`pretrain_layout_head`) on the sentence
    embeddings of a frozen ``encoder`` (``TextEncoder``). Returns its state and the losses."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        head = LayoutHead(encoder.dim, int(n_classes))
    losses = pretrain_layout_head(head, lambda t: encoder(t)[2], tokens, class_ids, targets, steps=steps, seed=seed)
    return head.state_dict(), losses
