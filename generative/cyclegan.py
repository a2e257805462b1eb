"""CycleGAN (Zhu et al. 2017) between armlab's sim images and any set of real (or real-style) images.

Two ResNet generators translate sim -> real (``G``) and real -> sim (``F``); two PatchGAN discriminators (depth
:func:`~generative.networks.choose_n_layers` of the image size) judge each domain. Below 128 px the generators
downsample once instead of twice (:func:`default_n_down`): at 64 px their residual blocks then work at 32 x 32, the
resolution of the paper's 128 px model, and objects a few pixels wide are not smeared by the bottleneck (the
blocks cost the same either way). The losses are the paper's:

* LSGAN: discriminators regress 1 on real images and 0 on translated ones (drawn from a pool of 50 earlier
  translations per domain, :class:`ImagePool`), generators push their outputs towards 1;
* cycle consistency ``|F(G(x)) - x|_1 + |G(F(y)) - y|_1``, weight ``cycle_weight`` (10);
* identity ``|G(y) - y|_1 + |F(x) - x|_1``, weight ``identity_weight * cycle_weight`` (0.5 x 10);
* optionally a *task-consistency* term (the idea of RL-CycleGAN and RetinaGAN): a frozen probe trained on the labelled
  sim dataset (:func:`generative.metrics.probe_for`) must read the same target position from a sim image ``x`` and
  from ``G(x)``; ``task_weight`` times the L1 distance of the two positions in pixels. Off by default.

Adam (2e-4, betas 0.5 / 0.999) for the generators and for the discriminators; the learning rate is constant for the
first half of the schedule and decays linearly to 0 at its end (``LambdaLR``). The two domains are unpaired: the
trainer's batches are sim images, and each step draws as many real images from a seeded sequence of epoch
permutations of the real set. Augmentation: per image a random horizontal flip and a random shift (reflection
padding of ``size / 16`` pixels, then a crop back to ``size``): integer shifts that keep the real domain's noise
and compression artefacts intact. The flip and the shift are applied to ``x`` before ``G``, so the task term
compares the probe on the augmented ``x`` with the probe on ``G`` of that same image: its label stays consistent.

Training runs through :class:`generative.training.Trainer`: per-step seeding, checkpoints that resume exactly (the
image pools are part of the checkpoint), EMA copies of the generators (used for every translation), TensorBoard,
sample grids (rows of sim, G(sim), real, F(real)) and DDP.

Use: :func:`train_cyclegan`, then :func:`translate_images`, :func:`translate_dataset` (a whole armlab dataset with
its labels, or a plain image folder) and :func:`translate_video`.
"""

from __future__ import annotations

import contextlib
import json
import math
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from generative.data import (
    DataError,
    ImageFolderDataset,
    atomic_write_bytes,
    is_armlab_dataset,
    load_tensors,
    open_images,
    sha256_bytes,
    sha256_file,
)
from generative.networks import PatchDiscriminator, ResnetGenerator, choose_n_layers
from generative.training import (
    CHECKPOINT,
    TrainConfig,
    Trainer,
    TrainTask,
    derive_seed,
    load_checkpoint,
    to_device,
)

__all__ = [
    "DIRECTIONS",
    "CycleGANTask",
    "CyclePair",
    "Generators",
    "ImagePool",
    "augment",
    "default_n_down",
    "flush_denormals",
    "linear_decay",
    "load_generators",
    "train_cyclegan",
    "translate_dataset",
    "translate_images",
    "translate_video",
]

DIRECTIONS = ("sim2real", "real2sim")


# ------------------------------------------------------------------------------------------------------ building blocks
@contextlib.contextmanager
def flush_denormals() -> Iterator[None]:
    """Treat denormal floats as zero inside the block (``torch.set_flush_denormal``), restored to torch's default
    (off) after it. On the CPU, denormals (e.g. in Adam's second moments of tiny gradients) otherwise slow the
    training steps down several times."""
    torch.set_flush_denormal(True)
    try:
        yield
    finally:
        torch.set_flush_denormal(False)


def linear_decay(total_steps: int) -> Callable[[int], float]:
    """The LR factor of CycleGAN's schedule over ``total_steps``: 1 for the first half, then linear to 0 at the end.

    ``f(s)`` is the factor of training step ``s`` (0-based; what ``LambdaLR`` passes after ``s`` scheduler steps):
    ``1`` for ``s < total_steps / 2``, ``(total_steps - s) / (total_steps - total_steps / 2)`` after, 0 from
    ``total_steps`` on.
    """
    total = max(int(total_steps), 1)
    half = total / 2

    def factor(step: int) -> float:
        if step < half:
            return 1.0
        return max(0.0, (total - step) / (total - half))

    return factor


