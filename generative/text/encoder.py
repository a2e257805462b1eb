"""A small text encoder trained from scratch: per-token embeddings for cross-attention and a sentence embedding.

Why pre-trained, and contrastively: on two CPU cores every generator step is precious. Training the encoder
jointly with a diffusion UNet or a GAN gives it only the generator's noisy gradient, and StackGAN's
conditioning augmentation wants a sentence embedding that already separates what captions say. So the encoder is
trained first, for a few hundred steps (seconds on a CPU: two transformer layers of width 64 over at most ~30
tokens), with a CLIP-style symmetric InfoNCE loss between the caption's sentence embedding and an embedding of the
frame's *label vector* (:func:`label_vectors`: class, colour, position, depth and distractor counts), then frozen
and kept in the run. The generators then learn on embeddings that mean the same thing from their first step.

:class:`TextEncoder`: token embedding + learned position embedding, ``layers`` pre-norm transformer encoder
layers (``heads`` heads, no dropout), a final LayerNorm. ``forward(ids)`` -> ``(tokens (N, L, dim), mask (N, L)
bool, pooled (N, dim))``: ``mask`` marks real tokens, ``pooled`` is the output at the leading ``<cls>`` token.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from generative.text.captions import _facts

__all__ = ["LABEL_FEATURES", "TextEncoder", "label_vectors", "pretrain_text_encoder"]

_COLOURS = ("red", "orange", "yellow", "green", "cyan", "blue", "purple", "pink", "white", "grey", "black")
_SHAPES = ("cube", "cylinder", "sphere")
#: Length of a label vector: class one-hot (3), colour one-hot (11), u, v, depth one-hot (3), distractors per
#: shape (3).
LABEL_FEATURES = len(_SHAPES) + len(_COLOURS) + 2 + 3 + len(_SHAPES)


def label_vectors(labels: list[dict[str, Any]]) -> torch.Tensor:
    """``(N, LABEL_FEATURES)`` float vectors of frames' labels (what the encoder is pre-trained to agree with)."""
    out = np.zeros((len(labels), LABEL_FEATURES), np.float32)
    for i, label in enumerate(labels):
        f = _facts(label)
        if f["shape"] in _SHAPES:
            out[i, _SHAPES.index(f["shape"])] = 1
        if f["colour"] in _COLOURS:
            out[i, 3 + _COLOURS.index(f["colour"])] = 1
        u, v = (x if math.isfinite(x) else 0.5 for x in (f["u"], f["v"]))
        out[i, 14:16] = (2 * u - 1) * 2, (2 * v - 1) * 2
        if f["depth"]:
            out[i, 16 + ("far", "middle", "near").index(f["depth"])] = 1
        for shape, _ in f["others"]:
            out[i, 19 + _SHAPES.index(shape)] += 0.5
    return torch.from_numpy(out)


class TextEncoder(nn.Module):
    """See the module docstring. ``arguments()`` are the plain constructor arguments (kept in a run's config)."""

    def __init__(self, vocab_size: int, dim: int = 64, layers: int = 2, heads: int = 4, max_len: int = 32):
        super().__init__()
        self.args = {"vocab_size": int(vocab_size), "dim": int(dim), "layers": int(layers), "heads": int(heads),
                     "max_len": int(max_len)}
        self.embed = nn.Embedding(int(vocab_size), int(dim), padding_idx=0)
        self.pos = nn.Parameter(torch.randn(int(max_len), int(dim)) * 0.02)
        layer = nn.TransformerEncoderLayer(int(dim), int(heads), 2 * int(dim), dropout=0.0, batch_first=True,
                                           norm_first=True)
        self.blocks = nn.TransformerEncoder(layer, int(layers), enable_nested_tensor=False)
        self.norm = nn.LayerNorm(int(dim))

    @property
    def dim(self) -> int:
        return self.args["dim"]

    def arguments(self) -> dict[str, int]:
        return dict(self.args)

    def forward(self, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        ids = ids.long()[:, : self.args["max_len"]]
        mask = ids != 0
        h = self.embed(ids) + self.pos[: ids.shape[1]]
        h = self.norm(self.blocks(h, src_key_padding_mask=~mask))
        return h, mask, h[:, 0]


def pretrain_text_encoder(encoder: TextEncoder, tokens: torch.Tensor, labels: torch.Tensor, steps: int = 300,
                          batch_size: int = 64, lr: float = 2e-3, seed: int = 0) -> list[float]:
    """Train ``encoder`` in place with the symmetric InfoNCE loss between its sentence embeddings of ``tokens``
    (``(N, K, L)``: K phrasings per frame, one drawn per step) and a small MLP's embeddings of the frames'
    ``labels`` (``(N, F)`` from :func:`label_vectors`), temperature 0.1. Everything random comes from ``seed``.
    Returns the loss of every step. The encoder is left in eval mode without gradients."""
    gen = torch.Generator().manual_seed(int(seed))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        head = nn.Sequential(nn.Linear(labels.shape[1], 128), nn.SiLU(), nn.Linear(128, encoder.dim))
        proj = nn.Linear(encoder.dim, encoder.dim)
    encoder.train().requires_grad_(True)
    params = [*encoder.parameters(), *head.parameters(), *proj.parameters()]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.01)
    n, k = tokens.shape[:2]
    losses = []
    for _ in range(int(steps)):
        idx = torch.randint(0, n, (min(int(batch_size), n),), generator=gen)
        pick = torch.randint(0, k, (len(idx),), generator=gen)
        t = F.normalize(proj(encoder(tokens[idx, pick])[2]), dim=1)
        y = F.normalize(head(labels[idx].float()), dim=1)
        logits = t @ y.T / 0.1
        # frames with the same label vector are not told apart: their pairs count as positives
        same = (labels[idx][:, None] == labels[idx][None]).all(-1).float()
        target = same / same.sum(1, keepdim=True)
        loss = 0.5 * (torch.sum(-target * logits.log_softmax(1), 1).mean()
                      + torch.sum(-target * logits.T.log_softmax(1), 1).mean())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    encoder.eval().requires_grad_(False)
    return losses
