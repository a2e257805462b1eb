"""Sampling: the :class:`Pipeline` of a trained run, the conditions of the images it draws, :func:`sample`."""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from generative.conditions import as_class_ids, as_joints, as_targets
from generative.diffusion.config import DiffusionConfig, check_sampler, default_guidance
from generative.diffusion.models import ConditionedUNet, build_vae
from generative.diffusion.schedulers import LATENT_CLIP, make_sampler, sampler_step_kwargs, train_scheduler
from generative.diffusion.text import build_denoiser
from generative.runs import load_run, pick_device
from generative.training import CHECKPOINT
from robot_env.io.errors import ConfigError, DataError, ParamError

__all__ = ["Pipeline", "draw_all_conditions", "draw_conditions", "load_pipeline", "run_config", "sample",
           "to_uint8"]


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
             guidance: float, q: torch.Tensor | None = None, tok: torch.Tensor | None = None) -> torch.Tensor:
        n = x.shape[0]
        if not self.cfg.cond:
            return self.unet(x, t)
        kw = {} if tok is None else {"tokens": tok}  # a text model's caption
        if guidance == 1.0:
            return self.unet(x, t, y, c, joints=q, **kw)
        if guidance == 0.0:
            return self.unet(x, t, y, c, torch.ones(n, dtype=torch.bool, device=x.device), joints=q, **kw)
        drop = torch.cat([torch.zeros(n, dtype=torch.bool), torch.ones(n, dtype=torch.bool)]).to(x.device)
        kw = {} if tok is None else {"tokens": torch.cat([tok, tok])}
        eps = self.unet(torch.cat([x, x]), t, None if y is None else torch.cat([y, y]),
                        None if c is None else torch.cat([c, c]), drop,
                        joints=None if q is None else torch.cat([q, q]), **kw)
        cond, uncond = eps.float().chunk(2)
        return uncond + guidance * (cond - uncond)

    @torch.no_grad()
    def generate(self, n: int, class_ids: torch.Tensor | None = None, targets: torch.Tensor | None = None,
                 sampler: str = "ddim", steps: int = 50, guidance: float | None = None,
                 generator: torch.Generator | None = None, batch_size: int = 64, progress: bool = False,
                 max_steps: int | None = None, joints: torch.Tensor | None = None,
                 tokens: torch.Tensor | None = None, side_margin: float | None = None) -> torch.Tensor:
        """``n`` images ``(n, 3, size, size)`` in ``[-1, 1]`` (CPU floats) with the given conditions (one per image;
        required for the conditions the model takes; ``joints``: ``(n, n_joints)`` radians). The initial noise and
        any sampler noise come from ``generator`` (a CPU generator). On CUDA the UNet and decoder run under bf16
        autocast. ``max_steps`` stops after that many sampler steps (for timing only: the images are then not
        finished). ``tokens``: a text model's captions, ``(n, L)`` token ids; a text model with a layout head draws
        each image's class and target from its caption (from ``generator``) unless both are given. ``guidance``:
        the classifier-free guidance scale, None for the run's default (:func:`default_guidance`: 2, a text run
        15). ``side_margin``: how far a drawn layout's target keeps from the side cuts (image widths; None:
        ``generative.text.SIDE_MARGIN``). ``self.last_seconds`` is the wall time."""
        from generative.text import side_margin as _side_margin

        name = check_sampler(sampler, steps, guidance)
        margin = _side_margin(side_margin)
        guidance = default_guidance(self.cfg) if guidance is None else float(guidance)
        if self.cfg.n_classes and class_ids is None:
            raise ConfigError("this model is conditioned on the class: give class ids")
        if "target" in self.cfg.cond and targets is None:
            raise ConfigError("this model is conditioned on the target position: give targets")
        if self.cfg.n_joints and joints is None:
            raise ConfigError("this model is conditioned on the joint positions: give joints")
        if "text" in self.cfg.cond and tokens is None:
            raise ConfigError("this model is conditioned on a caption: give a prompt")
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
            tok = tokens[sl].long().to(dev) if "text" in self.cfg.cond else None
            if self.cfg.text_layout:  # the caption's class and place, drawn once per image
                y, c = (class_ids[sl].long().to(dev), targets[sl].float().to(dev)) if class_ids is not None \
                    and targets is not None else self.unet.draw_layout(tok, gen, margin)
            sch = make_sampler(name, self.scheduler_config, LATENT_CLIP if self.cfg.latent else None)
            step_kw = sampler_step_kwargs(name)
            sch.set_timesteps(int(steps))
            shape = (m, self.cfg.data_channels, self.cfg.data_size, self.cfg.data_size)
            x = (torch.randn(shape, generator=gen) * sch.init_noise_sigma).to(dev)
            amp = torch.autocast("cuda", dtype=torch.bfloat16) if dev.type == "cuda" else contextlib.nullcontext()
            for k, t in enumerate(sch.timesteps):
                if max_steps is not None and k >= max_steps:
                    break
                with amp:
                    eps = self._eps(sch.scale_model_input(x, t), t.to(dev), y, c, float(guidance), q, tok)
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


