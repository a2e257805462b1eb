"""Conditional diffusion models on armlab camera images (pixel and latent), built on diffusers and trained by the
shared :class:`~generative.training.Trainer`.

Every model is built from plain arguments (nothing is fetched from the Hugging Face hub): a diffusers
``UNet2DModel`` denoiser, a ``DDPMScheduler`` (1000 steps, cosine schedule ``squaredcos_cap_v2``, epsilon
prediction) for training, the samplers ``DDPMScheduler`` / ``DDIMScheduler`` / ``DPMSolverMultistepScheduler``
built from the training scheduler's config (see :func:`make_sampler` for their spacing and the DDIM clipping
detail), and an ``AutoencoderKL`` for latent diffusion.

Conditions (``cond``, a subset of ``("class", "target", "joints")``; empty = unconditional)
--------------------------------------------------------------------------------------------
* ``class``: the target object's shape (``class_id``: cube, cylinder, sphere). A learned embedding with
  ``n_classes + 1`` rows; the last row is the *null* label used for classifier-free guidance.
* ``target``: where the target's centre is in the image (``pixel_norm`` in ``[0, 1]^2``), given to the network
  twice: (1) as an embedding (Fourier features of ``(u, v)`` -> 2-layer MLP) and (2) as an extra input channel, a
  Gaussian bump at the target position (``target_sigma`` image widths) concatenated with the noisy image. The
  channel makes "draw it *here*" a local, translation-equivariant job that a convolutional UNet learns quickly; a
  global embedding alone has to learn the mapping from numbers to places.
* ``class`` and ``target`` together (``spatial_class``, on by default): one input channel per class instead of
  the single bump, the bump in the requested class's channel and zeros in the others, so the pixels where the
  object goes also see *which* object: "a cube here" is then as local as "something here". (The embeddings are
  kept as well.) With the class alone, there is no place to put it, and the embedding carries it.
* ``joints``: the arm's joint positions (``joint_positions`` of each frame's label, radians; ``n_joints`` is read
  from the data: 3 for the dataset's arm3). They are normalised per joint by the *training frames'* range,
  ``(q - mid) / half_range`` with ``mid`` and ``half_range`` from the per-joint min / max of the training labels
  (``joint_low`` / ``joint_high`` in the config, so in the checkpoint), which puts the training joints in
  ``[-1, 1]``; then Fourier features -> 2-layer MLP, like the target's embedding (no input map: the arm is spread
  over the image, so there is no single place to mark). The robot's joint limits (``joint_limits``, read from the
  dataset manifest's ``joint_limits`` when it has them) are kept to check requested joints.
  Normalising by the data rather than the URDF limits uses the whole ``[-1, 1]`` (the dataset draws the base yaw
  in +-1.4 rad of its +-2.97 rad range) and works for labels of any robot.

The class, target and joint embeddings are summed into one vector that :class:`ConditionedUNet` passes to the UNet
as ``class_labels`` with ``class_embed_type="identity"``: diffusers adds it to the timestep embedding, so it reaches
every ResNet block (the same path the UNet's own ``num_class_embeds`` table would take).

Classifier-free guidance (Ho & Salimans 2022)
---------------------------------------------
In training, each image's conditions are dropped with probability ``guidance_dropout`` (default 0.1), all of them
together: the null class row, zeroed target and joint embedding inputs with their "dropped" flags set, and a zero
target channel.
At sampling, the network runs on the conditioned and the unconditioned input in one batch and
``eps = eps_uncond + s * (eps_cond - eps_uncond)``: ``s = 1`` is the plain conditional model (one pass), ``s = 0``
the unconditional one, ``s > 1`` pushes samples towards the condition. (A ``UNet2DConditionModel`` with
cross-attention to condition tokens would work too; for a few small conditions an added embedding and input maps
are simpler and cheaper.)

Training loss
-------------
Mean squared error of the predicted noise, weighted per image by Min-SNR-gamma (Hang et al. 2023; ``min(SNR(t),
gamma) / SNR(t)``, ``snr_gamma`` 5, faster convergence) and per pixel by ``1 + target_weight * bump`` where
``bump`` is the Gaussian at the frame's target position (from the labels, whatever ``cond`` is): the target object
is a few pixels of a 64 px image, yet the class is its shape. A per-pixel weight leaves the optimal denoiser
unchanged (each output pixel is still fit to its conditional mean); it only spends more of a small model's capacity
and a short run's steps where the class is decided. AdamW, linear warm-up, an EMA copy of the UNet (sampling uses
it).

Pixel and latent diffusion
--------------------------
* Pixel: the UNet denoises images in ``[-1, 1]``. With ``patch`` = 2 (the default from 64 px up) the image is
  folded into 2 x 2 pixel patches (``pixel_unshuffle``: 64 x 64 x 3 -> 32 x 32 x 12) before the UNet and unfolded
  after it, as in "simple diffusion" (Hoogeboom et al. 2023): the noise is still in pixel space, but the UNet's
  first level works at half the resolution, about 4x less compute.
* Latent (Rombach et al. 2022, the Stable Diffusion idea): :class:`AutoencoderTask` trains an ``AutoencoderKL``
  (L1 + MSE reconstruction, weighted around the target like the diffusion loss, + ``kl_weight`` x KL; its batch
  can differ from the UNet's, ``vae_batch_size``); the images are encoded once (posterior means), scaled by
  ``scaling_factor`` = 1 / std of the latents (stored in the run's config), and the same UNet is trained on them;
  sampling decodes. The ``small`` autoencoder downsamples 4x (64 x 64 x 3 -> 16 x 16 x 4). The autoencoder's
  weights are kept (frozen) in the latent run's checkpoint, so a run folder is self-contained.

Sizes (``model``): ``tiny`` (UNet channels 16, 32; for tests), ``small`` (32, 64, 128; attention at the lowest
level) and ``base`` (64, 128, 256, two layers per block, attention on the two lowest levels).

API
---
* :class:`DiffusionConfig`, :class:`DiffusionTask`, :class:`ConditionedUNet`, :func:`build_unet`,
  :func:`build_vae`, :func:`train_scheduler`, :func:`make_sampler`.
* :class:`AutoencoderTask`, :func:`train_autoencoder` (reports reconstruction PSNR).
* :func:`train_diffusion` (resumes; a finished run continues to a larger ``steps``), :func:`load_pipeline`,
  :func:`sample` (images and the conditions used: ``(images, class_ids, targets, joints)``),
  :func:`draw_all_conditions` (requested conditions completed from the training labels; :func:`draw_conditions`
  is its ``(class_ids, targets)`` part), :func:`evaluate_diffusion` (the keys of ``armlab gan eval --json``).

The checkpoint's ``extra`` keeps the training labels the model was conditioned on (``class_ids``, ``targets``,
``joints``), so that sampling draws conditions that are not given from the training distribution (all of one
frame's labels together, from the frames of the requested class when a class is given).

A run folder holds ``config.json``, ``checkpoint.pt``, ``log.csv``, ``tb/``, ``samples/step_NNNNNN.png`` (DDIM
grids: one class per row, the target and the first joint (base yaw) sweeping left to right, other joints at their
training medians), ``summary.json`` and, for a latent run that trained its own autoencoder, ``vae/`` (the
autoencoder's run folder).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from generative.data import DEFAULT_CLASSES, DataError, atomic_write_bytes, load_tensors, open_images, sha256_file
from generative.networks import condition_maps, target_bump
from generative.training import CHECKPOINT, TrainConfig, Trainer, TrainTask, load_checkpoint

__all__ = [
    "CONDITIONS",
    "MODEL_SIZES",
    "SAMPLERS",
    "AutoencoderConfig",
    "AutoencoderTask",
    "ConditionedUNet",
    "DiffusionConfig",
    "DiffusionTask",
    "Pipeline",
    "build_unet",
    "build_vae",
    "draw_all_conditions",
    "draw_conditions",
    "evaluate_diffusion",
    "load_pipeline",
    "load_vae",
    "make_sampler",
    "sampler_step_kwargs",
    "parse_cond",
    "sample",
    "train_autoencoder",
    "train_diffusion",
    "train_scheduler",
]

CONDITIONS = ("class", "target", "joints")
SAMPLERS = ("ddpm", "ddim", "dpm")
SUMMARY = "summary.json"

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
    """``"class,target"`` / ``["target"]`` / ``"joints,class"`` / ``""`` / ``"none"`` / None -> the conditions in
    canonical order (class, target, joints); a ValueError for anything but ``class``, ``target`` and ``joints``."""
    if cond is None:
        return ()
    items = cond.split(",") if isinstance(cond, str) else list(cond)
    items = [str(c).strip().lower() for c in items if str(c).strip()]
    if items in (["none"], ["uncond"], ["unconditional"]):
        return ()
    bad = [c for c in items if c not in CONDITIONS]
    if bad:
        raise ValueError(f"unknown condition {bad[0]!r}: --cond takes class, target, joints or a comma-separated "
                         "list of them such as class,target,joints")
    return tuple(c for c in CONDITIONS if c in items)


def check_sampler(sampler: str, steps: int, guidance: float) -> str:
    """The sampler's canonical name; a ValueError in one sentence for an unknown sampler, steps < 1 or guidance
    < 0."""
    name = str(sampler).strip().lower()
    aliases = {"dpm-solver": "dpm", "dpmsolver": "dpm", "dpm++": "dpm", "dpmsolver++": "dpm"}
    name = aliases.get(name, name)
    if name not in SAMPLERS:
        raise ValueError(f"unknown sampler {sampler!r}: choose ddpm, ddim or dpm")
    if int(steps) != steps or int(steps) < 1:
        raise ValueError(f"sampling steps must be a whole number of at least 1, got {steps!r}")
    if not math.isfinite(float(guidance)) or float(guidance) < 0:
        raise ValueError(f"the guidance scale must be a number >= 0, got {guidance!r}")
    return name


def _check_model(model: str, table: dict[str, Any]) -> str:
    if model not in table:
        raise ValueError(f"unknown model size {model!r}: choose {', '.join(table)}")
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
    classes: tuple[str, ...] = DEFAULT_CLASSES
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
    joint_limits: list[list[float]] | None = None  # the robot's URDF limits: checks requested joints (informative)

    def __post_init__(self) -> None:
        self.cond = parse_cond(self.cond)
        self.classes = tuple(str(c) for c in self.classes)
        self._check_joints()
        _check_model(self.model, MODEL_SIZES)
        if int(self.size) != self.size or self.size < 8:
            raise ValueError(f"--size must be a whole number of at least 8 pixels, got {self.size!r}")
        self.size = int(self.size)
        if self.patch is None:
            self.patch = 1 if self.latent or self.size < 64 else 2
        if self.latent:
            self.patch = 1
        if int(self.patch) < 1:
            raise ValueError(f"patch must be >= 1, got {self.patch}")
        if not 0.0 <= self.guidance_dropout < 1.0:
            raise ValueError(f"--guidance-dropout must be in [0, 1), got {self.guidance_dropout}")
        if self.lr <= 0 or self.train_timesteps < 2 or self.snr_gamma < 0 or self.target_weight < 0:
            raise ValueError("lr must be > 0, train_timesteps >= 2, snr_gamma >= 0 and target_weight >= 0")
        if "class" in self.cond and len(self.classes) < 2:
            raise ValueError(f"a class-conditional model needs at least 2 classes, got {list(self.classes)}")
        check_sampler(self.grid_sampler, self.grid_steps, self.grid_guidance)
        levels = len(MODEL_SIZES[self.model]["channels"])
        res = self.resolution
        if self.latent and not self.vae_config:
            pass  # checked once the autoencoder is known
        elif self.data_size % int(self.patch) or res % (2 ** (levels - 1)) or res < 2 ** (levels - 1):
            raise ValueError(f"--size {self.size} does not fit the {self.model} UNet: its input "
                             f"({res} px after {'the autoencoder' if self.latent else 'patching'}) must be a "
                             f"multiple of {2 ** (levels - 1)}")

    def _check_joints(self) -> None:
        if "joints" not in self.cond:
            self.n_joints, self.joint_low, self.joint_high, self.joint_limits = 0, None, None, None
            return
        if int(self.n_joints) != self.n_joints or int(self.n_joints) < 1:
            raise ValueError(f"a model conditioned on joints needs n_joints >= 1 (the labels' joint_positions), got "
                             f"{self.n_joints!r}")
        self.n_joints = int(self.n_joints)
        if (self.joint_low is None) != (self.joint_high is None):
            raise ValueError("joint_low and joint_high go together: give both or neither")
        if self.joint_low is not None:
            self.joint_low = tuple(float(v) for v in self.joint_low)
            self.joint_high = tuple(float(v) for v in self.joint_high)
            lo, hi = np.asarray(self.joint_low), np.asarray(self.joint_high)
            if len(lo) != self.n_joints or len(hi) != self.n_joints:
                raise ValueError(f"joint_low and joint_high need {self.n_joints} values each, got {len(lo)} and "
                                 f"{len(hi)}")
            if not (np.isfinite(lo).all() and np.isfinite(hi).all() and (lo <= hi).all()):
                raise ValueError("joint_low and joint_high must be finite with joint_low <= joint_high")
        if self.joint_limits is not None:
            lim = [[float(a), float(b)] for a, b in self.joint_limits]
            if len(lim) != self.n_joints or not all(a <= b for a, b in lim):
                raise ValueError(f"joint_limits must be {self.n_joints} pairs [lower, upper], got {self.joint_limits}")
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
                  "grid_guidance"):
            d.pop(k)
        return d


# ------------------------------------------------------------------------------------------------------ networks
def train_scheduler(num_train_timesteps: int = 1000, beta_schedule: str = "squaredcos_cap_v2",
                    clip_sample: bool = True):
    """The training ``DDPMScheduler``: epsilon prediction, ``fixed_small`` variance; ``clip_sample`` for pixels
    (values in [-1, 1]), not for latents."""
    from diffusers import DDPMScheduler

    return DDPMScheduler(num_train_timesteps=int(num_train_timesteps), beta_schedule=beta_schedule,
                         prediction_type="epsilon", clip_sample=bool(clip_sample))


def make_sampler(name: str, train_config: Any):
    """A fresh sampler (``ddpm``, ``ddim`` or ``dpm`` = DPM-Solver++ multistep) from the training scheduler's
    config. Samplers keep state between steps: make one per sampling run, and step it with
    :func:`sampler_step_kwargs`.

    Two details of the cosine schedule decide whether the fast samplers work (measured on a pixel model trained on
    an H100, docs/benchmarks.md): its last training step has ``alpha_bar`` of about 2e-9, so the clean image that
    a sampler infers there, ``(x - sqrt(1 - a) eps) / sqrt(a)``, multiplies the network's error by 2e4.

    * ``ddpm`` and ``ddim`` use ``timestep_spacing="trailing"`` (a short schedule starts at that last step); DDIM
      then clips the inferred clean image (pixel models) *and* re-derives the noise from the clipped image
      (``use_clipped_model_output``), as the DDIM paper's sampler does. Without that, each step mixes a clipped
      image with the unclipped noise and guided samples collapse onto one blurred scene (class accuracy 0.37 vs
      1.05 of real renders).
    * ``dpm`` (which does not clip) uses ``"leading"`` spacing with ``steps_offset=1``, so its first step is at
      ``alpha_bar`` of about 8e-3 (t = 941 of 1000 for 20 steps) instead of the amplifying end (class accuracy 0.39
      vs 1.08).

    A barely trained denoiser leaves visible noise with both deterministic samplers; ancestral ``ddpm`` (also with
    few steps) degrades more gracefully, so training grids use it (``grid_sampler``).
    """
    from diffusers import DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler

    name = check_sampler(name, 1, 1.0)
    if name == "dpm":
        return DPMSolverMultistepScheduler.from_config(train_config, timestep_spacing="leading", steps_offset=1)
    cls = {"ddpm": DDPMScheduler, "ddim": DDIMScheduler}[name]
    return cls.from_config(train_config, timestep_spacing="trailing")


def sampler_step_kwargs(name: str) -> dict[str, Any]:
    """Extra arguments of ``scheduler.step`` for the sampler ``name`` (see :func:`make_sampler`)."""
    return {"use_clipped_model_output": True} if name == "ddim" else {}


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


def build_vae(vae_config: dict[str, Any]):
    """An ``AutoencoderKL`` from plain arguments (:func:`vae_arguments`)."""
    from diffusers import AutoencoderKL

    cfg = dict(vae_config)
    for k in ("down_block_types", "up_block_types", "block_out_channels"):
        cfg[k] = tuple(cfg[k])
    return AutoencoderKL(**cfg)


def build_unet(cfg: DiffusionConfig, in_channels: int, out_channels: int, conditional: bool):
    """A diffusers ``UNet2DModel`` of size ``cfg.model`` for ``cfg.resolution`` px inputs; conditional models take
    an embedding (``class_embed_type="identity"``) that is added to the timestep embedding."""
    from diffusers import UNet2DModel

    spec = MODEL_SIZES[cfg.model]
    n = len(spec["channels"])
    down = tuple("AttnDownBlock2D" if spec["attention"][i] else "DownBlock2D" for i in range(n))
    up = tuple("AttnUpBlock2D" if spec["attention"][n - 1 - i] else "UpBlock2D" for i in range(n))
    return UNet2DModel(
        sample_size=cfg.resolution, in_channels=in_channels, out_channels=out_channels,
        block_out_channels=tuple(spec["channels"]), layers_per_block=spec["layers"], down_block_types=down,
        up_block_types=up, norm_num_groups=spec["groups"], attention_head_dim=32,
        add_attention=any(spec["attention"]), class_embed_type="identity" if conditional else None,
    )


class ConditionedUNet(nn.Module):
    """A diffusers ``UNet2DModel`` with the condition encoders of the module docstring.

    ``forward(x, t, class_ids=None, target=None, drop=None, joints=None)`` -> predicted noise, shaped like ``x``
    (``(N, data_channels, data_size, data_size)``). ``joints``: ``(N, n_joints)`` joint positions in radians (the
    network normalises them). ``drop`` (bool ``(N,)``) marks the images whose conditions are dropped (classifier-free
    guidance's unconditional branch); None = none dropped.
    """

    def __init__(self, cfg: DiffusionConfig):
        super().__init__()
        self.cfg = cfg
        self.patch = int(cfg.patch)
        self.n_classes = cfg.n_classes
        self.use_target = "target" in cfg.cond
        self.spatial_class = bool(cfg.spatial_class and self.use_target and self.n_classes)
        c = cfg.data_channels * self.patch**2
        maps = (self.n_classes if self.spatial_class else 1) if self.use_target else 0
        self.unet = build_unet(cfg, c + maps, c, conditional=bool(cfg.cond))
        temb = self.unet.config.block_out_channels[0] * 4
        self.class_embed = nn.Embedding(self.n_classes + 1, temb) if self.n_classes else None  # last row: null
        if self.use_target:
            self.register_buffer("freqs", math.pi * 2.0 ** torch.arange(cfg.fourier_bands).float(), persistent=False)
            n_in = 2 + 4 * cfg.fourier_bands + 1  # (u, v), sin / cos per band and coordinate, the dropped flag
            self.target_embed = nn.Sequential(nn.Linear(n_in, temb), nn.SiLU(), nn.Linear(temb, temb))
        else:
            self.target_embed = None
        self.n_joints = cfg.n_joints if "joints" in cfg.cond else 0
        self.joint_embed = None
        if self.n_joints:
            if not self.use_target:
                self.register_buffer("freqs", math.pi * 2.0 ** torch.arange(cfg.fourier_bands).float(),
                                     persistent=False)
            low, high = cfg.joint_range()
            self.register_buffer("joint_mid", ((low + high) / 2).float(), persistent=False)
            self.register_buffer("joint_half", ((high - low) / 2).clamp(min=MIN_JOINT_HALF_RANGE).float(),
                                 persistent=False)
            n_in = self.n_joints * (1 + 2 * cfg.fourier_bands) + 1  # q, sin / cos per band and joint, the flag
            self.joint_embed = nn.Sequential(nn.Linear(n_in, temb), nn.SiLU(), nn.Linear(temb, temb))

    def _target_features(self, target: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        uv = torch.nan_to_num(target.float(), nan=0.5) * 2 - 1  # [-1, 1]
        ang = uv[:, :, None] * self.freqs  # (N, 2, bands)
        f = torch.cat([uv, ang.sin().flatten(1), ang.cos().flatten(1)], 1) * keep[:, None]
        return torch.cat([f, 1.0 - keep[:, None]], 1)

    def normalise_joints(self, joints: torch.Tensor) -> torch.Tensor:
        """Joint positions (radians) -> the network's scale: ``(q - mid) / half_range`` of the training range
        (non-finite values -> 0, the middle)."""
        q = joints.float()
        q = torch.where(torch.isfinite(q), q, self.joint_mid.expand_as(q))
        return (q - self.joint_mid) / self.joint_half

    def _joint_features(self, joints: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        z = self.normalise_joints(joints)
        ang = z[:, :, None] * self.freqs  # (N, J, bands)
        f = torch.cat([z, ang.sin().flatten(1), ang.cos().flatten(1)], 1) * keep[:, None]
        return torch.cat([f, 1.0 - keep[:, None]], 1)

    def forward(self, x: torch.Tensor, t: torch.Tensor, class_ids: torch.Tensor | None = None,
                target: torch.Tensor | None = None, drop: torch.Tensor | None = None,
                joints: torch.Tensor | None = None) -> torch.Tensor:
        n = x.shape[0]
        if self.n_classes and class_ids is None:
            raise ValueError("this model is conditioned on the class: pass class_ids")
        if self.use_target and target is None:
            raise ValueError("this model is conditioned on the target position: pass target")
        if self.n_joints and (joints is None or joints.ndim != 2 or joints.shape[1] != self.n_joints):
            got = "none" if joints is None else f"shape {tuple(joints.shape)}"
            raise ValueError(f"this model is conditioned on {self.n_joints} joint positions: pass joints of shape "
                             f"(N, {self.n_joints}), not {got}")
        drop = torch.zeros(n, dtype=torch.bool, device=x.device) if drop is None else drop.to(x.device).bool()
        keep = (~drop).float()
        h = F.pixel_unshuffle(x, self.patch) if self.patch > 1 else x
        emb = None
        if self.class_embed is not None:
            idx = torch.where(drop, torch.full_like(class_ids, self.n_classes), class_ids.long())
            emb = self.class_embed(idx)
        if self.target_embed is not None:
            target = target.to(x.device)
            e = self.target_embed(self._target_features(target, keep))
            emb = e if emb is None else emb + e
            # with spatial_class one map per class: the bump in the requested class's channel
            bump = condition_maps(class_ids if self.spatial_class else None, target, self.n_classes, h.shape[-1],
                                  self.cfg.size, self.cfg.target_sigma, widen=False) * keep[:, None, None, None]
            h = torch.cat([h, bump.to(h.dtype)], 1)
        if self.joint_embed is not None:
            e = self.joint_embed(self._joint_features(joints.to(x.device), keep))
            emb = e if emb is None else emb + e
        if t.ndim == 0:
            t = t.expand(n)
        out = self.unet(h, t.to(x.device), class_labels=emb).sample
        return F.pixel_shuffle(out, self.patch) if self.patch > 1 else out


# ---------------------------------------------------------------------------------------------------- the task
def _warmup(steps: int):
    return lambda s: min(1.0, (s + 1) / max(int(steps), 1))


def _grid_conditions(n: int, cfg: DiffusionConfig, targets: torch.Tensor | None, joints: torch.Tensor | None = None
                     ) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
    """Sample-grid conditions: one class per row, the target sweeping the 10th..90th percentile of the training
    ``u`` across the columns, at the 30th / 70th percentile of ``v`` (alternating per round of classes); the first
    joint sweeping its 10th..90th training percentile across the columns, the other joints at their training
    medians."""
    n_classes, use_target = cfg.n_classes, "target" in cfg.cond
    ncol = max(1, math.ceil(math.sqrt(n)))
    i = torch.arange(n)
    row, col = i // ncol, i % ncol
    y = (row % n_classes) if n_classes else None
    c = None
    if use_target:
        t = targets[torch.isfinite(targets).all(1)] if targets is not None else None
        if t is None or len(t) == 0:
            t = torch.tensor([[0.2, 0.4], [0.8, 0.6]])
        u_lo, u_hi = torch.quantile(t[:, 0], 0.1).item(), torch.quantile(t[:, 0], 0.9).item()
        v_lo, v_hi = torch.quantile(t[:, 1], 0.3).item(), torch.quantile(t[:, 1], 0.7).item()
        u = u_lo + (u_hi - u_lo) * col.float() / max(ncol - 1, 1)
        rounds = row // max(n_classes, 1)
        v = torch.where(rounds % 2 == 0, torch.tensor(v_lo), torch.tensor(v_hi))
        c = torch.stack([u, v], 1)
    q = None
    if "joints" in cfg.cond:
        tr = joints[torch.isfinite(joints).all(1)].double() if joints is not None else None
        if tr is None or len(tr) == 0:
            low, high = cfg.joint_range()
            base, lo0, hi0 = (low + high) / 2, 0.9 * low[0] + 0.1 * high[0], 0.1 * low[0] + 0.9 * high[0]
        else:
            base, lo0, hi0 = tr.median(0).values, torch.quantile(tr[:, 0], 0.1), torch.quantile(tr[:, 0], 0.9)
        q = base.expand(n, cfg.n_joints).clone()
        q[:, 0] = lo0 + (hi0 - lo0) * col.double() / max(ncol - 1, 1)
    return y, c, q


class DiffusionTask(TrainTask):
    """A (conditional, pixel or latent) diffusion model as a :class:`TrainTask` (see the module docstring).

    The data the trainer hands ``train_step`` holds ``image`` (pixels, in [-1, 1]) or ``latent`` (scaled latents),
    plus ``class_id`` / ``target`` / ``joints`` when known. ``vae``: the frozen autoencoder of a latent model (kept as
    a module so that the checkpoint holds it). ``class_ids`` / ``targets`` / ``joints``: the training labels, kept in
    the checkpoint so that :func:`sample` can draw conditions from the training distribution.
    """

    def __init__(self, cfg: DiffusionConfig, class_ids: torch.Tensor | None = None,
                 targets: torch.Tensor | None = None, vae: nn.Module | None = None, init_seed: int = 0,
                 joints: torch.Tensor | None = None):
        if cfg.latent and (vae is None or cfg.scaling_factor is None or not cfg.vae_config):
            raise ValueError("a latent diffusion task needs the autoencoder, its config and the scaling factor")
        self.cfg = cfg
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(init_seed)
            self.unet = ConditionedUNet(cfg)
        self.vae = vae.eval().requires_grad_(False) if vae is not None else None
        self.noise = train_scheduler(cfg.train_timesteps, cfg.beta_schedule, clip_sample=not cfg.latent)
        self.opt = torch.optim.AdamW(self.unet.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.sched = torch.optim.lr_scheduler.LambdaLR(self.opt, _warmup(cfg.warmup_steps))
        self.class_ids = None if class_ids is None else torch.as_tensor(class_ids).long().reshape(-1).cpu()
        self.targets = None if targets is None else torch.as_tensor(targets).float().reshape(-1, 2).cpu()
        self.joints = None
        if joints is not None and cfg.n_joints:
            self.joints = torch.as_tensor(joints).float().reshape(-1, cfg.n_joints).cpu()

    # -- TrainTask interface
    def modules(self) -> dict[str, nn.Module]:
        return {"unet": self.unet, **({"vae": self.vae} if self.vae is not None else {})}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"unet": self.opt}

    def schedulers(self) -> dict[str, Any]:
        return {"unet": self.sched}

    def ema_modules(self) -> list[str]:
        return ["unet"]

    def ddp_modules(self) -> list[str]:
        return ["unet"]

    def config(self) -> dict[str, Any]:
        return self.cfg.to_dict()

    def extra_state(self) -> dict[str, Any]:
        state: dict[str, Any] = {}
        if self.class_ids is not None:
            state["class_ids"] = self.class_ids
        if self.targets is not None:
            state["targets"] = self.targets
        if self.joints is not None:
            state["joints"] = self.joints
        return state

    def load_extra_state(self, state: dict[str, Any]) -> None:
        pass  # the labels come with the data the task was built from

    # -- the loss
    def _snr_weight(self, t: torch.Tensor) -> torch.Tensor:
        if self.cfg.snr_gamma <= 0:
            return torch.ones(t.shape, device=t.device)
        ac = self.noise.alphas_cumprod.to(t.device)[t].float()
        snr = ac / (1 - ac).clamp(min=1e-8)
        return torch.minimum(snr, torch.full_like(snr, self.cfg.snr_gamma)) / snr.clamp(min=1e-8)

    def _pixel_weight(self, x0: torch.Tensor, target: torch.Tensor | None) -> torch.Tensor | None:
        if target is None or self.cfg.target_weight <= 0:
            return None
        bump = target_bump(target, x0.shape[-1], self.cfg.size, self.cfg.target_sigma)
        return 1.0 + self.cfg.target_weight * bump

    def denoising_loss(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor,
                       class_ids: torch.Tensor | None = None, target: torch.Tensor | None = None,
                       drop: torch.Tensor | None = None, weighted: bool = True,
                       net: nn.Module | None = None, joints: torch.Tensor | None = None) -> torch.Tensor:
        """Per-image loss ``(N,)`` of the noise prediction at timesteps ``t`` with ``noise``; ``weighted``:
        Min-SNR and target weighting (the training loss), else the plain mean squared error."""
        net = net if net is not None else self.net("unet")
        xt = self.noise.add_noise(x0, noise, t)
        with self.autocast():
            pred = net(xt, t, class_ids if self.cfg.n_classes else None,
                       target if "target" in self.cfg.cond else None, drop,
                       joints=joints if self.cfg.n_joints else None)
        se = (pred.float() - noise.float()) ** 2
        if not weighted:
            return se.mean(dim=(1, 2, 3))
        w = self._pixel_weight(x0, target)
        per = se.mean(dim=(1, 2, 3)) if w is None else (se * w).sum(dim=(1, 2, 3)) / (w.sum(dim=(1, 2, 3))
                                                                                      * se.shape[1])
        return per * self._snr_weight(t)

    def train_step(self, batch: dict[str, torch.Tensor], step: int) -> dict[str, float | torch.Tensor]:
        x0 = batch["latent"] if self.cfg.latent else batch["image"]
        if self.trainer is not None and self.trainer.channels_last:
            x0 = x0.contiguous(memory_format=torch.channels_last)
        n, dev = x0.shape[0], x0.device
        t = torch.randint(0, self.cfg.train_timesteps, (n,), device=dev)
        noise = torch.randn_like(x0)
        drop = torch.rand(n, device=dev) < self.cfg.guidance_dropout if self.cfg.cond else None
        loss = self.denoising_loss(x0, t, noise, batch.get("class_id"), batch.get("target"), drop,
                                   joints=batch.get("joints")).mean()
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        return {"loss": loss.detach()}

    def sample(self, n: int) -> torch.Tensor:
        y, c, q = _grid_conditions(n, self.cfg, self.targets, self.joints)
        pipe = Pipeline(self.cfg, self.eval_net("unet"), self.vae, self.noise.config)
        gen = torch.Generator().manual_seed(int(torch.randint(0, 2**31 - 1, ()).item()))
        return pipe.generate(n, y, c, self.cfg.grid_sampler, self.cfg.grid_steps, self.cfg.grid_guidance, gen,
                             joints=q)


# ----------------------------------------------------------------------------------------------------- sampling
class Pipeline:
    """What sampling needs: the (EMA) UNet, the autoencoder of a latent model and the training scheduler's config.

    :meth:`generate` draws images in ``[-1, 1]``; :func:`load_pipeline` builds one from a run folder.
    """

    def __init__(self, cfg: DiffusionConfig, unet: ConditionedUNet, vae: nn.Module | None, scheduler_config: Any,
                 step: int = 0, extra: dict[str, Any] | None = None):
        self.cfg, self.unet, self.vae, self.scheduler_config = cfg, unet, vae, scheduler_config
        self.step = int(step)
        self.extra = extra or {}
        self.last_seconds: float | None = None

    @property
    def device(self) -> torch.device:
        return next(self.unet.parameters()).device

    def _eps(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None, c: torch.Tensor | None,
             guidance: float, q: torch.Tensor | None = None) -> torch.Tensor:
        n = x.shape[0]
        if not self.cfg.cond:
            return self.unet(x, t)
        if guidance == 1.0:
            return self.unet(x, t, y, c, joints=q)
        if guidance == 0.0:
            return self.unet(x, t, y, c, torch.ones(n, dtype=torch.bool, device=x.device), joints=q)
        drop = torch.cat([torch.zeros(n, dtype=torch.bool), torch.ones(n, dtype=torch.bool)]).to(x.device)
        eps = self.unet(torch.cat([x, x]), t, None if y is None else torch.cat([y, y]),
                        None if c is None else torch.cat([c, c]), drop,
                        joints=None if q is None else torch.cat([q, q]))
        cond, uncond = eps.float().chunk(2)
        return uncond + guidance * (cond - uncond)

    @torch.no_grad()
    def generate(self, n: int, class_ids: torch.Tensor | None = None, targets: torch.Tensor | None = None,
                 sampler: str = "ddim", steps: int = 50, guidance: float = 2.0,
                 generator: torch.Generator | None = None, batch_size: int = 64, progress: bool = False,
                 max_steps: int | None = None, joints: torch.Tensor | None = None) -> torch.Tensor:
        """``n`` images ``(n, 3, size, size)`` in ``[-1, 1]`` (CPU floats) with the given conditions (one per image;
        required for the conditions the model takes; ``joints``: ``(n, n_joints)`` radians). The initial noise and
        any sampler noise come from ``generator`` (a CPU generator). On CUDA the UNet and decoder run under bf16
        autocast. ``max_steps`` stops after that many sampler steps (for timing only: the images are then not
        finished). ``self.last_seconds`` is the wall time."""
        name = check_sampler(sampler, steps, guidance)
        if self.cfg.n_classes and class_ids is None:
            raise ValueError("this model is conditioned on the class: give class ids")
        if "target" in self.cfg.cond and targets is None:
            raise ValueError("this model is conditioned on the target position: give targets")
        if self.cfg.n_joints and joints is None:
            raise ValueError("this model is conditioned on the joint positions: give joints")
        gen = generator if generator is not None else torch.Generator().manual_seed(0)
        dev = self.device
        t0 = time.perf_counter()
        out = []
        starts = range(0, int(n), int(batch_size))
        if progress:
            from tqdm.auto import tqdm

            starts = tqdm(starts, desc=f"sampling {name}-{steps}", unit="batch")
        for i in starts:
            sl = slice(i, min(i + int(batch_size), int(n)))
            m = sl.stop - sl.start
            y = class_ids[sl].long().to(dev) if self.cfg.n_classes else None
            c = targets[sl].float().to(dev) if "target" in self.cfg.cond else None
            q = joints[sl].float().to(dev) if self.cfg.n_joints else None
            sch = make_sampler(name, self.scheduler_config)
            step_kw = sampler_step_kwargs(name)
            sch.set_timesteps(int(steps))
            shape = (m, self.cfg.data_channels, self.cfg.data_size, self.cfg.data_size)
            x = (torch.randn(shape, generator=gen) * sch.init_noise_sigma).to(dev)
            amp = torch.autocast("cuda", dtype=torch.bfloat16) if dev.type == "cuda" else contextlib.nullcontext()
            for k, t in enumerate(sch.timesteps):
                if max_steps is not None and k >= max_steps:
                    break
                with amp:
                    eps = self._eps(sch.scale_model_input(x, t), t.to(dev), y, c, float(guidance), q)
                noise_gen = gen if dev.type == "cpu" else None
                x = sch.step(eps.to(x.dtype), t, x, generator=noise_gen, **step_kw).prev_sample
            with amp:
                out.append(self.decode(x).float().clamp(-1, 1).cpu())
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        self.last_seconds = time.perf_counter() - t0
        return torch.cat(out)

    def decode(self, x: torch.Tensor) -> torch.Tensor:
        """Latents (scaled) -> images in [-1, 1]; pixels pass through."""
        if not self.cfg.latent:
            return x
        return self.vae.decode(x / float(self.cfg.scaling_factor)).sample


def _pick_device(device: str | torch.device) -> torch.device:
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def _load_run(run_dir: str | Path, device: torch.device | str = "cpu") -> tuple[DiffusionConfig, dict[str, Any]]:
    """The run's :class:`DiffusionConfig` and checkpoint; a ValueError in one sentence for missing or broken runs."""
    run = Path(run_dir)
    if not run.exists():
        raise ValueError(f"run folder {str(run)!r} does not exist")
    if not run.is_dir():
        raise ValueError(f"{str(run)!r} is not a run folder")
    path = run / CHECKPOINT
    if not path.is_file():
        raise ValueError(f"run folder {str(run)!r} holds no checkpoint ({CHECKPOINT}): train it first")
    ckpt = load_checkpoint(path, map_location=device)
    task_config = ckpt.get("task_config")
    try:
        if not isinstance(task_config, dict) or "guidance_dropout" not in task_config:
            raise TypeError("no diffusion settings")
        cfg = DiffusionConfig.from_dict(task_config)
        if "unet" not in ckpt["modules"] or (cfg.latent and "vae" not in ckpt["modules"]):
            raise KeyError("unet" if "unet" not in ckpt["modules"] else "vae")
    except (TypeError, ValueError, KeyError) as exc:
        raise ValueError(f"checkpoint {path} is not a diffusion checkpoint ({exc})") from exc
    return cfg, ckpt


def load_pipeline(run_dir: str | Path, device: str | torch.device = "cpu", ema: bool = True) -> Pipeline:
    """The :class:`Pipeline` of the run in ``run_dir``: its EMA UNet (with ``ema``, else the trained one) and, for a
    latent model, its autoencoder, in eval mode on ``device``. A ValueError for a missing run, one without a
    checkpoint, or a corrupt / foreign checkpoint."""
    dev = _pick_device(device)
    cfg, ckpt = _load_run(run_dir, dev)
    path = Path(run_dir) / CHECKPOINT
    unet = ConditionedUNet(cfg)
    state = ckpt["ema"].get("unet") if ema and ckpt.get("ema") else None
    state = state if state is not None else ckpt["modules"]["unet"]
    vae = None
    try:
        unet.load_state_dict(state)
        if cfg.latent:
            vae = build_vae(cfg.vae_config)
            vae.load_state_dict(ckpt["modules"]["vae"])
            vae = vae.to(dev).eval().requires_grad_(False)
    except RuntimeError as exc:
        raise ValueError(f"checkpoint {path} does not fit its diffusion settings ({str(exc).splitlines()[0]})"
                         ) from exc
    unet = unet.to(dev).eval().requires_grad_(False)
    sched = train_scheduler(cfg.train_timesteps, cfg.beta_schedule, clip_sample=not cfg.latent)
    return Pipeline(cfg, unet, vae, sched.config, step=int(ckpt.get("step", 0)), extra=ckpt.get("extra") or {})


def run_config(run_dir: str | Path) -> DiffusionConfig:
    """The :class:`DiffusionConfig` of a run (from its checkpoint)."""
    return _load_run(run_dir)[0]


def _as_class_ids(value: Any, classes: Sequence[str], n: int) -> torch.Tensor:
    if isinstance(value, (str, int, np.integer)):
        value = [value]
    ids = []
    lower = [c.lower() for c in classes]
    for v in list(value):
        if isinstance(v, str) and not v.strip().lstrip("-").isdigit():
            if v.strip().lower() not in lower:
                raise ValueError(f"unknown class {v!r}: this model knows {', '.join(classes)}")
            ids.append(lower.index(v.strip().lower()))
        else:
            i = int(v)
            if not 0 <= i < len(classes):
                raise ValueError(f"class id {i} is outside 0..{len(classes) - 1} ({', '.join(classes)})")
            ids.append(i)
    t = torch.tensor(ids, dtype=torch.long)
    if len(t) == 1:
        t = t.expand(n).clone()
    if len(t) != n:
        raise ValueError(f"{len(t)} class ids for {n} images")
    return t


def _as_targets(value: Any, n: int) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(value, dtype=np.float64)).reshape(-1, 2)  # float64: labels keep 0.3 as 0.3
    if len(t) == 1:
        t = t.expand(n, 2).clone()
    if len(t) != n:
        raise ValueError(f"{len(t)} targets for {n} images")
    if not (torch.isfinite(t).all() and (t >= 0).all() and (t <= 1).all()):
        raise ValueError("target positions must be pixel_norm values in [0, 1], e.g. 0.4,0.6")
    return t


