"""DCGAN and conditional GAN on armlab camera images, trained by the shared :class:`~generative.training.Trainer`.

Conditions (``cond``, a subset of ``("class", "target")``; empty = unconditional DCGAN):

* ``class``: the target object's shape class (``class_id``: cube, cylinder, sphere);
* ``target``: where the target's centre is in the image (``target``, ``pixel_norm`` in ``[0, 1]^2``).

Model
-----
Generator: :class:`~generative.networks.DCGANGenerator` with ``n_classes`` = 3 when conditioned on the class and
``cond_dim`` = 2 when conditioned on the target position (the raw ``(u, v)``). Discriminator: the spectrally
normalised projection discriminator :class:`~generative.networks.DCGANDiscriminator`, ``D(x, y, c) = w.h +
<embed(y), h> + <W phi(c), h>``. With ``target_bins`` > 0 (default 16) the discriminator sees the target position
through ``phi``, a fixed encoding of each coordinate by ``target_bins`` Gaussian bumps on ``[0, 1]`` (2 x 16
numbers): a projection on the raw ``(u, v)`` is linear in the position, so it can only reward "further right" but
never "exactly here"; with the bumps the projection term can peak at the right place. ``target_bins=0`` projects
the raw position.

Where-and-what maps (``spatial_cond``, on by default for new runs with the target condition): the same idea that
made the diffusion models learn the class (``generative.diffusion``): both networks also get, as extra image
channels, a Gaussian bump at the requested target position (``map_sigma`` = 0.04 image widths) in the channel of
the requested class (one channel per class; one channel when conditioned on the target alone). G gets them,
resized, at the input of every transposed convolution; D with the image. "A cube *here*" then becomes a local check
that a convolution can make, instead of a global vector that D must relate to a 4-7 px object somewhere in the
image.

Local class loss (``aux_class``; 1 by default for new runs conditioned on class and target, 0 = off): Odena et al.'s
AC-GAN, made local. A small :class:`LocalClassifier` is trained on real images only, on the crop of ``aux_crop``
image widths around the frame's target, to tell the class; G's loss adds ``aux_class`` times that classifier's
cross-entropy on G's crop at the requested target for the requested class. The projection and the maps tell D *what*
to check and *where*; this term gives G a direct gradient towards the requested shape, which a 4-7 px object
otherwise gets only through D's real/fake verdict. On the CPU benchmark it raised the probe's class accuracy on
generated images from 0.50x to 1.10x that on real renders (docs/benchmarks.md).

Loss: the hinge loss (Lim & Ye 2017; Miyato et al. 2018), ``L_D = E relu(1 - D(x)) + E relu(1 + D(G(z)))``,
``L_G = -E D(G(z))``; ``loss="ns"`` gives the non-saturating loss of Goodfellow et al. instead. Adam with learning
rate 2e-4 and betas (0.5, 0.999) for both networks (DCGAN's choice; one D step per G step). The trainer keeps an
EMA copy of G, which sampling and evaluation use. Each step draws one batch of fakes, updates D on
``concat(real, fake)`` (one forward pass) and then G through the updated D on the same fakes.

Augmentation (``augment``, off by default): DiffAugment-style differentiable augmentation (Zhao et al. 2020) of
every image D sees, real and fake, in both steps: ``color`` (brightness, saturation, contrast) and ``translation``
(shifts of up to 1/8 of the image, zero fill). A translation moves the target, so the ``target`` condition given
to D is shifted with it; flips and cutout are not offered (a flip would need the label flipped too, and cutout can
hide the target). It helps D not to memorise small datasets (a few hundred images); on thousands of images and
short runs it only slows learning.

Architectures (``arch``)
------------------------
``dcgan`` is everything above (and what runs saved before ``arch`` existed load as). ``stylegan2``
(:mod:`generative.gan.stylegan`: mapping network, modulated / demodulated convolutions, noise inputs, skip G,
residual D with minibatch stddev and the same projection and where-and-what maps) and ``progan``
(:mod:`generative.gan.progan`: growing 8 -> ... -> size px with fade-in, equalized learning rate, pixel norm)
train with the non-saturating logistic loss and lazy R1 (:mod:`generative.gan.steps`), optionally with ADA
(:mod:`generative.gan.ada`). :mod:`generative.gan.latent` explores a trained generator's latent space.

API
---
* :class:`GANConfig`, :class:`GANTask` - the model as a :class:`~generative.training.TrainTask`.
* :func:`train_gan` - load a dataset, train with a :class:`~generative.training.TrainConfig` (resumes
  automatically), write ``summary.json``; :data:`TRAIN_DEFAULTS` are the trainer settings ``armlab gan train``
  starts from.
* :func:`load_generator`, :func:`sample` - rebuild G from a run folder and draw images with given or
  data-distributed conditions.
* :func:`evaluate_gan` - probe metrics (:func:`generative.metrics.generation_report`) against a dataset;
  :func:`evaluate_snapshots` - of every snapshot a run kept (``--snapshot-every``), and the best step.

A run folder holds ``config.json`` (the training and model settings), ``checkpoint.pt``, ``log.csv``, ``tb/``,
``samples/step_NNNNNN.png`` (grids: one class per row, the target sweeping left to right) and ``summary.json``.
"""

from generative.gan.config import (
    ARCHS,
    AUGMENTATIONS,
    CONDITIONS,
    DEFAULT_AUX_AUGMENT,
    DEFAULT_AUX_CLASS,
    DEFAULT_AUX_FAKE,
    LOSSES,
    GANConfig,
    arch_defaults,
    check_size,
    parse_augment,
    parse_cond,
)
from generative.gan.evaluate import evaluate_gan, evaluate_snapshots
from generative.gan.model import (
    Discriminator,
    LocalClassifier,
    TargetEncoding,
    build_discriminator,
    build_generator,
    diff_augment,
)
from generative.gan.sample import load_generator, run_config, sample
from generative.gan.task import GANTask
from generative.gan.train import TRAIN_DEFAULTS, train_gan
from generative.runs import SUMMARY

GANTask.__module__ = __name__  # runs name their task class in config.json: generative.gan.GANTask, as always

__all__ = [
    "ARCHS",
    "AUGMENTATIONS",
    "CONDITIONS",
    "DEFAULT_AUX_AUGMENT",
    "DEFAULT_AUX_CLASS",
    "DEFAULT_AUX_FAKE",
    "LOSSES",
    "SUMMARY",
    "TRAIN_DEFAULTS",
    "Discriminator",
    "GANConfig",
    "GANTask",
    "LocalClassifier",
    "TargetEncoding",
    "arch_defaults",
    "build_discriminator",
    "build_generator",
    "check_size",
    "diff_augment",
    "evaluate_gan",
    "evaluate_snapshots",
    "load_generator",
    "parse_augment",
    "parse_cond",
    "run_config",
    "sample",
    "train_gan",
]