class ImagePool:
    """A buffer of up to ``size`` earlier generated images (Shrivastava et al. 2017, as used by CycleGAN).

    :meth:`query` takes a batch of new images and returns a batch of the same size: while the pool is not full each
    new image is stored and returned; afterwards each new image is, with probability 1/2, swapped with a random
    stored one (which is returned instead), else returned as it is. Random draws come from torch's global RNG, which
    the trainer seeds per step. ``size`` 0 disables the pool. In a distributed run every rank keeps its own pool
    and checkpoints hold rank 0's, so only single-process runs resume with every pool exactly as it was.
    """

    def __init__(self, size: int = 50):
        self.size = int(size)
        self.images: torch.Tensor | None = None  # (count, C, H, W), detached

    def __len__(self) -> int:
        return 0 if self.images is None else len(self.images)

    @torch.no_grad()
    def query(self, images: torch.Tensor) -> torch.Tensor:
        images = images.detach()
        if self.size <= 0:
            return images
        out = []
        for img in images:
            img = img.unsqueeze(0)
            if len(self) < self.size:
                self.images = img.clone() if self.images is None else torch.cat([self.images, img])
                out.append(img)
            elif float(torch.rand(())) < 0.5:
                k = int(torch.randint(0, self.size, ()))
                out.append(self.images[k : k + 1].clone())
                self.images[k] = img[0]
            else:
                out.append(img)
        return torch.cat(out)

    def state_dict(self) -> dict[str, Any]:
        return {"size": self.size, "images": self.images.detach().cpu() if self.images is not None else None}

    def load_state_dict(self, state: dict[str, Any], device: torch.device | str = "cpu") -> None:
        self.size = int(state["size"])
        imgs = state.get("images")
        self.images = None if imgs is None else imgs.to(device).clone()


def augment(x: torch.Tensor, pad: int, flip: bool = True) -> torch.Tensor:
    """Random horizontal flip (probability 1/2) and random shift by up to ``pad`` pixels per image.

    The batch is reflection-padded by ``pad`` pixels and each image cropped back at a random offset (and read
    mirrored when flipped), in one gather: integer shifts only, so no resampling blurs the images. Draws from
    torch's global RNG.
    """
    n, c, h, w = x.shape
    if pad <= 0 and not flip:
        return x
    dev = x.device
    off = torch.randint(0, 2 * pad + 1, (n, 2)) if pad > 0 else torch.zeros(n, 2, dtype=torch.long)
    flips = torch.rand(n) < 0.5 if flip else torch.zeros(n, dtype=torch.bool)
    xp = F.pad(x, (pad, pad, pad, pad), mode="reflect") if pad > 0 else x
    rows = off[:, :1] + torch.arange(h)  # (n, h)
    cols = torch.where(flips[:, None], torch.arange(w - 1, -1, -1), torch.arange(w)) + off[:, 1:]  # (n, w)
    idx_n = torch.arange(n, device=dev).view(n, 1, 1, 1)
    idx_c = torch.arange(c, device=dev).view(1, c, 1, 1)
    return xp[idx_n, idx_c, to_device(rows, dev).view(n, 1, h, 1), to_device(cols, dev).view(n, 1, 1, w)]


class CyclePair(nn.Module):
    """The two generators, ``g`` (sim -> real) and ``f`` (real -> sim), run together for one training step.

    Each is CycleGAN's :class:`~generative.networks.ResnetGenerator`. One module, so that a distributed run wraps
    both generators in one ``DistributedDataParallel`` and the generators, each used several times per step, are
    synchronised once per backward pass.
    """

    def __init__(self, base: int = 32, n_blocks: int = 6, n_down: int = 2):
        super().__init__()
        self.g = ResnetGenerator(3, 3, base=base, n_blocks=n_blocks, n_down=n_down)
        self.f = ResnetGenerator(3, 3, base=base, n_blocks=n_blocks, n_down=n_down)

    def forward(self, sim: torch.Tensor, real: torch.Tensor, identity: bool = True) -> dict[str, torch.Tensor]:
        """Translations, cycles and (with ``identity``) identity mappings of a sim batch and a real batch.

        Instance norm treats every image on its own, so each generator is run once on the concatenation of the
        images it maps (the same result as separate calls, fewer kernel launches).
        """
        ns, nr = len(sim), len(real)
        g_in = torch.cat([sim, real]) if identity else sim
        f_in = torch.cat([real, sim]) if identity else real
        g_out, f_out = self.g(g_in), self.f(f_in)
        fake_real, fake_sim = g_out[:ns], f_out[:nr]
        out = {"fake_real": fake_real, "fake_sim": fake_sim,
               "rec_sim": self.f(fake_real), "rec_real": self.g(fake_sim)}
        if identity:
            out["idt_real"], out["idt_sim"] = g_out[ns:], f_out[nr:]
        return out