def _joint_example(cfg: DiffusionConfig) -> str:
    low, high = cfg.joint_range()
    return ",".join(f"{v:.2f}" for v in ((low + high) / 2).tolist())


def _as_joints(value: Any, cfg: DiffusionConfig, n: int) -> torch.Tensor:
    """Requested joint positions (radians: one row of ``n_joints`` numbers, or one row per image; a string
    ``"0.1,-0.3,1.0"`` works too) -> float64 ``(n, n_joints)``; a ValueError in one sentence for a wrong count,
    non-finite values or values outside the robot's joint limits (when known)."""
    j = cfg.n_joints
    robot = cfg.data.get("robot") if isinstance(cfg.data, dict) else None
    of = f" of {robot}" if robot else ""
    want = (f"the joint condition takes {j} joint positions in radians (one per joint{of}, comma-separated), "
            f"e.g. {_joint_example(cfg)}")
    text = value if isinstance(value, str) else None
    try:
        if text is not None:
            value = [float(v) for v in text.split(",")]
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{want}; got {value!r}") from None
    if arr.ndim <= 1:
        arr = arr.reshape(1, -1)
    if arr.ndim != 2 or arr.shape[1] != j:
        got = repr(text) if text is not None else f"{arr.shape[-1]} values"
        raise ValueError(f"{want}; got {got}")
    if not np.isfinite(arr).all():
        raise ValueError(f"joint positions must be finite numbers (radians), got {text or arr.tolist()}")
    for k, (lo, hi) in enumerate(cfg.joint_limits or []):
        bad = arr[:, k][(arr[:, k] < lo - 1e-9) | (arr[:, k] > hi + 1e-9)]
        if len(bad):
            raise ValueError(f"joint {k + 1} position {float(bad[0]):g} rad is outside its limits [{lo:g}, {hi:g}]"
                             f"{of}")
    q = torch.from_numpy(arr)
    if len(q) == 1:
        q = q.expand(n, j).clone()
    if len(q) != n:
        raise ValueError(f"{len(q)} joint conditions for {n} images")
    return q


