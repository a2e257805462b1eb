"""Helpers shared by the ``armlab`` subcommands: errors, JSON output, env kwargs, atomic writes."""

from __future__ import annotations

import json
import sys

from robot_env.io.atomic import atomic_write_bytes, atomic_write_text  # noqa: F401  (the one writer, for scripts)
from robot_env.io.errors import ArmlabError


class UsageError(ArmlabError):
    """Bad input from the command line (an `ArmlabError`): `armlab_scripts.cli.main` prints it as one sentence,
    exit code 2."""


#: ``--side-margin M`` of the text models' sample and eval commands (the default is ``generative.text.SIDE_MARGIN``,
#: written out so that ``--help`` does not import torch; a test keeps the two equal).
SIDE_MARGIN_HELP = ("keep each drawn target at least M image widths from the left/centre/right cuts, so that the "
                    "prompt's side is drawn unambiguously (default 0.04; 0: anywhere in the named third)")


def check_side_margin(value: float | None) -> None:
    """A `UsageError` (one sentence) for a ``--side-margin`` that ``generative.text.side_margin`` refuses."""
    if value is None:
        return
    from generative.text import side_margin
    from robot_env.io.errors import ParamError

    try:
        side_margin(value)
    except ParamError as exc:
        raise UsageError(exc.render("--side-margin").rstrip(".") + ".") from None


def emit_json(figures: dict) -> None:
    """Print ``figures`` as one JSON object on the last line of stdout."""
    sys.stdout.flush()
    print(json.dumps(figures, sort_keys=True, default=float), flush=True)


def parse_kwargs(items: list[str] | None) -> dict:
    """Parse ``key:value`` pairs (rl-zoo3 style); values are read as YAML scalars."""
    import yaml

    out = {}
    for item in items or []:
        if ":" not in item:
            raise UsageError(f"expected key:value, got {item!r}.")
        key, value = item.split(":", 1)
        try:
            out[key] = yaml.safe_load(value)
        except yaml.YAMLError as exc:
            reason = " ".join(str(getattr(exc, "problem", None) or type(exc).__name__).split())
            raise UsageError(f"cannot read the value of {item!r} as YAML ({reason}).") from None
    return out


def fmt(v, spec: str = ".3f") -> str:
    """A figure for a table: ``-`` when missing."""
    return "-" if v is None else format(v, spec)


def print_generation_report(r: dict, targets: dict, title: str = "", footer: str = "") -> None:
    """The probe metrics of a generative model (`generative.metrics.generation_report` keys) as a table,
    each ratio beside its target: ``targets`` maps a ratio key to ``(">=" | "<=", goal)``."""
    if title:
        print(title)
    rows = [
        ("class accuracy (probe)", r.get("class_acc_real"), r.get("class_acc_fake"), "class_acc_ratio"),
        ("target position error, px", r.get("pos_err_real"), r.get("pos_err_fake"), "pos_err_ratio"),
        ("diversity (probe features)", r.get("diversity_real"), r.get("diversity_fake"), "diversity_ratio"),
    ]
    print(f"  {'metric':<28}{'real':>9}{'fake':>9}{'ratio':>9}   target")
    for name, real, fake, key in rows:
        op, goal = targets[key]
        ratio = r.get(key)
        verdict = "" if ratio is None else ("ok" if (ratio >= goal if op == ">=" else ratio <= goal) else "MISSED")
        print(f"  {name:<28}{fmt(real):>9}{fmt(fake):>9}{fmt(ratio):>9}   {key} {op} {goal} {verdict}")
    print(f"  fid_custom {fmt(r.get('fid_custom'), '.2f')}   kid_custom {fmt(r.get('kid_custom'), '.4f')} "
          "(probe features: not comparable with published FID/KID)")
    cov = r.get("mode_coverage") or []
    cov_real = r.get("mode_coverage_real") or []
    print(f"  classes seen by the probe: fake {', '.join(f'{v:.2f}' for v in cov)}   real "
          f"{', '.join(f'{v:.2f}' for v in cov_real)}   modes covered {r.get('modes_covered')}")
    if footer:
        print(footer)
