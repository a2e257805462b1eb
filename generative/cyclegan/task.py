"""CycleGAN as a :class:`~generative.training.TrainTask`: the losses of one step and the sample grids."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from generative.cyclegan.model import (
    DEFAULT_BASE,
    DEFAULT_IDENTITY,
    CyclePair,
    ImagePool,
    _check_size,
    augment,
    check_generator,
    default_n_down,
    linear_decay,
)
from generative.networks import PatchDiscriminator, choose_n_layers
from generative.training import TrainTask, derive_seed, to_device
from robot_env.io.errors import ConfigError, ParamError

__all__ = ["CycleGANTask"]


class CycleGANTask(TrainTask):
    """CycleGAN as a :class:`~generative.training.TrainTask`; the trainer's data is ``{"image": sim uint8}``.

    Args:
        real_images: uint8 ``(M, 3, size, size)``, the real domain (kept by the task; sampled per step).
        size: image size (multiple of 4).
        steps: the run's planned length, for the LR schedule (``lr_steps`` overrides it: pass the final length when
            a run is trained in stages, so the schedule does not depend on where it was stopped).
        generator: the generators' kind, ``"resnet"`` (CycleGAN's) or ``"look"`` (the light camera model
            :class:`~generative.cyclegan.look.LookGenerator`); both are trained with the same losses.
        base, n_blocks, n_down: generator width (default 32 for resnet, 16 for look), residual blocks and stride-2
            stages (default :func:`default_n_down` of ``size``; both unused by look); ``d_base`` the
            discriminators' width and ``n_layers`` their depth (default
            :func:`~generative.networks.choose_n_layers` of ``size``).
        cycle_weight, identity_weight: loss weights (identity as a fraction of the cycle weight; default 0.5 for
            resnet, 0 for look, see :data:`~generative.cyclegan.model.DEFAULT_IDENTITY`).
        task_weight, probe: the task-consistency term (weight per pixel of position disagreement) and its frozen
            :class:`~generative.metrics.Probe` (required when ``task_weight > 0``).
        pairs, paired_weight: the first ``pairs`` sim images (the trainer's data) and real images show the same scenes
            (a labelled real frame re-rendered in sim): each step also translates ``batch_size`` such sim images
            (drawn with a generator seeded by the run's seed and the step; the pair shifted and flipped alike) and
            adds ``paired_weight`` times the L1 distance of ``G(sim)`` to its real frame (pix2pix's term), on top of
            the unpaired terms. 0: off (the default).
        pad, flip: augmentation (default ``pad = size // 16``).
        sample_images: optional ``(sim, real)`` uint8 batches for the sample grids (default: the first images).
    """

    def __init__(
        self,
        real_images: torch.Tensor,
        size: int = 64,
        steps: int = 1000,
        lr_steps: int | None = None,
        base: int | None = None,
        n_blocks: int = 6,
        n_down: int | None = None,
        d_base: int = 64,
        n_layers: int | None = None,
        lr: float = 2e-4,
        beta1: float = 0.5,
        cycle_weight: float = 10.0,
        identity_weight: float | None = None,
        pool_size: int = 50,
        task_weight: float = 0.0,
        probe: nn.Module | None = None,
        pad: int | None = None,
        flip: bool = True,
        init_seed: int = 0,
        sample_images: tuple[torch.Tensor, torch.Tensor] | None = None,
        info: dict[str, Any] | None = None,
        generator: str = "resnet",
        pairs: int = 0,
        paired_weight: float = 10.0,
    ):
        _check_size(size)
        self.generator = check_generator(generator)
        if real_images.dtype != torch.uint8 or real_images.ndim != 4 or tuple(real_images.shape[1:]) != (
                3, size, size):
            raise ValueError(f"real_images must be uint8 (M, 3, {size}, {size}), got {real_images.dtype} "
                             f"{tuple(real_images.shape)}")
        if task_weight < 0:
            raise ParamError("task_weight", f"{{name}} must be >= 0, got {task_weight}")
        if task_weight > 0 and probe is None:
            raise ValueError("task_weight > 0 needs a probe (generative.metrics.probe_for of the sim dataset)")
        self.size, self.steps = int(size), int(steps)
        self.lr_steps = int(lr_steps) if lr_steps else int(steps)
        self.base = DEFAULT_BASE[self.generator] if base is None else int(base)
        self.n_blocks, self.d_base = int(n_blocks), int(d_base)
        self.n_down = default_n_down(self.size) if n_down is None else int(n_down)
        if self.generator == "resnet" and self.size % (2**self.n_down):
            raise ConfigError(f"size {self.size} is not a multiple of 2 ** n_down = {2**self.n_down}")
        self.n_layers = int(n_layers) if n_layers else choose_n_layers(self.size)
        self.lr, self.beta1 = float(lr), float(beta1)
        if identity_weight is None:
            identity_weight = DEFAULT_IDENTITY[self.generator]
        self.cycle_weight, self.identity_weight = float(cycle_weight), float(identity_weight)
        self.task_weight = float(task_weight)
        if int(pairs) < 0 or int(pairs) > len(real_images):
            raise ParamError("pairs", f"{{name}} must be between 0 and the {len(real_images)} real images, got {pairs}")
        if paired_weight < 0:
            raise ParamError("paired_weight", f"{{name}} must be >= 0, got {paired_weight}")
        self.pairs, self.paired_weight = int(pairs), float(paired_weight)
        self.pad = self.size // 16 if pad is None else int(pad)
        self.flip = bool(flip)
        self.init_seed = int(init_seed)
        self.info = dict(info or {})
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.init_seed)
            self._build_networks()
        g_params, d_params = self._trainable()
        self.opt_g = torch.optim.Adam(g_params, lr=self.lr, betas=(self.beta1, 0.999))
        self.opt_d = torch.optim.Adam(d_params, lr=self.lr, betas=(self.beta1, 0.999))
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

    def _build_networks(self) -> None:
        """The generator pair and the two discriminators (called under the init seed)."""
        self.gens = CyclePair(self.base, self.n_blocks, self.n_down, generator=self.generator)
        self.d_real = PatchDiscriminator(3, base=self.d_base, n_layers=self.n_layers)  # judges the real domain
        self.d_sim = PatchDiscriminator(3, base=self.d_base, n_layers=self.n_layers)

    def _trainable(self) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
        """The parameters of the generator side and of the discriminator side."""
        return list(self.gens.parameters()), [*self.d_real.parameters(), *self.d_sim.parameters()]

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
        return {"model": "cyclegan", "generator": self.generator, "size": self.size, "steps": self.steps,
                "lr_steps": self.lr_steps, "base": self.base, "n_blocks": self.n_blocks, "n_down": self.n_down,
                "d_base": self.d_base,
                "n_layers": self.n_layers, "lr": self.lr, "beta1": self.beta1, "cycle_weight": self.cycle_weight,
                "identity_weight": self.identity_weight, "pool_size": self.pool_real.size,
                "task_weight": self.task_weight, "pairs": self.pairs,
                "paired_weight": self.paired_weight, "pad": self.pad, "flip": self.flip, "init_seed": self.init_seed,
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

    def _pair_batch(self, step: int, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``n`` (sim, real) pairs for ``step`` (a function of the run's seed and the step), both images of a pair
        flipped and shifted alike, as floats in [-1, 1] on the device."""
        seed = self.trainer.cfg.seed if self.trainer is not None else 0
        g = torch.Generator().manual_seed(derive_seed(seed, "pairs", step))
        idx = torch.randint(0, self.pairs, (n,), generator=g)
        sim_data = self.trainer.data["image"] if self.trainer is not None else self._sample_sim
        both = torch.cat([sim_data[idx].to(self.device), self.real[to_device(idx, self.real.device)].to(self.device)],
                         1).float().div_(127.5).sub_(1.0)
        both = augment(both, self.pad, self.flip)
        return both[:, :3], both[:, 3:]

    def _with_pairs(self, sim: torch.Tensor, step: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The sim batch with this step's paired sim images appended (they ride along: G of them is also judged),
        and their real frames; ``(sim, None)`` without the paired term."""
        if not (self.pairs > 0 and self.paired_weight > 0):
            return sim, None
        pair_sim, pair_real = self._pair_batch(step, len(sim))
        return torch.cat([sim, pair_sim]), pair_real

    def _side_terms(self, sim: torch.Tensor, fake_real: torch.Tensor, pair_real: torch.Tensor | None,
                    losses: dict[str, torch.Tensor]) -> torch.Tensor | float:
        """The optional generator terms on G(sim): the paired L1 (pix2pix; the paired images are the last
        ``len(pair_real)`` of the batch) and the task-consistency term. Their values are logged into ``losses``."""
        extra: torch.Tensor | float = 0.0
        if pair_real is not None:
            pair_l1 = F.l1_loss(fake_real[len(fake_real) - len(pair_real):], pair_real)
            extra = extra + self.paired_weight * pair_l1
            losses["paired_l1"] = pair_l1.detach()
        if self.task_weight > 0:
            with torch.no_grad():
                pos_x = self._probe_pos(sim)
            task = F.l1_loss(self._probe_pos(fake_real), pos_x)
            extra = extra + self.task_weight * task
            losses["task_px"] = task.detach()
        return extra

    # -- training
    def _probe_pos(self, x: torch.Tensor) -> torch.Tensor:
        return self.probe(x)[1] * torch.tensor([x.shape[-1], x.shape[-2]], device=x.device, dtype=torch.float32)

    def train_step(self, batch: dict[str, torch.Tensor], step: int) -> dict[str, torch.Tensor]:
        sim = augment(batch["image"], self.pad, self.flip)
        real = augment(self._real_batch(step), self.pad, self.flip)
        sim, pair_real = self._with_pairs(sim, step)
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
            loss_g = loss_g + self._side_terms(sim, out["fake_real"], pair_real, losses)
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
