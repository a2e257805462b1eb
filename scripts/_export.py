"""`armlab gan export` and `armlab diffusion export`: a trained run's inference weights, small, with provenance.

`add_export_arguments` adds the flags (``--run``, ``--data``, ``--out``, ``--metrics``, ``--command``, ``--json``);
`export_run` checks them, hashes the training dataset's manifest and writes the folder with
:func:`generative.runs.export_weights` (float16 EMA weights of the named modules, the run's config and
``PROVENANCE.json``: the commands, the dataset and the metrics the run reached). The folder samples like the run
(to float16 precision) and cannot be trained on.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from armlab_scripts._common import UsageError, emit_json

__all__ = ["add_export_arguments", "export_run"]


def add_export_arguments(x: argparse.ArgumentParser, trainer: str, evaluator: str) -> None:
    x.add_argument("--run", required=True, help=f"run folder written by `{trainer}`")
    x.add_argument("--data", required=True, help="the armlab dataset it was trained on (its manifest is hashed)")
    x.add_argument("--out", required=True, help="output folder (checkpoint.pt, config.json, PROVENANCE.json)")
    x.add_argument("--metrics", default=None, help=f"the JSON last line of `{evaluator} --json`, saved to a file")
    x.add_argument("--command", dest="commands", action="append", default=[],
                   help="a command that made the weights, recorded in PROVENANCE.json (repeat for each)")
    x.add_argument("--json", action="store_true", help="print the provenance as one JSON object on the last line")


def export_run(args: argparse.Namespace, modules: tuple[str, ...], about: dict) -> int:
    """Export ``modules`` of ``args.run``; ``about`` (the model's description) leads the provenance."""
    from generative.runs import export_weights
    from robot_env.io.dataset_format import MANIFEST
    from robot_env.io.hashing import sha256_file

    manifest = Path(args.data) / MANIFEST
    if not manifest.is_file():
        raise UsageError(f"--data {args.data!r} is not an armlab dataset (no {MANIFEST}).")
    metrics = None
    if args.metrics is not None:
        try:
            metrics = json.loads(Path(args.metrics).read_text().strip().splitlines()[-1])
        except (OSError, ValueError, IndexError):
            raise UsageError(f"--metrics {args.metrics!r} is not a file whose last line is a JSON object.") from None
    settings = json.loads(manifest.read_text()).get("settings")
    note = export_weights(args.run, args.out, modules, {
        **about, "commands": args.commands,
        "dataset": {"path": str(args.data), "manifest_sha256": sha256_file(manifest), "settings": settings},
        "metrics": metrics})
    print(f"exported {', '.join(modules)} of {args.run} (step {note['step']}) -> {args.out} "
          f"({note['checkpoint_bytes'] / 1e6:.1f} MB, {note['dtype']}); provenance in "
          f"{Path(args.out) / 'PROVENANCE.json'}")
    if args.json:
        emit_json(note)
    return 0
