"""The one thread helper: how many CPU threads torch uses, set for a block or for the process.

torch is imported only when a count is actually set, so importing this module stays light.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from robot_env.io.errors import ParamError

__all__ = ["check_threads", "resolve_threads", "set_threads", "torch_threads"]


def check_threads(n: int | None) -> int | None:
    """``n`` as an int, or None for "torch's choice"; `ParamError` (``threads``) below 1."""
    if n is None:
        return None
    if int(n) != n or n < 1:
        raise ParamError("threads", f"{{name}} must be a positive integer, got {n!r}.")
    return int(n)


def resolve_threads(value: int | str, available: int) -> int:
    """A thread count from ``value``: a positive integer, or ``"auto"``: the cores the 1-minute load average
    leaves idle (at least 1, at most ``available``, e.g. torch's default). `ParamError` (``threads``) otherwise."""
    if str(value) == "auto":
        import os

        try:
            busy = os.getloadavg()[0]
        except OSError:
            return available
        cores = os.cpu_count() or available
        return max(1, min(available, int(cores - busy + 0.5)))
    try:
        n = int(value)
    except (TypeError, ValueError):
        n = 0
    if n < 1:
        raise ParamError("threads", f"{{name}} must be a positive integer or auto, got {value!r}.")
    return n


def set_threads(n: int | None) -> None:
    """Use ``n`` torch CPU threads from now on (None: leave torch's choice)."""
    n = check_threads(n)
    if n is None:
        return
    import torch

    torch.set_num_threads(n)


@contextlib.contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Run the block with ``n`` torch CPU threads (None: unchanged), restoring the previous count after."""
    n = check_threads(n)
    if n is None:
        yield
        return
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
