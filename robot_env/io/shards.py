"""The sharded layout of an armlab dataset: WebDataset tar shards, defined once, free of the simulator.

A dataset written with ``--format wds`` holds, instead of ``rgb/``, ``depth/``, ``seg/`` and ``labels/``,
the tar files ``shards/shard-000000.tar``, ``shards/shard-000001.tar``, ... Shard ``k`` holds frames
``k * shard_size`` up to ``(k + 1) * shard_size`` (the last one fewer), each frame as the members
``KEY.depth.png``, ``KEY.json``, ``KEY.rgb.png``, ``KEY.seg.png`` with ``KEY`` the six-digit frame number
(`sample_members`): the same bytes as the folder layout's files, label JSON included. A frame's members are
adjacent, as WebDataset readers need, and in sorted order. Readers here parse the tar headers themselves
(regular files; USTAR and GNU headers with short names, as armlab and Python's tarfile write them).

Every tar is deterministic: members in sorted order, USTAR headers with a fixed mtime (0), owner (0/0, no
names) and mode (0644), so a shard is a function of its frames' bytes alone. The manifest names the layout
(``"layout": "wds"``; the folder layout has no such key), the shard size, and every shard with its SHA-256 in
``files``. `read_members` and `iter_samples` read a shard; `index_shard` finds every member's bytes in it.
"""

from __future__ import annotations

import os
import tarfile  # writing headers only
import zlib
from collections.abc import Iterator
from pathlib import Path

from robot_env.io.errors import DataError, ParamError

__all__ = ["FORMATS", "KINDS", "LAYOUT_KEY", "SHARD_DIR", "WDS", "check_outputs", "check_shard_size", "dataset_layout",
           "index_shard", "iter_samples", "manifest_shards", "member_name", "read_members", "sample_bytes",
           "shard_file", "shard_frames", "shard_of", "shard_span", "tar_end"]

WDS = "wds"
FORMATS = ("files", WDS)  #: `armlab dataset generate --format`
LAYOUT_KEY = "layout"  #: the manifest key that names a sharded dataset's layout
SHARD_DIR = "shards"
#: a frame's members by kind: rgb, depth, seg (PNGs) and the label; the folder layout's `frame_files` in order
KINDS = ("rgb", "depth", "seg", "label")
_EXT = {"rgb": "rgb.png", "depth": "depth.png", "seg": "seg.png", "label": "json"}
_KIND = {v: k for k, v in _EXT.items()}
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


def check_outputs(outputs=None) -> tuple[str, ...]:
    """``outputs`` (``"rgb,depth,seg,label"``, a sequence of those names, or None: all) as a tuple in the order of
    `KINDS`; `ParamError` for an unknown name, or a choice without ``rgb`` and ``label`` (every reader, the COCO
    file and `verify` start from them)."""
    if outputs is None:
        return KINDS
    names = [n.strip() for n in (outputs.split(",") if isinstance(outputs, str) else outputs) if str(n).strip()]
    bad = [n for n in names if n not in KINDS]
    if bad:
        raise ParamError("outputs", f"{{name}} has an unknown output {bad[0]!r}; choose from {', '.join(KINDS)}.")
    if "rgb" not in names or "label" not in names:
        raise ParamError("outputs", f"{{name}} must include rgb and label (the readers, the COCO file and verify "
                                    f"start from them), got {','.join(names) or 'nothing'}.")
    return tuple(k for k in KINDS if k in names)


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


def _template() -> bytes:
    """The USTAR header every member shares (mode 0644, owner 0/0 without names, mtime 0, a regular file), with
    an empty name, size 0 and the checksum field as spaces: `tarfile`'s own bytes for those values."""
    info = tarfile.TarInfo("")
    info.size, info.mtime, info.mode, info.uid, info.gid, info.uname, info.gname = 0, 0, 0o644, 0, 0, "", ""
    buf = info.tobuf(format=tarfile.USTAR_FORMAT, encoding="utf-8", errors="strict")
    return buf[:148] + b"        " + buf[156:]


_TEMPLATE = _template()
_TEMPLATE_SUM = sum(_TEMPLATE) - sum(_TEMPLATE[124:136])  # without the size field


def _header(name: str, size: int) -> bytes:
    """The member header of ``name`` (at most 100 bytes) holding ``size`` bytes: what `tarfile` writes for the
    shared fields of `_template`, built here in a few microseconds instead of `tarfile`'s twenty."""
    raw, field = name.encode("utf-8"), b"%011o\0" % size
    if len(raw) > 100 or len(field) != 12:
        raise ValueError(f"a tar member name of at most 100 bytes and a size under 8 GiB, got {name!r} ({size})")
    checksum = _TEMPLATE_SUM + sum(raw) + sum(field)
    return b"".join((raw, _TEMPLATE[len(raw):124], field, _TEMPLATE[136:148], b"%06o\0 " % checksum,
                     _TEMPLATE[156:]))


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


def _corrupt(path, why: str) -> DataError:
    return DataError(f"the shard {path} {why}; it is corrupt: delete it and rerun generate.")


