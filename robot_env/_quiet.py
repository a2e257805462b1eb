"""Silence the banner lines PyBullet's C code prints ("pybullet build time", "argv[0]=").

They go straight to file descriptors 1 and 2, so they would break a command's
"one JSON object on the last line" and "one sentence on stderr" promises.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import sys


def _flush_c_stdio() -> None:
    try:
        ctypes.CDLL(None).fflush(None)
    except (OSError, AttributeError):
        pass


@contextlib.contextmanager
def quiet_c_output():
    """Send what C code writes to stdout/stderr to /dev/null while the block runs."""
    try:
        sys.stdout.flush()
        sys.stderr.flush()
        saved = [os.dup(1), os.dup(2)]
    except (OSError, ValueError, AttributeError):  # no real fds (e.g. captured by a notebook)
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
        yield
    finally:
        _flush_c_stdio()  # C's stdout buffer would otherwise print the banner later, at exit
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in (*saved, devnull):
            os.close(fd)
