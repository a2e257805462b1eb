"""One training step of the stylegan2 and progan architectures: the non-saturating logistic loss, lazy R1, ADA,
ProGAN's growth, and a check that the losses stay finite.

D step: ``softplus(-D(aug(x))) + softplus(D(aug(G(z))))`` (real and fake in one pass; the minibatch standard
deviation groups consecutive images, so it never mixes them when the batch is a multiple of its group), every
``r1_every`` steps plus ``r1_gamma / 2 * r1_every * |grad D(aug(x))|^2``
(lazy R1 on the augmented reals); then the local classifier's step where there is one; then the G step,
``softplus(-D(aug(G(z))))`` (plus the local class loss) through the updated D on the same fakes. ``aug`` is
:func:`~generative.gan.ada.ada_augment` at the controller's ``p`` (the identity without ``ada``), and D's outputs
on the reals steer ``p``. For progan the step first sets G's and D's level and alpha
(:func:`~generative.gan.progan.progress`) and D sees the reals at that resolution, faded as G's output is.
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F

from generative.gan.ada import ada_augment
from generative.gan.layers import r1_penalty
from generative.gan.task import GANTask, d_accuracy
from robot_env.io.errors import ConfigError

__all__ = ["style_step"]


def _grow(task: GANTask, step: int, real: torch.Tensor) -> tuple[torch.Tensor, dict[str, float], str]:
    from generative.gan.progan import match_real, progress, resolution_of

    level, alpha, phase = progress(step, task.cfg.phase_steps, task.cfg.size)
    task.G.set_progress(level, alpha)
    task.D.set_progress(level, alpha)
    res = resolution_of(level)
    return match_real(real, level, alpha), {"alpha": alpha, "res": float(res)}, f"{phase}:{res}"


def style_step(task: GANTask, batch: dict[str, torch.Tensor], step: int) -> dict[str, float | torch.Tensor]:
    cfg = task.cfg
    real = batch["image"]
    y, c = task._conditions(batch)
    n = real.shape[0]
    logs: dict[str, float | torch.Tensor] = {}
    phase = None
    if cfg.arch == "progan":
        real, logs, phase = _grow(task, step, real)
    z = torch.randn(n, cfg.z_dim, device=real.device)
    kw = {"full": False} if cfg.arch == "progan" else {}
    with task.autocast():
        fake = task.net("G")(z, y, c, **kw)
    p = task.ada.p if task.ada is not None else 0.0
    real_d, c_real = ada_augment(real, c, p, cfg.ada_pipeline)
    fake_d, c_fake = ada_augment(fake, c, p, cfg.ada_pipeline)
    # -- D step: real and fake in one forward pass (one DDP forward per backward), R1 on the same pass's reals
    r1_step = cfg.r1_gamma > 0 and step % cfg.r1_every == 0
    # R1's double backward does not go through torch.compile's graphs: a compiled D runs R1 in a second, eager pass
    # on the reals alone (the main pass stays in the compiled graph; DDP, which wants one forward per backward, keeps
    # the joint pass, eager on R1's steps); an eager D takes R1 from the main pass
    trainer = task.trainer
    compiled = trainer is not None and trainer.cfg.compile != "off"
    separate = r1_step and compiled and "D" not in trainer.wrapped
    x_real = real_d.detach().requires_grad_(r1_step and not separate)
    x_all = torch.cat([x_real, fake_d.detach().to(x_real.dtype)])
    y_all = torch.cat([y, y]) if y is not None else None
    c_all = torch.cat([c_real, c_fake]) if c is not None else None
    task.D.requires_grad_(True)
    eager = r1_step and compiled and not separate
    with task.autocast(), torch.compiler.set_stance("force_eager") if eager else contextlib.nullcontext():
        logits = task.net("D")(x_all, y_all, c_all).float()
    d_real, d_fake = logits[:n], logits[n:]
    d_loss = F.softplus(-d_real).mean() + F.softplus(d_fake).mean()
    loss = d_loss
    if separate:  # the minibatch deviation's groups of consecutive reals are the main pass's own
        x_real = real_d.detach().requires_grad_(True)
        with task.autocast(), torch.compiler.set_stance("force_eager"):
            d_r1 = task.D(x_real, y, c_real).float()
    if r1_step:
        r1 = r1_penalty(d_r1 if separate else d_real, x_real)
        loss = loss + 0.5 * cfg.r1_gamma * cfg.r1_every * r1
        task.last_r1 = float(r1.detach())
    _check_finite(loss, "discriminator", cfg.arch, step)
    task.opt_d.zero_grad(set_to_none=True)
    loss.backward()
    task.opt_d.step()
    if task.ada is not None:
        task.ada.observe(d_real)
        logs.update({"ada_p": task.ada.p, "ada_rt": task.ada.rt})
    fake_full = _full(fake, cfg.size)  # progan: the local classifier's crops are at the full size
    out = task.aux_step(batch["image"], y, c, fake_full)
    # -- G step through the updated D (unwrapped: no gradient is wanted for D here)
    task.D.requires_grad_(False)
    with task.autocast():
        g_logits = task.D(fake_d, y, c_fake).float()
    g_loss = task.aux_g_loss(F.softplus(-g_logits).mean(), fake_full, y, c, out)
    _check_finite(g_loss, "generator", cfg.arch, step)
    task.g_update(g_loss)
    d_acc = d_accuracy(d_real, d_fake)
    if phase is not None:
        stats = task.phase_stats.setdefault(phase, [0.0, 0.0, 0.0])
        stats[0] += float(d_acc)
        stats[1] += 1
        stats[2] = float(logs["alpha"])
    return {"d_loss": d_loss.detach(), "g_loss": g_loss.detach(), "d_real": d_real.detach().mean(),
            "d_fake": d_fake.detach().mean(), "d_acc": d_acc, "r1": task.last_r1, **logs, **out}


def _check_finite(loss: torch.Tensor, net: str, arch: str, step: int) -> None:
    """The NaN check: a `ConfigError` in one sentence when a loss is not finite."""
    if not torch.isfinite(loss.detach()):
        raise ConfigError(f"{arch} training diverged at step {step} (the {net}'s loss is not finite); lower --lr or "
                          "raise --r1-gamma")


def _full(x: torch.Tensor, size: int) -> torch.Tensor:
    """ProGAN's image at a lower resolution, upsampled to ``size`` (the local classifier's crops are at ``size``)."""
    return x if x.shape[-1] == size else F.interpolate(x, size=(size, size), mode="nearest")
