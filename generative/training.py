"""One training loop for every generative model in armlab (GAN, conditional GAN, CycleGAN, diffusion).

Division of labour
------------------
A model subclasses :class:`TrainTask`. It owns its networks, optimizers, learning-rate schedules and losses and says
what one training step is (:meth:`TrainTask.train_step`) and how to draw images (:meth:`TrainTask.sample`). The
:class:`Trainer` owns everything else: device placement, batches, seeding, EMA copies, bf16 autocast, channels-last,
DistributedDataParallel, logging (tqdm, TensorBoard, ``log.csv``), sample grids and checkpoints with automatic
resume. Data is a dict of equal-length tensors held in memory, e.g. ``{"image": uint8 (N, C, H, W), "class_id":
long (N,), "target": float (N, 2)}``; the trainer hands ``train_step`` a dict with the same keys, where 4-d uint8
tensors (images) arrive as floats in ``[-1, 1]`` (see :func:`to_model_range`) and everything is on the device.

Determinism and resume
----------------------
Everything random is a function of ``(seed, step)``, never of the history of the run:

* the batch of step ``s`` is read from a sequence of epoch permutations (each sample once per epoch), the
  permutation of epoch ``e`` drawn from a generator seeded with ``(seed, e)``;
* at the start of every step the trainer seeds torch's (CPU and CUDA), NumPy's and Python's global RNGs from
  ``(seed, step, rank)``, so the noise, augmentation, dropout or diffusion timesteps drawn inside ``train_step`` are
  too;
* sample grids are drawn with their own fixed seed inside ``torch.random.fork_rng``, without touching the training RNG.

A checkpoint (``out/checkpoint.pt``) holds the state dicts of modules, optimizers, schedulers and EMA copies, the
step, the RNG states, the task's :meth:`TrainTask.extra_state` and the configuration. It is written atomically
(temporary file in the same folder, fsync, ``os.replace``), and read only with ``torch.load(weights_only=True)``, so
it contains tensors and plain Python values only. ``Trainer.fit()`` resumes automatically from an existing
checkpoint, so a run killed at any moment and started again with the same command reproduces the uninterrupted run
exactly on CPU (on GPU up to the non-determinism of some CUDA kernels); a finished run started again with a larger
``steps`` continues where it stopped.

Distributed training
--------------------
Started by ``torchrun`` (``WORLD_SIZE > 1`` in the environment), the trainer joins the process group (NCCL on CUDA,
Gloo on CPU), uses ``cuda:LOCAL_RANK``, wraps the task's :meth:`TrainTask.ddp_modules` in
``DistributedDataParallel`` and gives each rank its own slice of every global batch: ``batch_size`` is the global
batch size and must be divisible by the number of processes. Per-step seeds include the rank, so ranks draw different
noise. Only rank 0 writes checkpoints, logs, samples and ``config.json``; ranks meet at barriers around checkpoint
writes. Logged losses are averaged over ranks.

Inside ``train_step`` a task calls its networks through :meth:`TrainTask.net` (the DDP-wrapped module, whose
backward pass averages gradients over ranks) and mixed precision through :meth:`TrainTask.autocast`. Networks whose
gradients are not wanted in a step (the discriminator in a generator step) should be called unwrapped, e.g.
``self.D(fake)``: DDP expects a gradient for every parameter of a wrapped module used in a forward pass.
:meth:`TrainTask.sample` must use :meth:`TrainTask.eval_net` (the EMA copy, or the unwrapped module), because only
rank 0 samples.
"""

from __future__ import annotations

import contextlib
import copy
import csv
import dataclasses
import hashlib
import io
import json
import math
import os
import random
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

__all__ = [
    "EMA",
    "TrainConfig",
    "TrainTask",
    "Trainer",
    "derive_seed",
    "is_main_process",
    "load_checkpoint",
    "make_grid",
    "to_device",
    "to_model_range",
]

CHECKPOINT = "checkpoint.pt"
COMPILE_MODES = ("off", "default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs", "eager",
                 "aot_eager")
_DEBUG_BACKENDS = ("eager", "aot_eager")  # torch.compile backends that trace but generate no code (tests, debugging)
DATA_ON_DEVICE_LIMIT = 4 << 30  #: bytes of training data that ``data_on_device="auto"`` keeps on a CUDA device
_FORMAT = "armlab-train-checkpoint"
_VERSION = 1


