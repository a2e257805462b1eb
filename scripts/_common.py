"""Helpers shared by the ``armlab`` subcommands: errors, JSON output, env kwargs, atomic writes."""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path


class UsageError(Exception):
    """Bad input from the command line: printed as one sentence, exit code 2."""


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
        out[key] = yaml.safe_load(value)
    return out


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temp file and ``os.replace``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    umask = os.umask(0)
    os.umask(umask)
    os.fchmod(fd, 0o666 & ~umask)  # mkstemp makes 0600; results are for everyone to read
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())