def _parse_header(header: bytes, path) -> tuple[str, int, bytes] | None:
    """``(name, size, type)`` of a tar header block, None for an end-of-archive (zero) block."""
    if header.count(0) == _BLOCK:
        return None
    try:
        checksum = int(header[148:156].split(b"\0", 1)[0].strip() or b"0", 8)
        size = int(header[124:136].split(b"\0", 1)[0].strip() or b"0", 8)
        name = header[:100].split(b"\0", 1)[0].decode("utf-8")
        if header[257:262] == b"ustar" and header[345] != 0:
            name = header[345:500].split(b"\0", 1)[0].decode("utf-8") + "/" + name
    except (ValueError, UnicodeDecodeError):
        raise _corrupt(path, "has a damaged tar header") from None
    # the checksum is the plain sum of the header's bytes (its own field as spaces); Adler-32's low half is that
    # sum plus one modulo 65521, computed in C: a fifth of the cost of summing in Python, which streaming notices
    if (checksum + 1) % 65521 != zlib.adler32(header[:148] + b"        " + header[156:]) & 0xFFFF:
        raise _corrupt(path, "has a tar header that fails its checksum")
    return name, size, header[156:157]


def _members(data: bytes, path) -> Iterator[tuple[str, int, int]]:
    """``(name, offset, size)`` of every regular file in the tar ``data``, in order."""
    pos, n = 0, len(data)
    while pos + _BLOCK <= n:
        parsed = _parse_header(data[pos:pos + _BLOCK], path)
        if parsed is None:
            return
        name, size, kind = parsed
        pos += _BLOCK
        if pos + size > n:
            break
        if kind in (b"0", b"\0"):
            yield name, pos, size
        pos += size + (-size % _BLOCK)
    raise _corrupt(path, "ends before its last member does (truncated)")


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"the shard {path} is missing; rerun generate to finish the dataset.") from None
    except IsADirectoryError:
        raise DataError(f"the shard {path} is a folder, not a tar file.") from None


def _split(name: str) -> tuple[str, str]:
    key, _, ext = name.partition(".")
    return key, _KIND.get(ext, ext)


def iter_samples(path: str | Path, kinds: tuple[str, ...] = KINDS) -> Iterator[tuple[int, dict[str, bytes]]]:
    """``(frame, {kind: bytes})`` of every frame in the shard at ``path``, in order (only the members of
    ``kinds``), from one sequential read of the file. `DataError` for a damaged or truncated shard."""
    path = Path(path)
    data = _read(path)
    key, sample = None, {}
    for name, offset, size in _members(data, path):
        k, kind = _split(name)
        if k != key:
            if key is not None:
                yield _frame(key, path), sample
            key, sample = k, {}
        if kind in kinds:
            sample[kind] = data[offset:offset + size]
    if key is not None:
        yield _frame(key, path), sample


def _frame(key: str, path) -> int:
    if not key.isdigit():
        raise _corrupt(path, f"holds a member {key!r} that is no frame of an armlab dataset")
    return int(key)


def index_shard(path: str | Path) -> dict[int, dict[str, tuple[int, int]]]:
    """``{frame: {kind: (offset, size)}}`` of the shard at ``path``, from its headers alone (the members' bytes
    are skipped): where each member lies, for random access with `read_members`. `DataError` when damaged."""
    path = Path(path)
    out: dict[int, dict[str, tuple[int, int]]] = {}
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
    except FileNotFoundError:
        raise DataError(f"the shard {path} is missing; rerun generate to finish the dataset.") from None
    try:
        end, pos = os.fstat(fd).st_size, 0
        while True:
            header = os.pread(fd, _BLOCK, pos)
            parsed = _parse_header(header, path) if len(header) == _BLOCK else False
            if parsed is None:
                return out
            if parsed is False or pos + _BLOCK + parsed[1] > end:
                raise _corrupt(path, "ends before its last member does (truncated)")
            name, size, kind = parsed
            if kind in (b"0", b"\0"):
                key, what = _split(name)
                out.setdefault(_frame(key, path), {})[what] = (pos + _BLOCK, size)
            pos += _BLOCK + size + (-size % _BLOCK)
    finally:
        os.close(fd)


def read_members(path: str | Path, spans: list[tuple[int, int]]) -> list[bytes]:
    """The bytes at ``(offset, size)`` ``spans`` of the file at ``path`` (one open, positioned reads)."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
    except FileNotFoundError:
        raise DataError(f"the shard {path} is missing; rerun generate to finish the dataset.") from None
    try:
        out = [os.pread(fd, size, offset) for offset, size in spans]
    finally:
        os.close(fd)
    if any(len(b) != size for b, (_, size) in zip(out, spans)):
        raise _corrupt(path, "is shorter than its index says")
    return out


def dataset_layout(manifest: dict) -> str:
    """``"wds"`` for a sharded dataset's manifest, ``"files"`` for the folder layout."""
    return manifest.get(LAYOUT_KEY, "files")


def manifest_shards(manifest: dict) -> list[str]:
    """The shard files of a sharded dataset's manifest, in frame order (relative paths)."""
    return sorted(rel for rel in manifest["files"] if rel.startswith(SHARD_DIR + "/") and rel.endswith(".tar"))
