"""Sampling a trained GAN run: its generator, and images with given or data-distributed conditions."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from generative.conditions import as_class_ids, as_targets
from generative.gan.config import GANConfig
from generative.gan.model import build_generator
from generative.networks import DCGANGenerator
from generative.runs import load_run, pick_device
from generative.training import CHECKPOINT
from robot_env.io.errors import ConfigError, DataError, ParamError

__all__ = ["load_generator", "run_config", "sample"]


def _read_config(ckpt: dict[str, Any]) -> GANConfig:
    task_config = ckpt.get("task_config")
    if not isinstance(task_config, dict) or "z_dim" not in task_config:
        raise TypeError("no GAN settings")
    cfg = GANConfig.from_dict(task_config)
    if "G" not in ckpt["modules"]:
        raise KeyError("G")
    return cfg


def _load_run(run_dir: str | Path, device: str | torch.device = "cpu") -> tuple[GANConfig, dict[str, Any]]:
    """The run's :class:`GANConfig` and checkpoint; a ValueError in one sentence for missing or broken runs."""
    return load_run(run_dir, device, _read_config, "GAN", task_class="GANTask")


def _generator_from(cfg: GANConfig, ckpt: dict[str, Any], path: Path, device: torch.device,
                    ema: bool) -> DCGANGenerator:
    G = build_generator(cfg)
    state = ckpt["ema"].get("G") if ema and ckpt.get("ema") else None
    state = state if state is not None else ckpt["modules"]["G"]
    try:
        G.load_state_dict(state)
    except RuntimeError as exc:
        raise DataError(f"checkpoint {path} does not fit its GAN settings ({str(exc).splitlines()[0]})") from exc
    return G.to(device).eval().requires_grad_(False)


def load_generator(run_dir: str | Path, device: str | torch.device = "cpu", ema: bool = True) -> DCGANGenerator:
    """G of the run in ``run_dir`` (its EMA copy with ``ema``, if the run kept one), in eval mode on ``device``,
    rebuilt from the run's settings; ``G.gan_config`` is its :class:`GANConfig`. A ValueError for a missing run,
    one without a checkpoint, or a corrupt / foreign checkpoint."""
    dev = pick_device(device)
    cfg, ckpt = _load_run(run_dir, dev)
    G = _generator_from(cfg, ckpt, Path(run_dir) / CHECKPOINT, dev, ema)
    G.gan_config = cfg
    return G


def _draw_conditions(cfg: GANConfig, ckpt: dict[str, Any], n: int, cond: dict[str, Any] | None,
                     gen: torch.Generator) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """Requested conditions, completed by drawing training frames' labels (seeded by ``gen``): conditions not given
    are drawn from the training frames (of the requested class, when the class is given)."""
    cond = dict(cond or {})
    unknown = [k for k in cond if k not in ("class_id", "target")]
    if unknown:
        raise ConfigError(f"unknown condition key {unknown[0]!r}: use class_id and target")
    if cond.get("class_id") is not None and not cfg.n_classes:
        raise ConfigError("this GAN is not conditioned on the class: leave the class out")
    if cond.get("target") is not None and not cfg.cond_dim:
        raise ConfigError("this GAN is not conditioned on the target position: leave the target out")
    y = as_class_ids(cond["class_id"], cfg.classes, n) if cond.get("class_id") is not None else None
    c = as_targets(cond["target"], n) if cond.get("target") is not None else None
    extra = ckpt.get("extra") or {}
    tr_y = extra.get("class_ids")
    tr_c = extra.get("targets")
    tr_y = tr_y.cpu() if tr_y is not None else None
    tr_c = tr_c.cpu().float() if tr_c is not None else None
    need_y = cfg.n_classes and y is None
    need_c = cfg.cond_dim and c is None
    if need_y:
        if tr_y is None or len(tr_y) == 0:
            y = torch.randint(0, cfg.n_classes, (n,), generator=gen)
        else:
            idx = torch.randint(0, len(tr_y), (n,), generator=gen)
            y = tr_y[idx].long()
            if need_c and tr_c is not None and len(tr_c) == len(tr_y):
                c = tr_c[idx]  # the joint distribution: class and target of the same frames
    if cfg.cond_dim and c is None:
        if tr_c is None or len(tr_c) == 0:
            c = 0.25 + 0.5 * torch.rand(n, 2, generator=gen)
        elif y is not None and tr_y is not None and len(tr_y) == len(tr_c):
            c = torch.empty(n, 2)
            for k in y.unique().tolist():  # targets of training frames of the requested class
                sel = y == k
                pool = tr_c[tr_y == k] if (tr_y == k).any() else tr_c
                c[sel] = pool[torch.randint(0, len(pool), (int(sel.sum()),), generator=gen)]
        else:
            c = tr_c[torch.randint(0, len(tr_c), (n,), generator=gen)]
    return y, c


#: How many seeded z make the mean w of a condition (the truncation trick's centre).
W_AVG_SAMPLES = 256