# ------------------------------------------------------------------------------------------------------------- task
class CycleGANTask(TrainTask):
    """CycleGAN as a :class:`~generative.training.TrainTask`; the trainer's data is ``{"image": sim uint8}``.

    Args:
        real_images: uint8 ``(M, 3, size, size)``, the real domain (kept by the task; sampled per step).
        size: image size (multiple of 4).
        steps: the run's planned length, for the LR schedule (``lr_steps`` overrides it: pass the final length when
            a run is trained in stages, so the schedule does not depend on where it was stopped).
        base, n_blocks, n_down: generator width, residual blocks and stride-2 stages (default
            :func:`default_n_down` of ``size``); ``d_base`` the discriminators' width and ``n_layers`` their depth
            (default :func:`~generative.networks.choose_n_layers` of ``size``).
        cycle_weight, identity_weight: loss weights (identity as a fraction of the cycle weight).
        task_weight, probe: the task-consistency term (weight per pixel of position disagreement) and its frozen
            :class:`~generative.metrics.Probe` (required when ``task_weight > 0``).
        pad, flip: augmentation (default ``pad = size // 16``).
        sample_images: optional ``(sim, real)`` uint8 batches for the sample grids (default: the first images).
    """

    def __init__(
        self,
        real_images: torch.Tensor,
        size: int = 64,
        steps: int = 1000,
        lr_steps: int | None = None,
        base: int = 32,
        n_blocks: int = 6,
        n_down: int | None = None,
        d_base: int = 64,
        n_layers: int | None = None,
        lr: float = 2e-4,
        beta1: float = 0.5,
        cycle_weight: float = 10.0,
        identity_weight: float = 0.5,
        pool_size: int = 50,
        task_weight: float = 0.0,
        probe: nn.Module | None = None,
        pad: int | None = None,
        flip: bool = True,
        init_seed: int = 0,
        sample_images: tuple[torch.Tensor, torch.Tensor] | None = None,
        info: dict[str, Any] | None = None,
    ):
        _check_size(size)
        if real_images.dtype != torch.uint8 or real_images.ndim != 4 or tuple(real_images.shape[1:]) != (
                3, size, size):
            raise ValueError(f"real_images must be uint8 (M, 3, {size}, {size}), got {real_images.dtype} "
                             f"{tuple(real_images.shape)}")
        if task_weight < 0:
            raise ValueError(f"task_weight must be >= 0, got {task_weight}")
        if task_weight > 0 and probe is None:
            raise ValueError("task_weight > 0 needs a probe (generative.metrics.probe_for of the sim dataset)")
        self.size, self.steps = int(size), int(steps)
        self.lr_steps = int(lr_steps) if lr_steps else int(steps)
        self.base, self.n_blocks, self.d_base = int(base), int(n_blocks), int(d_base)
        self.n_down = default_n_down(self.size) if n_down is None else int(n_down)
        if self.size % (2**self.n_down):
            raise ValueError(f"size {self.size} is not a multiple of 2 ** n_down = {2**self.n_down}")
        self.n_layers = int(n_layers) if n_layers else choose_n_layers(self.size)
        self.lr, self.beta1 = float(lr), float(beta1)
        self.cycle_weight, self.identity_weight = float(cycle_weight), float(identity_weight)
        self.task_weight = float(task_weight)
        self.pad = self.size // 16 if pad is None else int(pad)
        self.flip = bool(flip)
        self.init_seed = int(init_seed)
        self.info = dict(info or {})
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.init_seed)
            self.gens = CyclePair(self.base, self.n_blocks, self.n_down)
            self.d_real = PatchDiscriminator(3, base=self.d_base, n_layers=self.n_layers)  # judges the real domain
            self.d_sim = PatchDiscriminator(3, base=self.d_base, n_layers=self.n_layers)
        self.opt_g = torch.optim.Adam(self.gens.parameters(), lr=self.lr, betas=(self.beta1, 0.999))
        self.opt_d = torch.optim.Adam([*self.d_real.parameters(), *self.d_sim.parameters()], lr=self.lr,
                                      betas=(self.beta1, 0.999))
        self._factor = linear_decay(self.lr_steps)
        self.sched_g = torch.optim.lr_scheduler.LambdaLR(self.opt_g, self._factor)
        self.sched_d = torch.optim.lr_scheduler.LambdaLR(self.opt_d, self._factor)
        self.pool_real, self.pool_sim = ImagePool(pool_size), ImagePool(pool_size)
        self.real = real_images
        self.probe = probe
        if probe is not None:
            probe.eval().requires_grad_(False)
        if sample_images is None:
            sample_images = (None, real_images[:8])
        self._sample_sim, self._sample_real = sample_images

    # -- trainer interface
    def modules(self) -> dict[str, nn.Module]:
        return {"gens": self.gens, "d_real": self.d_real, "d_sim": self.d_sim}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"G": self.opt_g, "D": self.opt_d}

    def schedulers(self) -> dict[str, Any]:
        return {"G": self.sched_g, "D": self.sched_d}

    def ema_modules(self) -> list[str]:
        return ["gens"]

    def config(self) -> dict[str, Any]:
        return {"model": "cyclegan", "size": self.size, "steps": self.steps, "lr_steps": self.lr_steps,
                "base": self.base, "n_blocks": self.n_blocks, "n_down": self.n_down, "d_base": self.d_base,
                "n_layers": self.n_layers, "lr": self.lr, "beta1": self.beta1, "cycle_weight": self.cycle_weight,
                "identity_weight": self.identity_weight, "pool_size": self.pool_real.size,
                "task_weight": self.task_weight, "pad": self.pad, "flip": self.flip, "init_seed": self.init_seed,
                "n_real": len(self.real), **self.info}

    def extra_state(self) -> dict[str, Any]:
        return {"pool_real": self.pool_real.state_dict(), "pool_sim": self.pool_sim.state_dict()}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        self.pool_real.load_state_dict(state["pool_real"], self.device)
        self.pool_sim.load_state_dict(state["pool_sim"], self.device)
        # the schedule of *this* run's length (a finished run continued with more steps follows the new schedule)
        for sched in (self.sched_g, self.sched_d):
            for group, base_lr in zip(sched.optimizer.param_groups, sched.base_lrs):
                group["lr"] = base_lr * self._factor(sched.last_epoch)
            sched._last_lr = [g["lr"] for g in sched.optimizer.param_groups]

    # -- data
    def real_indices(self, step: int) -> torch.Tensor:
        """Indices of this rank's real images for ``step``: like the trainer's sim batches, consecutive positions of
        an endless sequence of seeded epoch permutations of the real set (a function of ``(seed, step)``)."""
        tr = self.trainer
        seed, batch = (tr.cfg.seed, tr.cfg.batch_size) if tr is not None else (0, 1)
        rank, local = (tr.rank, tr.local_batch) if tr is not None else (0, batch)
        m = len(self.real)
        pos = torch.arange(step * batch + rank * local, step * batch + (rank + 1) * local)
        epochs, offsets = pos // m, pos % m
        out = torch.empty(len(pos), dtype=torch.long)
        for e in epochs.unique().tolist():
            g = torch.Generator().manual_seed(derive_seed(seed, "real-epoch", e))
            sel = epochs == e
            out[sel] = torch.randperm(m, generator=g)[offsets[sel]]
        return out

    def _real_batch(self, step: int) -> torch.Tensor:
        if self.real.device != self.device:
            self.real = self.real.to(self.device)  # once: the real set lives on the device from then on
        x = self.real[to_device(self.real_indices(step), self.device)].float().div_(127.5).sub_(1.0)
        if self.trainer is not None and self.trainer.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    # -- training
    def _probe_pos(self, x: torch.Tensor) -> torch.Tensor:
        return self.probe(x)[1] * torch.tensor([x.shape[-1], x.shape[-2]], device=x.device, dtype=torch.float32)

    def train_step(self, batch: dict[str, torch.Tensor], step: int) -> dict[str, torch.Tensor]:
        sim = augment(batch["image"], self.pad, self.flip)
        real = augment(self._real_batch(step), self.pad, self.flip)
        identity = self.identity_weight > 0
        lam_c, lam_i = self.cycle_weight, self.cycle_weight * self.identity_weight

        # generators (discriminators frozen, called unwrapped: no gradient for them in this pass)
        for d in (self.d_real, self.d_sim):
            d.requires_grad_(False)
        with self.autocast():
            out = self.net("gens")(sim, real, identity=identity)
            pred_real, pred_sim = self.d_real(out["fake_real"]), self.d_sim(out["fake_sim"])
            gan_g = F.mse_loss(pred_real, torch.ones_like(pred_real))
            gan_f = F.mse_loss(pred_sim, torch.ones_like(pred_sim))
            cyc_sim = F.l1_loss(out["rec_sim"], sim)
            cyc_real = F.l1_loss(out["rec_real"], real)
            loss_g = gan_g + gan_f + lam_c * (cyc_sim + cyc_real)
            losses: dict[str, torch.Tensor] = {}
            if identity:
                idt = F.l1_loss(out["idt_real"], real) + F.l1_loss(out["idt_sim"], sim)
                loss_g = loss_g + lam_i * idt
                losses["idt"] = idt.detach()
            if self.task_weight > 0:
                with torch.no_grad():
                    pos_x = self._probe_pos(sim)
                task = F.l1_loss(self._probe_pos(out["fake_real"]), pos_x)
                loss_g = loss_g + self.task_weight * task
                losses["task_px"] = task.detach()
        self.opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        self.opt_g.step()
        for d in (self.d_real, self.d_sim):
            d.requires_grad_(True)

        # discriminators: real images -> 1, pooled translations -> 0 (one call per discriminator)
        fake_real = self.pool_real.query(out["fake_real"].float())
        fake_sim = self.pool_sim.query(out["fake_sim"].float())
        with self.autocast():
            loss_d = 0.0
            d_losses = []
            for name, reals, fakes in (("d_real", real, fake_real), ("d_sim", sim, fake_sim)):
                pred = self.net(name)(torch.cat([reals, fakes]))
                pr, pf = pred[: len(reals)], pred[len(reals) :]
                ld = 0.5 * (F.mse_loss(pr, torch.ones_like(pr)) + F.mse_loss(pf, torch.zeros_like(pf)))
                d_losses.append(ld)
                loss_d = loss_d + ld
        self.opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        self.opt_d.step()
        losses.update({"g_gan": gan_g.detach(), "f_gan": gan_f.detach(), "cycle_sim": cyc_sim.detach(),
                       "cycle_real": cyc_real.detach(), "d_real": d_losses[0].detach(),
                       "d_sim": d_losses[1].detach()})
        return losses

    def sample(self, n: int) -> torch.Tensor:
        """Rows of quartets: sim image, G(sim), real image, F(real) (the EMA generators)."""
        k = max(1, n // 4)
        gens = self.eval_net("gens")
        sim = self._sample_sim if self._sample_sim is not None else self.trainer.data["image"][:k]
        sim = sim[:k].to(self.device).float() / 127.5 - 1
        real = self._sample_real[:k].to(self.device).float() / 127.5 - 1
        fake_real, fake_sim = gens.g(sim), gens.f(real)
        k = min(len(sim), len(real))
        quartets = torch.stack([sim[:k], fake_real[:k], real[:k], fake_sim[:k]], 1)  # (k, 4, C, H, W)
        return quartets.flatten(0, 1).float()


# --------------------------------------------------------------------------------------------------------- training
def default_n_down(size: int) -> int:
    """Stride-2 stages of the generators for ``size`` px images: 2 (CycleGAN's) from 128 px up, else 1, so that the
    residual blocks work at 32 x 32 or more and small objects (a few pixels at 64 px) survive the bottleneck."""
    return 2 if size >= 128 else 1


def _check_size(size: int) -> int:
    if not isinstance(size, int) or size < 16 or size % 4:
        raise ValueError(f"size must be an integer multiple of 4 of at least 16, got {size!r}")
    return size


def _load_domain(root: str | Path, size: int, limit: int | None, what: str) -> torch.Tensor:
    root = Path(root)
    if not root.exists():
        raise DataError(f"the {what} folder {str(root)!r} does not exist")
    ds = open_images(root, size=size)
    return load_tensors(ds, limit=limit)["image"]


def train_cyclegan(
    sim_dir: str | Path,
    real_dir: str | Path,
    out: str | Path,
    steps: int,
    size: int = 64,
    batch_size: int = 4,
    seed: int = 0,
    device: str = "auto",
    task_weight: float = 0.0,
    base: int = 32,
    n_blocks: int = 6,
    n_down: int | None = None,
    d_base: int = 64,
    lr: float = 2e-4,
    lr_steps: int | None = None,
    cycle_weight: float = 10.0,
    identity_weight: float = 0.5,
    pool_size: int = 50,
    sim_limit: int | None = None,
    real_limit: int | None = None,
    probe_steps: int | None = None,
    ema_decay: float = 0.999,
    log_every: int = 50,
    sample_every: int = 500,
    checkpoint_every: int = 500,
    progress: bool = True,
    tensorboard: bool = True,
    n_samples: int = 32,
    time_limit_s: float | None = None,
) -> dict[str, Any]:
    """Train a CycleGAN between the images in ``sim_dir`` and ``real_dir`` into the run folder ``out``.

    Either folder may be an armlab dataset or any folder of images (read with :func:`generative.data.open_images`,
    center-cropped and resized to ``size``); ``sim_limit`` / ``real_limit`` use only the first images of each (e.g.
    to keep held-out real frames unseen). With ``task_weight > 0`` the sim folder must be a labelled armlab dataset:
    its probe is trained once (``probe_steps``, default 1000) and cached in ``sim_dir/.probe``.

    ``out`` holds ``checkpoint.pt``, ``config.json``, ``log.csv``, ``samples/`` and ``tb/``. A run started again
    resumes from its checkpoint: killed runs continue exactly, and a finished run called with a larger ``steps``
    trains on (the LR schedule then follows the new length unless ``lr_steps`` fixes it). Returns the trainer's
    summary (``steps``, ``images_per_s``, ``losses``, ...) plus ``out`` and ``task_weight``.
    """
    size = _check_size(size)
    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    sim = _load_domain(sim_dir, size, sim_limit, "sim")
    real = _load_domain(real_dir, size, real_limit, "real")
    probe = None
    if task_weight > 0:
        from generative.metrics import probe_for

        if not is_armlab_dataset(sim_dir):
            raise DataError(f"the task-consistency term needs a labelled armlab sim dataset, and {str(sim_dir)!r} "
                            "has no manifest.json")
        with flush_denormals():
            probe = probe_for(sim_dir, size=size, steps=probe_steps, seed=seed, progress=progress)
    info = {"sim_dir": str(sim_dir), "real_dir": str(real_dir), "sim_limit": sim_limit, "real_limit": real_limit,
            "n_sim": len(sim), "probe_steps": probe_steps if task_weight > 0 else None}
    k = max(1, n_samples // 4)
    task = CycleGANTask(real, size=size, steps=steps, lr_steps=lr_steps, base=base, n_blocks=n_blocks,
                        n_down=n_down, d_base=d_base, lr=lr, cycle_weight=cycle_weight,
                        identity_weight=identity_weight, pool_size=pool_size, task_weight=task_weight, probe=probe,
                        init_seed=seed, sample_images=(sim[:k].clone(), real[:k].clone()), info=info)
    cfg = TrainConfig(out=Path(out), steps=steps, batch_size=batch_size, seed=seed, device=device,
                      log_every=log_every, sample_every=sample_every, checkpoint_every=checkpoint_every,
                      ema_decay=ema_decay, progress=progress, tensorboard=tensorboard, n_samples=4 * k,
                      time_limit_s=time_limit_s)
    trainer = Trainer(task, {"image": sim}, cfg)
    if probe is not None:
        probe.to(trainer.device)
    with flush_denormals():
        summary = trainer.fit()
    summary.update({"out": str(out), "task_weight": float(task_weight), "n_sim": len(sim), "n_real": len(real),
                    "batch_size": batch_size, "size": size})
    return summary


# ------------------------------------------------------------------------------------------------------ translation
def _pick_device(device: str | torch.device) -> torch.device:
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


@dataclass
class Generators:
    """A trained run's generators (EMA weights where the run kept them), in eval mode, ready to translate."""

    sim2real: nn.Module
    real2sim: nn.Module
    size: int
    step: int
    run: str
    config: dict[str, Any] = field(default_factory=dict)

    def get(self, direction: str) -> nn.Module:
        if direction not in DIRECTIONS:
            raise ValueError(f"direction must be one of {', '.join(DIRECTIONS)}, got {direction!r}")
        return self.sim2real if direction == "sim2real" else self.real2sim

    @property
    def device(self) -> torch.device:
        return next(self.sim2real.parameters()).device


def load_generators(run_dir: str | Path, device: str | torch.device = "cpu") -> Generators:
    """The generators of the CycleGAN run in ``run_dir`` (its ``checkpoint.pt``), EMA weights when present."""
    run = Path(run_dir)
    path = run / CHECKPOINT
    if not path.is_file():
        raise ValueError(f"{str(run)!r} is not a CycleGAN run: no {CHECKPOINT} in it")
    ckpt = load_checkpoint(path, map_location="cpu")
    cfg = ckpt.get("task_config") or {}
    if cfg.get("model") != "cyclegan":
        raise ValueError(f"{str(run)!r} holds a {cfg.get('model', 'non-CycleGAN')} checkpoint, not a CycleGAN run")
    pair = CyclePair(int(cfg["base"]), int(cfg["n_blocks"]), int(cfg.get("n_down", 2)))
    state = ckpt["ema"].get("gens") or ckpt["modules"]["gens"]
    try:
        pair.load_state_dict(state)
    except RuntimeError as exc:
        raise ValueError(f"checkpoint {path} does not fit its own config ({str(exc).splitlines()[0]})") from None
    pair.to(_pick_device(device)).eval().requires_grad_(False)
    return Generators(pair.g, pair.f, int(cfg["size"]), int(ckpt["step"]), str(run), cfg)


def _generators(run: str | Path | Generators, device: str | torch.device = "cpu") -> Generators:
    return run if isinstance(run, Generators) else load_generators(run, device)


def _resize_batch(x: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize NHWC uint8 images to ``size`` = (width, height) (area when shrinking, linear when enlarging)."""
    w, h = size
    if x.shape[1] == h and x.shape[2] == w:
        return x
    interp = cv2.INTER_AREA if w < x.shape[2] and h < x.shape[1] else cv2.INTER_LINEAR
    return np.stack([cv2.resize(img, (w, h), interpolation=interp) for img in x])


@torch.no_grad()
def translate_images(
    run_dir: str | Path | Generators,
    images_uint8: Any,
    direction: str = "sim2real",
    batch_size: int = 64,
    device: str | torch.device = "cpu",
) -> Any:
    """Translate uint8 RGB images with a trained run (a run folder or :func:`load_generators`' result).

    ``images_uint8``: ``(N, H, W, 3)`` numpy array or ``(N, 3, H, W)`` tensor (or one image without ``N``). Images
    not of the model's size are resized to it and the translations resized back, so the output has the input's
    type, layout and shape.
    """
    gens = _generators(run_dir, device)
    net = gens.get(direction)
    is_tensor = isinstance(images_uint8, torch.Tensor)
    x = images_uint8.detach().cpu().numpy() if is_tensor else np.asarray(images_uint8)
    single = x.ndim == 3
    if single:
        x = x[None]
    if x.ndim != 4 or x.dtype != np.uint8:
        raise ValueError(f"images must be uint8 (N, H, W, 3) or (N, 3, H, W), got {x.dtype} {x.shape}")
    chw = is_tensor and x.shape[1] == 3 and x.shape[-1] != 3
    nhwc = x.transpose(0, 2, 3, 1) if chw else x
    if nhwc.shape[-1] != 3:
        raise ValueError(f"images must have 3 channels (RGB), got shape {x.shape}")
    n, h, w = nhwc.shape[:3]
    out = np.empty_like(nhwc)
    dev = gens.device
    for i in range(0, n, max(1, batch_size)):
        chunk = _resize_batch(np.ascontiguousarray(nhwc[i : i + batch_size]), (gens.size, gens.size))
        t = torch.from_numpy(chunk).to(dev).permute(0, 3, 1, 2).float().div_(127.5).sub_(1.0)
        y = net(t)
        y = ((y.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
        out[i : i + len(y)] = _resize_batch(y, (w, h))
    if chw:
        out = out.transpose(0, 3, 1, 2)
    out = np.ascontiguousarray(out)
    if single:
        out = out[0]
    return torch.from_numpy(out) if is_tensor else out


def _read_rgb(path: Path) -> np.ndarray:
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise DataError(f"cannot read image {str(path)!r} (missing or corrupt)")
    return np.ascontiguousarray(img[:, :, ::-1])


def _encode(img_rgb: np.ndarray, suffix: str) -> bytes:
    ext = suffix.lower() if suffix.lower() in (".png", ".jpg", ".jpeg", ".bmp", ".webp") else ".png"
    params = [cv2.IMWRITE_JPEG_QUALITY, 95] if ext in (".jpg", ".jpeg") else []
    ok, buf = cv2.imencode(ext, np.ascontiguousarray(img_rgb[:, :, ::-1]), params)
    if not ok:
        raise DataError(f"OpenCV could not encode a translated image as {ext}")
    return buf.tobytes()


def _translate_files(gens: Generators, direction: str, pairs: Sequence[tuple[Path, Path]], batch_size: int,
                     progress: bool) -> dict[Path, str]:
    """Translate each ``src`` image into ``dst`` (same size and format); returns dst -> sha256."""
    hashes: dict[Path, str] = {}
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(pairs), desc=f"translating {direction}", unit="img")
    for i in range(0, len(pairs), batch_size):
        chunk = pairs[i : i + batch_size]
        imgs = [_read_rgb(src) for src, _ in chunk]
        small = np.stack([_resize_batch(im[None], (gens.size, gens.size))[0] for im in imgs])
        trans = translate_images(gens, small, direction, batch_size=batch_size)
        for (_src, dst), im, t in zip(chunk, imgs, trans):
            t = _resize_batch(t[None], (im.shape[1], im.shape[0]))[0]
            data = _encode(t, dst.suffix)
            atomic_write_bytes(dst, data)
            hashes[dst] = sha256_bytes(data)
        if bar is not None:
            bar.update(len(chunk))
    if bar is not None:
        bar.close()
    return hashes


def translate_dataset(
    run_dir: str | Path | Generators,
    in_dir: str | Path,
    out_dir: str | Path,
    direction: str = "sim2real",
    batch_size: int = 64,
    device: str | torch.device = "cpu",
    progress: bool = False,
) -> dict[str, Any]:
    """Translate every image of ``in_dir`` into ``out_dir`` with a trained run.

    An armlab dataset (``manifest.json``) keeps its structure: every ``rgb/`` file listed in the manifest is
    translated (at the model's size, then resized back to its own) and written under the same name; every other
    listed file (labels, depth, segmentation, ``instances.json``) is copied byte for byte. A new ``manifest.json``
    is written last, with the SHA-256 of every file, ``"style": "translated"`` and
    ``settings["translation"]`` recording the run, its step, the direction and the source. A plain image folder is
    translated image by image to the same relative names. Returns a summary (``out``, ``kind``, ``images``,
    ``copied``, ``seconds``).
    """
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {', '.join(DIRECTIONS)}, got {direction!r}")
    src, dst = Path(in_dir), Path(out_dir)
    if not src.is_dir():
        raise DataError(f"the input folder {str(src)!r} does not exist")
    if dst.exists() and dst.resolve() == src.resolve():
        raise ValueError("the output folder must differ from the input folder")
    if dst.exists() and not dst.is_dir():
        raise ValueError(f"the output {str(dst)!r} exists and is not a folder")
    if (dst / "manifest.json").is_file():
        try:
            old_style = json.loads((dst / "manifest.json").read_text()).get("style")
        except (OSError, ValueError, AttributeError):
            old_style = None
        if old_style != "translated":
            raise DataError(f"{str(dst)!r} holds an armlab dataset of style {old_style!r}; refusing to overwrite it "
                            "with translated images")
    gens = _generators(run_dir, device)
    t0 = time.perf_counter()
    if not is_armlab_dataset(src):
        folder = ImageFolderDataset(src)
        pairs = [(p, dst / p.relative_to(src)) for p in folder.paths]
        _translate_files(gens, direction, pairs, batch_size, progress)
        return {"out": str(dst), "kind": "folder", "images": len(pairs), "copied": 0,
                "seconds": time.perf_counter() - t0}

    manifest_path = src / "manifest.json"
    try:
        manifest = json.loads(manifest_path.read_text())
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot read manifest {str(manifest_path)!r}: {exc}") from None
    files = manifest.get("files") if isinstance(manifest, dict) else None
    if not isinstance(files, dict) or not files:
        raise DataError(f"manifest {str(manifest_path)!r} lists no files")
    rgb = sorted(rel for rel in files if rel.startswith("rgb/"))
    if not rgb:
        raise DataError(f"armlab dataset {str(src)!r} lists no rgb/ images in its manifest")
    for rel in files:
        if not (src / rel).is_file():
            raise DataError(f"armlab dataset {str(src)!r} is incomplete: {rel} is missing")
    new_files: dict[str, str] = {}
    copied = 0
    for rel in sorted(files):
        if rel.startswith("rgb/"):
            continue
        (dst / rel).parent.mkdir(parents=True, exist_ok=True)
        tmp = (dst / rel).with_name(f".{Path(rel).name}.copy.tmp")
        shutil.copyfile(src / rel, tmp)
        tmp.replace(dst / rel)
        new_files[rel] = sha256_file(dst / rel)
        copied += 1
    hashes = _translate_files(gens, direction, [(src / rel, dst / rel) for rel in rgb], batch_size, progress)
    for rel in rgb:
        new_files[rel] = hashes[dst / rel]
    new_manifest = dict(manifest)
    new_manifest["style"] = "translated"
    new_manifest["files"] = {rel: new_files[rel] for rel in files}
    settings = dict(manifest.get("settings") or {})
    settings["translation"] = {
        "model": "cyclegan", "run": str(gens.run), "step": gens.step, "direction": direction,
        "model_size": gens.size, "task_weight": gens.config.get("task_weight"), "source": str(src),
        "source_style": manifest.get("style"), "source_manifest_sha256": sha256_file(manifest_path),
    }
    new_manifest["settings"] = settings
    atomic_write_bytes(dst / "manifest.json", (json.dumps(new_manifest, indent=1, sort_keys=True) + "\n").encode())
    return {"out": str(dst), "kind": "armlab", "images": len(rgb), "copied": copied,
            "seconds": time.perf_counter() - t0}


def translate_video(
    run_dir: str | Path | Generators,
    in_video: str | Path,
    out_video: str | Path,
    direction: str = "sim2real",
    side_by_side: bool = False,
    batch_size: int = 32,
    device: str | torch.device = "cpu",
    fps: float | None = None,
) -> dict[str, Any]:
    """Translate a video frame by frame (read with OpenCV, each frame resized to the model's size and back).

    With ``side_by_side`` each output frame is the original and its translation next to each other (twice the
    width). Written with :class:`robot_env.io.video.VideoWriter` (``.webm``, ``.mp4`` or ``.gif``, chosen by the
    extension; a writer OpenCV cannot open is a clear error), at the input's frame rate unless ``fps`` is given.
    Returns ``out``, ``frames``, ``width``, ``height`` (of the output) and ``fps``.
    """
    from robot_env.io.video import VideoWriter, video_format

    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {', '.join(DIRECTIONS)}, got {direction!r}")
    in_video, out_video = Path(in_video), Path(out_video)
    video_format(out_video)
    if not in_video.is_file():
        raise DataError(f"the input video {str(in_video)!r} does not exist")
    gens = _generators(run_dir, device)
    cap = cv2.VideoCapture(str(in_video))
    if not cap.isOpened():
        raise DataError(f"OpenCV cannot open the video {str(in_video)!r}")
    rate = fps or cap.get(cv2.CAP_PROP_FPS)
    rate = float(rate) if rate and math.isfinite(rate) and rate > 0 else 24.0
    frames = 0
    size = None
    try:
        with VideoWriter(out_video, fps=rate) as writer:
            while True:
                chunk = []
                while len(chunk) < batch_size:
                    ok, bgr = cap.read()
                    if not ok:
                        break
                    chunk.append(np.ascontiguousarray(bgr[:, :, ::-1]))
                if not chunk:
                    break
                small = np.stack([_resize_batch(f[None], (gens.size, gens.size))[0] for f in chunk])
                trans = translate_images(gens, small, direction, batch_size=batch_size)
                for orig, t in zip(chunk, trans):
                    t = _resize_batch(t[None], (orig.shape[1], orig.shape[0]))[0]
                    frame = np.concatenate([orig, t], axis=1) if side_by_side else t
                    writer.write(frame)
                    size = frame.shape[1], frame.shape[0]
                    frames += 1
            if frames == 0:
                raise DataError(f"no frames could be read from the video {str(in_video)!r}")
    finally:
        cap.release()
    return {"out": str(out_video), "frames": frames, "width": size[0], "height": size[1], "fps": rate}
