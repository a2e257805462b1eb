"""The :class:`Trainer`: devices, batches, seeding, EMA, autocast, DDP, logs, sample grids and checkpoints."""

from __future__ import annotations

import contextlib
import io
import json
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from generative.training.checkpoint import (
    _FORMAT,
    _VERSION,
    CHECKPOINT,
    _CsvLog,
    _rng_state,
    _set_rng_state,
    load_checkpoint,
    slim_checkpoint,
    snapshot_dir,
)
from generative.training.config import DATA_ON_DEVICE_LIMIT, EMA, TrainConfig
from generative.training.task import TrainTask
from generative.training.util import (
    _dist_on,
    _seed_everything,
    derive_seed,
    make_grid,
    pick_device,
    to_device,
    to_model_range,
)
from robot_env.io.atomic import atomic_write_bytes, make_dirs
from robot_env.io.errors import ConfigError, DataError

__all__ = ["Trainer"]

_DEBUG_BACKENDS = ("eager", "aot_eager")  # torch.compile backends that trace but generate no code (tests, debugging)


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
            raise ConfigError(f"batch_size {cfg.batch_size} is not divisible by the {self.world_size} processes")
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
        device = pick_device(name)
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
            atomic_write_bytes(self.checkpoint_path, buf.getvalue(), durable=True)
        self._barrier()

    def save_snapshot(self, step: int) -> Path:
        """Write the sampling weights (the EMA copies of the task's ``ema_modules``, or every module without EMA) at
        ``step`` to ``out/snapshots/step-NNNNNN/`` (``checkpoint.pt``, slim, in float32, and ``config.json``); returns
        the folder."""
        names = [k for k in self.task.ema_modules() if k in self.ema] or list(self.modules)
        states = {k: (self.ema[k] if k in self.ema else self.modules[k]).state_dict() for k in names}
        full = {"format": _FORMAT, "version": _VERSION, "step": step, "task_config": self.task.config(),
                "extra": self.task.extra_state()}
        buf = io.BytesIO()
        torch.save(slim_checkpoint(full, states), buf)
        folder = snapshot_dir(self.cfg.out, step)
        make_dirs(folder)
        atomic_write_bytes(folder / CHECKPOINT, buf.getvalue(), durable=True)
        if (self.cfg.out / "config.json").is_file():
            atomic_write_bytes(folder / "config.json", (self.cfg.out / "config.json").read_bytes())
        return folder

    def load_checkpoint(self, path: Path | None = None) -> int:
        """Restore the state saved in ``path`` (default ``out/checkpoint.pt``); returns its step. A ValueError naming
        the file if it is corrupt or does not fit this task and configuration."""
        path = Path(path or self.checkpoint_path)
        ckpt = load_checkpoint(path, map_location=self.device)
        if ckpt.get("exported"):
            raise ConfigError(f"{path} holds exported inference weights (no optimizer or discriminator state), which "
                              "sample but cannot be trained on; train into another output folder")
        saved = ckpt.get("config", {})
        for key in ("seed", "batch_size"):
            if saved.get(key) != getattr(self.cfg, key):
                raise ConfigError(f"checkpoint {path} was written with {key}={saved.get(key)!r}, not "
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
            raise DataError(f"checkpoint {path} does not match this task ({exc.__class__.__name__}: "
                             f"{str(exc).splitlines()[0] if str(exc) else ''})") from exc
        return step

    # -- outputs
    def _write_config(self) -> None:
        cfg = {"train": self.cfg.to_dict(), "task": self.task.config(),
               "task_class": f"{type(self.task).__module__}.{type(self.task).__qualname__}",
               "world_size": self.world_size, "device": str(self.device), "amp_bf16": self.amp,
               "channels_last": self.channels_last}
        atomic_write_bytes(self.cfg.out / "config.json", (json.dumps(cfg, indent=2, default=str) + "\n").encode(),
                           durable=True)

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
        make_dirs(path.parent)
        import cv2

        ok, png = cv2.imencode(".png", np.ascontiguousarray(grid[:, :, ::-1]))  # RGB -> BGR
        if not ok:
            raise RuntimeError(f"OpenCV could not encode the sample grid for {path}")
        atomic_write_bytes(path, png.tobytes(), durable=True)
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
            make_dirs(cfg.out)
            for stale in cfg.out.glob(f".{CHECKPOINT}.*.tmp*"):  # left by a process killed while writing
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
                    if cfg.snapshot_every and done % cfg.snapshot_every == 0 and self.is_main:
                        self.save_snapshot(done)  # before the checkpoint: a resume after a kill writes it again
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
