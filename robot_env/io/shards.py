"""The sharded layout of an armlab dataset: WebDataset tar shards, defined once, free of the simulator.

A dataset written with ``--format wds`` holds, instead of ``rgb/``, ``depth/``, ``seg/`` and ``labels/``,
the tar files ``shards/shard-000000.tar``, ``shards/shard-000001.tar``, ... Shard ``k`` holds frames
``k * shard_size`` up to ``(k + 1) * shard_size`` (the last one fewer), each frame as the members
``KEY.depth.png``, ``KEY.json``, ``KEY.rgb.png``, ``KEY.seg.png`` with ``KEY`` the six-digit frame number
(`sample_members`): the same bytes as the folder layout's files, label JSON included. A frame's members are
adjacent, as WebDataset readers need, and in sorted order.

Every tar is deterministic: members in sorted order, USTAR headers with a fixed mtime (0), owner (0/0, no
names) and mode (0644), so a shard is a function of its frames' bytes alone. The manifest names the layout
(``"layout": "wds"``; the folder layout has no such key), the shard size, and every shard with its SHA-256 in
``files``. `read_members` and `iter_samples` read a shard; `index_shard` finds every member's bytes in it.
"""

from __future__ import annotations

import os
import tarfile
from collections.abc import Iterator
from pathlib import Path

from robot_env.io.errors import DataError, ParamError

__all__ = ["FORMATS", "KINDS", "LAYOUT_KEY", "SHARD_DIR", "WDS", "check_shard_size", "dataset_layout",
           "index_shard", "iter_samples", "manifest_shards", "member_name", "read_members", "sample_bytes",
           "shard_file", "shard_frames", "shard_of", "shard_span", "tar_end"]

WDS = "wds"
FORMATS = ("files", WDS)  #: `armlab dataset generate --format`
LAYOUT_KEY = "layout"  #: the manifest key that names a sharded dataset's layout
SHARD_DIR = "shards"
#: a frame's members by kind: rgb, depth, seg (PNGs) and the label; the folder layout's `frame_files` in order
KINDS = ("rgb", "depth", "seg", "label")
_EXT = {"rgb": "rgb.png", "depth": "depth.png", "seg": "seg.png", "label": "json"}
_BLOCK = 512


def check_shard_size(shard_size) -> int:
    """``shard_size`` as an int; `ParamError` unless it is a whole number from 1 to 1,000,000."""
    try:
        ok = not isinstance(shard_size, bool) and int(shard_size) == float(shard_size)
    except (TypeError, ValueError, OverflowError):
        ok = False
    if not ok or not 1 <= int(shard_size) <= 1_000_000:
        raise ParamError("shard_size", f"{{name}} must be a whole number of frames from 1 to 1000000, "
                                       f"got {shard_size!r}.")
    return int(shard_size)


def shard_file(k: int) -> str:
    """Shard ``k``'s file, relative to the dataset folder."""
    return f"{SHARD_DIR}/shard-{k:06d}.tar"


def shard_span(n: int, shard_size: int, k: int) -> range:
    """The frames of shard ``k`` of a dataset of ``n`` frames."""
    return range(k * shard_size, min(n, (k + 1) * shard_size))


def shard_of(i: int, shard_size: int) -> int:
    """The shard that holds frame ``i``."""
    return i // shard_size


