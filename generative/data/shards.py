"""Streaming a sharded armlab dataset (``--format wds``): a ``torch`` IterableDataset over its tar shards.

`ShardStream` reads each shard in one sequential pass and yields the items `ArmlabDataset` gives, built by
the same code (`generative.data.armlab.make_item`). The shard order is shuffled with a seeded generator
(``seed`` and the epoch set with `ShardStream.set_epoch`), then the shards are dealt out across distributed
ranks and DataLoader workers: worker ``w`` of ``W`` on rank ``r`` of ``R`` reads shards ``r * W + w``,
``r * W + w + R * W``, ... of that order, so an epoch reads every frame once across all of them (a rank or
worker beyond the number of shards reads nothing). Frames keep their order inside a shard.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

from generative.data.armlab import (
    _parse_label,
    _read_json,
    decode_rgb,
    decode_u16,
    label_fields,
    make_item,
    target_in,
)
from generative.data.images import DataError, _check_size, _square_resize
from robot_env.io.dataset_format import CLASSES, MANIFEST
from robot_env.io.errors import ConfigError
from robot_env.io.shards import WDS, dataset_layout, iter_samples, manifest_shards

__all__ = ["ShardStream"]


def _label_head(data: bytes, where: str) -> dict:
    """The fields of a simulator label up to its ``objects`` list, which items do not use (the writer puts
    ``frame``, ``class_id``, ``target`` and ``joint_positions`` before it): half the parsing of the whole label.
    Any other label is parsed whole."""
    cut = data.find(b',"objects":')
    if cut > 0:
        try:
            return json.loads(data[:cut] + b"}")
        except ValueError:
            pass
    return _parse_label(data, where)


def _rank_and_world(rank: int | None, world_size: int | None) -> tuple[int, int]:
    if rank is not None and world_size is not None:
        return int(rank), int(world_size)
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class ShardStream(IterableDataset):
    """The frames of the sharded armlab dataset at ``root``, streamed shard by shard (items as `ArmlabDataset`'s:
    ``image``, ``class_id``, ``target``, ``frame``, ``joints``; ``depth`` and ``seg`` on request; ``size`` crops
    and resizes).

    ``shuffle`` (default True) deals the shards in a seeded order, new each epoch (`set_epoch`); ``rank`` and
    ``world_size`` default to ``torch.distributed``'s when it is initialized (else one process). ``len()`` (and
    `frames_total`) is the number of frames of the whole dataset, one epoch over every rank and worker.

    ``batch_size`` makes the stream yield batches (dicts of stacked tensors, as the default collate gives; the
    last batch of each worker's share may be smaller) built in the worker from the decoded frames, without an
    item's tensors: use it with ``DataLoader(stream, batch_size=None)``."""

    def __init__(self, root: str | Path, size: int | None = None, with_depth: bool = False, with_seg: bool = False,
                 shuffle: bool = True, seed: int = 0, rank: int | None = None, world_size: int | None = None,
                 batch_size: int | None = None):
        self.root = Path(root)
        self.size = _check_size(size)
        if not (self.root / MANIFEST).is_file():
            raise DataError(f"{str(self.root)!r} is not an armlab dataset: no manifest.json")
        manifest = _read_json(self.root / MANIFEST, "manifest")
        if not isinstance(manifest, dict) or dataset_layout(manifest) != WDS:
            raise DataError(f"{str(self.root)!r} is not a sharded armlab dataset (generate it with --format wds or "
                            f"`armlab dataset convert`); ArmlabDataset reads the folder format")
        self.manifest = manifest
        self.classes = [str(c) for c in manifest.get("classes", CLASSES)]
        self.shards = [self.root / rel for rel in manifest_shards(manifest)]
        if not self.shards:
            raise DataError(f"armlab dataset {str(self.root)!r} lists no shards")
        self.n_joints = len(manifest.get("joint_limits") or [])
        self.kinds = ("label", "rgb") + ("depth",) * bool(with_depth) + ("seg",) * bool(with_seg)
        self.shuffle, self.seed, self.epoch = bool(shuffle), int(seed), 0
        self.rank, self.world_size = rank, world_size
        if batch_size is not None and (int(batch_size) != batch_size or batch_size < 1):
            raise ConfigError(f"batch_size must be a positive integer or None, not {batch_size!r}")
        self.batch_size = None if batch_size is None else int(batch_size)

    def set_epoch(self, epoch: int) -> None:
        """Deal the shards in the order of epoch ``epoch`` from now on (call it in every process and worker's
        parent before iterating: DataLoader workers copy the dataset when an epoch starts)."""
        self.epoch = int(epoch)

    def shard_order(self) -> list[Path]:
        """Every shard, in this epoch's order."""
        if not self.shuffle:
            return list(self.shards)
        perm = np.random.default_rng([self.seed, self.epoch]).permutation(len(self.shards))
        return [self.shards[k] for k in perm]

    def my_shards(self) -> list[Path]:
        """The shards this rank and DataLoader worker read this epoch."""
        rank, world = _rank_and_world(self.rank, self.world_size)
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        return self.shard_order()[rank * workers + worker::world * workers]

    @property
    def frames_total(self) -> int:
        """The frames of the whole dataset: one epoch over every rank and worker."""
        return int(self.manifest["counts"]["frames"])

    def __len__(self) -> int:
        if self.batch_size is not None:  # each worker's last batch may be short: no fixed count of batches
            raise TypeError("a ShardStream with batch_size has no fixed length; frames_total counts its frames")
        return self.frames_total

    def frames(self) -> Iterator[tuple[dict, np.ndarray, np.ndarray | None, np.ndarray | None]]:
        """``(record, rgb, depth, seg)`` of every frame this rank and worker reads this epoch, decoded."""
        for path in self.my_shards():
            for i, blobs in iter_samples(path, self.kinds):
                where = f"{path}:{i:06d}"
                missing = [k for k in self.kinds if k not in blobs]
                if missing:
                    raise DataError(f"frame {where!r} has no {missing[0]} member")
                rec = label_fields(_label_head(blobs["label"], where + ".json"), where + ".json", f"{i:06d}")
                depth = decode_u16(blobs["depth"], "depth", where + ".depth.png") if "depth" in blobs else None
                seg = decode_u16(blobs["seg"], "segmentation", where + ".seg.png") if "seg" in blobs else None
                yield rec, decode_rgb(blobs["rgb"], where + ".rgb.png"), depth, seg

    def __iter__(self) -> Iterator[dict[str, Any]]:
        if self.batch_size is None:
            for rec, rgb, depth, seg in self.frames():
                yield make_item(rec, rgb, depth, seg, self.size, self.n_joints)
            return
        batch: list = []
        for frame in self.frames():
            batch.append(frame)
            if len(batch) == self.batch_size:
                yield self._stack(batch)
                batch = []
        if batch:
            yield self._stack(batch)

    def _stack(self, batch: list) -> dict[str, torch.Tensor]:
        """The items of ``batch`` as one dict of stacked tensors, built without an item's tensors."""
        size = self.size
        out = {"image": torch.from_numpy(np.stack([_square_resize(rgb, size) for _, rgb, _, _ in batch]))
               .permute(0, 3, 1, 2).contiguous(),
               "class_id": torch.tensor([rec["class_id"] for rec, *_ in batch], dtype=torch.long),
               "target": torch.tensor([target_in(rec, rgb.shape[0], rgb.shape[1], size) for rec, rgb, _, _ in batch],
                                      dtype=torch.float32),
               "frame": torch.tensor([rec["frame"] for rec, *_ in batch], dtype=torch.long)}
        if self.n_joints:
            nan = (float("nan"),) * self.n_joints
            out["joints"] = torch.tensor([rec["joint_positions"] or nan for rec, *_ in batch], dtype=torch.float32)
        if batch[0][2] is not None:
            out["depth"] = torch.from_numpy(np.stack([_square_resize(d, size, nearest=True) for _, _, d, _ in batch])
                                            .astype(np.float32) / 1000.0)[:, None]
        if batch[0][3] is not None:
            out["seg"] = torch.from_numpy(np.stack([_square_resize(g, size, nearest=True) for *_, g in batch])
                                          .astype(np.int64))
        return out