def draw_all_conditions(cfg: DiffusionConfig, extra: dict[str, Any], n: int, cond: dict[str, Any] | None,
                        gen: torch.Generator
                        ) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
    """``(class_ids, targets, joints)`` for ``n`` images (None for conditions the model does not take): the requested
    ones (``{"class_id": ..., "target": ..., "joints": ...}``), the rest drawn from the training frames' labels kept
    in the checkpoint's ``extra`` (seeded by ``gen``): all missing labels of an image come from one training frame,
    a frame of the requested class if a class is given. Without training labels: uniform classes, targets in
    ``[0.25, 0.75]^2``, joints uniform in the training range."""
    cond = dict(cond or {})
    unknown = [k for k in cond if k not in ("class_id", "target", "joints")]
    if unknown:
        raise ValueError(f"unknown condition key {unknown[0]!r}: use class_id, target and joints")
    if cond.get("class_id") is not None and not cfg.n_classes:
        raise ValueError("this model is not conditioned on the class: leave the class out")
    if cond.get("target") is not None and "target" not in cfg.cond:
        raise ValueError("this model is not conditioned on the target position: leave the target out")
    if cond.get("joints") is not None and not cfg.n_joints:
        raise ValueError("this model is not conditioned on the joint positions: leave the joints out")
    y = _as_class_ids(cond["class_id"], cfg.classes, n) if cond.get("class_id") is not None else None
    c = _as_targets(cond["target"], n) if cond.get("target") is not None else None
    q = _as_joints(cond["joints"], cfg, n) if cond.get("joints") is not None else None
    need_y = bool(cfg.n_classes) and y is None
    need_c = "target" in cfg.cond and c is None
    need_q = bool(cfg.n_joints) and q is None
    if not (need_y or need_c or need_q):
        return y, c, q
    tr_y, tr_c, tr_q = extra.get("class_ids"), extra.get("targets"), extra.get("joints")
    tr_y = tr_y.cpu().long().reshape(-1) if tr_y is not None else None
    tr_c = tr_c.cpu().float().reshape(-1, 2) if tr_c is not None else None
    tr_q = tr_q.cpu().float().reshape(-1, cfg.n_joints) if tr_q is not None and cfg.n_joints else None
    cols = {k: v for k, v in (("y", tr_y), ("c", tr_c), ("q", tr_q)) if v is not None}
    # one training frame per image; labels of different lengths (not from one frame list) are drawn each on its own
    groups = [cols] if len({len(v) for v in cols.values()}) <= 1 else [{k: v} for k, v in cols.items()]
    for g in groups:
        for k in ("c", "q"):
            if k in g:
                fin = torch.isfinite(g[k]).all(1)
                g = {name: v[fin] for name, v in g.items()}
        rows = len(next(iter(g.values()))) if g else 0
        if rows == 0 or not ((need_y and "y" in g) or (need_c and "c" in g) or (need_q and "q" in g)):
            continue
        if y is not None and "y" in g:  # frames of the requested classes
            idx = torch.empty(n, dtype=torch.long)
            for k in y.unique().tolist():
                sel = y == k
                pool = torch.nonzero(g["y"] == k).flatten() if (g["y"] == k).any() else torch.arange(rows)
                idx[sel] = pool[torch.randint(0, len(pool), (int(sel.sum()),), generator=gen)]
        else:
            idx = torch.randint(0, rows, (n,), generator=gen)
        y = g["y"][idx] if need_y and "y" in g else y
        c = g["c"][idx] if need_c and "c" in g else c
        q = g["q"][idx].double() if need_q and "q" in g else q
    if need_y and y is None:
        y = torch.randint(0, cfg.n_classes, (n,), generator=gen)
    if need_c and c is None:
        c = 0.25 + 0.5 * torch.rand(n, 2, generator=gen)
    if need_q and q is None:
        low, high = cfg.joint_range()
        q = low + (high - low) * torch.rand(n, cfg.n_joints, generator=gen, dtype=torch.float64)
    return y, c, q


