"""Image data for the generative models: armlab datasets, plain image folders, and generated output.

Two readers, both ``torch.utils.data.Dataset`` subclasses returning dicts of tensors:

* `ArmlabDataset` reads armlab's camera dataset format (``docs/dataset-format.md``): ``rgb/``,
  optional ``depth/`` and ``seg/``, ``labels/`` and ``manifest.json``. Each item carries the
  conditioning labels of the generative models: ``class_id`` (the target's shape class),
  ``target`` (``target.pixel_norm``, where the target centre is in the image, in [0, 1]) and,
  when the labels have them, ``joints`` (``joint_positions``, the arm's joint angles in radians).
* `ImageFolderDataset` reads any folder of images (recursively) and gives images only.

Both layouts of an armlab dataset read the same way: the folder format and the sharded one (``--format wds``,
WebDataset tar shards). `ShardStream` is the ``torch`` IterableDataset that streams the shards instead, with a
seeded shard order per epoch dealt out across ranks and DataLoader workers.

`open_images` picks the right one (a folder with ``manifest.json`` is an armlab dataset).
`load_tensors` stacks a dataset into in-memory tensors, the form the training loops consume.
`write_generated` writes sampled images back in armlab's format (``"style": "generated"``),
with the *requested* conditions as labels, so they can be read again by `ArmlabDataset`.

Images are RGB uint8 everywhere; tensors are channels-first ``(C, H, W)``. With ``size`` set,
images are center-cropped to a square and resized to ``size x size`` (``cv2.INTER_AREA`` when
shrinking, ``cv2.INTER_LINEAR`` when enlarging); depth and segmentation use nearest-neighbour
so no depth or instance id is invented at object borders, and ``target`` is moved with the crop.

Every problem with the data on disk raises `DataError` (a ``ValueError``) with one sentence
that names the folder or file at fault.
"""

from __future__ import annotations

from generative.data.armlab import ArmlabDataset, is_armlab_dataset, load_tensors, open_images
from generative.data.generated import write_generated, write_grid
from generative.data.images import IMAGE_EXTENSIONS, DataError, ImageFolderDataset
from generative.data.shards import ShardStream
from robot_env.io.atomic import atomic_write_bytes
from robot_env.io.dataset_format import CLASSES as DEFAULT_CLASSES
from robot_env.io.hashing import sha256_bytes, sha256_file

__all__ = [
    "DEFAULT_CLASSES",
    "IMAGE_EXTENSIONS",
    "ArmlabDataset",
    "DataError",
    "ImageFolderDataset",
    "ShardStream",
    "atomic_write_bytes",
    "is_armlab_dataset",
    "load_tensors",
    "open_images",
    "sha256_bytes",
    "sha256_file",
    "write_generated",
    "write_grid",
]
