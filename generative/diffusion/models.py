"""The networks: the autoencoder (``AutoencoderKL``), the UNet and :class:`ConditionedUNet` with its condition
encoders."""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from generative.diffusion.config import MIN_JOINT_HALF_RANGE, MODEL_SIZES, DiffusionConfig
from generative.networks import condition_maps

__all__ = ["ConditionedUNet", "build_unet", "build_vae"]


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
