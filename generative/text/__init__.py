"""Text to scene: captions made from armlab's labels, a word-level tokenizer and a small text encoder trained from
scratch (nothing is downloaded), shared by the text-conditioned latent diffusion (``armlab diffusion train --cond
text``) and the two-stage StackGAN (``armlab stackgan``).

* ``captions``: :func:`captions` (seeded phrasings of a frame's label), :func:`caption_conditions` (the class and
  side a prompt names, for evaluation), :func:`side_of`, :func:`colour_name`.
* ``tokenizer``: :class:`Vocabulary` (words of the training captions, ``<unk>`` for the rest, JSON).
* ``encoder``: :class:`TextEncoder` (2-layer transformer, width 64) and its contrastive pre-training against the
  label vector, :func:`pretrain_text_encoder` (the module docstring says why).
* ``data``: :func:`text_data` (frames, captions, labels), :func:`prepare_text`, :func:`load_text_encoder`.
* ``evaluate``: :func:`prompt_report` (the probe on prompt-conditioned samples against real renders).
* ``layout``: :class:`LayoutHead` (the caption's class and target position, learned: text -> layout -> image),
  :func:`pretrain_layout_head`, :func:`fit_layout_head`, :data:`SIDE_MARGIN` (how far a sampled target keeps from
  the side cuts, :func:`squeeze_sides`).
"""

from __future__ import annotations

from generative.text.captions import (
    SIDES,
    caption_conditions,
    captions,
    colour_name,
    depth_of,
    grid_prompts,
    prompt_layouts,
    prompt_of,
    side_of,
)
from generative.text.data import caption_tokens, drawn_prompts, frame_labels, load_text_encoder, prepare_text, text_data
from generative.text.encoder import LABEL_FEATURES, TextEncoder, label_vectors, pretrain_text_encoder
from generative.text.evaluate import prompt_frames, prompt_report, side_accuracy
from generative.text.layout import (
    LAYOUT_BINS,
    SIDE_MARGIN,
    LayoutHead,
    fit_layout_head,
    pretrain_layout_head,
    side_margin,
    squeeze_sides,
)
from generative.text.tokenizer import SPECIALS, Vocabulary, words

__all__ = [
    "LABEL_FEATURES",
    "LAYOUT_BINS",
    "LayoutHead",
    "SIDES",
    "SIDE_MARGIN",
    "SPECIALS",
    "TextEncoder",
    "Vocabulary",
    "caption_conditions",
    "caption_tokens",
    "captions",
    "colour_name",
    "depth_of",
    "drawn_prompts",
    "fit_layout_head",
    "frame_labels",
    "grid_prompts",
    "prompt_layouts",
    "label_vectors",
    "load_text_encoder",
    "prepare_text",
    "pretrain_layout_head",
    "pretrain_text_encoder",
    "prompt_frames",
    "prompt_of",
    "prompt_report",
    "side_accuracy",
    "side_margin",
    "side_of",
    "squeeze_sides",
    "text_data",
    "words",
]
