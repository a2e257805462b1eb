"""The training data of a text model: a dataset's frames, their labels' captions, the vocabulary, the encoder."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from generative.data.labelled import labelled_tensors
from generative.text.captions import captions, prompt_of
from generative.text.encoder import TextEncoder, label_vectors, pretrain_text_encoder
from generative.text.tokenizer import Vocabulary
from robot_env.io.errors import DataError

__all__ = ["caption_tokens", "drawn_prompts", "frame_labels", "load_text_encoder", "prepare_text", "text_data"]


def frame_labels(ds: Any) -> list[dict[str, Any]]:
    """The parsed label of every frame of an armlab dataset (``ArmlabDataset``), in the dataset's order."""
    if not hasattr(ds, "records"):
        raise DataError("a text model needs an armlab dataset with labels (a manifest.json), not a plain folder")
    labels = ds.labels()
    if len(labels) != len(ds.records):
        raise DataError(f"dataset {str(ds.root)!r} changed while it was read ({len(labels)} labels for "
                        f"{len(ds.records)} frames)")
    return labels


def text_data(data_dir: str | Path, size: int, limit: int | None = None, n_captions: int = 4, seed: int = 0,
              progress: bool = False) -> tuple[dict[str, torch.Tensor], list[list[str]], list[dict], list[str]]:
    """``(tensors, captions, labels, classes)`` of the frames of the armlab dataset at ``data_dir`` that have a
    class and a target position: ``tensors`` holds ``image``, ``class_id``, ``target``; ``captions[i]`` the
    ``n_captions`` phrasings of frame ``i`` (seeded by ``seed`` and the frame's place); ``labels[i]`` its label."""
    ds, data, classes = labelled_tensors(data_dir, size, ("class", "target"), "a text model", limit=limit,
                                         progress=progress)
    labels = frame_labels(ds)[: len(ds) if limit is None else max(0, int(limit))]
    keep = [0 <= r["class_id"] < len(classes) and all(v == v for v in r["pixel_norm"])
            for r in ds.records[: len(labels)]]
    labels = [lab for lab, k in zip(labels, keep) if k]
    if len(labels) != len(data["image"]):
        raise DataError(f"dataset {str(data_dir)!r}: {len(labels)} labels for {len(data['image'])} frames")
    texts = [captions(lab, n_captions, seed, i) for i, lab in enumerate(labels)]
    return {k: data[k] for k in ("image", "class_id", "target")}, texts, labels, classes


def caption_tokens(vocab: Vocabulary, texts: list[list[str]]) -> torch.Tensor:
    """``(N, K, L)`` token ids of K captions per frame."""
    k = len(texts[0])
    return vocab.encode([t for row in texts for t in row]).reshape(len(texts), k, vocab.max_len)


def prepare_text(texts: list[list[str]], labels: list[dict], dim: int = 64, layers: int = 2, steps: int = 300,
                 seed: int = 0, pretrain: bool = True) -> tuple[Vocabulary, TextEncoder, torch.Tensor, list[float]]:
    """The vocabulary of the captions, the (pre-trained, frozen) encoder, the ``(N, K, L)`` tokens and the
    pre-training losses (empty with ``pretrain=False``: a resumed run loads the encoder from its checkpoint)."""
    vocab = Vocabulary.build(t for row in texts for t in row)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        encoder = TextEncoder(len(vocab), dim=dim, layers=layers, max_len=vocab.max_len)
    tokens = caption_tokens(vocab, texts)
    losses = pretrain_text_encoder(encoder, tokens, label_vectors(labels), steps=steps, seed=seed) if pretrain \
        else []
    return vocab, encoder.eval().requires_grad_(False), tokens, losses


def load_text_encoder(text_config: dict[str, Any], state: dict[str, torch.Tensor]) -> tuple[Vocabulary, TextEncoder]:
    """The vocabulary and frozen encoder of a run from its ``text_config`` (``vocab``, ``encoder``) and state."""
    vocab = Vocabulary.from_json(text_config["vocab"])
    encoder = TextEncoder(**text_config["encoder"])
    encoder.load_state_dict(state)
    return vocab, encoder.eval().requires_grad_(False)


def drawn_prompts(classes: list[str] | tuple[str, ...], extra: dict[str, Any], n: int, gen: torch.Generator
                  ) -> list[str]:
    """Prompts for ``n`` images when none is given: the class and side of training frames (the ``class_ids`` and
    ``targets`` a run keeps in its checkpoint's ``extra``), drawn with ``gen``; without them, uniform classes and
    sides."""
    y, c = extra.get("class_ids"), extra.get("targets")
    if y is not None and c is not None and len(y) and len(y) == len(c):
        idx = torch.randint(0, len(y), (int(n),), generator=gen)
        pairs = [(int(y[i]), float(c[i, 0])) for i in idx]
    else:
        pairs = list(zip(torch.randint(0, len(classes), (int(n),), generator=gen).tolist(),
                         torch.rand(int(n), generator=gen).tolist()))
    return [prompt_of(classes[k % len(classes)], u if u == u else 0.5) for k, u in pairs]