# ----------------------------------------------------------------------------------------------------------- helpers
def to_model_range(images: torch.Tensor) -> torch.Tensor:
    """uint8 images (0..255) -> float32 in ``[-1, 1]``: ``x / 127.5 - 1``, on the tensor's device."""
    if images.dtype != torch.uint8:
        raise ValueError(f"to_model_range expects uint8 images, got {images.dtype}")
    return images.float().div_(127.5).sub_(1.0)


def to_device(t: torch.Tensor, device: torch.device | str) -> torch.Tensor:
    """``t`` on ``device``. A CPU tensor bound for a CUDA device goes through pinned memory without blocking the host:
    a plain copy from pageable memory first waits for every kernel queued on the GPU, a host-device sync that keeps
    the host from queueing the next step while the GPU works on this one."""
    device = torch.device(device)
    if device.type == "cuda" and t.device.type == "cpu":
        return t.pin_memory().to(device, non_blocking=True)
    return t.to(device)


def make_grid(images: torch.Tensor, nrow: int | None = None, padding: int = 2, pad_value: int = 0) -> np.ndarray:
    """Tile images in ``[-1, 1]`` (N, C, H, W; C = 1 or 3) into one uint8 RGB array (H', W', 3).

    ``nrow`` images per row (default ``ceil(sqrt(N))``), ``padding`` pixels of ``pad_value`` between and around them.
    Values outside ``[-1, 1]`` are clipped.
    """
    if images.ndim != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"make_grid expects (N, 1 or 3, H, W) images, got shape {tuple(images.shape)}")
    x = images.detach().float().cpu()
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    n, _, h, w = x.shape
    nrow = max(1, min(nrow or math.ceil(math.sqrt(n)), n))
    rows = math.ceil(n / nrow)
    grid = np.full((rows * (h + padding) + padding, nrow * (w + padding) + padding, 3), pad_value, np.uint8)
    pixels = ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    for i in range(n):
        r, c = divmod(i, nrow)
        y0, x0 = padding + r * (h + padding), padding + c * (w + padding)
        grid[y0 : y0 + h, x0 : x0 + w] = pixels[i]
    return grid


def derive_seed(*parts: object) -> int:
    """A 63-bit seed derived from ``parts`` (e.g. ``(seed, "step", step, rank)``) by hashing: stable across runs,
    processes and platforms, and without the collisions of arithmetic like ``seed * 1000 + step``."""
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & ((1 << 63) - 1)


def _seed_everything(seed: int) -> None:
    torch.manual_seed(seed)  # CPU and every CUDA device
    np.random.seed(seed % 2**32)
    random.seed(seed)


def _dist_on() -> bool:
    return dist.is_available() and dist.is_initialized()


def is_main_process() -> bool:
    """True on rank 0 of a distributed run, or when not distributed (``RANK`` unset or 0)."""
    if _dist_on():
        return dist.get_rank() == 0
    return int(os.environ.get("RANK", "0")) == 0


def _atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically: temporary file in the same folder, fsync, ``os.replace``."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    with contextlib.suppress(OSError):  # make the rename itself durable (POSIX)
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _rng_state() -> dict[str, Any]:
    """The global RNG states as tensors and plain Python values (loadable with ``weights_only=True``)."""
    np_state, py_state = np.random.get_state(), random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {"keys": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                  "has_gauss": int(np_state[3]), "cached_gaussian": float(np_state[4])},
        "python": [py_state[0], list(py_state[1]), py_state[2]],
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"].cpu())
    npy = state["numpy"]
    np.random.set_state(("MT19937", npy["keys"].cpu().numpy().astype(np.uint32), npy["pos"], npy["has_gauss"],
                         npy["cached_gaussian"]))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])


