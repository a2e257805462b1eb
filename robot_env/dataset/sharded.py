"""The sharded layout's writing side: tar shards written in frame order, their manifest, and `convert`.

A shard is written to a temporary name beside its final one (`robot_env.io.atomic.atomic_path`) and renamed
when its last frame is in: a shard under its final name is complete, and a restarted run rewrites only the
shards that are not. Each frame's tar members are built in memory by the worker that rendered it
(`robot_env.io.shards.sample_bytes`); this process appends them to the open shard and hashes them on the way,
so a shard is never read back to be listed in the manifest.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Iterable, Iterator
from pathlib import Path

from robot_env.dataset.config import DatasetConfig
from robot_env.dataset.manifest import (
    GENERATOR,
    coco_parts,
    finalize_dataset,
    outputs_entry,
    settings_record,
    write_dataset_manifest,
    write_settings_record,
)
from robot_env.dataset.writer import decode_png, frame_meta, write_blobs
from robot_env.io.atomic import atomic_path, atomic_write_bytes
from robot_env.io.dataset_format import (
    COCO_FILE,
    POSES_FILE,
    DatasetError,
    DatasetParamError,
    coco_bytes,
    frame_done,
    frame_files,
    load_manifest,
)
from robot_env.io.hashing import sha256_bytes, sha256_file
from robot_env.io.shards import (
    FORMATS,
    KINDS,
    WDS,
    check_outputs,
    check_shard_size,
    dataset_layout,
    iter_samples,
    manifest_shards,
    sample_bytes,
    shard_file,
    shard_frames,
    shard_span,
    tar_end,
)

__all__ = ["convert", "finalize_sharded", "job_shards", "write_shards"]


def job_shards(out: Path, n: int, shard_size: int, shard: tuple[int, int] | None) -> tuple[list[int], list[int]]:
    """``(the job's tar shards, those not yet complete in out)``."""
    ks = list(shard_frames(n, shard_size, shard)[0])
    return ks, [k for k in ks if not (Path(out) / shard_file(k)).exists()]


def write_shards(out: Path, n: int, shard_size: int, ks: list[int], results: Iterable[dict], bar=None
                 ) -> tuple[dict[int, dict], dict[str, str]]:
    """Write the tar shards ``ks`` from ``results``: dicts ``{frame: (tar member bytes, record)}`` in frame
    order, covering exactly the shards' frames. Returns ``(records, {shard file: SHA-256})``."""
    records: dict[int, dict] = {}
    sums: dict[str, str] = {}
    results = iter(results)
    try:
        for k in ks:
            need = len(shard_span(n, shard_size, k))
            digest = hashlib.sha256()
            with atomic_path(Path(out) / shard_file(k)) as tmp, open(tmp, "xb") as f:
                while need > 0:
                    done = next(results)
                    for i in sorted(done):
                        data, record = done[i]
                        f.write(data)
                        digest.update(data)
                        records[i] = record
                    need -= len(done)
                    if bar is not None:
                        bar.update(len(done))
                f.write(tar_end())
                digest.update(tar_end())
            sums[shard_file(k)] = digest.hexdigest()
    finally:
        getattr(results, "close", lambda: None)()  # stop the workers (a generator over a pool)
    return records, sums


def finalize_sharded(out: Path, cfg: DatasetConfig, ks, shard, shard_size: int, records: dict[int, dict],
                     sums: dict[str, str], coco: bool = False, outputs=KINDS) -> dict:
    """Write the manifest (and with ``coco`` the COCO file) of the tar shards ``ks`` in ``out``. ``records`` and
    ``sums`` (from `write_shards`) save reading back what this process wrote; the rest is read from the shards."""
    out = Path(out)
    ks = list(ks)
    masks = coco and "seg" in outputs
    files = {}
    for k in ks:
        rel = shard_file(k)
        if not (out / rel).exists():
            raise DatasetError(f"{out} is missing the shard {rel}; rerun generate to finish.")
        files[rel] = sums.get(rel) or sha256_file(out / rel)
        span = shard_span(cfg.n, shard_size, k)
        if any(i not in records or (coco and "annotations" not in records[i]) for i in span):
            for i, blobs in iter_samples(out / rel, ("label", "seg") if masks else ("label",)):
                label = json.loads(blobs["label"])
                seg = decode_png(blobs["seg"], f"{rel}:{i:06d}") if masks else None
                records[i] = frame_meta(label, seg, masks=masks) if coco else {"label": label}
        lost = [i for i in span if i not in records]
        if lost:
            raise DatasetError(f"the shard {out / rel} lacks frame {lost[0]}; delete it and rerun generate.")
    indices = [i for k in ks for i in shard_span(cfg.n, shard_size, k)]
    labels, images, annotations = coco_parts(indices, records)
    if coco:
        data = coco_bytes(images, annotations)
        atomic_write_bytes(out / COCO_FILE, data)
        files[COCO_FILE] = sha256_bytes(data)
    else:
        (out / COCO_FILE).unlink(missing_ok=True)  # a COCO file of an earlier run would be listed nowhere
    return write_dataset_manifest(out, cfg, indices, labels, files, shard=shard, counts={"shards": len(ks)},
                                  layout=WDS, shard_size=shard_size, **outputs_entry(outputs))


def _checked(path: Path, rel: str, manifest: dict) -> bytes:
    data = path.read_bytes()
    if sha256_bytes(data) != manifest["files"].get(rel):
        raise DatasetError(f"{path} does not match its checksum in the manifest; run `armlab dataset verify` on the "
                           f"source.")
    return data


def _samples_from_files(src: Path, manifest: dict, ks: list[int], n: int, shard_size: int, coco: bool,
                        outputs: tuple[str, ...]) -> Iterator[dict]:
    masks = coco and "seg" in outputs
    for k in ks:
        for i in shard_span(n, shard_size, k):
            blobs = {kind: _checked(src / rel, rel, manifest)
                     for kind, rel in zip(KINDS, frame_files(i)) if kind in outputs}
            label = json.loads(blobs["label"])
            seg = decode_png(blobs["seg"], frame_files(i)[2]) if masks else None
            yield {i: (sample_bytes(i, blobs), frame_meta(label, seg, masks=masks) if coco else {"label": label})}


def convert(src: str | Path, out: str | Path, format: str, shard_size: int | None = None, coco: bool = False,
            progress: bool = False) -> dict:
    """Write the dataset at ``src`` into ``out`` in the other layout (``format``: ``"files"`` or ``"wds"``, with
    ``shard_size`` frames a tar shard and the COCO file only with ``coco``). Every frame keeps its bytes (PNGs
    and label JSON), every file is checked against the source's manifest on the way, and the result is the
    dataset `generate` writes in that format with the same settings, byte for byte: a round trip gives back the
    original files. A stopped conversion resumes. Returns the new manifest."""
    from tqdm.auto import tqdm

    from robot_env.dataset.generation import start_folder

    src, out = Path(src), Path(out)
    manifest = load_manifest(src)
    if format not in FORMATS:
        raise DatasetParamError("format", f"unknown {{name}} {format!r}; choose one of {', '.join(FORMATS)}.")
    if manifest.get("generator") != GENERATOR:
        raise DatasetParamError("src", f"{{name}} {src} was not written by `armlab dataset generate` (generator "
                                       f"{manifest.get('generator')!r}); only its datasets convert.")
    if dataset_layout(manifest) == format:
        raise DatasetParamError("format", f"{src} is already in the {format} {{name}}; nothing to convert.")
    if manifest.get("shard"):
        raise DatasetParamError("src", f"{{name}} {src} is one job's part (--shard); merge the parts, then convert "
                                       f"the merged dataset.")
    if out.resolve() == src.resolve():
        raise DatasetParamError("out", "{name} must be another folder than --src.")
    cfg = DatasetConfig.from_settings(manifest["settings"]).validate()
    outputs = check_outputs(manifest.get("outputs"))
    if format == WDS:
        shard_size = check_shard_size(1000 if shard_size is None else shard_size)
    indices = start_folder(out, cfg, 1, None, format, shard_size, outputs)
    if cfg.poses_from is not None:
        shutil.copyfile(src / POSES_FILE, out / POSES_FILE)
    if not (out / ".armlab-settings.json").exists():
        write_settings_record(out, settings_record(cfg, None, format, shard_size, outputs))
    bar = tqdm(total=cfg.n, desc=f"convert to {format}", unit="frame", disable=not progress)
    if format == WDS:
        ks, todo = job_shards(out, cfg.n, shard_size, None)
        bar.update(cfg.n - sum(len(shard_span(cfg.n, shard_size, k)) for k in todo))
        records, sums = write_shards(out, cfg.n, shard_size, todo,
                                     _samples_from_files(src, manifest, todo, cfg.n, shard_size, coco, outputs), bar)
        bar.close()
        return finalize_sharded(out, cfg, ks, None, shard_size, records, sums, coco=coco, outputs=outputs)
    records = {}
    for rel in manifest_shards(manifest):
        if sha256_file(src / rel) != manifest["files"][rel]:
            raise DatasetError(f"{src / rel} does not match its checksum in the manifest; run `armlab dataset "
                               f"verify` on the source.")
        for i, blobs in iter_samples(src / rel):
            if set(blobs) != set(outputs):
                raise DatasetError(f"frame {i} in {src / rel} holds {', '.join(sorted(blobs))}, not the outputs "
                                   f"{', '.join(outputs)} of its manifest; run `armlab dataset verify` on the source.")
            if not frame_done(out, i):
                seg = decode_png(blobs["seg"], f"{rel}:{i:06d}") if "seg" in outputs else None
                records[i] = {"files": write_blobs(out, i, blobs),
                              **frame_meta(json.loads(blobs["label"]), seg, masks="seg" in outputs)}
            bar.update(1)
    bar.close()
    return finalize_dataset(out, cfg, indices, records=records, outputs=outputs)
