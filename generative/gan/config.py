"""The GAN's settings: :class:`GANConfig`, its conditions, losses and augmentations."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from generative import conditions
from robot_env.io.dataset_format import CLASSES
from robot_env.io.errors import ConfigError, ParamError

__all__ = ["AUGMENTATIONS", "CONDITIONS", "DEFAULT_AUX_CLASS", "LOSSES", "GANConfig", "check_size", "parse_augment",
           "parse_cond"]

CONDITIONS = ("class", "target")
LOSSES = ("hinge", "ns")
AUGMENTATIONS = ("color", "translation")
DEFAULT_AUX_CLASS = 1.0  #: the local class loss's weight for new runs conditioned on class and target


# ------------------------------------------------------------------------------------------------------ settings
def parse_cond(cond: str | Sequence[str] | None) -> tuple[str, ...]:
    """``"class,target"`` / ``["target"]`` / ``""`` / ``"none"`` / None -> the conditions in canonical order.

    A `ParamError` (``cond``) for anything but ``class`` and ``target``."""
    return conditions.parse_cond(cond, CONDITIONS, "class, target or class,target")


def parse_augment(augment: str | Sequence[str] | None) -> tuple[str, ...]:
    """``"color,translation"`` / ``""`` / ``"none"`` -> augmentations in canonical order; a `ParamError`
    (``augment``) otherwise."""
    items = conditions.parse_names(augment, AUGMENTATIONS, ("none", "off"))
    bad = [a for a in items if a not in AUGMENTATIONS]
    if bad:
        raise ParamError("augment", f"unknown augmentation {bad[0]!r}: {{name}} takes {', '.join(AUGMENTATIONS)} "
                                    "or none")
    return tuple(a for a in AUGMENTATIONS if a in items)


def check_size(size: int) -> int:
    """``size`` if it is a power of two of at least 8, else a `ParamError` (``size``) in one sentence."""
    if not isinstance(size, int) or size < 8 or size & (size - 1):
        raise ParamError("size", f"{{name}} must be a power of two of at least 8 (16, 32, 64, 128, ...), got {size!r}")
    return size


@dataclass
class GANConfig:
    """Everything that defines the model (saved in ``config.json`` and the checkpoint; enough to rebuild G).

    ``g_base`` / ``d_base``: the networks' base widths (G's 4x4 map has ``g_base * size / 8`` channels);
    ``target_bins``: Gaussian bumps per coordinate in D's encoding of the target position (0: raw position);
    ``loss``: ``hinge`` or ``ns``; ``augment``: a subset of ``("color", "translation")``; ``spatial_cond``: with the
    target condition, G and D also see the where-and-what maps of ``(class, target)`` (``map_sigma`` image widths;
    see the module docstring). Configs saved before it existed load with ``spatial_cond=False``. ``aux_class``: weight
    of the local class loss (AC-GAN style, 0 = off; needs the class and target conditions; `train_gan` turns it on
    for new runs that have both; configs saved before it existed load with 0): a small classifier
    trained on real crops of ``aux_crop`` image widths around the target must read the requested class from G's
    crop at the requested target (:class:`LocalClassifier`).
    """

    size: int = 64
    cond: tuple[str, ...] = ()
    classes: tuple[str, ...] = CLASSES
    z_dim: int = 128
    g_base: int = 32
    d_base: int = 32
    embed_dim: int = 32
    target_bins: int = 16
    loss: str = "hinge"
    lr_g: float = 2e-4
    lr_d: float = 2e-4
    beta1: float = 0.5
    beta2: float = 0.999
    augment: tuple[str, ...] = ()
    spatial_cond: bool = True
    map_sigma: float = 0.04
    aux_class: float = 0.0
    aux_crop: float = 0.25
    data: dict[str, Any] = field(default_factory=dict)  # where the training data came from (informative)

    def __post_init__(self) -> None:
        check_size(self.size)
        self.cond = parse_cond(self.cond)
        self.augment = parse_augment(self.augment)
        self.classes = tuple(str(c) for c in self.classes)
        if self.loss not in LOSSES:
            raise ParamError("loss", f"{{name}} must be one of {', '.join(LOSSES)}, got {self.loss!r}")
        if min(self.z_dim, self.g_base, self.d_base, self.embed_dim) < 1 or self.target_bins < 0:
            raise ConfigError("z_dim, g_base, d_base and embed_dim must be >= 1 and target_bins >= 0")
        if "class" in self.cond and len(self.classes) < 2:
            raise ConfigError(f"a class-conditional GAN needs at least 2 classes, got {list(self.classes)}")
        if not (math.isfinite(self.aux_class) and self.aux_class >= 0):
            raise ParamError("aux_class", f"{{name}} must be a finite number >= 0, got {self.aux_class!r}")
        if self.aux_class > 0 and not {"class", "target"} <= set(self.cond):
            raise ParamError("aux_class", "the local class loss ({name} > 0) needs the class and target conditions "
                                          "(cond class,target)")
        if not (self.lr_g > 0 and self.lr_d > 0 and math.isfinite(self.lr_g) and math.isfinite(self.lr_d)):
            raise ParamError("lr", f"{{name}} must be a positive number, got {self.lr_g!r} and {self.lr_d!r}")
        if not 0 < self.aux_crop <= 1:
            raise ConfigError(f"aux_crop must be in (0, 1], got {self.aux_crop!r}")

    @property
    def n_classes(self) -> int:
        return len(self.classes) if "class" in self.cond else 0

    @property
    def cond_dim(self) -> int:
        return 2 if "target" in self.cond else 0

    @property
    def map_channels(self) -> int:
        """Channels of the where-and-what maps: one per class with the class condition, else one; 0 without the
        target condition or with ``spatial_cond`` off."""
        if not (self.spatial_cond and self.cond_dim):
            return 0
        return self.n_classes or 1

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        for k in ("cond", "classes", "augment"):
            d[k] = list(d[k])
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> GANConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{"spatial_cond": False, **{k: v for k, v in d.items() if k in names}})  # older runs: no maps

    def model_dict(self) -> dict[str, Any]:
        """The settings a resumed run must share with the checkpoint (all but ``data``)."""
        d = self.to_dict()
        d.pop("data")
        return d
