"""CUT and FastCUT (Park et al. 2020): one-sided unpaired translation with a patch-wise contrastive loss.

CycleGAN keeps a translation faithful with a second generator and a cycle: ``F(G(x)) = x``. CUT drops ``F``, its
discriminator and the cycle, and asks instead that every patch of ``G(x)`` be recognisable as *its* patch of ``x``
among the other patches of the same image (PatchNCE): the generator's own encoder reads features of ``x`` and of
``G(x)`` at several layers, a small MLP head per layer projects them, and an InfoNCE loss (temperature 0.07) makes
each patch of ``G(x)`` closest to the patch of ``x`` at the same place. CUT also applies the loss to real images
(``G(y)`` should stay ``y``, patch by patch: the NCE identity term); FastCUT drops that and weights the contrastive
term 10 instead of 1. One generator and one discriminator: about half of CycleGAN's work per step.

Here it trains either generator kind of :mod:`generative.cyclegan` (the ResNet generator or the light
:class:`~generative.cyclegan.look.LookGenerator`) with the same LSGAN loss, image pool, augmentation, schedule,
paired and task terms as :class:`~generative.cyclegan.CycleGANTask` (``method="cut"`` or ``"fastcut"`` of
:func:`~generative.cyclegan.train_cyclegan`; ``armlab cyclegan train --method cut``). Being one-sided, a CUT run
translates sim -> real only: for real -> sim at deployment train a CycleGAN.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from generative.cyclegan.model import augment, check_generator
from generative.cyclegan.task import CycleGANTask
from generative.networks import PatchDiscriminator, ResnetGenerator
from robot_env.io.errors import ParamError

__all__ = ["CUT_DEFAULTS", "METHODS", "CUTTask", "OneSided", "PatchNCE", "check_method", "encoder_features"]

#: The training methods of ``armlab cyclegan train --method``.
METHODS = ("cycle", "cut", "fastcut")

#: Per one-sided method: the contrastive term's weight and whether it is also applied to real images (NCE identity).
CUT_DEFAULTS = {"cut": (1.0, True), "fastcut": (10.0, False)}


def check_method(method: str) -> str:
    if method not in METHODS:
        raise ParamError("method", f"unknown {{name}} {method!r}; choose {', '.join(METHODS)}")
    return method


def encoder_features(g: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    """The features of ``x`` that generator ``g``'s encoder computes, for PatchNCE: a look generator's
    :meth:`~generative.cyclegan.look.LookGenerator.features`; for the ResNet generator the input, the stem's output,
    each downsampling stage's and the first and third residual blocks' (CUT's choice of layers, scaled down)."""
    if hasattr(g, "features"):
        return g.features(x)
    if not isinstance(g, ResnetGenerator):
        raise TypeError(f"no encoder features for a {type(g).__name__}")
    layers = list(g.net)
    n_enc = 4 + 3 * g.n_down  # reflection pad, conv, norm, relu; then conv, norm, relu per downsampling stage
    take = {3, *(3 + 3 * (i + 1) for i in range(g.n_down))}
    take |= {n_enc + b for b in (0, 2) if b < g.n_blocks}
    feats, h = [x], x
    for i, layer in enumerate(layers[: max(take) + 1]):
        h = layer(h)
        if i in take:
            feats.append(h)
    return feats


class PatchNCE(nn.Module):
    """The patch-wise contrastive loss: one MLP head (``c -> dim -> dim``) per feature layer; per image and layer,
    ``n_patches`` random locations (torch's global RNG: the trainer seeds it per step), the same for the query
    features (of ``G(x)``) and the key features (of ``x``); the cross-entropy of each query patch against all key
    patches of its image, the one at its own location being the positive (keys detached after the head, as in CUT).
    Returns the mean over layers."""

    def __init__(self, channels: list[int], dim: int = 64, n_patches: int = 128, tau: float = 0.07):
        super().__init__()
        if dim < 1 or n_patches < 2 or not tau > 0:
            raise ParamError("nce", f"PatchNCE needs dim >= 1, n_patches >= 2 and tau > 0, got {dim}, {n_patches}, "
                             f"{tau}")
        self.heads = nn.ModuleList(nn.Sequential(nn.Linear(c, dim), nn.ReLU(), nn.Linear(dim, dim)) for c in channels)
        self.n_patches, self.tau = int(n_patches), float(tau)

    def forward(self, feats_q: list[torch.Tensor], feats_k: list[torch.Tensor]) -> torch.Tensor:
        total = 0.0
        for head, q, k in zip(self.heads, feats_q, feats_k):
            n, c, h, w = q.shape
            m = min(self.n_patches, h * w)
            idx = torch.randperm(h * w, device=q.device)[:m]
            qz = F.normalize(head(q.flatten(2)[:, :, idx].transpose(1, 2).float()), dim=-1)  # (n, m, dim)
            kz = F.normalize(head(k.flatten(2)[:, :, idx].transpose(1, 2).float()), dim=-1).detach()
            logits = torch.bmm(qz, kz.transpose(1, 2)) / self.tau  # (n, m, m): the diagonal holds the positives
            target = torch.arange(m, device=q.device).repeat(n)
            total = total + F.cross_entropy(logits.flatten(0, 1), target)
        return total / len(self.heads)


class OneSided(nn.Module):
    """CUT's single generator ``g`` (sim -> real), of the kind ``generator`` (as :class:`CyclePair`'s)."""

    def __init__(self, base: int, n_blocks: int = 6, n_down: int = 1, generator: str = "resnet"):
        super().__init__()
        from generative.cyclegan.look import LookGenerator

        self.generator = check_generator(generator)
        self.g: nn.Module = (LookGenerator(base) if generator == "look"
                             else ResnetGenerator(3, 3, base=base, n_blocks=n_blocks, n_down=n_down))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor]]:
        """``G(x)``, the encoder features of ``G(x)`` (queries, with gradients) and of ``x`` (keys, without)."""
        y = self.g(x)
        with torch.no_grad():
            keys = encoder_features(self.g, x)
        return y, encoder_features(self.g, y), keys


