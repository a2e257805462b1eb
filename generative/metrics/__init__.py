"""Metrics for generated camera images that need no download: a probe network trained on the data.

Published FID/KID use an Inception-v3 trained on ImageNet, whose weights would have to be
downloaded and which knows nothing about a robot arm and three target shapes. Here the feature
network is a `Probe`: a small CNN trained (in about a minute on a CPU) on the armlab dataset
itself to predict the two conditions of the generative models, the target's shape class and
where the target is in the image. Its features therefore measure what matters for this data,
and its heads measure whether generated images obey the requested conditions.

* `train_probe`, `probe_for` (trained once per dataset and cached), `evaluate_probe`.
* `conditioning_error`: does the generated image show the requested class at the requested place?
* `fid_kid`: Fréchet and kernel distances in probe-feature space (through torchmetrics).
* `diversity`, `mode_coverage`: mode collapse measured (feature spread; predicted class histogram).
* `generation_report`: all of the above as one JSON-able dict (``armlab gan/diffusion eval --json``).
* `psnr`, `ssim`: pixel metrics for paired uint8 images (reconstructions, translations).

Image inputs are uint8 ``(N, 3, H, W)`` tensors (numpy arrays and ``(N, H, W, 3)`` are accepted
too), or float tensors already scaled to [-1, 1]. They are resized to the probe's size.

.. warning::
   ``fid_custom`` and ``kid_custom`` are NOT comparable with published (Inception) FID/KID
   numbers, nor across probes: they depend on the probe's weights, hence on the dataset, the
   image size and the probe's training seed. Compare them only between models evaluated with
   the same cached probe.

Layout: ``images`` (input handling), ``probe`` (the probe and its cache), ``report`` (the metrics built on the
probe), ``pixels`` (PSNR, SSIM).
"""

from __future__ import annotations

from generative.metrics.pixels import psnr, ssim
from generative.metrics.probe import (
    FEATURE_DIM,
    PROBE_VERSION,
    Probe,
    conditioning_error,
    evaluate_probe,
    probe_for,
    train_probe,
)
from generative.metrics.report import ProbeFeatures, diversity, fid_kid, generation_report, mode_coverage

__all__ = [
    "FEATURE_DIM",
    "PROBE_VERSION",
    "Probe",
    "ProbeFeatures",
    "conditioning_error",
    "diversity",
    "evaluate_probe",
    "fid_kid",
    "generation_report",
    "mode_coverage",
    "probe_for",
    "psnr",
    "ssim",
    "train_probe",
]
