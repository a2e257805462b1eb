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

__all__ = ["ADA_PIPELINES", "ARCHS", "AUGMENTATIONS", "CONDITIONS", "DEFAULT_AUX_AUGMENT", "DEFAULT_AUX_CLASS",
           "DEFAULT_AUX_FAKE", "LOSSES", "GANConfig", "arch_defaults", "check_size", "parse_augment", "parse_cond"]

ARCHS = ("dcgan", "stylegan2", "progan")
CONDITIONS = ("class", "target")
LOSSES = ("hinge", "ns")
AUGMENTATIONS = ("color", "translation")
#: Per architecture, the local class loss's weight for new runs conditioned on class and target: 2 for stylegan2,
#: whose class ratio lagged at 1 (0.88 -> 0.90 at psi 1, 0.90 -> 0.93 at psi 0.8, four seeds at 1,200 s, the same
#: fid_custom; docs/benchmarks.md, session 24), 1 for the others.
DEFAULT_AUX_CLASS = {"dcgan": 1.0, "stylegan2": 2.0, "progan": 1.0}
#: Per architecture, whether a new run's local classifier sees random views (LocalClassifier's ``augment``) and
#: learns G's crops as a class of their own (its ``fake_class``): on for stylegan2, whose class and position ratios
#: they lift (docs/benchmarks.md, session 21); not measured for the others, which keep the plain classifier.
DEFAULT_AUX_AUGMENT = {"dcgan": False, "stylegan2": True, "progan": False}
DEFAULT_AUX_FAKE = {"dcgan": False, "stylegan2": True, "progan": False}


#: The settings of the StyleGAN2 / ProGAN architectures and ADA (absent from a dcgan run's config: its config.json
#: stays as it was). ``w_dim`` / ``map_depth``: the mapping network; ``r1_gamma`` / ``r1_every``: lazy R1;
#: ``ada``: adaptive augmentation with target ``ada_target`` for r_t and a speed of ``ada_kimg`` thousand images
#: for p to go from 0 to 1, through the transforms of ``ada_pipeline`` (``basic`` or ``full``; configs saved before
#: it existed load with ``basic``, what they were trained with); ``phase_steps``: ProGAN's steps per resolution phase.
ARCH_FIELDS = ("arch", "w_dim", "map_depth", "r1_gamma", "r1_every", "ada", "ada_target", "ada_kimg", "ada_pipeline",
               "phase_steps")
ADA_PIPELINES = ("basic", "full")  #: ADA's augmentation pipelines (generative.gan.ada's docstring)

#: Adam's learning rate and betas per architecture (``armlab gan train`` without ``--lr``).
_ARCH_OPT = {"dcgan": (2e-4, 0.5, 0.999), "stylegan2": (2e-3, 0.0, 0.99), "progan": (1e-3, 0.0, 0.99)}


def arch_defaults(arch: str) -> tuple[float, float, float]:
    """``(lr, beta1, beta2)`` of ``arch``; a `ParamError` (``arch``) for an unknown architecture."""
    if arch not in ARCHS:
        raise ParamError("arch", f"unknown architecture {arch!r}: {{name}} takes {', '.join(ARCHS)}")
    return _ARCH_OPT[arch]


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
    crop at the requested target (:class:`LocalClassifier`); ``aux_augment``: through random views of the crop
    (its ``augment``; configs saved before it existed load with False); ``aux_fake``: the classifier also learns
    G's crops as a class of their own (its ``fake_class``; likewise False for older configs).
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
    aux_augment: bool = False
    aux_fake: bool = False
    data: dict[str, Any] = field(default_factory=dict)  # where the training data came from (informative)
    arch: str = "dcgan"
    w_dim: int = 128
    map_depth: int = 2
    r1_gamma: float = 0.05
    r1_every: int = 16
    ada: bool = False
    ada_target: float = 0.6
    ada_kimg: float = 500.0
    ada_pipeline: str = "basic"
    phase_steps: int = 1000

    def __post_init__(self) -> None:
        check_size(self.size)
        arch_defaults(self.arch)
        self._check_arch()
        self.cond = parse_cond(self.cond)
        self.augment = parse_augment(self.augment)
        self.classes = tuple(str(c) for c in self.classes)
        for name in ("aux_augment", "aux_fake"):
            if not isinstance(getattr(self, name), bool):
                raise ParamError(name, f"{{name}} must be true or false, got {getattr(self, name)!r}")
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

    def _check_arch(self) -> None:
        if self.ada and self.arch == "dcgan":
            raise ParamError("ada", "{name} (adaptive augmentation) is for --arch stylegan2 or progan; the dcgan arch "
                                    "has DiffAugment (augment)")
        if self.augment and self.arch != "dcgan":
            raise ParamError("augment", f"{{name}} (DiffAugment) is for the dcgan arch; {self.arch} takes ada")
        if min(self.w_dim, self.map_depth) < 1:
            raise ConfigError(f"w_dim and map_depth must be >= 1, got {self.w_dim} and {self.map_depth}")
        if not (math.isfinite(self.r1_gamma) and self.r1_gamma >= 0) or int(self.r1_every) < 1:
            raise ParamError("r1_gamma", f"{{name}} must be a finite number >= 0 (and r1_every >= 1), got "
                                         f"{self.r1_gamma!r}")
        if not 0 < self.ada_target < 1:
            raise ParamError("ada_target", f"{{name}} must be in (0, 1), got {self.ada_target!r}")
        if not (math.isfinite(self.ada_kimg) and self.ada_kimg > 0):
            raise ParamError("ada_kimg", f"{{name}} must be a positive number, got {self.ada_kimg!r}")
        if self.ada_pipeline not in ADA_PIPELINES:
            raise ParamError("ada_pipeline", f"{{name}} must be one of {', '.join(ADA_PIPELINES)}, got "
                                             f"{self.ada_pipeline!r}")
        if not isinstance(self.phase_steps, int) or self.phase_steps < 1:
            raise ParamError("phase_steps", f"{{name}} must be a whole number >= 1, got {self.phase_steps!r}")
        if self.arch == "progan" and self.size < 8:
            raise ParamError("size", "{name} must be at least 8 for progan")

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
        if self.arch == "dcgan":  # a dcgan run's settings are written as before the other architectures existed
            for k in ARCH_FIELDS:
                d.pop(k)
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