class CUTTask(CycleGANTask):
    """CUT / FastCUT as a :class:`~generative.training.TrainTask` (see the module docstring): the arguments of
    :class:`~generative.cyclegan.CycleGANTask` (``cycle_weight`` and ``identity_weight`` unused) plus ``method``
    (``"cut"`` or ``"fastcut"``), ``nce_weight`` and ``nce_identity`` (default :data:`CUT_DEFAULTS` of the method),
    ``nce_patches`` locations per image and layer, ``nce_dim`` (the heads' width) and ``nce_tau``."""

    def __init__(self, real_images: torch.Tensor, method: str = "cut", nce_weight: float | None = None,
                 nce_identity: bool | None = None, nce_patches: int = 128, nce_dim: int = 64, nce_tau: float = 0.07,
                 **kwargs: Any):
        if check_method(method) == "cycle":
            raise ParamError("method", "{name} 'cycle' is CycleGANTask's; CUTTask trains 'cut' or 'fastcut'")
        weight, identity = CUT_DEFAULTS[method]
        self.method = method
        self.nce_weight = weight if nce_weight is None else float(nce_weight)
        if self.nce_weight < 0:
            raise ParamError("nce_weight", f"{{name}} must be >= 0, got {nce_weight}")
        self.nce_identity = identity if nce_identity is None else bool(nce_identity)
        self.nce_patches, self.nce_dim, self.nce_tau = int(nce_patches), int(nce_dim), float(nce_tau)
        kwargs.update(cycle_weight=0.0, identity_weight=0.0)
        super().__init__(real_images, **kwargs)

    def _build_networks(self) -> None:
        self.gens = OneSided(self.base, self.n_blocks, self.n_down, generator=self.generator)
        self.d_real = PatchDiscriminator(3, base=self.d_base, n_layers=self.n_layers)
        with torch.no_grad():
            probe = encoder_features(self.gens.g, torch.zeros(1, 3, self.size, self.size))
        self.nce = PatchNCE([f.shape[1] for f in probe], dim=self.nce_dim, n_patches=self.nce_patches,
                            tau=self.nce_tau)

    def _trainable(self) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
        return [*self.gens.parameters(), *self.nce.parameters()], list(self.d_real.parameters())

    def modules(self) -> dict[str, nn.Module]:
        return {"gens": self.gens, "nce": self.nce, "d_real": self.d_real}

    def config(self) -> dict[str, Any]:
        cfg = super().config()
        for key in ("cycle_weight", "identity_weight"):
            cfg.pop(key, None)
        cfg.update({"model": "cut", "method": self.method, "nce_weight": self.nce_weight,
                    "nce_identity": self.nce_identity, "nce_patches": self.nce_patches, "nce_dim": self.nce_dim,
                    "nce_tau": self.nce_tau})
        return cfg

    def train_step(self, batch: dict[str, torch.Tensor], step: int) -> dict[str, torch.Tensor]:
        sim = augment(batch["image"], self.pad, self.flip)
        real = augment(self._real_batch(step), self.pad, self.flip)
        sim, pair_real = self._with_pairs(sim, step)
        ns = len(sim)
        losses: dict[str, torch.Tensor] = {}

        self.d_real.requires_grad_(False)
        with self.autocast():
            x = torch.cat([sim, real]) if self.nce_identity else sim
            y, feats_q, feats_k = self.net("gens")(x)
            fake_real = y[:ns]
            pred = self.d_real(fake_real)
            gan = F.mse_loss(pred, torch.ones_like(pred))
            nce_net = self.net("nce")
            nce = nce_net([f[:ns] for f in feats_q], [f[:ns] for f in feats_k])
            losses["nce"] = nce.detach()
            if self.nce_identity:
                nce_idt = nce_net([f[ns:] for f in feats_q], [f[ns:] for f in feats_k])
                losses["nce_idt"] = nce_idt.detach()
                nce = 0.5 * (nce + nce_idt)
            loss_g = gan + self.nce_weight * nce + self._side_terms(sim, fake_real, pair_real, losses)
        self.opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        self.opt_g.step()
        self.d_real.requires_grad_(True)

        fakes = self.pool_real.query(fake_real.float())
        with self.autocast():
            pred = self.net("d_real")(torch.cat([real, fakes]))
            pr, pf = pred[: len(real)], pred[len(real):]
            loss_d = 0.5 * (F.mse_loss(pr, torch.ones_like(pr)) + F.mse_loss(pf, torch.zeros_like(pf)))
        self.opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        self.opt_d.step()
        losses.update({"g_gan": gan.detach(), "d_real": loss_d.detach()})
        return losses

    def sample(self, n: int) -> torch.Tensor:
        """Rows of quartets: sim image, G(sim), real image, G(real) (the EMA generator; G(real) shows how much of a
        real image it keeps)."""
        k = max(1, n // 4)
        g = self.eval_net("gens").g
        sim = self._sample_sim if self._sample_sim is not None else self.trainer.data["image"][:k]
        sim = sim[:k].to(self.device).float() / 127.5 - 1
        real = self._sample_real[:k].to(self.device).float() / 127.5 - 1
        k = min(len(sim), len(real))
        quartets = torch.stack([sim[:k], g(sim)[:k], real[:k], g(real)[:k]], 1)
        return quartets.flatten(0, 1).float()
