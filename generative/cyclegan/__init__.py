"""CycleGAN (Zhu et al. 2017) between armlab's sim images and any set of real (or real-style) images.

Two ResNet generators translate sim -> real (``G``) and real -> sim (``F``); two PatchGAN discriminators (depth
:func:`~generative.networks.choose_n_layers` of the image size) judge each domain. Below 128 px the generators
downsample once instead of twice (:func:`default_n_down`): at 64 px their residual blocks then work at 32 x 32, the
resolution of the paper's 128 px model, and objects a few pixels wide are not smeared by the bottleneck (the
blocks cost the same either way). The losses are the paper's:

* LSGAN: discriminators regress 1 on real images and 0 on translated ones (drawn from a pool of 50 earlier
  translations per domain, :class:`ImagePool`), generators push their outputs towards 1;
* cycle consistency ``|F(G(x)) - x|_1 + |G(F(y)) - y|_1``, weight ``cycle_weight`` (10);
* identity ``|G(y) - y|_1 + |F(x) - x|_1``, weight ``identity_weight * cycle_weight`` (0.5 x 10);
* optionally a *task-consistency* term (the idea of RL-CycleGAN and RetinaGAN): a frozen probe trained on the labelled
  sim dataset (:func:`generative.metrics.probe_for`) must read the same target position from a sim image ``x`` and
  from ``G(x)``; ``task_weight`` times the L1 distance of the two positions in pixels. Off by default.

Adam (2e-4, betas 0.5 / 0.999) for the generators and for the discriminators; the learning rate is constant for the
first half of the schedule and decays linearly to 0 at its end (``LambdaLR``). The two domains are unpaired: the
trainer's batches are sim images, and each step draws as many real images from a seeded sequence of epoch
permutations of the real set. Augmentation: per image a random horizontal flip and a random shift (reflection
padding of ``size / 16`` pixels, then a crop back to ``size``): integer shifts that keep the real domain's noise
and compression artefacts intact. The flip and the shift are applied to ``x`` before ``G``, so the task term
compares the probe on the augmented ``x`` with the probe on ``G`` of that same image: its label stays consistent.

Training runs through :class:`generative.training.Trainer`: per-step seeding, checkpoints that resume exactly (the
image pools are part of the checkpoint), EMA copies of the generators (used for every translation), TensorBoard,
sample grids (rows of sim, G(sim), real, F(real)) and DDP.

``generator="look"`` swaps both ResNet generators for :class:`LookGenerator` (``look``): a light, physically
motivated camera model (optical blur, colour rendition and tone curve, vignetting, sensor noise) plus a small
residual net for local effects, about 21 k parameters, trained with the same adversarial and cycle terms and much
faster on a CPU. Its identity term is off by default: a camera look applies to real images too, and ``G(y) = y``
would pin it to the identity.

Use: :func:`train_cyclegan` (a :class:`~generative.training.TrainConfig` and the model's options; ``armlab
cyclegan train`` starts from :data:`TRAIN_DEFAULTS`), then :func:`translate_images`, :func:`translate_dataset` (a
whole armlab dataset with its labels, or a plain image folder) and :func:`translate_video`.

``method="cut"`` (or ``"fastcut"``) trains the one-sided CUT instead (Park et al. 2020,
:mod:`~generative.cyclegan.cut`): one generator of either kind and one discriminator, a patch-wise contrastive loss
(PatchNCE) on the generator's own encoder features in place of the cycle; it translates sim -> real only.

Layout: ``look`` (the look generator), ``cut`` (CUT's task and PatchNCE), ``model`` (the generator pair, the image
pool, augmentation, the LR schedule), ``task`` (the training task), ``train`` and ``translate``.
"""

from __future__ import annotations

from generative.cyclegan.cut import METHODS, CUTTask, PatchNCE
from generative.cyclegan.look import LookGenerator
from generative.cyclegan.model import (
    DIRECTIONS,
    GENERATORS,
    CyclePair,
    ImagePool,
    augment,
    default_n_down,
    linear_decay,
)
from generative.cyclegan.task import CycleGANTask
from generative.cyclegan.train import TRAIN_DEFAULTS, train_cyclegan
from generative.cyclegan.translate import (
    Generators,
    load_generators,
    translate_dataset,
    translate_images,
    translate_video,
)
from generative.training import flush_denormals

CycleGANTask.__module__ = __name__  # runs name their task class in config.json: generative.cyclegan.CycleGANTask
CUTTask.__module__ = __name__

__all__ = [
    "DIRECTIONS",
    "GENERATORS",
    "METHODS",
    "TRAIN_DEFAULTS",
    "CUTTask",
    "CycleGANTask",
    "CyclePair",
    "Generators",
    "ImagePool",
    "LookGenerator",
    "PatchNCE",
    "augment",
    "default_n_down",
    "flush_denormals",
    "linear_decay",
    "load_generators",
    "train_cyclegan",
    "translate_dataset",
    "translate_images",
    "translate_video",
]
