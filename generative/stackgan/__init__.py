"""A StackGAN-style two-stage text-to-image GAN (Zhang et al. 2017) on armlab's captions.

Stage I draws a ``size / 2`` px (32) scene from noise and the caption, through conditioning augmentation (a
Gaussian around the sentence embedding, with a KL term); stage II reads stage I's image and the caption again
(its own conditioning augmentation) and draws the ``size`` px (64) scene. Captions, the vocabulary and the frozen,
pre-trained text encoder come from ``generative.text``. Trained by the shared
:class:`~generative.training.Trainer` (resume, EMA, sample grids: one class per row, left -> right across).

* ``models``: :class:`CondAug`, :class:`Stage1G`, :class:`Stage2G`, :class:`TextD`.
* ``task``: :class:`StackGANConfig`, :class:`StackGANTask` (the losses).
* ``train``: :func:`train_stackgan`, :func:`load_stackgan`, :func:`sample_stackgan`, :func:`evaluate_stackgan`
  (the probe on both stages: stage II against stage I on position error and ``fid_custom``).

``armlab stackgan train|sample|eval`` is the command line.
"""

from __future__ import annotations

from generative.stackgan.models import CondAug, Stage1G, Stage2G, TextD
from generative.stackgan.task import StackGANConfig, StackGANTask
from generative.stackgan.train import (
    TRAIN_DEFAULTS,
    StackGAN,
    evaluate_stackgan,
    load_stackgan,
    sample_stackgan,
    train_stackgan,
)

# runs name their task class in config.json
StackGANTask.__module__ = __name__

__all__ = ["TRAIN_DEFAULTS", "CondAug", "StackGAN", "StackGANConfig", "StackGANTask", "Stage1G", "Stage2G", "TextD",
           "evaluate_stackgan", "load_stackgan", "sample_stackgan", "train_stackgan"]
