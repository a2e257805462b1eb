"""One training loop for every generative model in armlab (GAN, conditional GAN, CycleGAN, diffusion).

Division of labour
------------------
A model subclasses :class:`TrainTask`. It owns its networks, optimizers, learning-rate schedules and losses and says
what one training step is (:meth:`TrainTask.train_step`) and how to draw images (:meth:`TrainTask.sample`). The
:class:`Trainer` owns everything else: device placement, batches, seeding, EMA copies, bf16 autocast, channels-last,
DistributedDataParallel, logging (tqdm, TensorBoard, ``log.csv``), sample grids and checkpoints with automatic
resume. Data is a dict of equal-length tensors held in memory, e.g. ``{"image": uint8 (N, C, H, W), "class_id":
long (N,), "target": float (N, 2)}``; the trainer hands ``train_step`` a dict with the same keys, where 4-d uint8
tensors (images) arrive as floats in ``[-1, 1]`` (see :func:`to_model_range`) and everything is on the device.

Determinism and resume
----------------------
Everything random is a function of ``(seed, step)``, never of the history of the run:

* the batch of step ``s`` is read from a sequence of epoch permutations (each sample once per epoch), the
  permutation of epoch ``e`` drawn from a generator seeded with ``(seed, e)``;
* at the start of every step the trainer seeds torch's (CPU and CUDA), NumPy's and Python's global RNGs from
  ``(seed, step, rank)``, so the noise, augmentation, dropout or diffusion timesteps drawn inside ``train_step`` are
  too;
* sample grids are drawn with their own fixed seed inside ``torch.random.fork_rng``, without touching the training RNG.

A checkpoint (``out/checkpoint.pt``) holds the state dicts of modules, optimizers, schedulers and EMA copies, the
step, the RNG states, the task's :meth:`TrainTask.extra_state` and the configuration. It is written atomically
(temporary file in the same folder, fsync, ``os.replace``), and read only with ``torch.load(weights_only=True)``, so
it contains tensors and plain Python values only. ``Trainer.fit()`` resumes automatically from an existing
checkpoint, so a run killed at any moment and started again with the same command reproduces the uninterrupted run
exactly on CPU (on GPU up to the non-determinism of some CUDA kernels); a finished run started again with a larger
``steps`` continues where it stopped.

Distributed training
--------------------
Started by ``torchrun`` (``WORLD_SIZE > 1`` in the environment), the trainer joins the process group (NCCL on CUDA,
Gloo on CPU), uses ``cuda:LOCAL_RANK``, wraps the task's :meth:`TrainTask.ddp_modules` in
``DistributedDataParallel`` and gives each rank its own slice of every global batch: ``batch_size`` is the global
batch size and must be divisible by the number of processes. Per-step seeds include the rank, so ranks draw different
noise. Only rank 0 writes checkpoints, logs, samples and ``config.json``; ranks meet at barriers around checkpoint
writes. Logged losses are averaged over ranks.

Inside ``train_step`` a task calls its networks through :meth:`TrainTask.net` (the DDP-wrapped module, whose
backward pass averages gradients over ranks) and mixed precision through :meth:`TrainTask.autocast`. Networks whose
gradients are not wanted in a step (the discriminator in a generator step) should be called unwrapped, e.g.
``self.D(fake)``: DDP expects a gradient for every parameter of a wrapped module used in a forward pass.
:meth:`TrainTask.sample` must use :meth:`TrainTask.eval_net` (the EMA copy, or the unwrapped module), because only
rank 0 samples.
"""

from generative.training.checkpoint import CHECKPOINT, SNAPSHOTS, load_checkpoint, slim_checkpoint, snapshot_dir
from generative.training.config import COMPILE_MODES, DATA_ON_DEVICE_LIMIT, EMA, TrainConfig
from generative.training.task import TrainTask
from generative.training.trainer import Trainer
from generative.training.util import (
    derive_seed,
    flush_denormals,
    is_main_process,
    make_grid,
    to_device,
    to_model_range,
)

__all__ = [
    "CHECKPOINT",
    "COMPILE_MODES",
    "DATA_ON_DEVICE_LIMIT",
    "EMA",
    "SNAPSHOTS",
    "TrainConfig",
    "TrainTask",
    "Trainer",
    "derive_seed",
    "flush_denormals",
    "is_main_process",
    "load_checkpoint",
    "make_grid",
    "slim_checkpoint",
    "snapshot_dir",
    "to_device",
    "to_model_range",
]