def _read_config(ckpt: dict[str, Any]) -> DiffusionConfig:
    task_config = ckpt.get("task_config")
    if not isinstance(task_config, dict) or "guidance_dropout" not in task_config:
        raise TypeError("no diffusion settings")
    cfg = DiffusionConfig.from_dict(task_config)
    if "unet" not in ckpt["modules"] or (cfg.latent and "vae" not in ckpt["modules"]):
        raise KeyError("unet" if "unet" not in ckpt["modules"] else "vae")
    return cfg


def _load_run(run_dir: str | Path, device: torch.device | str = "cpu") -> tuple[DiffusionConfig, dict[str, Any]]:
    """The run's :class:`DiffusionConfig` and checkpoint; a ValueError in one sentence for missing or broken runs."""
    return load_run(run_dir, device, _read_config, "diffusion")


def load_pipeline(run_dir: str | Path, device: str | torch.device = "cpu", ema: bool = True) -> Pipeline:
    """The :class:`Pipeline` of the run in ``run_dir``: its EMA UNet (with ``ema``, else the trained one) and, for a
    latent model, its autoencoder, in eval mode on ``device``. A ValueError for a missing run, one without a
    checkpoint, or a corrupt / foreign checkpoint."""
    dev = pick_device(device)
    cfg, ckpt = _load_run(run_dir, dev)
    path = Path(run_dir) / CHECKPOINT
    unet = build_denoiser(cfg)
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
        raise DataError(f"checkpoint {path} does not fit its diffusion settings ({str(exc).splitlines()[0]})"
                         ) from exc
    unet = unet.to(dev).eval().requires_grad_(False)
    sched = train_scheduler(cfg.train_timesteps, cfg.beta_schedule, clip_sample=not cfg.latent)
    return Pipeline(cfg, unet, vae, sched.config, step=int(ckpt.get("step", 0)), extra=ckpt.get("extra") or {})


def run_config(run_dir: str | Path) -> DiffusionConfig:
    """The :class:`DiffusionConfig` of a run (from its checkpoint)."""
    return _load_run(run_dir)[0]


def _joint_example(cfg: DiffusionConfig) -> str:
    low, high = cfg.joint_range()
    return ",".join(f"{v:.2f}" for v in ((low + high) / 2).tolist())


def _as_joints(value: Any, cfg: DiffusionConfig, n: int) -> torch.Tensor:
    """Requested joint positions (radians; see :func:`generative.conditions.as_joints`), checked against the
    robot's joint limits when the run knows them."""
    robot = cfg.data.get("robot") if isinstance(cfg.data, dict) else None
    return as_joints(value, n, cfg.n_joints, cfg.joint_limits, _joint_example(cfg), robot)


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
        raise ConfigError(f"unknown condition key {unknown[0]!r}: use class_id, target and joints")
    if cond.get("class_id") is not None and not cfg.n_classes:
        raise ConfigError("this model is not conditioned on the class: leave the class out")
    if cond.get("target") is not None and "target" not in cfg.cond:
        raise ConfigError("this model is not conditioned on the target position: leave the target out")
    if cond.get("joints") is not None and not cfg.n_joints:
        raise ConfigError("this model is not conditioned on the joint positions: leave the joints out")
    y = as_class_ids(cond["class_id"], cfg.classes, n) if cond.get("class_id") is not None else None
    # float64: labels keep 0.3 as 0.3
    c = as_targets(cond["target"], n, np.float64) if cond.get("target") is not None else None
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
    guidance: float | None = None,
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
    ``sampler``: ``ddpm``, ``ddim`` or ``dpm`` with ``steps`` steps; ``guidance``: the classifier-free guidance scale
    (None: the run's default, 2 or, for a text run, 15).
    Everything random is a function of ``seed``."""
    if int(n) < 1:
        raise ParamError("n", f"{{name}} must be at least 1, got {n}")
    check_sampler(sampler, steps, guidance)
    pipe = load_pipeline(run_dir, device, ema)
    gen = torch.Generator().manual_seed(int(seed))
    y, c, q = draw_all_conditions(pipe.cfg, pipe.extra, int(n), cond, gen)
    x = pipe.generate(int(n), y, c, sampler, int(steps), guidance, gen, batch_size, progress, joints=q)
    return tuple([to_uint8(x)] + [None if v is None else v.numpy() for v in (y, c, q)])
