"""The trainer's flags, defined once for `armlab gan train`, `armlab diffusion train` and `armlab cyclegan train`.

`add_trainer_arguments` adds them (``--steps``, ``--batch-size``, ``--seed``, ``--device``, optionally
``--ema-decay``, ``--time-limit``, ``--sample-every``, ``--checkpoint-every``, optionally ``--snapshot-every``,
``--log-every``, ``--threads``,
``--no-progress``) with a model's defaults (its ``TRAIN_DEFAULTS``, read from the torch-free
`generative.trainer_defaults`); `trainer_config` checks them and builds the
:class:`generative.training.TrainConfig` the model's ``train_*`` function takes; `use_threads` applies ``--threads``.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from armlab_scripts._common import UsageError

__all__ = ["add_trainer_arguments", "trainer_config", "use_threads"]

_HELP = {
    "steps": "total training steps (a finished run continues to N)",
    "batch_size": "images per step (default {batch_size})",
    "seed": "seed of the weights, batches and noise (default 0)",
    "device": "auto (CUDA if available), cpu, cuda, cuda:1, ...",
    "ema_decay": "EMA decay of the averaged copy used to sample (default {ema_decay}; 0: off)",
    "time_limit": "stop after this many seconds of training, checkpointed at the step reached; the same command "
                  "continues (a wall-clock budget for a queue or a lent GPU)",
    "sample_every": "sample grid every N steps (default 500)",
    "checkpoint_every": "checkpoint every N steps (default 500)",
    "snapshot_every": "also keep the sampling weights (the EMA copy) every N steps in snapshots/step-NNNNNN/, a run "
                      "folder of its own that `sample`, `eval`, `latent` and `export` read, e.g. to find the best "
                      "step (default 0: none)",
    "log_every": "log losses every N steps (default 50)",
    "threads": "torch CPU threads (default: torch's choice)",
}


def add_trainer_arguments(p: argparse.ArgumentParser, defaults: dict[str, Any], ema: bool = False,
                          help: dict[str, str] | None = None, snapshots: bool = False) -> None:
    """Add the trainer's flags to ``p`` with the model's ``defaults`` (``batch_size``, and ``ema_decay`` with ``ema``,
    which adds ``--ema-decay``; the rest are :class:`~generative.training.TrainConfig`'s); ``help`` rewords flags (by
    destination), ``{batch_size}`` / ``{ema_decay}`` standing for their defaults. ``snapshots`` adds
    ``--snapshot-every`` (for models whose loaders read a snapshot folder)."""
    values = {"batch_size": defaults["batch_size"], "ema_decay": defaults.get("ema_decay")}
    text = {k: v.format(**values) for k, v in {**_HELP, **(help or {})}.items()}
    p.add_argument("--steps", type=int, required=True, help=text["steps"])
    p.add_argument("--batch-size", type=int, default=values["batch_size"], help=text["batch_size"])
    p.add_argument("--seed", type=int, default=0, help=text["seed"])
    p.add_argument("--device", default="auto", help=text["device"])
    if ema:
        p.add_argument("--ema-decay", type=float, default=values["ema_decay"], help=text["ema_decay"])
    p.add_argument("--time-limit", type=float, default=None, metavar="SECONDS", help=text["time_limit"])
    p.add_argument("--sample-every", type=int, default=500, help=text["sample_every"])
    p.add_argument("--checkpoint-every", type=int, default=500, help=text["checkpoint_every"])
    if snapshots:
        p.add_argument("--snapshot-every", type=int, default=0, metavar="N", help=text["snapshot_every"])
    p.add_argument("--log-every", type=int, default=50, help=text["log_every"])
    p.add_argument("--threads", type=int, default=None, help=text["threads"])
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def trainer_config(args: argparse.Namespace, defaults: dict[str, Any], tty_progress: bool = True):
    """The :class:`~generative.training.TrainConfig` of the parsed trainer flags (and ``--out``), the model's
    ``defaults`` filling what has no flag (e.g. ``n_samples``); a `UsageError` for a bad value. The progress bar is
    shown unless ``--no-progress`` (with ``tty_progress``, only when stderr is a terminal)."""
    from generative.training import TrainConfig

    if args.steps < 1:
        raise UsageError(f"--steps must be at least 1, got {args.steps}.")
    if args.batch_size < 1:
        raise UsageError(f"--batch-size must be at least 1, got {args.batch_size}.")
    if args.time_limit is not None and not args.time_limit > 0:
        raise UsageError(f"--time-limit must be > 0 seconds, got {args.time_limit}.")
    if min(args.sample_every, args.checkpoint_every, args.log_every) < 1:
        raise UsageError("--sample-every, --checkpoint-every and --log-every must be at least 1.")
    if getattr(args, "snapshot_every", 0) < 0:
        raise UsageError(f"--snapshot-every must be at least 0 (0: no snapshots), got {args.snapshot_every}.")
    if hasattr(args, "ema_decay") and not 0.0 <= args.ema_decay < 1.0:
        raise UsageError(f"--ema-decay must be in [0, 1), got {args.ema_decay}.")
    flags = {"out": args.out, "steps": args.steps, "batch_size": args.batch_size, "seed": args.seed,
             "device": args.device, "log_every": args.log_every, "sample_every": args.sample_every,
             "checkpoint_every": args.checkpoint_every, "time_limit_s": args.time_limit,
             "progress": not args.no_progress and (sys.stderr.isatty() or not tty_progress)}
    if hasattr(args, "ema_decay"):
        flags["ema_decay"] = args.ema_decay
    if hasattr(args, "snapshot_every"):
        flags["snapshot_every"] = args.snapshot_every
    return TrainConfig(**{**defaults, **flags})


def use_threads(n: int | None) -> None:
    """Apply ``--threads`` (torch's CPU threads from now on; None leaves torch's choice)."""
    from robot_env.io.errors import ParamError
    from robot_env.io.threads import set_threads

    try:
        set_threads(n)
    except ParamError as exc:
        raise UsageError(exc.render("--threads") + ".") from None