def shard_frames(n: int, shard_size: int, job: tuple[int, int] | None) -> tuple[range, range]:
    """``(tar shards, frames)`` of job ``i`` of ``N`` (``--shard i/N``; None: everything): whole tar shards,
    contiguous and disjoint across jobs, so that every job writes tars byte-identical to an unsplit run's."""
    count = -(-n // shard_size)
    if job is None:
        return range(count), range(n)
    i, N = job
    if not (N >= 1 and 0 <= i < N):
        raise ParamError("shard", f"{{name}} must be i/N with 0 <= i < N, got {i}/{N}.")
    if N > count:
        raise ParamError("shard", f"{{name}} {i}/{N} splits {count} tar shards of {shard_size} frames into more jobs "
                                  f"than shards; use at most {count} jobs or a smaller --shard-size.")
    ks = range(i * count // N, (i + 1) * count // N)
    return ks, range(ks[0] * shard_size, min(n, ks[-1] * shard_size + shard_size))


def member_name(i: int, kind: str) -> str:
    """The tar member of frame ``i``'s ``kind`` (one of `KINDS`)."""
    return f"{i:06d}.{_EXT[kind]}"


def _header(name: str, size: int) -> bytes:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode, info.uid, info.gid, info.uname, info.gname = size, 0, 0o644, 0, 0, "", ""
    return info.tobuf(format=tarfile.USTAR_FORMAT, encoding="utf-8", errors="strict")


def sample_bytes(i: int, blobs: dict[str, bytes]) -> bytes:
    """The tar members of frame ``i`` (``blobs``: kind -> bytes, any of `KINDS`), sorted by name, headers and
    padding included: what a shard holds for the frame, written from memory."""
    parts = []
    for name, data in sorted((member_name(i, kind), data) for kind, data in blobs.items()):
        parts += [_header(name, len(data)), data, b"\0" * (-len(data) % _BLOCK)]
    return b"".join(parts)


def tar_end() -> bytes:
    """The two zero blocks that end a tar archive."""
    return b"\0" * (2 * _BLOCK)


def _open(path: Path) -> tarfile.TarFile:
    try:
        return tarfile.open(path, "r:")
    except FileNotFoundError:
        raise DataError(f"the shard {path} is missing; rerun generate to finish the dataset.") from None
    except (tarfile.TarError, OSError) as exc:
        raise DataError(f"the shard {path} is not a readable tar file ({type(exc).__name__}); it is corrupt: "
                        f"delete it and rerun generate.") from None


def _split(name: str) -> tuple[str, str]:
    key, _, ext = name.partition(".")
    kinds = {v: k for k, v in _EXT.items()}
    return key, kinds.get(ext, ext)


def iter_samples(path: str | Path, kinds: tuple[str, ...] = KINDS) -> Iterator[tuple[int, dict[str, bytes]]]:
    """``(frame, {kind: bytes})`` of every frame in the shard at ``path``, in order, reading it sequentially
    (only the members of ``kinds`` are read; the others are skipped). `DataError` for a damaged shard."""
    path = Path(path)
    key, sample = None, {}
    try:
        with open(path, "rb") as f, tarfile.open(fileobj=f, mode="r|") as tar:
            for info in tar:
                k, kind = _split(info.name)
                if k != key:
                    if key is not None:
                        yield int(key), sample
                    key, sample = k, {}
                if kind in kinds and info.isfile():
                    sample[kind] = tar.extractfile(info).read()
    except FileNotFoundError:
        raise DataError(f"the shard {path} is missing; rerun generate to finish the dataset.") from None
    except (tarfile.TarError, OSError, ValueError) as exc:
        raise DataError(f"the shard {path} cannot be read to its end ({type(exc).__name__}); it is corrupt: "
                        f"delete it and rerun generate.") from None
    if key is not None:
        yield int(key), sample


def index_shard(path: str | Path) -> dict[int, dict[str, tuple[int, int]]]:
    """``{frame: {kind: (offset, size)}}`` of the shard at ``path``: where each member's bytes lie (for
    random access with `read_members`); `DataError` for a damaged shard."""
    out: dict[int, dict[str, tuple[int, int]]] = {}
    with _open(Path(path)) as tar:
        try:
            for info in tar.getmembers():
                key, kind = _split(info.name)
                if info.isfile() and key.isdigit():
                    out.setdefault(int(key), {})[kind] = (info.offset_data, info.size)
        except (tarfile.TarError, OSError) as exc:
            raise DataError(f"the shard {path} cannot be read ({type(exc).__name__}); it is corrupt: delete it and "
                            f"rerun generate.") from None
    return out


def read_members(path: str | Path, spans: list[tuple[int, int]]) -> list[bytes]:
    """The bytes at ``(offset, size)`` ``spans`` of the file at ``path`` (one open, positioned reads)."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
    try:
        out = [os.pread(fd, size, offset) for offset, size in spans]
    finally:
        os.close(fd)
    if any(len(b) != size for b, (_, size) in zip(out, spans)):
        raise DataError(f"the shard {path} is shorter than its index says; it is corrupt: delete it and rerun "
                        f"generate.")
    return out


def dataset_layout(manifest: dict) -> str:
    """``"wds"`` for a sharded dataset's manifest, ``"files"`` for the folder layout."""
    return manifest.get(LAYOUT_KEY, "files")


def manifest_shards(manifest: dict) -> list[str]:
    """The shard files of a sharded dataset's manifest, in frame order (relative paths)."""
    return sorted(rel for rel in manifest["files"] if rel.startswith(SHARD_DIR + "/") and rel.endswith(".tar"))
