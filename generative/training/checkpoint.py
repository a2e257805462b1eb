"""Training checkpoints (read with ``weights_only=True``), the global RNG states they keep, and ``log.csv``."""

from __future__ import annotations

import csv
import io
import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from robot_env.io.atomic import atomic_write_bytes
from robot_env.io.errors import DataError

__all__ = ["CHECKPOINT", "SNAPSHOTS", "load_checkpoint", "slim_checkpoint", "snapshot_dir"]

CHECKPOINT = "checkpoint.pt"
SNAPSHOTS = "snapshots"  #: the run folder's sub-folder of ``TrainConfig.snapshot_every``'s snapshots
_FORMAT = "armlab-train-checkpoint"
_VERSION = 1


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


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a training checkpoint with ``torch.load(weights_only=True)``; a ValueError naming the file if it is not
    one (unreadable, truncated, or some other kind of file)."""
    path = Path(path)
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:
        name = exc.__class__.__name__
        raise DataError(f"checkpoint {path} is corrupt or not loadable with weights_only=True ({name})") from exc
    if not isinstance(ckpt, dict) or ckpt.get("format") != _FORMAT:
        raise DataError(f"checkpoint {path} is not an armlab training checkpoint")
    if ckpt.get("version") != _VERSION:
        raise DataError(f"checkpoint {path} has format version {ckpt.get('version')}, this code reads {_VERSION}")
    return ckpt


def slim_checkpoint(ckpt: dict[str, Any], modules: dict[str, dict[str, torch.Tensor]], half: bool = False
                    ) -> dict[str, Any]:
    """Inference weights in checkpoint form: ``ckpt``'s ``format``, ``version``, ``step``, ``task_config`` and
    ``extra`` with the state dicts ``modules`` (float tensors in float16 with ``half``), no EMA, optimizer, scheduler
    or RNG state, marked ``exported`` (the run loaders read it; a trainer refuses to resume from it)."""
    def cast(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {k: v.half() if half and v.is_floating_point() else v for k, v in state.items()}

    slim = {key: ckpt[key] for key in ("format", "version", "step", "task_config", "extra") if key in ckpt}
    slim.update(modules={k: cast(v) for k, v in modules.items()}, ema={}, exported=True)
    return slim


def snapshot_dir(out: str | os.PathLike, step: int) -> Path:
    """The folder of the run ``out``'s snapshot at ``step``: ``out/snapshots/step-NNNNNN``."""
    return Path(out) / SNAPSHOTS / f"step-{int(step):06d}"


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
        atomic_write_bytes(self.path, buf.getvalue().encode(), durable=True)

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
