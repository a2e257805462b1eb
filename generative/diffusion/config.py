"""The diffusion models' settings: :class:`DiffusionConfig`, model sizes, conditions, samplers, autoencoder sizes."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from generative import conditions
from robot_env.io.dataset_format import CLASSES
from robot_env.io.errors import ConfigError, ParamError

__all__ = ["CONDITIONS", "DEFAULT_GUIDANCE", "MIN_JOINT_HALF_RANGE", "MODEL_SIZES", "SAMPLERS", "TEXT_GUIDANCE",
           "VAE_SIZES", "DiffusionConfig", "check_sampler", "default_guidance", "parse_cond", "vae_arguments",
           "vae_factor"]

CONDITIONS = ("class", "target", "joints", "text")
SAMPLERS = ("ddpm", "ddim", "dpm")

#: UNet sizes: channels per level, ResNet layers per level, self-attention per level, GroupNorm groups.
MODEL_SIZES: dict[str, dict[str, Any]] = {
    "tiny": {"channels": (16, 32), "layers": 1, "attention": (False, False), "groups": 8},
    "small": {"channels": (32, 64, 128), "layers": 1, "attention": (False, False, True), "groups": 8},
    "base": {"channels": (64, 128, 256), "layers": 2, "attention": (False, True, True), "groups": 32},
}
#: Smallest half-range (radians) a joint is normalised by: a joint that barely moves in the training data is not blown
#: up into huge network inputs when another angle is requested.
MIN_JOINT_HALF_RANGE = 0.05
#: AutoencoderKL sizes: channels per level (downsampling ``2 ** (levels - 1)``), layers, mid-block attention.
VAE_SIZES: dict[str, dict[str, Any]] = {
    "tiny": {"channels": (16, 32), "layers": 1, "attention": False, "groups": 8},
    "small": {"channels": (16, 32, 64), "layers": 1, "attention": False, "groups": 8},
    "base": {"channels": (32, 64, 128), "layers": 2, "attention": True, "groups": 32},
}

# ------------------------------------------------------------------------------------------------------ settings
def parse_cond(cond: str | Sequence[str] | None) -> tuple[str, ...]:
    """``"class,target"`` / ``["target"]`` / ``"joints,class"`` / ``"text"`` / ``""`` / ``"none"`` / None -> the
    conditions in canonical order (class, target, joints, text); a `ParamError` (``cond``) for anything but
    ``class``, ``target``, ``joints`` and ``text``, or ``text`` with another condition (a caption says it all)."""
    out = conditions.parse_cond(cond, CONDITIONS, "class, target, joints or a comma-separated list of them such as "
                                                  "class,target,joints, or text (a caption) alone")
    if "text" in out and len(out) > 1:
        raise ParamError("cond", "{name} text stands alone (the caption names the class and the place): drop "
                                 f"{','.join(c for c in out if c != 'text')}")
    return out


def check_sampler(sampler: str, steps: int, guidance: float | None) -> str:
    """The sampler's canonical name; a `ParamError` (``sampler``, ``steps`` or ``guidance``) in one sentence for an
    unknown sampler, steps < 1 or guidance < 0 (None: the run's default, :func:`default_guidance`)."""
    name = str(sampler).strip().lower()
    aliases = {"dpm-solver": "dpm", "dpmsolver": "dpm", "dpm++": "dpm", "dpmsolver++": "dpm"}
    name = aliases.get(name, name)
    if name not in SAMPLERS:
        raise ParamError("sampler", f"unknown {{name}} {sampler!r}: choose ddpm, ddim or dpm")
    if int(steps) != steps or int(steps) < 1:
        raise ParamError("steps", f"sampling {{name}} must be a whole number of at least 1, got {steps!r}")
    if guidance is not None and (not math.isfinite(float(guidance)) or float(guidance) < 0):
        raise ParamError("guidance", f"the {{name}} scale must be a number >= 0, got {guidance!r}")
    return name


#: The classifier-free guidance scale used when none is given: 2 for a label-conditioned model. A caption-conditioned
#: model follows its prompt far better with a strong scale: session 22's text latent diffusion (3,500 steps), on
#: held-out draws, read the prompt's class at 0.70 / 0.79 / 0.87 / 0.91 / 0.88 / 0.87 x real and its side in
#: 82 / 87 / 88 / 88 / 86 / 85 % of samples at scales 3 / 6 / 10 / 15 / 20 / 30 (docs/benchmarks.md, session 22).
DEFAULT_GUIDANCE = 2.0
TEXT_GUIDANCE = 15.0


def default_guidance(cfg: DiffusionConfig) -> float:
    """The guidance scale a run samples with when none is given: :data:`TEXT_GUIDANCE` for a text run, else
    :data:`DEFAULT_GUIDANCE`."""
    return TEXT_GUIDANCE if "text" in cfg.cond else DEFAULT_GUIDANCE


def _check_model(model: str, table: dict[str, Any]) -> str:
    if model not in table:
        raise ParamError("model", f"unknown {{name}} size {model!r}: choose {', '.join(table)}")
    return model


@dataclass
class DiffusionConfig:
    """Everything that defines a diffusion model (saved in ``config.json`` and the checkpoint).

    ``model``: UNet size (``tiny``, ``small``, ``base``; see :data:`MODEL_SIZES`); ``patch``: pixel-unshuffle factor
    of a pixel model (None: 2 from 64 px up, else 1; always 1 for latents); ``latent``: denoise autoencoder latents
    (``vae_config``: the autoencoder's constructor arguments, ``scaling_factor``: 1 / std of its latents).

    A ``joints`` model takes ``n_joints`` joint positions, normalised by ``joint_low`` / ``joint_high`` (per joint,
    the training labels' min / max; None: the joints are given already normalised, i.e. -1 / 1); ``joint_limits``
    (``[[lower, upper], ...]`` in radians, None when unknown) only checks requested joints. For other models these
    four are 0 / None.
    """

    size: int = 64
    cond: tuple[str, ...] = ()
    classes: tuple[str, ...] = CLASSES
    model: str = "small"
    latent: bool = False
    patch: int | None = None
    guidance_dropout: float = 0.1
    lr: float = 1e-3
    warmup_steps: int = 100
    weight_decay: float = 0.0
    train_timesteps: int = 1000
    beta_schedule: str = "squaredcos_cap_v2"
    snr_gamma: float = 5.0
    target_weight: float = 20.0
    target_sigma: float = 0.04
    spatial_class: bool = True
    fourier_bands: int = 6
    grid_sampler: str = "ddpm"  # ancestral: readable grids early in training too (see make_sampler)
    grid_steps: int = 25
    grid_guidance: float = 2.0
    vae_config: dict[str, Any] | None = None
    scaling_factor: float | None = None
    data: dict[str, Any] = field(default_factory=dict)  # where the training data came from (informative)
    vae_source: str | None = None  # the autoencoder run the latent model was trained on (informative)
    n_joints: int = 0
    joint_low: tuple[float, ...] | None = None
    joint_high: tuple[float, ...] | None = None
    joint_limits: list[list[float]] | None = None  # the robot's limits (the manifest's): checks requested joints
    text_config: dict[str, Any] | None = None  # a text model's vocabulary and encoder arguments (generative.text)
    text_layout: bool = False  # a text model infers the class and place from the caption (generative.text.layout)

    def __post_init__(self) -> None:
        self.cond = parse_cond(self.cond)
        self.classes = tuple(str(c) for c in self.classes)
        self._check_joints()
        _check_model(self.model, MODEL_SIZES)
        if int(self.size) != self.size or self.size < 8:
            raise ParamError("size", f"{{name}} must be a whole number of at least 8 pixels, got {self.size!r}")
        self.size = int(self.size)
        if self.patch is None:
            self.patch = 1 if self.latent or self.size < 64 else 2
        if self.latent:
            self.patch = 1
        if int(self.patch) < 1:
            raise ParamError("patch", f"{{name}} must be >= 1, got {self.patch}")
        if not 0.0 <= self.guidance_dropout < 1.0:
            raise ParamError("guidance_dropout", f"{{name}} must be in [0, 1), got {self.guidance_dropout}")
        if self.lr <= 0 or self.train_timesteps < 2 or self.snr_gamma < 0 or self.target_weight < 0:
            raise ConfigError("lr must be > 0, train_timesteps >= 2, snr_gamma >= 0 and target_weight >= 0")
        if "text" in self.cond and self.text_config is not None and not {"vocab", "encoder"} <= set(self.text_config):
            raise ConfigError("a text model's text_config needs its vocab and encoder arguments")
        self.text_layout = bool(self.text_layout)
        if self.text_layout and "text" not in self.cond:
            raise ConfigError("text_layout is for a text-conditioned model (cond text)")
        if "class" in self.cond and len(self.classes) < 2:
            raise ConfigError(f"a class-conditional model needs at least 2 classes, got {list(self.classes)}")
        check_sampler(self.grid_sampler, self.grid_steps, self.grid_guidance)
        levels = len(MODEL_SIZES[self.model]["channels"])
        res = self.resolution
        if self.latent and not self.vae_config:
            pass  # checked once the autoencoder is known
        elif self.data_size % int(self.patch) or res % (2 ** (levels - 1)) or res < 2 ** (levels - 1):
            raise ParamError("size", f"{{name}} {self.size} does not fit the {self.model} UNet: its input "
                             f"({res} px after {'the autoencoder' if self.latent else 'patching'}) must be a "
                             f"multiple of {2 ** (levels - 1)}")

    def _check_joints(self) -> None:
        if "joints" not in self.cond:
            self.n_joints, self.joint_low, self.joint_high, self.joint_limits = 0, None, None, None
            return
        if int(self.n_joints) != self.n_joints or int(self.n_joints) < 1:
            raise ConfigError(f"a model conditioned on joints needs n_joints >= 1 (the labels' joint_positions), got "
                             f"{self.n_joints!r}")
        self.n_joints = int(self.n_joints)
        if (self.joint_low is None) != (self.joint_high is None):
            raise ConfigError("joint_low and joint_high go together: give both or neither")
        if self.joint_low is not None:
            self.joint_low = tuple(float(v) for v in self.joint_low)
            self.joint_high = tuple(float(v) for v in self.joint_high)
            lo, hi = np.asarray(self.joint_low), np.asarray(self.joint_high)
            if len(lo) != self.n_joints or len(hi) != self.n_joints:
                raise ConfigError(f"joint_low and joint_high need {self.n_joints} values each, got {len(lo)} and "
                                 f"{len(hi)}")
            if not (np.isfinite(lo).all() and np.isfinite(hi).all() and (lo <= hi).all()):
                raise ConfigError("joint_low and joint_high must be finite with joint_low <= joint_high")
        if self.joint_limits is not None:
            lim = [[float(a), float(b)] for a, b in self.joint_limits]
            if len(lim) != self.n_joints or not all(a <= b for a, b in lim):
                raise ConfigError(f"joint_limits must be {self.n_joints} pairs [lower, upper], got {self.joint_limits}")
            self.joint_limits = lim

    def joint_range(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(low, high)`` float64 tensors ``(n_joints,)`` of the joint normalisation (-1 / 1 when not set)."""
        if self.joint_low is None:
            return -torch.ones(self.n_joints, dtype=torch.float64), torch.ones(self.n_joints, dtype=torch.float64)
        return torch.tensor(self.joint_low, dtype=torch.float64), torch.tensor(self.joint_high, dtype=torch.float64)

    @property
    def n_classes(self) -> int:
        return len(self.classes) if "class" in self.cond else 0

    @property
    def data_channels(self) -> int:
        """Channels of what is denoised: 3 (RGB) or the autoencoder's latent channels."""
        return int(self.vae_config["latent_channels"]) if self.latent and self.vae_config else 3

    @property
    def data_size(self) -> int:
        """Side of what is denoised: the image size, or the latent size."""
        return self.size // vae_factor(self.vae_config) if self.latent and self.vae_config else self.size

    @property
    def resolution(self) -> int:
        """Side of the UNet's input (after patching)."""
        return self.data_size // int(self.patch)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        for k in ("cond", "classes", "joint_low", "joint_high"):
            d[k] = None if d[k] is None else list(d[k])
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DiffusionConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})

    def model_dict(self) -> dict[str, Any]:
        """The settings a resumed run must share with its checkpoint (all but the informative ones)."""
        d = self.to_dict()
        for k in ("data", "vae_source", "scaling_factor", "vae_config", "joint_limits", "grid_sampler", "grid_steps",
                  "grid_guidance", "text_config"):
            d.pop(k)
        return d


def vae_factor(vae_config: dict[str, Any] | None) -> int:
    """How much an AutoencoderKL of ``vae_config`` downsamples: ``2 ** (levels - 1)``."""
    if not vae_config:
        return 1
    return 2 ** (len(vae_config["block_out_channels"]) - 1)


def vae_arguments(model: str = "small", size: int = 64, latent_channels: int = 4) -> dict[str, Any]:
    """Plain constructor arguments of an ``AutoencoderKL`` of the given size (see :data:`VAE_SIZES`)."""
    spec = VAE_SIZES[_check_model(model, VAE_SIZES)]
    n = len(spec["channels"])
    return {"in_channels": 3, "out_channels": 3, "down_block_types": ["DownEncoderBlock2D"] * n,
            "up_block_types": ["UpDecoderBlock2D"] * n, "block_out_channels": list(spec["channels"]),
            "layers_per_block": spec["layers"], "latent_channels": int(latent_channels),
            "norm_num_groups": spec["groups"], "sample_size": int(size),
            "mid_block_add_attention": bool(spec["attention"])}
