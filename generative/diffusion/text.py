"""Text-conditioned (latent) diffusion: Stable Diffusion's recipe at armlab's scale (``cond = ("text",)``).

:class:`TextUNet` is a diffusers ``UNet2DConditionModel`` (every level a ``CrossAttnDownBlock2D`` /
``CrossAttnUpBlock2D``: ResNet blocks, then a transformer block whose cross-attention reads the caption's token
embeddings, padding masked out) with the widths of :data:`~generative.diffusion.config.MODEL_SIZES` and a frozen
:class:`~generative.text.TextEncoder` (pre-trained on the training captions, see ``generative.text.encoder``) kept
inside it, so the run's ``unet`` weights hold the encoder too. The sentence embedding is also added to the timestep
embedding (``class_embed_type="projection"``), and two coordinate channels (x, y in [-1, 1]) are appended to the
input: the words "left" and "right" have to meet a place, and a convolutional UNet that sees its coordinates
learns where that place is much sooner than one that must infer it from the padding.

With ``text_layout`` (the default for new runs) Hong et al.'s text -> layout -> image split is added: a frozen
:class:`~generative.text.LayoutHead`, fitted on the training captions and their frames' labels, draws the target's
class and place from the caption once per image (:meth:`TextUNet.draw_layout`, before the sampler's loop), and the
UNet reads their where-and-what maps (one channel per class, as the class- and position-conditioned model does) as
more input channels. In training the maps are the frame's own; a dropped (or empty) caption has no maps.

Classifier-free guidance: in training a caption is replaced by the empty caption (``<cls>`` alone) with probability
``guidance_dropout``; at sampling the unconditional branch is the empty caption, so an empty prompt *is* the
unconditional model. The vocabulary (JSON, in ``config.json`` and ``RUN/vocab.json``) and the encoder's arguments
are the config's ``text_config``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from generative.diffusion.config import MODEL_SIZES, DiffusionConfig
from generative.networks import condition_maps
from generative.text import LayoutHead, TextEncoder, Vocabulary
from robot_env.io.errors import ConfigError

__all__ = ["TextUNet", "build_denoiser", "prompt_tokens", "text_grid_tokens"]


def _coords(n: int, size: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    r = torch.linspace(-1, 1, size, device=device, dtype=dtype)
    yy, xx = torch.meshgrid(r, r, indexing="ij")
    return torch.stack([xx, yy])[None].expand(n, 2, size, size)


class TextUNet(nn.Module):
    """A caption-conditioned denoiser (see the module docstring). ``forward(x, t, class_ids=None, target=None,
    drop=None, joints=None, tokens=None)`` -> predicted noise like ``x``; ``tokens``: ``(N, L)`` token ids of one
    caption per image; ``drop`` (bool ``(N,)``) replaces an image's caption by the empty one. With a layout,
    ``class_ids`` and ``target`` are the layout (the frame's own, or :meth:`draw_layout`'s)."""

    def __init__(self, cfg: DiffusionConfig):
        super().__init__()
        from diffusers import UNet2DConditionModel

        if not cfg.text_config:
            raise ConfigError("a text diffusion model needs its text_config (vocabulary and encoder)")
        self.cfg = cfg
        self.vocab = Vocabulary.from_json(cfg.text_config["vocab"])
        self.text = TextEncoder(**cfg.text_config["encoder"]).requires_grad_(False)
        spec = MODEL_SIZES[cfg.model]
        n = len(spec["channels"])
        c = cfg.data_channels
        self.n_maps = len(cfg.classes) if cfg.text_layout else 0
        self.layout = LayoutHead(self.text.dim, self.n_maps).requires_grad_(False) if self.n_maps else None
        self.unet = UNet2DConditionModel(
            sample_size=cfg.resolution, in_channels=c + 2 + self.n_maps, out_channels=c,
            block_out_channels=tuple(spec["channels"]),
            layers_per_block=spec["layers"], down_block_types=("CrossAttnDownBlock2D",) * (n - 1) + ("DownBlock2D",),
            up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * (n - 1), norm_num_groups=spec["groups"],
            cross_attention_dim=self.text.dim, attention_head_dim=4, class_embed_type="projection",
            projection_class_embeddings_input_dim=self.text.dim)
        empty = self.vocab.encode("")
        self.register_buffer("empty", empty, persistent=False)

    def encode(self, tokens: torch.Tensor, drop: torch.Tensor | None = None
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The frozen encoder's ``(token embeddings, mask, sentence embedding)``; dropped captions are empty."""
        ids = tokens.long().to(self.empty.device)
        if drop is not None:
            ids = torch.where(drop.to(ids.device)[:, None].bool(), self.empty.expand_as(ids), ids)
        with torch.no_grad():
            return self.text(ids)

    def forward(self, x: torch.Tensor, t: torch.Tensor, class_ids: torch.Tensor | None = None,
                target: torch.Tensor | None = None, drop: torch.Tensor | None = None,
                joints: torch.Tensor | None = None, tokens: torch.Tensor | None = None) -> torch.Tensor:
        if tokens is None or tokens.ndim != 2:
            raise ValueError("this model is conditioned on a caption: pass tokens of shape (N, L)")
        n = x.shape[0]
        h, mask, pooled = self.encode(tokens, drop)
        if t.ndim == 0:
            t = t.expand(n)
        inp = [x, _coords(n, x.shape[-1], x.device, x.dtype)]
        if self.layout is not None:
            if class_ids is None or target is None:
                raise ValueError("this model reads a layout: pass class_ids and target (see draw_layout)")
            # a dropped or empty caption (<cls> alone) has no layout: the empty prompt stays the unconditional model
            keep = (tokens.long()[:, 1:] != 0).any(1).to(x.device)
            if drop is not None:
                keep = keep & ~drop.to(x.device).bool()
            keep = keep.to(x.dtype)[:, None, None, None]
            maps = condition_maps(class_ids.to(x.device), target.to(x.device), self.n_maps, x.shape[-1],
                                  self.cfg.size, self.cfg.target_sigma, widen=False)
            inp.append(maps.to(x.dtype) * keep)
        inp = torch.cat(inp, 1)
        return self.unet(inp, t.to(x.device), encoder_hidden_states=h.to(x.dtype), class_labels=pooled.to(x.dtype),
                         encoder_attention_mask=mask).sample


    @torch.no_grad()
    def draw_layout(self, tokens: torch.Tensor, gen: torch.Generator, side_margin: float = 0.0
                    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(class_ids (N,), target (N, 2))`` the layout head draws for captions ``tokens`` (every draw from
        ``gen``); the target at least ``side_margin`` image widths from the side cuts (``LayoutHead.sample``)."""
        if self.layout is None:
            raise ValueError("this model has no layout head")
        return self.layout.sample(self.encode(tokens)[2], gen, side_margin)


def build_denoiser(cfg: DiffusionConfig) -> nn.Module:
    """The denoiser of ``cfg``: a :class:`TextUNet` for ``cond = ("text",)``, else a ``ConditionedUNet``."""
    from generative.diffusion.models import ConditionedUNet

    return TextUNet(cfg) if "text" in cfg.cond else ConditionedUNet(cfg)


def prompt_tokens(cfg: DiffusionConfig, prompt: Any, n: int) -> torch.Tensor:
    """``(n, L)`` token ids of a prompt (one string for every image, or one per image); unknown words become
    ``<unk>``. A `ParamError` (``prompt``) for a prompt that is not text or a wrong count."""
    return Vocabulary.from_json(cfg.text_config["vocab"]).prompts(prompt, n)


def text_grid_tokens(cfg: DiffusionConfig, n: int) -> torch.Tensor:
    """Token ids of a sample grid's prompts (``generative.text.grid_prompts``)."""
    from generative.text import grid_prompts

    return prompt_tokens(cfg, grid_prompts(n, cfg.classes), n)