def check_psi(psi: float) -> float:
    """The truncation ``psi`` as a float in [0, 1]; a `ParamError` (``psi``) otherwise."""
    try:
        value = float(psi)
    except (TypeError, ValueError):
        value = float("nan")
    if not 0.0 <= value <= 1.0:
        raise ParamError("psi", f"{{name}} must be a number in [0, 1] (1: no truncation), got {psi!r}")
    return value


@torch.no_grad()
def mean_w(G: DCGANGenerator, y: torch.Tensor | None, c: torch.Tensor | None, n: int, samples: int = W_AVG_SAMPLES
           ) -> torch.Tensor:
    """``(n, w_dim)``: StyleGAN2's mean ``w`` of each row's condition (``y`` / ``c`` of ``n`` rows, or None), over
    ``samples`` z drawn with a fixed seed (the same z for every row)."""
    dev = next(G.parameters()).device
    zk = torch.randn(samples, G.z_dim, generator=torch.Generator().manual_seed(12345)).to(dev)
    ys = None if y is None else y.to(dev).repeat_interleave(samples)
    cs = None if c is None else c.to(dev).repeat_interleave(samples, 0)
    return G.mapping(zk.repeat(n, 1), ys, cs).view(n, samples, -1).mean(1)


@torch.no_grad()
def truncate(G: DCGANGenerator, z: torch.Tensor, y: torch.Tensor | None, c: torch.Tensor | None,
             psi: float) -> torch.Tensor:
    """The truncation trick: StyleGAN2's ``w`` of ``z`` pulled towards the mean ``w`` of each image's own condition
    (over :data:`W_AVG_SAMPLES` seeded z), ``w_avg + psi (w - w_avg)``; ``z`` scaled by ``psi`` for the other
    architectures. Returns what to feed to ``G.synthesis`` (stylegan2) or ``G`` (the others)."""
    if not hasattr(G, "synthesis"):
        return z * psi
    return mean_w(G, y, c, len(z)).lerp(G.mapping(z, y, c), psi)


@torch.no_grad()
def _generate(G: DCGANGenerator, n: int, y: torch.Tensor | None, c: torch.Tensor | None, gen: torch.Generator,
              batch_size: int = 256, psi: float = 1.0) -> np.ndarray:
    """uint8 NHWC images from G (eval mode); z drawn from ``gen`` on the CPU; ``psi`` < 1: the truncation trick
    (:func:`truncate`)."""
    dev = next(G.parameters()).device
    z = torch.randn(n, G.z_dim, generator=gen)
    noisy = hasattr(G, "synthesis")  # StyleGAN2's noise inputs draw from torch's RNG: seeded from ``gen`` too
    noise_seed = int(torch.randint(0, 2**62, (1,), generator=gen)) if noisy else None
    out = []
    with torch.random.fork_rng(devices=[dev.index or 0] if dev.type == "cuda" else [], enabled=noisy):
        if noisy:
            torch.manual_seed(noise_seed)
        for i in range(0, n, batch_size):
            sl = slice(i, i + batch_size)
            zs, ys, cs = z[sl].to(dev), None if y is None else y[sl].to(dev), None if c is None else c[sl].to(dev)
            if psi == 1.0:
                x = G(zs, ys, cs)
            elif noisy:
                x = G.synthesis(truncate(G, zs, ys, cs, psi), ys, cs)
            else:
                x = G(truncate(G, zs, ys, cs, psi), ys, cs)
            out.append(((x.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).cpu())
    return torch.cat(out).numpy()


def sample(
    run_dir: str | Path,
    n: int,
    cond: dict[str, Any] | None = None,
    seed: int = 0,
    device: str | torch.device = "cpu",
    ema: bool = True,
    batch_size: int = 256,
    psi: float = 1.0,
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """``n`` images from the run's generator: ``(uint8 images (n, H, W, 3), class_ids (n,) or None, targets (n, 2)
    or None)``, the last two the conditions used (None for conditions the model does not take).

    ``cond``: None to draw the conditions from the training frames' labels (class and target of the same frames),
    or a dict with ``class_id`` (an id, a class name, or one per image) and / or ``target`` (one ``(u, v)`` in
    ``[0, 1]`` or one per image); what is left out is drawn from the training frames (of the given class).
    Everything random is a function of ``seed``. ``psi`` < 1: the truncation trick (:func:`truncate`)."""
    psi = check_psi(psi)
    if int(n) < 1:
        raise ParamError("n", f"{{name}} must be at least 1, got {n}")
    dev = pick_device(device)
    cfg, ckpt = _load_run(run_dir, dev)
    G = _generator_from(cfg, ckpt, Path(run_dir) / CHECKPOINT, dev, ema)
    gen = torch.Generator().manual_seed(int(seed))
    y, c = _draw_conditions(cfg, ckpt, int(n), cond, gen)
    images = _generate(G, int(n), y, c, gen, batch_size, psi)
    return images, (None if y is None else y.numpy()), (None if c is None else c.numpy())


def run_config(run_dir: str | Path) -> GANConfig:
    """The :class:`GANConfig` of a run (from its checkpoint)."""
    return _load_run(run_dir)[0]