def draw_conditions(cfg: DiffusionConfig, extra: dict[str, Any], n: int, cond: dict[str, Any] | None,
                    gen: torch.Generator) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """The ``(class_ids, targets)`` of :func:`draw_all_conditions` (kept for callers of models without joints; a
    joint-conditioned model needs :func:`draw_all_conditions`)."""
    return draw_all_conditions(cfg, extra, n, cond, gen)[:2]


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """Images in [-1, 1] ``(N, 3, H, W)`` -> uint8 ``(N, H, W, 3)``."""
    return ((images.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()


def sample(
    run_dir: str | Path,
    n: int,
    cond: dict[str, Any] | None = None,
    sampler: str = "ddim",
    steps: int = 50,
    guidance: float = 2.0,
    seed: int = 0,
    device: str | torch.device = "cpu",
    ema: bool = True,
    batch_size: int = 64,
    progress: bool = False,
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None, np.ndarray | None]:
    """``n`` images of the run: ``(uint8 images (n, H, W, 3), class_ids (n,), targets (n, 2), joints (n,
    n_joints))``, the last three the conditions used (None for conditions the model does not take).

    ``cond``: None to draw the conditions from the training frames' labels, or a dict with ``class_id`` (an id, a
    class name, or one per image), ``target`` (one ``(u, v)`` in ``[0, 1]`` or one per image) and / or ``joints``
    (one row of joint positions in radians, or one per image); what is left out is drawn from the training frames.
    ``sampler``: ``ddpm``, ``ddim`` or ``dpm`` with ``steps`` steps; ``guidance``: the classifier-free guidance scale.
    Everything random is a function of ``seed``."""
    if int(n) < 1:
        raise ValueError(f"--n must be at least 1, got {n}")
    check_sampler(sampler, steps, guidance)
    pipe = load_pipeline(run_dir, device, ema)
    gen = torch.Generator().manual_seed(int(seed))
    y, c, q = draw_all_conditions(pipe.cfg, pipe.extra, int(n), cond, gen)
    x = pipe.generate(int(n), y, c, sampler, int(steps), float(guidance), gen, batch_size, progress, joints=q)
    return tuple([to_uint8(x)] + [None if v is None else v.numpy() for v in (y, c, q)])


# ------------------------------------------------------------------------------------------------- autoencoder
@dataclass
class AutoencoderConfig:
    """The autoencoder of latent diffusion: ``vae_config`` (AutoencoderKL arguments), loss and optimizer."""

    size: int = 64
    model: str = "small"
    latent_channels: int = 4
    kl_weight: float = 1e-6
    lr: float = 1e-3
    warmup_steps: int = 50
    target_weight: float = 20.0
    target_sigma: float = 0.04
    vae_config: dict[str, Any] | None = None
    data: dict[str, Any] = field(default_factory=dict)
    kind: str = "autoencoder"

    def __post_init__(self) -> None:
        _check_model(self.model, VAE_SIZES)
        if self.vae_config is None:
            self.vae_config = vae_arguments(self.model, self.size, self.latent_channels)
        f = vae_factor(self.vae_config)
        if self.size % f:
            raise ValueError(f"--size {self.size} is not a multiple of the autoencoder's downsampling factor {f}")
        if self.kl_weight < 0 or self.lr <= 0 or self.target_weight < 0:
            raise ValueError("kl_weight and target_weight must be >= 0 and lr > 0")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> AutoencoderConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


class AutoencoderTask(TrainTask):
    """Trains an ``AutoencoderKL``: ``|x' - x| + (x' - x)^2`` (means over pixels, each pixel weighted by ``1 +
    target_weight * bump`` at the frame's target when the batch has ``target``) ``+ kl_weight * KL`` (KL summed over
    the latent of each image, averaged over the batch), decoding a sample of the posterior (reparameterised). The
    sample grid alternates originals and reconstructions of fixed frames."""

    def __init__(self, cfg: AutoencoderConfig, grid_images: torch.Tensor | None = None, init_seed: int = 0):
        self.cfg = cfg
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(init_seed)
            self.vae = build_vae(cfg.vae_config)
        self.opt = torch.optim.AdamW(self.vae.parameters(), lr=cfg.lr, weight_decay=0.0)
        self.sched = torch.optim.lr_scheduler.LambdaLR(self.opt, _warmup(cfg.warmup_steps))
        self.grid_images = grid_images

    def modules(self) -> dict[str, nn.Module]:
        return {"vae": self.vae}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"vae": self.opt}

    def schedulers(self) -> dict[str, Any]:
        return {"vae": self.sched}

    def config(self) -> dict[str, Any]:
        return self.cfg.to_dict()

    def losses(self, x: torch.Tensor, target: torch.Tensor | None = None, vae: nn.Module | None = None,
               sample_posterior: bool = True) -> dict[str, torch.Tensor]:
        vae = vae if vae is not None else self.net("vae")
        with self.autocast():
            post = vae.encode(x).latent_dist
            z = post.sample() if sample_posterior else post.mode()
            rec = vae.decode(z).sample.float()
        w = None
        if target is not None and self.cfg.target_weight > 0:
            w = 1.0 + self.cfg.target_weight * target_bump(target, x.shape[-1], self.cfg.size, self.cfg.target_sigma)
            w = w / w.mean(dim=(1, 2, 3), keepdim=True)
        err = rec - x
        l1 = err.abs().mean() if w is None else (err.abs() * w).mean()
        l2 = (err**2).mean() if w is None else (err**2 * w).mean()
        kl = post.kl().float().mean()
        return {"loss": l1 + l2 + self.cfg.kl_weight * kl, "l1": l1, "mse": l2, "kl": kl}

    def train_step(self, batch: dict[str, torch.Tensor], step: int) -> dict[str, float | torch.Tensor]:
        out = self.losses(batch["image"], batch.get("target"))
        self.opt.zero_grad(set_to_none=True)
        out["loss"].backward()
        self.opt.step()
        return {k: v.detach() for k, v in out.items()}

    def sample(self, n: int) -> torch.Tensor:
        if self.grid_images is None:
            return torch.zeros(n, 3, self.cfg.size, self.cfg.size)
        k = max(1, n // 2)
        x = self.grid_images[:k].to(self.device).float() / 127.5 - 1
        rec = self.vae.decode(self.vae.encode(x).latent_dist.mode()).sample.float()
        return torch.stack([x, rec], 1).flatten(0, 1)[:n]


@torch.no_grad()
def encode_images(vae: nn.Module, images: torch.Tensor, batch_size: int = 128) -> torch.Tensor:
    """uint8 images ``(N, 3, H, W)`` -> unscaled latents (posterior means), float32 on the CPU."""
    dev = next(vae.parameters()).device
    out = [vae.encode(images[i : i + batch_size].to(dev).float() / 127.5 - 1).latent_dist.mode().float().cpu()
           for i in range(0, len(images), batch_size)]
    return torch.cat(out)


@torch.no_grad()
def reconstruct(vae: nn.Module, images: torch.Tensor, batch_size: int = 128) -> torch.Tensor:
    """uint8 images -> uint8 reconstructions (posterior means decoded), ``(N, 3, H, W)``."""
    dev = next(vae.parameters()).device
    out = []
    for i in range(0, len(images), batch_size):
        x = images[i : i + batch_size].to(dev).float() / 127.5 - 1
        rec = vae.decode(vae.encode(x).latent_dist.mode()).sample.float().clamp(-1, 1)
        out.append(((rec + 1) * 127.5).round().to(torch.uint8).cpu())
    return torch.cat(out)


def reconstruction_psnr(vae: nn.Module, images: torch.Tensor, n: int = 256, seed: int = 0) -> float:
    """PSNR (dB) of the autoencoder's reconstructions of ``n`` frames of ``images`` (drawn with ``seed``)."""
    from generative.metrics import psnr

    g = torch.Generator().manual_seed(seed)
    idx = torch.randperm(len(images), generator=g)[: min(n, len(images))]
    x = images[idx]
    was = vae.training
    vae.eval()
    try:
        return psnr(x, reconstruct(vae, x))
    finally:
        vae.train(was)


def load_vae(run_dir: str | Path, device: str | torch.device = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    """The autoencoder of ``run_dir`` (an autoencoder run or a latent diffusion run) in eval mode, and its
    constructor arguments; a ValueError in one sentence if there is none."""
    run = Path(run_dir)
    if not (run / CHECKPOINT).is_file():
        raise ValueError(f"autoencoder run {str(run)!r} holds no checkpoint ({CHECKPOINT})")
    ckpt = load_checkpoint(run / CHECKPOINT, map_location=device)
    tc = ckpt.get("task_config") or {}
    vcfg = tc.get("vae_config")
    if not vcfg or "vae" not in ckpt.get("modules", {}):
        raise ValueError(f"run {str(run)!r} holds no autoencoder (train one with `armlab diffusion train --latent`)")
    vae = build_vae(vcfg)
    try:
        vae.load_state_dict(ckpt["modules"]["vae"])
    except RuntimeError as exc:
        raise ValueError(f"the autoencoder in {str(run)!r} does not fit its settings ({str(exc).splitlines()[0]})"
                         ) from exc
    vae = vae.to(_pick_device(device)).eval().requires_grad_(False)
    vae.armlab_run_config = tc
    return vae, dict(vcfg)


# ------------------------------------------------------------------------------------------------------ training
def _load_data(data_dir: str | Path, size: int, cond: tuple[str, ...], limit: int | None = None,
               progress: bool = False) -> tuple[dict[str, torch.Tensor], list[str], dict[str, Any]]:
    """The training tensors (``image`` and, for an armlab dataset, ``class_id`` / ``target`` / ``joints``), the class
    names and a description of the data (``robot``: the manifest's ``settings.robot``). Frames without the labels
    ``cond`` needs are left out."""
    root = Path(data_dir)
    if not root.exists():
        raise DataError(f"dataset folder {str(root)!r} does not exist")
    ds = open_images(root, size)
    classes = list(getattr(ds, "classes", DEFAULT_CLASSES))
    if cond and not hasattr(ds, "classes"):
        raise DataError(f"{str(root)!r} is a plain image folder (no manifest.json): a diffusion model conditioned "
                        f"on {','.join(cond)} needs an armlab dataset with labels")
    data = load_tensors(ds, limit=limit, progress=progress)
    keep = torch.ones(len(data["image"]), dtype=torch.bool)
    if "class" in cond:
        keep &= (data["class_id"] >= 0) & (data["class_id"] < len(classes))
    if "target" in cond:
        keep &= torch.isfinite(data["target"]).all(1)
    if "joints" in cond:
        if "joints" not in data:
            raise DataError(f"the labels of dataset {str(root)!r} have no joint_positions: a diffusion model "
                            "conditioned on joints needs them")
        keep &= torch.isfinite(data["joints"]).all(1)
    if not keep.all():
        data = {k: v[keep] for k, v in data.items()}
    if len(data["image"]) == 0:
        raise DataError(f"dataset {str(root)!r} holds no frames with the labels {','.join(cond)}")
    wanted = ["image"] + (["class_id"] if "class" in cond else [])
    if "target" in data and torch.isfinite(data["target"]).any():
        wanted.append("target")  # also for the loss weighting when the model is not conditioned on it
    if "joints" in cond:
        wanted.append("joints")
    data = {k: data[k] for k in wanted}
    manifest = root / "manifest.json"
    info = {"path": str(root), "frames": len(data["image"]), "limit": limit,
            "manifest_sha256": sha256_file(manifest) if manifest.is_file() else None}
    settings = getattr(ds, "manifest", {}).get("settings")
    if "joints" in cond and isinstance(settings, dict) and settings.get("robot"):
        info["robot"] = str(settings["robot"])
    return data, classes, info


def _manifest(data_dir: str | Path) -> dict[str, Any]:
    """The dataset's manifest as a dict ({} for a plain image folder or an unreadable manifest)."""
    try:
        manifest = json.loads((Path(data_dir) / "manifest.json").read_text())
    except (OSError, ValueError):
        return {}
    return manifest if isinstance(manifest, dict) else {}


def manifest_joint_limits(manifest: dict[str, Any] | None, n_joints: int) -> list[list[float]] | None:
    """``[[lower, upper], ...]`` (radians) of the robot's controlled joints, in order, from the dataset manifest's
    ``joint_limits``; None when the manifest has none (datasets written before the key existed: the limits are then
    unknown, as for a robot armlab does not know), or they do not fit ``n_joints`` joints. The limits only check
    requested joints; nothing is trained or sampled from them."""
    raw = (manifest or {}).get("joint_limits")
    if not raw:
        return None
    try:
        limits = [[float(a), float(b)] for a, b in raw]
    except (TypeError, ValueError):
        return None
    if len(limits) != n_joints or not all(math.isfinite(a) and math.isfinite(b) and a < b for a, b in limits):
        return None
    return limits


def _read_summary(run_dir: Path) -> dict[str, Any] | None:
    try:
        return json.loads((Path(run_dir) / SUMMARY).read_text())
    except (OSError, ValueError):
        return None


def _write_summary(out: Path, summary: dict[str, Any]) -> dict[str, Any]:
    old = _read_summary(out)
    history = list(old.get("history", [])) if old else []
    history.append({k: summary.get(k) for k in ("start_step", "steps", "steps_run", "images_per_s", "wall_time_s")})
    summary["history"] = history
    atomic_write_bytes(out / SUMMARY, (json.dumps(summary, indent=2, default=str) + "\n").encode())
    return summary


def _train_flops(net: nn.Module, *args: Any, **kwargs: Any) -> int | None:
    """FLOPs of one training step per image: 3 x one forward (forward + backward), counted by torch's
    ``FlopCounterMode`` on one image."""
    try:
        from torch.utils.flop_counter import FlopCounterMode

        with torch.no_grad(), FlopCounterMode(display=False) as fc:
            net(*args, **kwargs)
        return int(3 * fc.get_total_flops())
    except Exception:  # counting is informative only
        return None


def train_autoencoder(
    data_dir: str | Path,
    out: str | Path,
    steps: int,
    size: int = 64,
    model: str = "small",
    batch_size: int = 32,
    seed: int = 0,
    device: str = "auto",
    lr: float = 1e-3,
    kl_weight: float = 1e-6,
    target_weight: float = 20.0,
    limit: int | None = None,
    log_every: int = 50,
    sample_every: int = 500,
    checkpoint_every: int = 500,
    progress: bool = False,
    tensorboard: bool = True,
    data: tuple[dict[str, torch.Tensor], list[str], dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Train an ``AutoencoderKL`` on the dataset into ``out`` (resumes; a finished run continues to a larger
    ``steps``); writes and returns a summary with ``psnr`` (dB, reconstructions of 256 dataset frames),
    ``images_per_s``, ``steps_per_s`` and ``latent_shape``. ``data``: already loaded :func:`_load_data` output."""
    out = Path(out)
    data, _classes, info = data if data is not None else _load_data(data_dir, size, (), limit=limit,
                                                                     progress=progress)
    cfg = AutoencoderConfig(size=size, model=model, kl_weight=kl_weight, lr=lr, target_weight=target_weight,
                            data=info)
    if (out / CHECKPOINT).is_file():
        saved = load_checkpoint(out / CHECKPOINT).get("task_config") or {}
        if saved.get("kind") != "autoencoder":
            raise ValueError(f"{out} holds a checkpoint that is not an autoencoder run; use another output folder")
        old = AutoencoderConfig.from_dict(saved)
        for k in ("size", "model", "latent_channels", "kl_weight", "lr", "target_weight", "vae_config"):
            if getattr(old, k) != getattr(cfg, k):
                raise ValueError(f"autoencoder run {out} was trained with {k}={getattr(old, k)!r}, not "
                                 f"{getattr(cfg, k)!r}; use another output folder")
    images = data["image"]
    g = torch.Generator().manual_seed(seed)
    grid = images[torch.randperm(len(images), generator=g)[:8]]
    task = AutoencoderTask(cfg, grid, init_seed=seed)
    tcfg = TrainConfig(out=out, steps=int(steps), batch_size=int(batch_size), seed=seed, device=device,
                       log_every=log_every, sample_every=sample_every, checkpoint_every=checkpoint_every,
                       ema_decay=0.0, progress=progress, tensorboard=tensorboard, n_samples=16)
    ae_data = {"image": images}
    if "target" in data and cfg.target_weight > 0:
        ae_data["target"] = data["target"]
    trainer = Trainer(task, ae_data, tcfg)
    summary = trainer.fit()
    f = vae_factor(cfg.vae_config)
    ips = summary.get("images_per_s")
    summary.update({
        "out": str(out), "kind": "autoencoder", "size": size, "model": model, "batch_size": int(batch_size),
        "n_train": len(images), "psnr": reconstruction_psnr(task.vae, images, seed=seed),
        "steps_per_s": ips / batch_size if ips else None,
        "latent_shape": [cfg.latent_channels, size // f, size // f], "downsampling": f,
        "params": sum(p.numel() for p in task.vae.parameters()), "device": str(trainer.device),
        "threads": torch.get_num_threads(),
    })
    return _write_summary(out, summary)


def _check_resume(out: Path, cfg: DiffusionConfig) -> dict[str, Any] | None:
    """The checkpoint of a run being resumed (None for a new run), after checking that it was trained with the
    same model settings and data."""
    if not (out / CHECKPOINT).is_file():
        return None
    ckpt = load_checkpoint(out / CHECKPOINT)
    saved = ckpt.get("task_config") or {}
    try:
        old = DiffusionConfig.from_dict(saved)
        if "guidance_dropout" not in saved:
            raise TypeError("no diffusion settings")
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{out} holds a checkpoint that is not a diffusion run; use another output folder") from exc
    mine, theirs = cfg.model_dict(), old.model_dict()
    diff = [k for k in mine if mine[k] != theirs.get(k)]
    if diff:
        k = diff[0]
        raise ValueError(f"run {out} was trained with {k}={theirs.get(k)!r}, not {mine[k]!r}; use another output "
                         "folder to train with new settings")
    sha_old, sha_new = old.data.get("manifest_sha256"), cfg.data.get("manifest_sha256")
    if sha_old and sha_new and (sha_old != sha_new or old.data.get("limit") != cfg.data.get("limit")):
        raise ValueError(f"run {out} was trained on other data ({old.data.get('path')}); use another output folder "
                         "or the same data")
    return ckpt


def train_diffusion(
    data_dir: str | Path,
    out: str | Path,
    steps: int,
    size: int = 64,
    cond: str | Sequence[str] | None = (),
    latent: bool = False,
    vae: str | Path | None = None,
    vae_steps: int = 2000,
    model: str = "small",
    vae_model: str | None = None,
    batch_size: int = 32,
    vae_batch_size: int | None = None,
    guidance_dropout: float = 0.1,
    lr: float = 1e-3,
    patch: int | None = None,
    target_weight: float = 20.0,
    snr_gamma: float = 5.0,
    seed: int = 0,
    device: str = "auto",
    limit: int | None = None,
    ema_decay: float = 0.995,
    log_every: int = 50,
    sample_every: int = 500,
    checkpoint_every: int = 500,
    n_samples: int = 16,
    progress: bool = False,
    tensorboard: bool = True,
    time_limit_s: float | None = None,
) -> dict[str, Any]:
    """Train a diffusion model on the dataset at ``data_dir`` into ``out``; returns (and writes to
    ``out/summary.json``) a summary: ``steps``, ``steps_run``, ``images_per_s``, ``steps_per_s``,
    ``wall_time_s``, ``losses``, ``params``, ``train_flops_per_image``, ... and, for latent runs, ``vae`` (the
    autoencoder's summary with its ``psnr``) and ``scaling_factor``.

    The same call after a kill resumes; a finished run called with a larger ``steps`` continues. ``latent``: train
    on autoencoder latents; the autoencoder is ``vae`` (a run folder: an autoencoder run, or a latent diffusion run
    whose autoencoder is reused) or, without it, trained first into ``out/vae`` for ``vae_steps`` steps at batch
    ``vae_batch_size`` (default ``batch_size``). A resumed
    latent run keeps the autoencoder and scaling factor in its checkpoint.
    """
    cond_t = parse_cond(cond)
    if int(steps) < 0 or int(batch_size) < 1:
        raise ValueError(f"steps must be >= 0 and batch_size >= 1, got {steps} and {batch_size}")
    out = Path(out)
    t0 = time.perf_counter()
    data, classes, info = _load_data(data_dir, size, cond_t, limit=limit, progress=progress)
    base = dict(size=size, cond=cond_t, classes=tuple(classes), model=model, latent=bool(latent), patch=patch,
                guidance_dropout=guidance_dropout, lr=lr, target_weight=target_weight, snr_gamma=snr_gamma, data=info)
    if "joints" in cond_t:  # normalised by the training range; the URDF limits check requested joints
        q = data["joints"]
        base.update(n_joints=q.shape[1], joint_low=q.min(0).values.tolist(), joint_high=q.max(0).values.tolist(),
                    joint_limits=manifest_joint_limits(_manifest(data_dir), q.shape[1]))
    DiffusionConfig(**base)  # validate the settings before any autoencoder training
    vae_net, vae_summary, scaling, vae_cfg, vae_source = None, None, None, None, None
    resumed = _check_resume(out, DiffusionConfig(**base)) if not latent else None
    if latent:
        prior = (out / CHECKPOINT).is_file()
        if prior:  # resume: the autoencoder and the scaling of the checkpoint
            ckpt = load_checkpoint(out / CHECKPOINT)
            tc = ckpt.get("task_config") or {}
            if not tc.get("latent") or "vae" not in ckpt.get("modules", {}):
                raise ValueError(f"run {out} is not a latent diffusion run; use another output folder")
            vae_cfg, scaling, vae_source = tc["vae_config"], float(tc["scaling_factor"]), tc.get("vae_source")
            vae_net = build_vae(vae_cfg)
            vae_net.load_state_dict(ckpt["modules"]["vae"])
            vae_summary = (_read_summary(out) or {}).get("vae")
        elif vae is not None:
            vae_net, vae_cfg = load_vae(vae)
            vae_source = str(vae)
            vae_summary = _read_summary(Path(vae)) or {}
            if vae_summary.get("kind") != "autoencoder":  # a latent diffusion run: its autoencoder's summary
                vae_summary = vae_summary.get("vae")
        else:
            vae_dir = out / "vae"
            vae_summary = train_autoencoder(
                data_dir, vae_dir, vae_steps, size=size, model=vae_model or model,
                batch_size=vae_batch_size or batch_size, seed=seed, target_weight=target_weight,
                device=device, limit=limit, log_every=log_every, sample_every=sample_every,
                checkpoint_every=checkpoint_every, progress=progress, tensorboard=tensorboard,
                data=(data, classes, info))
            vae_net, vae_cfg = load_vae(vae_dir)
            vae_source = str(vae_dir)
        if vae_cfg.get("sample_size") != size or size % vae_factor(vae_cfg):
            raise ValueError(f"the autoencoder was trained on {vae_cfg.get('sample_size')} px images, not {size} px")
        vae_net = vae_net.to(_pick_device(device)).eval().requires_grad_(False)
        latents = encode_images(vae_net, data["image"])
        if scaling is None:
            scaling = float(1.0 / latents.std().clamp(min=1e-6))
        vae_net = vae_net.cpu()
        train_data = {"latent": latents * scaling, **{k: v for k, v in data.items() if k != "image"}}
        cfg = DiffusionConfig(**base, vae_config=vae_cfg, scaling_factor=scaling, vae_source=vae_source)
        resumed = _check_resume(out, cfg)
    else:
        cfg = DiffusionConfig(**base)
        train_data = data
    task = DiffusionTask(cfg, data.get("class_id"), data.get("target"), vae=vae_net, init_seed=seed,
                         joints=data.get("joints"))
    tcfg = TrainConfig(out=out, steps=int(steps), batch_size=int(batch_size), seed=seed, device=device,
                       log_every=log_every, sample_every=sample_every, checkpoint_every=checkpoint_every,
                       ema_decay=ema_decay, progress=progress, tensorboard=tensorboard, n_samples=n_samples,
                       time_limit_s=time_limit_s)
    trainer = Trainer(task, train_data, tcfg)
    summary = trainer.fit()
    x1 = torch.zeros(1, cfg.data_channels, cfg.data_size, cfg.data_size, device=trainer.device)
    kw = {}
    if cfg.n_classes:
        kw["class_ids"] = torch.zeros(1, dtype=torch.long, device=trainer.device)
    if "target" in cfg.cond:
        kw["target"] = torch.full((1, 2), 0.5, device=trainer.device)
    if cfg.n_joints:
        low, high = cfg.joint_range()
        kw["joints"] = ((low + high) / 2).float()[None].to(trainer.device)
    flops = _train_flops(task.unet, x1, torch.zeros(1, dtype=torch.long, device=trainer.device), **kw)
    ips = summary.get("images_per_s")
    summary.update({
        "out": str(out), "cond": list(cfg.cond), "n_joints": cfg.n_joints, "size": size, "latent": cfg.latent,
        "model": model,
        "patch": cfg.patch, "batch_size": int(batch_size), "n_train": len(train_data[next(iter(train_data))]),
        "steps_per_s": ips / batch_size if ips else None,
        "params": sum(p.numel() for p in task.unet.parameters()), "train_flops_per_image": flops,
        "gflops_per_s": ips * flops / 1e9 if ips and flops else None, "device": str(trainer.device),
        "threads": torch.get_num_threads(), "resumed": resumed is not None or summary.get("start_step", 0) > 0,
        "total_wall_time_s": time.perf_counter() - t0,
    })
    if cfg.latent:
        summary.update({"scaling_factor": cfg.scaling_factor, "vae_source": cfg.vae_source,
                        "latent_shape": [cfg.data_channels, cfg.data_size, cfg.data_size],
                        "vae": {k: v for k, v in (vae_summary or {}).items() if k != "history"} or None})
    return _write_summary(out, summary)


# ---------------------------------------------------------------------------------------------------- evaluation
class _Subset(torch.utils.data.Dataset):
    def __init__(self, ds: torch.utils.data.Dataset, idx: list[int]):
        self.ds, self.idx = ds, idx

    def __len__(self) -> int:
        return len(self.idx)

    def __getitem__(self, i: int) -> Any:
        return self.ds[self.idx[i]]


def _fill_labels(cfg: DiffusionConfig, real: dict[str, torch.Tensor], gen: torch.Generator
                 ) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
    """The real frames' labels as the conditions of the fakes (missing ones replaced: random classes, the image
    centre, the middle of the training joint range)."""
    y = real["class_id"].clone() if cfg.n_classes else None
    c = real["target"].clone().float() if "target" in cfg.cond else None
    q = None
    if cfg.n_joints:
        low, high = cfg.joint_range()
        mid = ((low + high) / 2).float()
        q = real.get("joints")
        if q is not None and q.shape[1] != cfg.n_joints:
            raise ValueError(f"the dataset's labels have {q.shape[1]} joint positions, the model takes {cfg.n_joints}")
        q = mid.expand(len(real["image"]), cfg.n_joints).clone() if q is None else q.clone().float()
        bad = ~torch.isfinite(q).all(1)
        q[bad] = mid
    if y is not None and ((y < 0) | (y >= cfg.n_classes)).any():
        bad = (y < 0) | (y >= cfg.n_classes)
        y[bad] = torch.randint(0, cfg.n_classes, (int(bad.sum()),), generator=gen)
    if c is not None and not torch.isfinite(c).all():
        c[~torch.isfinite(c).all(1)] = 0.5
    return y, c, q


def evaluate_diffusion(
    run_dir: str | Path,
    data_dir: str | Path,
    quick: bool = False,
    sampler: str = "ddim",
    steps: int = 50,
    guidance: float = 2.0,
    n: int = 256,
    seed: int = 0,
    device: str | torch.device = "cpu",
    probe_steps: int | None = None,
    ema: bool = True,
    batch_size: int = 64,
    progress: bool = False,
    pipeline: Pipeline | None = None,
    probe: Any = None,
) -> dict[str, Any]:
    """Probe metrics of the run's samples against the armlab dataset at ``data_dir`` (the keys of ``armlab gan eval
    --json``).

    The probe is :func:`generative.metrics.probe_for` ``(data_dir, size, quick=quick)`` (trained once per dataset
    and cached; ``probe_steps`` overrides its length). ``n`` real frames are drawn from the dataset (seeded) and
    ``n`` images are sampled with ``sampler`` / ``steps`` / ``guidance`` and the *same frames'* labels as
    conditions. Returns :func:`generative.metrics.generation_report` (``class_acc_ratio``, ``pos_err_ratio``,
    ``diversity_ratio``, ``fid_custom``, ``kid_custom``, ``mode_coverage``, ...) plus ``cond``, ``steps`` (the
    checkpoint's), ``size``, ``latent``, ``sampler``, ``sampler_steps``, ``guidance``, ``sample_images_per_s``,
    ``train_images_per_s``, ``probe_from_cache`` and ``eval_seconds``."""
    from generative.metrics import generation_report, probe_for

    t0 = time.perf_counter()
    name = check_sampler(sampler, steps, guidance)
    if int(n) < 2:
        raise ValueError(f"--n must be at least 2 (FID needs two images), got {n}")
    dev = _pick_device(device)
    pipe = pipeline if pipeline is not None else load_pipeline(run_dir, dev, ema)
    cfg = pipe.cfg
    root = Path(data_dir)
    if not root.exists():
        raise DataError(f"dataset folder {str(root)!r} does not exist")
    if not (root / "manifest.json").is_file():
        raise DataError(f"{str(root)!r} is not an armlab dataset: no manifest.json (the probe needs its labels)")
    ds = open_images(root, cfg.size)
    gen = torch.Generator().manual_seed(int(seed))
    n_use = min(int(n), len(ds))
    idx = torch.randperm(len(ds), generator=gen)[:n_use].sort().values.tolist()
    real = load_tensors(_Subset(ds, idx), progress=progress)
    if probe is None:
        probe = probe_for(root, cfg.size, quick=quick, steps=probe_steps, device=dev, progress=progress)
    y, c, q = _fill_labels(cfg, real, gen)
    x = pipe.generate(n_use, y, c, name, int(steps), float(guidance), gen, batch_size, progress, joints=q)
    sample_seconds = pipe.last_seconds
    fake: dict[str, Any] = {"image": torch.from_numpy(to_uint8(x)).permute(0, 3, 1, 2)}
    if y is not None:
        fake["class_id"] = y
    if c is not None:
        fake["target"] = c
    report = generation_report(probe, real, fake, seed=int(seed))
    summary = _read_summary(Path(run_dir)) if run_dir is not None else None
    summary = summary or {}
    report.update({
        "cond": list(cfg.cond), "steps": pipe.step, "size": cfg.size, "latent": cfg.latent, "sampler": name,
        "sampler_steps": int(steps), "guidance": float(guidance),
        "sample_images_per_s": n_use / sample_seconds if sample_seconds else None,
        "train_images_per_s": summary.get("images_per_s"),
        "probe_from_cache": bool(getattr(probe, "from_cache", False)),
        "eval_seconds": time.perf_counter() - t0,
    })
    return report


@contextlib.contextmanager
def torch_threads(n: int | None):
    """Temporarily set torch's CPU thread count (no-op for None)."""
    if n is None:
        yield
        return
    old = torch.get_num_threads()
    torch.set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(old)
