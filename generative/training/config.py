"""How to train: :class:`TrainConfig` (the trainer's options, shared by every model) and :class:`EMA`."""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from robot_env.io.errors import ConfigError

__all__ = ["COMPILE_MODES", "DATA_ON_DEVICE_LIMIT", "EMA", "TrainConfig"]

COMPILE_MODES = ("off", "default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs", "eager",
                 "aot_eager")
_DEBUG_BACKENDS = ("eager", "aot_eager")  # torch.compile backends that trace but generate no code (tests, debugging)
DATA_ON_DEVICE_LIMIT = 4 << 30  #: bytes of training data that ``data_on_device="auto"`` keeps on a CUDA device


@dataclass
class TrainConfig:
    """How to train (the task owns what: model sizes, learning rates, losses).

    ``batch_size`` is the global batch, split over the processes of a distributed run. ``ema_decay`` 0 disables the
    EMA copies; the decay used after step ``s`` ramps up as ``min(ema_decay, (1 + s) / (10 + s))`` so that short runs'
    averages are not dominated by the initial weights. ``amp``: ``"auto"`` (bf16 autocast on CUDA only), ``"bf16"``
    (always) or ``"off"``. ``channels_last``: ``"auto"`` (on CUDA only), ``"on"`` or ``"off"``. ``n_samples`` images
    per sample grid. ``time_limit_s``: stop after the first step that ends this many seconds after ``fit()`` began
    (checked at every ``log_every`` steps in a distributed run, where the ranks agree), checkpoint there and return;
    the same call again continues the run (a wall-clock budget for a job queue or a lent GPU). ``snapshot_every``
    N > 0 also writes the sampling weights (each :meth:`TrainTask.ema_modules` module's EMA copy, or every module
    without EMA) every N steps to ``out/snapshots/step-NNNNNN/`` (:func:`~generative.training.snapshot_dir`), a
    folder the run loaders read like the run (``config.json`` and a slim ``checkpoint.pt``; not resumable): the
    model at each step, for the step of the best metric; 0 (default): none.

    Speed options, none of which changes what is computed:

    * ``compile``: ``"off"`` (default), or a ``torch.compile`` mode (``"default"``, ``"reduce-overhead"`` (CUDA
      graphs), ``"max-autotune"``, ``"max-autotune-no-cudagraphs"``) applied in place (``nn.Module.compile``,
      static shapes) to the task's :meth:`TrainTask.compile_modules` after the EMA copies are made, so state dicts
      and checkpoints are unchanged; ``"eager"`` / ``"aot_eager"`` trace with torch.compile's debugging backends
      (no generated code). ``True`` means ``"default"``, ``False`` ``"off"``. Compiling costs tens of seconds up
      front and pays on a GPU, where it fuses the element-wise work between convolutions; results match the
      uncompiled run up to the order of floating-point operations.
    * ``data_on_device``: ``"auto"`` (default) keeps the training data on a CUDA device when it is under
      ``DATA_ON_DEVICE_LIMIT`` bytes (batches are then gathered there, with no host-to-device copy per step);
      ``"on"`` always, ``"off"`` never. No effect on the CPU.
    * ``checkpoints``: False writes no checkpoint at all, not even at the end (throughput measurements of large
      models, whose checkpoint would take longer to write than the measurement; such a run cannot be resumed).
    """

    out: Path
    steps: int
    batch_size: int
    seed: int = 0
    device: str = "auto"
    log_every: int = 50
    sample_every: int = 500
    checkpoint_every: int = 500
    snapshot_every: int = 0
    ema_decay: float = 0.999
    amp: str = "auto"
    channels_last: str = "auto"
    progress: bool = True
    tensorboard: bool = True
    n_samples: int = 64
    time_limit_s: float | None = None
    compile: str | bool = "off"
    data_on_device: str = "auto"
    checkpoints: bool = True

    def __post_init__(self) -> None:
        self.out = Path(self.out)
        if isinstance(self.compile, bool):
            self.compile = "default" if self.compile else "off"
        if self.compile not in COMPILE_MODES:
            raise ConfigError(f"compile must be one of {', '.join(COMPILE_MODES)}, got {self.compile!r}")
        if self.data_on_device not in ("auto", "on", "off"):
            raise ConfigError(f"data_on_device must be 'auto', 'on' or 'off', got {self.data_on_device!r}")
        if self.time_limit_s is not None and not self.time_limit_s > 0:
            raise ConfigError(f"time_limit_s must be > 0 seconds, got {self.time_limit_s}")
        if self.steps < 0 or self.batch_size < 1:
            raise ConfigError(f"steps must be >= 0 and batch_size >= 1, got {self.steps} and {self.batch_size}")
        if min(self.log_every, self.sample_every, self.checkpoint_every) < 1:
            raise ConfigError("log_every, sample_every and checkpoint_every must be >= 1")
        if self.snapshot_every < 0:
            raise ConfigError(f"snapshot_every must be >= 0 (0: no snapshots), got {self.snapshot_every}")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ConfigError(f"ema_decay must be in [0, 1), got {self.ema_decay}")
        if self.amp not in ("auto", "bf16", "off"):
            raise ConfigError(f"amp must be 'auto', 'bf16' or 'off', got {self.amp!r}")
        if self.channels_last not in ("auto", "on", "off"):
            raise ConfigError(f"channels_last must be 'auto', 'on' or 'off', got {self.channels_last!r}")

    def to_dict(self) -> dict[str, Any]:
        """Plain, JSON-serialisable values (``out`` as a string)."""
        d = dataclasses.asdict(self)
        d["out"] = str(self.out)
        return d


class EMA:
    """An exponential moving average of a module: a frozen shadow copy (eval mode, no gradients).

    ``update(decay)`` sets every floating-point parameter ``p_ema <- decay * p_ema + (1 - decay) * p`` and copies the
    buffers (batch-norm statistics, spectral-norm vectors). ``module`` is the shadow copy to sample from.
    """

    def __init__(self, module: nn.Module):
        self.source = module
        self.module = copy.deepcopy(module).eval().requires_grad_(False)
        self._pairs = [
            (e, p) for e, p in zip(self.module.parameters(), module.parameters(), strict=True) if e.is_floating_point()
        ]
        self._buffers = list(zip(self.module.buffers(), module.buffers(), strict=True))

    @torch.no_grad()
    def update(self, decay: float) -> None:
        if self._pairs:
            ema, src = zip(*self._pairs, strict=True)
            torch._foreach_lerp_(list(ema), [p.detach() for p in src], 1.0 - decay)
        for e, b in self._buffers:
            e.copy_(b)

    @torch.no_grad()
    def reset(self) -> None:
        """Copy the source module's current parameters and buffers."""
        self.update(0.0)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.module.state_dict()

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.module.load_state_dict(state)
