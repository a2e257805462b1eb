"""The one atomic writer: a file is either its old complete self or its new complete self.

Every file armlab writes that someone may read back (frames, labels, manifests, checkpoints,
models, configs, results) goes through here. The contract, stated once:

* **Atomic.** The data goes to a unique hidden temporary file in the target's folder, which is
  then moved into place with ``os.replace``. A reader, or a process killed at any instruction,
  sees the old file or the new one, never a part; a failed write leaves nothing behind.
* **Durable on request.** ``durable=True`` also ``fsync``s the file before the rename and the
  folder after it, so the new file survives a power loss or a kernel crash (checkpoints, models,
  manifests, run configs). ``durable=False`` (the default) skips both: it protects against killed
  processes, not against losing power, and keeps writing thousands of small frames fast.
* New files get mode ``0o666`` less the umask, like any file the process creates. Parent folders
  are created.
"""

from __future__ import annotations

import contextlib
import json
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from robot_env.io.errors import unwritable

__all__ = ["atomic_path", "atomic_write", "atomic_write_bytes", "atomic_write_json", "atomic_write_text",
           "fsync_dir", "make_dirs", "write_fd"]

#: what a write met when the path itself is wrong (not a bug): turned into `UnwritablePathError`
_PATH_ERRORS = (PermissionError, NotADirectoryError, IsADirectoryError, FileExistsError)


def make_dirs(folder: str | Path) -> Path:
    """Create ``folder`` and its parents (fine if it exists); `UnwritablePathError` naming it when it cannot be
    (a file in the way, no permission, a read-only file system)."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except FileExistsError as exc:  # a file where the folder should be
        raise unwritable(folder, exc) from None
    except OSError as exc:
        if isinstance(exc, _PATH_ERRORS) or exc.errno in (30,):  # EROFS
            raise unwritable(folder, exc) from None
        raise
    return folder


def _tmp_name(path: Path) -> Path:
    # the target's suffix last, so writers that pick a format by extension (torch, numpy, video) still can
    return path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp{path.suffix}")


def fsync_dir(folder: str | Path) -> None:
    """Make renames in ``folder`` durable (POSIX; a no-op where folders cannot be opened)."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str | Path, durable: bool = False) -> Iterator[Path]:
    """A temporary path beside ``path`` for writers that want a file name (``torch.save``, ``np.savez``,
    zip files): the file written there replaces ``path`` when the block ends without an exception, and is
    removed otherwise."""
    path = Path(path)
    make_dirs(path.parent)
    tmp = _tmp_name(path)
    try:
        yield tmp
        if durable:
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
        try:
            os.replace(tmp, path)
        except _PATH_ERRORS as exc:  # a folder where the file should go, say
            raise unwritable(path, exc) from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if durable:
        fsync_dir(path.parent)


def atomic_write(path: str | Path, write: Callable[[str], Any], durable: bool = False) -> None:
    """Call ``write(tmp)`` with a temporary file name beside ``path``, then move that file into place."""
    with atomic_path(path, durable=durable) as tmp:
        write(str(tmp))


def write_fd(fd: int, data: bytes) -> None:
    """Write all of ``data`` to the open file descriptor ``fd`` with bare system calls, then close it (a Python
    file object costs more than the write itself for the few kilobytes of a frame's file)."""
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    finally:
        os.close(fd)


def atomic_write_bytes(path: str | Path, data: bytes, durable: bool = False) -> None:
    """Write ``data`` to ``path`` atomically (see the module's contract)."""
    with atomic_path(path, durable=durable) as tmp:
        write_fd(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), data)


def atomic_write_text(path: str | Path, text: str, durable: bool = False) -> None:
    """`atomic_write_bytes` of ``text`` in UTF-8."""
    atomic_write_bytes(path, text.encode("utf-8"), durable=durable)


def atomic_write_json(path: str | Path, obj: Any, durable: bool = False, indent: int | None = 2,
                      sort_keys: bool = False) -> bytes:
    """Write ``obj`` as JSON (with a final newline) atomically; returns the bytes written."""
    data = (json.dumps(obj, indent=indent, sort_keys=sort_keys) + "\n").encode("utf-8")
    atomic_write_bytes(path, data, durable=durable)
    return data
