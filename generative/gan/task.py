"""The GAN as a :class:`~generative.training.TrainTask`: one D step and one G step per training step."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from generative.conditions import grid_conditions, label_state
from generative.gan.ada import AdaController
from generative.gan.config import GANConfig
from generative.gan.model import LocalClassifier, build_discriminator, build_generator, diff_augment
from generative.training import TrainTask

__all__ = ["GANTask", "d_accuracy"]


def d_accuracy(d_real: torch.Tensor, d_fake: torch.Tensor) -> torch.Tensor:
    """How often D's logit has the right sign, over real and fake (a 0-d tensor, no gradient)."""
    with torch.no_grad():
        return 0.5 * ((d_real > 0).float().mean() + (d_fake < 0).float().mean())


class GANTask(TrainTask):
    """DCGAN / conditional GAN as a :class:`TrainTask` (see the module docstring).

    ``class_ids`` / ``targets``: the training labels (CPU tensors, ``(N,)`` and ``(N, 2)``). They are kept in the
    checkpoint (``extra_state``) so that :func:`sample` can draw conditions from the training distribution, and
    they set the sample grid's target sweep. ``init_seed`` seeds the networks' initial weights.
    ``channel_multiple`` > 1 pads G's and D's convolutions to channel counts that are multiples of it
    (:func:`generative.networks.aligned_conv`: the same function and parameters, tensor-core-friendly shapes; an
    execution setting, not part of the model or its checkpoint).
    """

    def __init__(self, cfg: GANConfig, class_ids: torch.Tensor | None = None, targets: torch.Tensor | None = None,
                 init_seed: int = 0, channel_multiple: int = 0):
        self.cfg = cfg
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(init_seed)
            self.G = build_generator(cfg)  # dcgan / stylegan2 / progan
            self.D = build_discriminator(cfg)
            self.A = (LocalClassifier(cfg.n_classes, cfg.aux_crop, augment=cfg.aux_augment, fake_class=cfg.aux_fake)
                      if cfg.aux_class > 0 else None)
        betas = (cfg.beta1, cfg.beta2)
        lr_d, betas_d = cfg.lr_d, betas
        if cfg.arch == "dcgan":
            self.G.channel_multiple = self.D.net.channel_multiple = int(channel_multiple)
        elif cfg.r1_gamma > 0:  # lazy R1: D's Adam adjusted for a regularisation step every r1_every steps
            k = cfg.r1_every / (cfg.r1_every + 1)
            lr_d, betas_d = lr_d * k, (cfg.beta1**k, cfg.beta2**k)
        self.opt_g = torch.optim.Adam(self.G.parameters(), lr=cfg.lr_g, betas=betas)
        self.opt_d = torch.optim.Adam(self.D.parameters(), lr=lr_d, betas=betas_d)
        self.ada = AdaController(cfg.ada_target, cfg.ada_kimg) if cfg.ada else None
        self.phase_stats: dict[str, list[float]] = {}  # progan: per phase, [sum of D accuracy, steps, last alpha]
        self.last_r1 = 0.0
        self.opt_a = torch.optim.Adam(self.A.parameters(), lr=1e-3) if self.A is not None else None
        self.class_ids = None if class_ids is None else torch.as_tensor(class_ids).long().reshape(-1).cpu()
        self.targets = None if targets is None else torch.as_tensor(targets).float().reshape(-1, 2).cpu()

    # -- TrainTask interface
    def modules(self) -> dict[str, nn.Module]:
        return {"G": self.G, "D": self.D, **({"A": self.A} if self.A is not None else {})}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"G": self.opt_g, "D": self.opt_d, **({"A": self.opt_a} if self.opt_a is not None else {})}

    def ema_modules(self) -> list[str]:
        return ["G"]

    def ddp_options(self) -> dict[str, Any]:
        # a growing network leaves the layers of the resolutions still to come (and the fading-out ones) unused
        return {"find_unused_parameters": True} if self.cfg.arch == "progan" else {}

    def config(self) -> dict[str, Any]:
        return self.cfg.to_dict()

    def extra_state(self) -> dict[str, Any]:
        state = label_state(class_ids=self.class_ids, targets=self.targets)
        if self.cfg.arch != "dcgan":
            state["arch_state"] = {"phase_stats": {k: list(v) for k, v in self.phase_stats.items()},
                                   "last_r1": self.last_r1, **({"ada": self.ada.state()} if self.ada else {})}
        return state

    def load_extra_state(self, state: dict[str, Any]) -> None:
        # the labels come with the data the task was built from; the architectures' counters are restored
        arch_state = state.get("arch_state")
        if arch_state is not None:
            self.phase_stats = {str(k): [float(x) for x in v] for k, v in arch_state["phase_stats"].items()}
            self.last_r1 = float(arch_state["last_r1"])
            if self.ada is not None:
                self.ada.load(arch_state["ada"])

    def _conditions(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        y = batch["class_id"] if self.cfg.n_classes else None
        c = batch["target"].float() if self.cfg.cond_dim else None
        return y, c

    def _d_input(self, x: torch.Tensor, c: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        return diff_augment(x, c, self.cfg.augment) if self.cfg.augment else (x, c)

    def aux_step(self, real: torch.Tensor, y: torch.Tensor | None, c: torch.Tensor | None,
                 fake: torch.Tensor | None = None) -> dict[str, float | torch.Tensor]:
        """The local classifier's step (when there is one): it learns the real shapes at the real targets (and,
        with ``aux_fake``, ``fake``'s crops as G's)."""
        out: dict[str, float | torch.Tensor] = {}
        if self.A is not None:
            out["a_loss"], out["a_acc_real"] = self.A.learn(self.opt_a, real, c, y, self.net("A"), fake=fake)
        return out

    def aux_g_loss(self, g_loss: torch.Tensor, fake: torch.Tensor, y: torch.Tensor | None, c: torch.Tensor | None,
                   out: dict[str, float | torch.Tensor]) -> torch.Tensor:
        """G's loss plus the local class loss on its crop at the requested target (when there is a classifier)."""
        if self.A is None:
            return g_loss
        g_class, out["a_acc_fake"] = self.A.class_loss(fake, c, y)
        out["g_class"] = g_class.detach()
        return g_loss + self.cfg.aux_class * g_class

    def g_update(self, g_loss: torch.Tensor) -> None:
        """G's optimizer step on ``g_loss``; D (and the local classifier) trainable again afterwards."""
        self.opt_g.zero_grad(set_to_none=True)
        g_loss.backward()
        self.opt_g.step()
        self.D.requires_grad_(True)
        if self.A is not None:
            self.A.requires_grad_(True)

    def train_step(self, batch: dict[str, torch.Tensor], step: int) -> dict[str, float | torch.Tensor]:
        if self.cfg.arch != "dcgan":
            from generative.gan.steps import style_step

            return style_step(self, batch, step)
        real = batch["image"]
        y, c = self._conditions(batch)
        n = real.shape[0]
        z = torch.randn(n, self.cfg.z_dim, device=real.device)
        with self.autocast():
            fake = self.net("G")(z, y, c)  # the fakes get the real batch's conditions: the label distribution
        # -- D step on real and fake in one forward pass
        fake_d, c_fake = self._d_input(fake, c)
        real_d, c_real = self._d_input(real, c)
        x_all = torch.cat([real_d, fake_d.detach().to(real_d.dtype)])
        y_all = torch.cat([y, y]) if y is not None else None
        c_all = torch.cat([c_real, c_fake]) if c is not None else None
        self.D.requires_grad_(True)
        with self.autocast():
            logits = self.net("D")(x_all, y_all, c_all).float()
        d_real, d_fake = logits[:n], logits[n:]
        if self.cfg.loss == "hinge":
            d_loss = F.relu(1 - d_real).mean() + F.relu(1 + d_fake).mean()
        else:
            d_loss = F.softplus(-d_real).mean() + F.softplus(d_fake).mean()
        self.opt_d.zero_grad(set_to_none=True)
        d_loss.backward()
        self.opt_d.step()
        out = self.aux_step(real, y, c, fake)
        # -- G step through the updated D (unwrapped: no gradient is wanted for D here)
        self.D.requires_grad_(False)
        with self.autocast():
            g_logits = self.D(fake_d, y, c_fake).float()
        g_loss = -g_logits.mean() if self.cfg.loss == "hinge" else F.softplus(-g_logits).mean()
        g_loss = self.aux_g_loss(g_loss, fake, y, c, out)
        self.g_update(g_loss)
        d_acc = d_accuracy(d_real, d_fake)
        return {"d_loss": d_loss.detach(), "g_loss": g_loss.detach(), "d_real": d_real.detach().mean(),
                "d_fake": d_fake.detach().mean(), "d_acc": d_acc, **out}

    def grid_conditions(self, n: int) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """The sample grid's fixed conditions: one class per row (cycling through the classes), the target sweeping
        from the 10th to the 90th percentile of the training ``u`` across the columns, at the 30th / 70th percentile
        of ``v`` (alternating per round of classes)."""
        y, c, _, _ = grid_conditions(n, self.cfg.n_classes, bool(self.cfg.cond_dim), self.targets)
        return y, c

    def sample(self, n: int) -> torch.Tensor:
        y, c = self.grid_conditions(n)
        z = torch.randn(n, self.cfg.z_dim)
        dev = self.device
        return self.eval_net("G")(z.to(dev), None if y is None else y.to(dev), None if c is None else c.to(dev))