# ------------------------------------------------------------------------------------------------------- config, EMA
@dataclass
class TrainConfig:
    """How to train (the task owns what: model sizes, learning rates, losses).

    ``batch_size`` is the global batch, split over the processes of a distributed run. ``ema_decay`` 0 disables the
    EMA copies; the decay used after step ``s`` ramps up as ``min(ema_decay, (1 + s) / (10 + s))`` so that short runs'
    averages are not dominated by the initial weights. ``amp``: ``"auto"`` (bf16 autocast on CUDA only), ``"bf16"``
    (always) or ``"off"``. ``channels_last``: ``"auto"`` (on CUDA only), ``"on"`` or ``"off"``. ``n_samples`` images
    per sample grid. ``time_limit_s``: stop after the first step that ends this many seconds after ``fit()`` began
    (checked at every ``log_every`` steps in a distributed run, where the ranks agree), checkpoint there and return;
    the same call again continues the run (a wall-clock budget for a job queue or a lent GPU).

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
            raise ValueError(f"compile must be one of {', '.join(COMPILE_MODES)}, got {self.compile!r}")
        if self.data_on_device not in ("auto", "on", "off"):
            raise ValueError(f"data_on_device must be 'auto', 'on' or 'off', got {self.data_on_device!r}")
        if self.time_limit_s is not None and not self.time_limit_s > 0:
            raise ValueError(f"time_limit_s must be > 0 seconds, got {self.time_limit_s}")
        if self.steps < 0 or self.batch_size < 1:
            raise ValueError(f"steps must be >= 0 and batch_size >= 1, got {self.steps} and {self.batch_size}")
        if min(self.log_every, self.sample_every, self.checkpoint_every) < 1:
            raise ValueError("log_every, sample_every and checkpoint_every must be >= 1")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"ema_decay must be in [0, 1), got {self.ema_decay}")
        if self.amp not in ("auto", "bf16", "off"):
            raise ValueError(f"amp must be 'auto', 'bf16' or 'off', got {self.amp!r}")
        if self.channels_last not in ("auto", "on", "off"):
            raise ValueError(f"channels_last must be 'auto', 'on' or 'off', got {self.channels_last!r}")

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


# ------------------------------------------------------------------------------------------------------------- task
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


# ------------------------------------------------------------------------------------------------------ checkpoints
def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a training checkpoint with ``torch.load(weights_only=True)``; a ValueError naming the file if it is not
    one (unreadable, truncated, or some other kind of file)."""
    path = Path(path)
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:
        name = exc.__class__.__name__
        raise ValueError(f"checkpoint {path} is corrupt or not loadable with weights_only=True ({name})") from exc
    if not isinstance(ckpt, dict) or ckpt.get("format") != _FORMAT:
        raise ValueError(f"checkpoint {path} is not an armlab training checkpoint")
    if ckpt.get("version") != _VERSION:
        raise ValueError(f"checkpoint {path} has format version {ckpt.get('version')}, this code reads {_VERSION}")
    return ckpt


class _CsvLog:
    """``log.csv``: one row per logging step, flushed after each; the header widens when new columns appear.

    On resume, rows after the checkpoint's step (logged by the killed run after its last checkpoint, and about to be
    logged again) are dropped.
    """

    def __init__(self, path: Path, resume_step: int):
        self.path = path
        self.fields: list[str] = []
        self.rows: list[dict[str, str]] = []
        if path.exists():
            with open(path, newline="") as f:
                reader = csv.DictReader(f)
                self.fields = list(reader.fieldnames or [])
                all_rows = list(reader)
            self.rows = [r for r in all_rows if r.get("step", "").isdigit() and int(r["step"]) <= resume_step]
            if len(self.rows) != len(all_rows):
                self._rewrite()

    def _rewrite(self) -> None:
        buf = io.StringIO()
        writer = csv.DictWriter(buf, self.fields, restval="")
        writer.writeheader()
        writer.writerows(self.rows)
        _atomic_write(self.path, buf.getvalue().encode())

    def write(self, row: dict[str, Any]) -> None:
        row = {k: (f"{v:.6g}" if isinstance(v, float) else str(v)) for k, v in row.items()}
        self.rows.append(row)
        new = [k for k in row if k not in self.fields]
        if new or not self.path.exists():
            self.fields += new
            self._rewrite()
            return
        with open(self.path, "a", newline="") as f:
            csv.DictWriter(f, self.fields, restval="").writerow(row)
            f.flush()


