"""The one thread helper: how many CPU threads torch uses, set for a block or for the process.

torch is imported only when a count is actually set, so importing this module stays light.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from robot_env.io.errors import ParamError

__all__ = ["check_threads", "set_threads", "torch_threads"]


def check_threads(n: int | None) -> int | None:
    """``n`` as an int, or None for "torch's choice"; `ParamError` (``threads``) below 1."""
    if n is None:
        return None
    if int(n) != n or n < 1:
        raise ParamError("threads", f"{{name}} must be a positive integer, got {n!r}.")
    return int(n)


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
