"""The run folder of a trained generative model, handled in one place for the GAN, diffusion and CycleGAN runs.

A run folder holds ``config.json``, ``checkpoint.pt`` (see :mod:`generative.training`), ``log.csv``, ``tb/``,
``samples/`` and, for the GAN and diffusion models, ``summary.json``: the trainer's summary of the last call with a
``history`` of every call (:func:`write_summary`). :func:`load_run` opens a run (a ValueError in one sentence for a
missing or foreign run), :func:`saved_task_config` and :func:`check_resume` check that a run being resumed was
trained with the same model settings and data, and :func:`pick_device` (kept in :mod:`generative.training.util`)
resolves ``"auto"``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import torch

from generative.training import CHECKPOINT, load_checkpoint, slim_checkpoint
from generative.training.util import pick_device
from robot_env.io.atomic import atomic_write_bytes
from robot_env.io.errors import ConfigError, DataError, MissingPathError, PathError

__all__ = ["SUMMARY", "WEIGHTS_NOTE", "check_resume", "export_weights", "load_run", "pick_device", "read_summary",
           "saved_task_config", "write_summary"]

SUMMARY = "summary.json"
HISTORY_KEYS = ("start_step", "steps", "steps_run", "images_per_s", "wall_time_s")  #: per call, in ``history``

C = TypeVar("C")


def read_summary(run_dir: str | Path) -> dict[str, Any] | None:
    """The run's ``summary.json``, or None when it has none (or it cannot be read)."""
    try:
        return json.loads((Path(run_dir) / SUMMARY).read_text())
    except (OSError, ValueError):
        return None


def write_summary(out: str | Path, summary: dict[str, Any]) -> dict[str, Any]:
    """Add this call to the ``history`` of the run's earlier summary, write ``out/summary.json`` atomically and
    return the summary."""
    old = read_summary(out)
    history = list(old.get("history", [])) if old else []
    history.append({k: summary.get(k) for k in HISTORY_KEYS})
    summary["history"] = history
    atomic_write_bytes(Path(out) / SUMMARY, (json.dumps(summary, indent=2, default=str) + "\n").encode())
    return summary


def load_run(run_dir: str | Path, device: str | torch.device, read_config: Callable[[dict[str, Any]], C],
             what: str, task_class: str | None = None) -> tuple[C, dict[str, Any]]:
    """The model settings and the checkpoint of the run in ``run_dir``.

    ``read_config(ckpt)`` rebuilds the settings from the checkpoint (a TypeError, ValueError or KeyError when it is
    not a ``what`` checkpoint); ``task_class``: the task's class name that the run's ``config.json`` must end with,
    when it names one. A ValueError in one sentence for a missing folder, one without a checkpoint, or a corrupt or
    foreign checkpoint."""
    run = Path(run_dir)
    if not run.exists():
        raise MissingPathError(f"run folder {str(run)!r} does not exist")
    if not run.is_dir():
        raise PathError(f"{str(run)!r} is not a run folder")
    path = run / CHECKPOINT
    if not path.is_file():
        raise MissingPathError(f"run folder {str(run)!r} holds no checkpoint ({CHECKPOINT}): train it first")
    ckpt = load_checkpoint(path, map_location=device)
    cfg_path = run / "config.json"
    if task_class is not None and cfg_path.is_file():
        try:
            saved = json.loads(cfg_path.read_text())
        except (OSError, ValueError):
            saved = {}
        if saved.get("task_class") and not str(saved["task_class"]).endswith(f".{task_class}"):
            raise ConfigError(f"run folder {str(run)!r} holds a {saved['task_class']} run, not a {what}")
    try:
        cfg = read_config(ckpt)
    except (TypeError, ValueError, KeyError) as exc:
        raise DataError(f"checkpoint {path} is not a {what} checkpoint ({exc})") from exc
    return cfg, ckpt


def saved_task_config(out: str | Path) -> dict[str, Any] | None:
    """The task configuration in ``out``'s checkpoint ({} if it has none), or None without a checkpoint."""
    path = Path(out) / CHECKPOINT
    if not path.is_file():
        return None
    saved = load_checkpoint(path).get("task_config")
    return saved if isinstance(saved, dict) else {}


def check_resume(out: str | Path, mine: dict[str, Any], theirs: dict[str, Any], data: dict[str, Any],
                 old_data: dict[str, Any]) -> None:
    """A run resumed in ``out`` must keep its model settings (``mine``, the new ``model_dict()``, against
    ``theirs``, the checkpoint's) and its data (``data`` / ``old_data``: the manifest's SHA-256 and the frame
    ``limit``, compared when both runs know the manifest); a ValueError naming the first difference otherwise."""
    diff = [k for k in mine if mine[k] != theirs.get(k)]
    if diff:
        k = diff[0]
        raise ConfigError(f"run {out} was trained with {k}={theirs.get(k)!r}, not {mine[k]!r}; use another output "
                         "folder to train with new settings")
    sha_old, sha_new = old_data.get("manifest_sha256"), data.get("manifest_sha256")
    if sha_old and sha_new and (sha_old != sha_new or old_data.get("limit") != data.get("limit")):
        raise ConfigError(f"run {out} was trained on other data ({old_data.get('path')}); use another output folder "
                         "or the same data")


WEIGHTS_NOTE = "PROVENANCE.json"


def export_weights(run_dir: str | Path, out_dir: str | Path, keep: tuple[str, ...], provenance: dict[str, Any],
                   half: bool = True) -> dict[str, Any]:
    """Write the inference weights of the run in ``run_dir`` to ``out_dir``: a slim ``checkpoint.pt`` with only the
    modules ``keep`` (their EMA copies where the run kept them; float tensors in float16 with ``half``), the run's
    ``task_config``, ``step`` and ``extra`` (the training labels a sampler draws conditions from), no optimizer,
    scheduler or RNG state; the run's ``config.json``; and ``PROVENANCE.json`` (``provenance`` plus the source run,
    its step and the checkpoint's SHA-256). The folder is read by the same loaders as the run (``weights_only``),
    and is for sampling: it cannot be resumed. Returns the provenance written."""
    import io

    from robot_env.io.atomic import atomic_write_json
    from robot_env.io.hashing import sha256_bytes

    run, out = Path(run_dir), Path(out_dir)
    ckpt = load_checkpoint(run / CHECKPOINT)
    modules, ema = ckpt.get("modules") or {}, ckpt.get("ema") or {}
    missing = [k for k in keep if k not in modules]
    if missing:
        raise DataError(f"run {str(run)!r} has no module {missing[0]!r} to export")

    slim = slim_checkpoint(ckpt, {k: ema.get(k) or modules[k] for k in keep}, half=half)
    buf = io.BytesIO()
    torch.save(slim, buf)
    data = buf.getvalue()
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out / CHECKPOINT, data)
    if (run / "config.json").is_file():
        atomic_write_bytes(out / "config.json", (run / "config.json").read_bytes())
    note = {**provenance, "source_run": str(run), "step": int(ckpt.get("step", 0)), "modules": list(keep),
            "dtype": "float16" if half else "float32", "checkpoint_sha256": sha256_bytes(data),
            "checkpoint_bytes": len(data)}
    atomic_write_json(out / WEIGHTS_NOTE, note)
    return note
