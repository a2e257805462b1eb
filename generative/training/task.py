"""What the :class:`~generative.training.Trainer` trains: the :class:`TrainTask` base class."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

if TYPE_CHECKING:
    from generative.training.trainer import Trainer

__all__ = ["TrainTask"]


class TrainTask:
    """Base class of what the :class:`Trainer` trains. Subclasses implement the methods marked *required*.

    The trainer sets ``self.trainer`` before training; the helpers :meth:`net`, :meth:`eval_net`, :meth:`autocast`
    and :attr:`device` then refer to it (and fall back to plain behaviour without a trainer).
    """

    trainer: Trainer | None = None

    # -- required
    def modules(self) -> dict[str, nn.Module]:
        """*Required.* The networks by name, e.g. ``{"G": self.G, "D": self.D}`` (the same objects on every call)."""
        raise NotImplementedError

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        """*Required.* The optimizers by name (called after the modules were moved to the device)."""
        raise NotImplementedError

    def train_step(self, batch: dict[str, torch.Tensor], step: int) -> dict[str, float | torch.Tensor]:
        """*Required.* One training step on ``batch`` (this rank's share, on the device, images in ``[-1, 1]``):
        zero the gradients, backward, step the optimizers. Returns losses to log, as floats or 0-d tensors (tensors
        avoid a GPU sync every step: the trainer averages them over the logging interval)."""
        raise NotImplementedError

    def sample(self, n: int) -> torch.Tensor:
        """*Required.* ``n`` images in ``[-1, 1]``, (n, C, H, W), for the sample grid. Called under ``no_grad``, with
        every module in eval mode and a fixed seed, on rank 0 only, so use :meth:`eval_net` (the EMA copy where there
        is one), not :meth:`net`."""
        raise NotImplementedError

    # -- optional
    def schedulers(self) -> dict[str, Any]:
        """Learning-rate schedulers by name; the trainer steps each once after every training step."""
        return {}

    def ema_modules(self) -> list[str]:
        """Names of modules to keep an EMA copy of, e.g. ``["G"]``."""
        return []

    def ddp_modules(self) -> list[str]:
        """Names of modules to wrap in DistributedDataParallel: by default every module with trainable parameters."""
        return [k for k, m in self.modules().items() if any(p.requires_grad for p in m.parameters())]

    def ddp_options(self) -> dict[str, Any]:
        """Extra keyword arguments for ``DistributedDataParallel`` (e.g. ``{"broadcast_buffers": False}``)."""
        return {}

    def compile_modules(self) -> list[str]:
        """Names of modules that ``TrainConfig.compile`` compiles: by default every module."""
        return list(self.modules())

    def config(self) -> dict[str, Any]:
        """The task's own settings (JSON-serialisable), written to ``config.json`` and the checkpoint."""
        return {}

    def extra_state(self) -> dict[str, Any]:
        """State to checkpoint beside the networks (e.g. an image pool): tensors, numbers, strings, lists, dicts."""
        return {}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`extra_state` returned."""

    # -- helpers
    def net(self, name: str) -> nn.Module:
        """The module to train with: DDP-wrapped in a distributed run, else the module itself."""
        if self.trainer is not None and name in self.trainer.wrapped:
            return self.trainer.wrapped[name]
        return self.modules()[name]

    def eval_net(self, name: str) -> nn.Module:
        """The module to sample / evaluate with: its EMA copy if there is one, else the (unwrapped) module."""
        if self.trainer is not None and name in self.trainer.ema:
            return self.trainer.ema[name].module
        return self.modules()[name]

    def autocast(self) -> contextlib.AbstractContextManager:
        """The trainer's mixed-precision context (bf16 autocast on CUDA), a no-op without a trainer."""
        return self.trainer.autocast() if self.trainer is not None else contextlib.nullcontext()

    @property
    def device(self) -> torch.device:
        return self.trainer.device if self.trainer is not None else torch.device("cpu")
