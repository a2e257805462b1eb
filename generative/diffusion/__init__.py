"""Conditional diffusion models on armlab camera images (pixel and latent), built on diffusers and trained by the
shared :class:`~generative.training.Trainer`.

Every model is built from plain arguments (nothing is fetched from the Hugging Face hub): a diffusers
``UNet2DModel`` denoiser, a ``DDPMScheduler`` (1000 steps, cosine schedule ``squaredcos_cap_v2``, epsilon
prediction) for training, the samplers ``DDPMScheduler`` / ``DDIMScheduler`` / ``DPMSolverMultistepScheduler``
built from the training scheduler's config (see :func:`make_sampler` for their spacing and the DDIM clipping
detail), and an ``AutoencoderKL`` for latent diffusion.

Conditions (``cond``, a subset of ``("class", "target", "joints")``, or ``("text",)``; empty = unconditional)
------------------------------------------------------------------------------------------------------------
* ``class``: the target object's shape (``class_id``: cube, cylinder, sphere). A learned embedding with
  ``n_classes + 1`` rows; the last row is the *null* label used for classifier-free guidance.
* ``target``: where the target's centre is in the image (``pixel_norm`` in ``[0, 1]^2``), given to the network
  twice: (1) as an embedding (Fourier features of ``(u, v)`` -> 2-layer MLP) and (2) as an extra input channel, a
  Gaussian bump at the target position (``target_sigma`` image widths) concatenated with the noisy image. The
  channel makes "draw it *here*" a local, translation-equivariant job that a convolutional UNet learns quickly; a
  global embedding alone has to learn the mapping from numbers to places.
* ``class`` and ``target`` together (``spatial_class``, on by default): one input channel per class instead of
  the single bump, the bump in the requested class's channel and zeros in the others, so the pixels where the
  object goes also see *which* object: "a cube here" is then as local as "something here". (The embeddings are
  kept as well.) With the class alone, there is no place to put it, and the embedding carries it.
* ``joints``: the arm's joint positions (``joint_positions`` of each frame's label, radians; ``n_joints`` is read
  from the data: 3 for the dataset's arm3). They are normalised per joint by the *training frames'* range,
  ``(q - mid) / half_range`` with ``mid`` and ``half_range`` from the per-joint min / max of the training labels
  (``joint_low`` / ``joint_high`` in the config, so in the checkpoint), which puts the training joints in
  ``[-1, 1]``; then Fourier features -> 2-layer MLP, like the target's embedding (no input map: the arm is spread
  over the image, so there is no single place to mark). The robot's joint limits (``joint_limits``, read from the
  dataset manifest's ``joint_limits`` when it has them) are kept to check requested joints.
  Normalising by the data rather than the URDF limits uses the whole ``[-1, 1]`` (the dataset draws the base yaw
  in +-1.4 rad of its +-2.97 rad range) and works for labels of any robot.

* ``text`` (alone): a caption made from the frame's labels (``generative.text``), read by a frozen, pre-trained
  text encoder and a ``UNet2DConditionModel`` with cross-attention over its tokens (``generative.diffusion.text``:
  Stable Diffusion's recipe at armlab's scale; the empty caption is the unconditional branch).

The class, target and joint embeddings are summed into one vector that :class:`ConditionedUNet` passes to the UNet
as ``class_labels`` with ``class_embed_type="identity"``: diffusers adds it to the timestep embedding, so it reaches
every ResNet block (the same path the UNet's own ``num_class_embeds`` table would take).

Classifier-free guidance (Ho & Salimans 2022)
---------------------------------------------
In training, each image's conditions are dropped with probability ``guidance_dropout`` (default 0.1), all of them
together: the null class row, zeroed target and joint embedding inputs with their "dropped" flags set, and a zero
target channel.
At sampling, the network runs on the conditioned and the unconditioned input in one batch and
``eps = eps_uncond + s * (eps_cond - eps_uncond)``: ``s = 1`` is the plain conditional model (one pass), ``s = 0``
the unconditional one, ``s > 1`` pushes samples towards the condition. (A ``UNet2DConditionModel`` with
cross-attention to condition tokens would work too; for a few small conditions an added embedding and input maps
are simpler and cheaper.)

Training loss
-------------
Mean squared error of the predicted noise, weighted per image by Min-SNR-gamma (Hang et al. 2023; ``min(SNR(t),
gamma) / SNR(t)``, ``snr_gamma`` 5, faster convergence) and per pixel by ``1 + target_weight * bump`` where
``bump`` is the Gaussian at the frame's target position (from the labels, whatever ``cond`` is): the target object
is a few pixels of a 64 px image, yet the class is its shape. A per-pixel weight leaves the optimal denoiser
unchanged (each output pixel is still fit to its conditional mean); it only spends more of a small model's capacity
and a short run's steps where the class is decided. AdamW, linear warm-up, an EMA copy of the UNet (sampling uses
it).

Pixel and latent diffusion
--------------------------
* Pixel: the UNet denoises images in ``[-1, 1]``. With ``patch`` = 2 (the default from 64 px up) the image is
  folded into 2 x 2 pixel patches (``pixel_unshuffle``: 64 x 64 x 3 -> 32 x 32 x 12) before the UNet and unfolded
  after it, as in "simple diffusion" (Hoogeboom et al. 2023): the noise is still in pixel space, but the UNet's
  first level works at half the resolution, about 4x less compute.
* Latent (Rombach et al. 2022, the Stable Diffusion idea): :class:`AutoencoderTask` trains an ``AutoencoderKL``
  (L1 + MSE reconstruction, weighted around the target like the diffusion loss, + ``kl_weight`` x KL; its batch
  can differ from the UNet's, ``vae_batch_size``); the images are encoded once (posterior means), scaled by
  ``scaling_factor`` = 1 / std of the latents (stored in the run's config), and the same UNet is trained on them;
  sampling decodes. The ``small`` autoencoder downsamples 4x (64 x 64 x 3 -> 16 x 16 x 4). The autoencoder's
  weights are kept (frozen) in the latent run's checkpoint, so a run folder is self-contained.

Sizes (``model``): ``tiny`` (UNet channels 16, 32; for tests), ``small`` (32, 64, 128; attention at the lowest
level) and ``base`` (64, 128, 256, two layers per block, attention on the two lowest levels).

API
---
* :class:`DiffusionConfig`, :class:`DiffusionTask`, :class:`ConditionedUNet`, :func:`build_unet`,
  :func:`build_vae`, :func:`train_scheduler`, :func:`make_sampler`.
* :class:`AutoencoderTask`, :func:`train_autoencoder` (reports reconstruction PSNR).
* :func:`train_diffusion` (a :class:`~generative.training.TrainConfig` and the model's options; resumes; a
  finished run continues to a larger ``steps``; ``armlab diffusion train`` starts from :data:`TRAIN_DEFAULTS`),
  :func:`load_pipeline`,
  :func:`sample` (images and the conditions used: ``(images, class_ids, targets, joints)``),
  :func:`draw_all_conditions` (requested conditions completed from the training labels; :func:`draw_conditions`
  is its ``(class_ids, targets)`` part), :func:`evaluate_diffusion` (the keys of ``armlab gan eval --json``).

The checkpoint's ``extra`` keeps the training labels the model was conditioned on (``class_ids``, ``targets``,
``joints``), so that sampling draws conditions that are not given from the training distribution (all of one
frame's labels together, from the frames of the requested class when a class is given).

A run folder holds ``config.json``, ``checkpoint.pt``, ``log.csv``, ``tb/``, ``samples/step_NNNNNN.png`` (DDIM
grids: one class per row, the target and the first joint (base yaw) sweeping left to right, other joints at their
training medians), ``summary.json`` and, for a latent run that trained its own autoencoder, ``vae/`` (the
autoencoder's run folder).

Layout: ``config`` (settings, sizes, conditions), ``schedulers``, ``models`` (the UNet and the autoencoder's
constructor), ``task`` (the training task), ``pipeline`` (sampling), ``autoencoder`` (latent diffusion's
autoencoder), ``data`` (the training tensors), ``train`` and ``evaluate``.
"""

