"""Synthetic camera datasets: the arm on a table with a target object and distractors.

`generate` writes the format described in ``docs/dataset-format.md`` (and defined in
`robot_env.io.dataset_format`): per frame an RGB PNG, metric depth (uint16 millimetres PNG),
instance segmentation (uint16 PNG) and a JSON label (joints, end-effector pose, every object's
6-D pose and 2-D box, the target's pixel, K and the OpenCV extrinsics); then a COCO
``instances.json`` and a ``manifest.json`` with the SHA-256 of every file and the robot's joint
limits.

Determinism and scale
    Frame ``i`` draws everything from ``numpy.random.default_rng([seed, i, stream])``:
    stream 0 is the scene (arm, objects, colours, light, camera jitter), stream 1 the
    ``real`` style's camera effects. A frame therefore depends only on ``(seed, i,
    settings)``: any number of worker processes (``workers``), any shard split (``shard``)
    and any kill-and-resume produce byte-identical files, and ``style="real"`` with the same
    seed shows the same scene with the same 3-D labels as ``style="sim"`` (pairs for
    evaluation, although sim-to-real training is unpaired).

Reliability
    A frame counts as done when its label exists; the label is written last, to a
    temporary name moved into place, so a killed run never leaves a frame that looks done
    but is torn, and a restarted run regenerates exactly the frames without a label. The
    COCO file and the manifest are written the same way. `verify` re-checks checksums, counts and label consistency.

Poses from a trained policy
    With ``poses_from`` (a run folder of ``armlab train`` on the dataset's robot) the arm's
    poses are not random configurations but poses along rollouts of the run's deterministic
    policy. ``controllers.poses`` builds that pose bank once, before any frame, and stores it as
    ``poses.npz`` in the dataset folder; this package only reads it (`check_pose_bank`), in every
    worker, shard and resumed run, so frame ``i`` stays a function of ``(seed, i, settings)``: it
    shows the pose ``default_rng([seed, i, POSE_STREAM])`` picks, and the rest of its scene is the
    one the same seed gives without ``poses_from``. The run's path and the hash of its model file
    are settings, so a folder started with one run refuses another.

Rooms: `config` (`DatasetConfig`, constants, shards), `scene` (`Scene`: PyBullet, the real style),
`writer` (PNGs, a frame's files, COCO masks), `generation` (`generate`: workers, Ray, resume), `manifest`
(COCO file, manifest, `merge`), `sharded` (the ``wds`` layout's tar shards, `convert`; the layout itself is
`robot_env.io.shards`).
"""

from __future__ import annotations

from robot_env.dataset.config import (
    DEFAULT_RANDOMIZE,
    PALETTE,
    POSE_RATE,
    POSE_SETTINGS,
    POSE_STREAM,
    RANDOMIZE,
    TABLE_CENTER,
    TABLE_HALF,
    TABLE_TOP,
    TARGET_RGB,
    DatasetConfig,
    parse_randomize,
    parse_shard,
    shard_range,
)
from robot_env.dataset.generation import check_pose_bank, generate, generate_ray, start_folder
from robot_env.dataset.manifest import finalize_dataset, joint_limits, merge
from robot_env.dataset.scene import Frame, Scene, make_texture
from robot_env.dataset.sharded import convert
from robot_env.dataset.writer import instance_masks, write_frame
from robot_env.io.dataset_format import (
    CATEGORIES,
    CLASSES,
    FORMAT_VERSION,
    POSES_FILE,
    SEG_BACKGROUND,
    SEG_ROBOT,
    SEG_TABLE,
    STYLES,
    DatasetError,
    DatasetParamError,
    label_bytes,
    load_manifest,
    load_pose_bank,
    pose_bank_bytes,
    verify,
)

__all__ = [
    "CATEGORIES", "CLASSES", "DEFAULT_RANDOMIZE", "FORMAT_VERSION", "PALETTE", "POSES_FILE", "POSE_RATE",
    "POSE_SETTINGS", "POSE_STREAM", "RANDOMIZE", "SEG_BACKGROUND", "SEG_ROBOT", "SEG_TABLE", "STYLES",
    "TABLE_CENTER", "TABLE_HALF", "TABLE_TOP", "TARGET_RGB", "DatasetConfig", "DatasetError", "DatasetParamError",
    "Frame", "Scene", "check_pose_bank", "convert", "finalize_dataset", "generate", "generate_ray", "instance_masks",
    "joint_limits", "label_bytes", "load_manifest", "load_pose_bank", "make_texture", "merge", "parse_randomize",
    "parse_shard", "pose_bank_bytes", "shard_range", "start_folder", "verify", "write_frame",
]