# ---------------------------------------------------------------------------------------------------------- trainer
class Trainer:
    """Trains a :class:`TrainTask` on in-memory ``data`` as configured by ``cfg``; see the module docstring.

    Attributes the task may read: ``device``, ``rank``, ``world_size``, ``step`` (the 0-based step being run),
    ``ema`` (name -> :class:`EMA`), ``wrapped`` (name -> DDP module, during :meth:`fit` of a distributed run),
    ``amp`` and ``channels_last`` (bools).
    """

    def __init__(self, task: TrainTask, data: dict[str, torch.Tensor], cfg: TrainConfig):
        self.task, self.cfg = task, cfg
        self.world_size = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0")) if self.world_size > 1 else 0
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0")) if self.world_size > 1 else 0
        self.device = self._pick_device(cfg.device)
        if cfg.batch_size % self.world_size:
            raise ValueError(f"batch_size {cfg.batch_size} is not divisible by the {self.world_size} processes")
        self.local_batch = cfg.batch_size // self.world_size
        cuda = self.device.type == "cuda"
        self.amp = cfg.amp == "bf16" or (cfg.amp == "auto" and cuda)
        self.channels_last = cfg.channels_last == "on" or (cfg.channels_last == "auto" and cuda)
        self.data = self._check_data(data)
        self.n = len(next(iter(self.data.values())))
        if cuda and (cfg.data_on_device == "on" or (cfg.data_on_device == "auto" and sum(
                v.numel() * v.element_size() for v in self.data.values()) <= DATA_ON_DEVICE_LIMIT)):
            self.data = {k: v.to(self.device) for k, v in self.data.items()}
        self.data_on_device = all(v.device == self.device for v in self.data.values())
        self._perm_cache: dict[int, torch.Tensor] = {}

        task.trainer = self
        self.modules = dict(task.modules())
        for m in self.modules.values():
            m.to(self.device)
            if self.channels_last:
                m.to(memory_format=torch.channels_last)
        self.optimizers = dict(task.optimizers())
        self.schedulers = dict(task.schedulers())
        unknown = [k for k in list(task.ema_modules()) + list(task.ddp_modules()) if k not in self.modules]
        if unknown:
            raise ValueError(f"ema_modules or ddp_modules name unknown modules {unknown}, not in {list(self.modules)}")
        self.ema = {k: EMA(self.modules[k]) for k in task.ema_modules()} if cfg.ema_decay > 0 else {}
        if cfg.compile != "off":  # in place, after the EMA copies: state dicts keep their keys
            unknown = [k for k in task.compile_modules() if k not in self.modules]
            if unknown:
                raise ValueError(f"compile_modules names unknown modules {unknown}, not in {list(self.modules)}")
            kw = {"backend": cfg.compile} if cfg.compile in _DEBUG_BACKENDS else {"mode": cfg.compile}
            for k in task.compile_modules():
                self.modules[k].compile(dynamic=False, **kw)
        self.wrapped: dict[str, nn.Module] = {}
        self.step = 0

    # -- setup
    def _pick_device(self, name: str) -> torch.device:
        if name == "auto":
            name = "cuda" if torch.cuda.is_available() else "cpu"
        device = torch.device(name)
        if device.type == "cuda":
            if self.world_size > 1:
                device = torch.device("cuda", self.local_rank)
            torch.cuda.set_device(device.index if device.index is not None else 0)
            # fixed batch shapes: let cuDNN time its conv algorithms once; TF32 for the float32 work left by autocast
            torch.backends.cudnn.benchmark = True
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
        return device

    @staticmethod
    def _check_data(data: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        if not data or not all(isinstance(v, torch.Tensor) for v in data.values()):
            raise ValueError("data must be a non-empty dict of tensors")
        lengths = {k: len(v) for k, v in data.items()}
        if len(set(lengths.values())) != 1 or min(lengths.values()) == 0:
            raise ValueError(f"data tensors must have the same, non-zero length, got {lengths}")
        return dict(data)

    def autocast(self) -> contextlib.AbstractContextManager:
        """bf16 autocast when ``amp`` is on, else a no-op."""
        if self.amp:
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def _barrier(self) -> None:
        if _dist_on():
            if self.device.type == "cuda":
                dist.barrier(device_ids=[self.device.index])
            else:
                dist.barrier()

    # -- data
    def _epoch_perm(self, epoch: int) -> torch.Tensor:
        if epoch not in self._perm_cache:
            if len(self._perm_cache) > 4:
                self._perm_cache.clear()
            g = torch.Generator().manual_seed(derive_seed(self.cfg.seed, "epoch", epoch))
            self._perm_cache[epoch] = torch.randperm(self.n, generator=g)
        return self._perm_cache[epoch]

    def batch_indices(self, step: int) -> torch.Tensor:
        """Indices of the global batch of ``step``: positions ``step * B ... (step + 1) * B - 1`` of the endless
        sequence of epoch permutations (each a function of ``(seed, epoch)``)."""
        b = self.cfg.batch_size
        pos = torch.arange(step * b, (step + 1) * b)
        epochs, offsets = pos // self.n, pos % self.n
        out = torch.empty(b, dtype=torch.long)
        for e in epochs.unique().tolist():
            sel = epochs == e
            out[sel] = self._epoch_perm(e)[offsets[sel]]
        return out

    def batch(self, step: int) -> dict[str, torch.Tensor]:
        """This rank's share of the batch of ``step``, on the device; 4-d uint8 tensors become floats in [-1, 1]."""
        idx = self.batch_indices(step)[self.rank * self.local_batch : (self.rank + 1) * self.local_batch]
        out = {}
        on_device = {}
        for k, v in self.data.items():
            if v.device not in on_device:
                on_device[v.device] = to_device(idx, v.device)
            t = to_device(v[on_device[v.device]], self.device)
            if t.dtype == torch.uint8 and t.ndim == 4:
                t = to_model_range(t)
                if self.channels_last:
                    t = t.contiguous(memory_format=torch.channels_last)
            out[k] = t
        return out

    # -- checkpoints
    @property
    def checkpoint_path(self) -> Path:
        return self.cfg.out / CHECKPOINT

    def state_dict(self, step: int) -> dict[str, Any]:
        """Everything a resume needs, as tensors and plain Python values."""
        return {
            "format": _FORMAT,
            "version": _VERSION,
            "step": step,
            "modules": {k: m.state_dict() for k, m in self.modules.items()},
            "optimizers": {k: o.state_dict() for k, o in self.optimizers.items()},
            "schedulers": {k: s.state_dict() for k, s in self.schedulers.items()},
            "ema": {k: e.state_dict() for k, e in self.ema.items()},
            "rng": _rng_state(),
            "extra": self.task.extra_state(),
            "config": self.cfg.to_dict(),
            "task_config": self.task.config(),
            "world_size": self.world_size,
        }

    def save_checkpoint(self, step: int) -> None:
        """Rank 0 writes ``out/checkpoint.pt`` atomically; all ranks wait for it."""
        self._barrier()
        if self.is_main:
            buf = io.BytesIO()
            torch.save(self.state_dict(step), buf)
            _atomic_write(self.checkpoint_path, buf.getvalue())
        self._barrier()

    def load_checkpoint(self, path: Path | None = None) -> int:
        """Restore the state saved in ``path`` (default ``out/checkpoint.pt``); returns its step. A ValueError naming
        the file if it is corrupt or does not fit this task and configuration."""
        path = Path(path or self.checkpoint_path)
        ckpt = load_checkpoint(path, map_location=self.device)
        saved = ckpt.get("config", {})
        for key in ("seed", "batch_size"):
            if saved.get(key) != getattr(self.cfg, key):
                raise ValueError(f"checkpoint {path} was written with {key}={saved.get(key)!r}, not "
                                 f"{getattr(self.cfg, key)!r}; use another output folder to train with new settings")
        try:
            for group, objs in (("modules", self.modules), ("optimizers", self.optimizers),
                                ("schedulers", self.schedulers), ("ema", self.ema)):
                if set(ckpt[group]) != set(objs):
                    raise KeyError(f"{group} {sorted(ckpt[group])} instead of {sorted(objs)}")
                for k, obj in objs.items():
                    obj.load_state_dict(ckpt[group][k])
            self.task.load_extra_state(ckpt["extra"])
            _set_rng_state(ckpt["rng"])
            step = int(ckpt["step"])
        except (KeyError, RuntimeError, ValueError, TypeError, IndexError) as exc:
            raise ValueError(f"checkpoint {path} does not match this task ({exc.__class__.__name__}: "
                             f"{str(exc).splitlines()[0] if str(exc) else ''})") from exc
        return step

    # -- outputs
    def _write_config(self) -> None:
        cfg = {"train": self.cfg.to_dict(), "task": self.task.config(),
               "task_class": f"{type(self.task).__module__}.{type(self.task).__qualname__}",
               "world_size": self.world_size, "device": str(self.device), "amp_bf16": self.amp,
               "channels_last": self.channels_last}
        _atomic_write(self.cfg.out / "config.json", (json.dumps(cfg, indent=2, default=str) + "\n").encode())

    def write_samples(self, step: int, writer: Any = None) -> Path:
        """Rank 0: draw ``n_samples`` images (fixed seed, training RNG untouched) and write
        ``out/samples/step_NNNNNN.png``."""
        devices = [self.device.index or 0] if self.device.type == "cuda" else []
        modes = {m: m.training for net in self.modules.values() for m in net.modules()}
        try:
            for net in self.modules.values():  # eval mode: sampling must not touch batch-norm statistics
                net.eval()
            with torch.random.fork_rng(devices=devices), torch.no_grad():
                torch.manual_seed(derive_seed(self.cfg.seed, "samples"))
                images = self.task.sample(self.cfg.n_samples)
        finally:
            for m, training in modes.items():
                m.training = training
        grid = make_grid(images)
        path = self.cfg.out / "samples" / f"step_{step:06d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        import cv2

        ok, png = cv2.imencode(".png", np.ascontiguousarray(grid[:, :, ::-1]))  # RGB -> BGR
        if not ok:
            raise RuntimeError(f"OpenCV could not encode the sample grid for {path}")
        _atomic_write(path, png.tobytes())
        if writer is not None:
            writer.add_image("samples", grid, step, dataformats="HWC")
        return path

    def _mean_losses(self, sums: dict[str, Any], count: int) -> dict[str, float]:
        if not sums or count == 0:
            return {}
        keys = sorted(sums)
        vals = torch.stack([torch.as_tensor(sums[k], dtype=torch.float64, device=self.device).detach()
                            for k in keys]) / count
        if _dist_on():
            vals = vals.float()
            dist.all_reduce(vals)
            vals = vals / self.world_size
        return dict(zip(keys, vals.cpu().tolist(), strict=True))

    def _broadcast_buffers(self) -> None:
        """Give every rank rank 0's buffers (e.g. batch-norm statistics, which each rank updates from its own share of
        the batch; DDP itself broadcasts them only at the start of each forward pass), so all ranks end identical."""
        if not _dist_on():
            return
        with torch.no_grad():
            for m in [*self.modules.values(), *(e.module for e in self.ema.values())]:
                for b in m.buffers():
                    dist.broadcast(b, 0)

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    @contextlib.contextmanager
    def _distributed(self) -> Iterator[None]:
        own_group = False
        if self.world_size > 1 and not _dist_on():
            dist.init_process_group("nccl" if self.device.type == "cuda" else "gloo")
            own_group = True
        try:
            if self.world_size > 1:
                opts = dict(self.task.ddp_options())
                ids = [self.device.index] if self.device.type == "cuda" else None
                self.wrapped = {k: DistributedDataParallel(self.modules[k], device_ids=ids, **opts)
                                for k in self.task.ddp_modules()}
                for e in self.ema.values():  # DDP gave every rank rank 0's weights: start the averages from them
                    e.reset()
            yield
        finally:
            self.wrapped = {}
            if own_group and _dist_on():
                dist.destroy_process_group()

    # -- the loop
    def fit(self) -> dict[str, Any]:
        """Train from the checkpoint's step (0 without one) to ``cfg.steps``; returns a summary: ``steps`` (reached),
        ``start_step``, ``steps_run``, ``images_per_s`` (global, the first step of this call excluded as warm-up, and
        the samples and checkpoint written after the last step too; None with fewer than two steps),
        ``wall_time_s``, ``losses`` (the last logged means) and ``time_limited`` (True when ``cfg.time_limit_s``
        stopped the run before ``cfg.steps``)."""
        cfg = self.cfg
        t_start = time.perf_counter()
        if self.is_main:
            cfg.out.mkdir(parents=True, exist_ok=True)
            for stale in cfg.out.glob(f".{CHECKPOINT}.tmp-*"):  # left by a process killed while writing
                stale.unlink(missing_ok=True)
        with self._distributed():
            self._barrier()
            start = self.load_checkpoint() if self.checkpoint_path.exists() else 0
            self.step = start
            writer = csv_log = bar = None
            if self.is_main:
                self._write_config()
                csv_log = _CsvLog(cfg.out / "log.csv", start)
                if cfg.tensorboard:
                    from torch.utils.tensorboard import SummaryWriter

                    writer = SummaryWriter(str(cfg.out / "tb"), purge_step=start + 1 if start else None)
                if cfg.progress:
                    from tqdm.auto import tqdm

                    bar = tqdm(total=cfg.steps, initial=start, desc=cfg.out.name, dynamic_ncols=True)
            sums: dict[str, Any] = {}
            count, losses = 0, {}
            t_first = t_log = t_steps_end = None
            step_log = start
            reached, time_limited = max(cfg.steps, start), False
            try:
                for step in range(start, cfg.steps):
                    self.step = step
                    _seed_everything(derive_seed(cfg.seed, "step", step, self.rank))
                    out = self.task.train_step(self.batch(step), step)
                    for sched in self.schedulers.values():
                        sched.step()
                    if self.ema:
                        decay = min(cfg.ema_decay, (1 + step) / (10 + step))  # warm-up: early averages forget init
                        for e in self.ema.values():
                            e.update(decay)
                    for k, v in (out or {}).items():
                        v = v.detach().float() if isinstance(v, torch.Tensor) else float(v)
                        sums[k] = sums[k] + v if k in sums else v
                    count += 1
                    done = step + 1
                    if step == start:
                        self._sync()
                        t_first = t_log = time.perf_counter()
                        step_log = done
                    if bar is not None:
                        bar.update(1)
                    if done % cfg.log_every == 0 or done == cfg.steps:
                        losses = self._mean_losses(sums, count)
                        sums, count = {}, 0
                        self._sync()
                        now = time.perf_counter()
                        ips = (done - step_log) * cfg.batch_size / (now - t_log) if done > step_log else None
                        t_log, step_log = now, done
                        if self.is_main:
                            self._log(done, losses, ips, csv_log, writer, bar)
                    out_of_time = done < cfg.steps and self._out_of_time(t_start, done)
                    if done == cfg.steps or out_of_time:  # the clock of images_per_s stops before the last writes
                        self._sync()
                        t_steps_end = time.perf_counter()
                    if self.is_main and (done % cfg.sample_every == 0 or done == cfg.steps or out_of_time):
                        self.write_samples(done, writer)
                    if cfg.checkpoints and (done % cfg.checkpoint_every == 0 or done == cfg.steps or out_of_time):
                        self.save_checkpoint(done)
                    self.step = done
                    if out_of_time:
                        reached, time_limited = done, True
                        if self.is_main:
                            how = ("checkpointed (the same command continues)" if cfg.checkpoints
                                   else "no checkpoint (checkpoints off)")
                            print(f"{cfg.out.name}: time limit of {cfg.time_limit_s:g} s reached at step {done}; "
                                  f"{how}", file=sys.stderr)
                        break
                self._sync()
                t_end = t_steps_end if t_steps_end is not None else time.perf_counter()
                self._broadcast_buffers()
            finally:
                if bar is not None:
                    bar.close()
                if writer is not None:
                    writer.close()
        steps_run = max(reached - start, 0)
        ips = None
        if steps_run > 1 and t_first is not None and t_end > t_first:
            ips = (steps_run - 1) * cfg.batch_size / (t_end - t_first)
        return {"steps": reached, "start_step": start, "steps_run": steps_run, "images_per_s": ips,
                "wall_time_s": time.perf_counter() - t_start, "losses": losses, "time_limited": time_limited}

    def _out_of_time(self, t_start: float, done: int) -> bool:
        """Whether ``cfg.time_limit_s`` has passed; in a distributed run only at log steps, agreed by all ranks."""
        limit = self.cfg.time_limit_s
        if limit is None:
            return False
        if self.world_size == 1:
            return time.perf_counter() - t_start >= limit
        if done % self.cfg.log_every:
            return False
        flag = torch.tensor([float(time.perf_counter() - t_start >= limit)], device=self.device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return bool(flag.item() > 0)

    def _log(self, step: int, losses: dict[str, float], ips: float | None, csv_log: _CsvLog, writer: Any,
             bar: Any) -> None:
        row: dict[str, Any] = {"step": step, **losses, "images_per_s": ips if ips is not None else ""}
        for k, o in self.optimizers.items():
            row[f"lr/{k}"] = float(o.param_groups[0]["lr"])
        csv_log.write(row)
        if writer is not None:
            for k, v in row.items():
                if k != "step" and isinstance(v, float):
                    writer.add_scalar(k if "/" in k else f"loss/{k}" if k in losses else k, v, step)
            writer.flush()
        if bar is not None:
            bar.set_postfix({k: f"{v:.4g}" for k, v in losses.items()}, refresh=False)