from __future__ import annotations

from generative.diffusion.autoencoder import (
    AutoencoderConfig,
    AutoencoderTask,
    encode_images,
    load_vae,
    reconstruct,
    reconstruction_psnr,
    train_autoencoder,
)
from generative.diffusion.config import (
    CONDITIONS,
    DEFAULT_GUIDANCE,
    MIN_JOINT_HALF_RANGE,
    MODEL_SIZES,
    SAMPLERS,
    TEXT_GUIDANCE,
    VAE_SIZES,
    DiffusionConfig,
    check_sampler,
    default_guidance,
    parse_cond,
    vae_arguments,
    vae_factor,
)
from generative.diffusion.data import manifest_joint_limits
from generative.diffusion.evaluate import evaluate_diffusion
from generative.diffusion.models import ConditionedUNet, build_unet, build_vae
from generative.diffusion.pipeline import (
    Pipeline,
    draw_all_conditions,
    draw_conditions,
    load_pipeline,
    run_config,
    sample,
    to_uint8,
)
from generative.diffusion.schedulers import LATENT_CLIP, make_sampler, sampler_step_kwargs, train_scheduler
from generative.diffusion.task import DiffusionTask
from generative.diffusion.train import TRAIN_DEFAULTS, train_diffusion
from generative.runs import SUMMARY

# runs name their task class in config.json: generative.diffusion.DiffusionTask, as always
DiffusionTask.__module__ = AutoencoderTask.__module__ = __name__

__all__ = [
    "CONDITIONS",
    "DEFAULT_GUIDANCE",
    "MIN_JOINT_HALF_RANGE",
    "MODEL_SIZES",
    "SAMPLERS",
    "SUMMARY",
    "TEXT_GUIDANCE",
    "TRAIN_DEFAULTS",
    "VAE_SIZES",
    "AutoencoderConfig",
    "AutoencoderTask",
    "ConditionedUNet",
    "DiffusionConfig",
    "DiffusionTask",
    "Pipeline",
    "build_unet",
    "build_vae",
    "check_sampler",
    "default_guidance",
    "draw_all_conditions",
    "draw_conditions",
    "encode_images",
    "evaluate_diffusion",
    "load_pipeline",
    "load_vae",
    "make_sampler",
    "LATENT_CLIP",
    "manifest_joint_limits",
    "parse_cond",
    "reconstruct",
    "reconstruction_psnr",
    "run_config",
    "sample",
    "sampler_step_kwargs",
    "to_uint8",
    "train_autoencoder",
    "train_diffusion",
    "train_scheduler",
    "vae_arguments",
    "vae_factor",
]
