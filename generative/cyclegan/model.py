"""CycleGAN's parts: the generator pair, the image pool, the augmentation and the learning-rate schedule."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from generative.cyclegan.look import LookGenerator
from generative.networks import ResnetGenerator
from generative.training import to_device
from robot_env.io.errors import ParamError

__all__ = ["DEFAULT_BASE", "DEFAULT_IDENTITY", "DEFAULT_LR", "DIRECTIONS", "GENERATORS", "CyclePair", "ImagePool",
           "augment",
           "check_generator", "default_n_down", "linear_decay"]

DIRECTIONS = ("sim2real", "real2sim")

#: The generator kinds: CycleGAN's ResNet generator and the light camera model (:class:`LookGenerator`).
GENERATORS = ("resnet", "look")

#: The generator width when none is given, per kind.
DEFAULT_BASE = {"resnet": 32, "look": 16}

#: The identity term's weight (a fraction of the cycle weight) when none is given, per kind. Off for the look
#: generator: a camera look applies to every image, real ones included, so ``G(real) = real`` asks it to stay the
#: identity (on a red-cast pair of 32 px sets, 300 steps moved G(sim)'s colour means 3 % of the way to the real
#: ones with the term at 0.5, 87 % without it).
DEFAULT_IDENTITY = {"resnet": 0.5, "look": 0.0}
#: The learning rate per generator kind: CycleGAN's 2e-4; the look generator's few parameters (most of them
#: starting at the identity) move too slowly at that rate, and 1e-3 is what `armlab bench sim2real` trains them with.
DEFAULT_LR = {"resnet": 2e-4, "look": 1e-3}


def check_generator(generator: str) -> str:
    """``generator`` if it names a kind of :data:`GENERATORS`, else a :class:`ParamError`."""
    if generator not in GENERATORS:
        raise ParamError("generator", f"unknown {{name}} {generator!r}; choose resnet or look")
    return generator


def linear_decay(total_steps: int) -> Callable[[int], float]:
    """The LR factor of CycleGAN's schedule over ``total_steps``: 1 for the first half, then linear to 0 at the end.

    ``f(s)`` is the factor of training step ``s`` (0-based; what ``LambdaLR`` passes after ``s`` scheduler steps):
    ``1`` for ``s < total_steps / 2``, ``(total_steps - s) / (total_steps - total_steps / 2)`` after, 0 from
    ``total_steps`` on.
    """
    total = max(int(total_steps), 1)
    half = total / 2

    def factor(step: int) -> float:
        if step < half:
            return 1.0
        return max(0.0, (total - step) / (total - half))

    return factor


class ImagePool:
    """A buffer of up to ``size`` earlier generated images (Shrivastava et al. 2017, as used by CycleGAN).

    :meth:`query` takes a batch of new images and returns a batch of the same size: while the pool is not full each
    new image is stored and returned; afterwards each new image is, with probability 1/2, swapped with a random
    stored one (which is returned instead), else returned as it is. Random draws come from torch's global RNG, which
    the trainer seeds per step. ``size`` 0 disables the pool. In a distributed run every rank keeps its own pool
    and checkpoints hold rank 0's, so only single-process runs resume with every pool exactly as it was.
    """

    def __init__(self, size: int = 50):
        self.size = int(size)
        self.images: torch.Tensor | None = None  # (count, C, H, W), detached

    def __len__(self) -> int:
        return 0 if self.images is None else len(self.images)

    @torch.no_grad()
    def query(self, images: torch.Tensor) -> torch.Tensor:
        images = images.detach()
        if self.size <= 0:
            return images
        out = []
        for img in images:
            img = img.unsqueeze(0)
            if len(self) < self.size:
                self.images = img.clone() if self.images is None else torch.cat([self.images, img])
                out.append(img)
            elif float(torch.rand(())) < 0.5:
                k = int(torch.randint(0, self.size, ()))
                out.append(self.images[k : k + 1].clone())
                self.images[k] = img[0]
            else:
                out.append(img)
        return torch.cat(out)

    def state_dict(self) -> dict[str, Any]:
        return {"size": self.size, "images": self.images.detach().cpu() if self.images is not None else None}

    def load_state_dict(self, state: dict[str, Any], device: torch.device | str = "cpu") -> None:
        self.size = int(state["size"])
        imgs = state.get("images")
        self.images = None if imgs is None else imgs.to(device).clone()


def augment(x: torch.Tensor, pad: int, flip: bool = True) -> torch.Tensor:
    """Random horizontal flip (probability 1/2) and random shift by up to ``pad`` pixels per image.

    The batch is reflection-padded by ``pad`` pixels and each image cropped back at a random offset (and read
    mirrored when flipped), in one gather: integer shifts only, so no resampling blurs the images. Draws from
    torch's global RNG.
    """
    n, c, h, w = x.shape
    if pad <= 0 and not flip:
        return x
    dev = x.device
    off = torch.randint(0, 2 * pad + 1, (n, 2)) if pad > 0 else torch.zeros(n, 2, dtype=torch.long)
    flips = torch.rand(n) < 0.5 if flip else torch.zeros(n, dtype=torch.bool)
    xp = F.pad(x, (pad, pad, pad, pad), mode="reflect") if pad > 0 else x
    rows = off[:, :1] + torch.arange(h)  # (n, h)
    cols = torch.where(flips[:, None], torch.arange(w - 1, -1, -1), torch.arange(w)) + off[:, 1:]  # (n, w)
    idx_n = torch.arange(n, device=dev).view(n, 1, 1, 1)
    idx_c = torch.arange(c, device=dev).view(1, c, 1, 1)
    return xp[idx_n, idx_c, to_device(rows, dev).view(n, 1, h, 1), to_device(cols, dev).view(n, 1, 1, w)]


class CyclePair(nn.Module):
    """The two generators, ``g`` (sim -> real) and ``f`` (real -> sim), run together for one training step.

    Both are of the kind ``generator``: ``"resnet"``, CycleGAN's :class:`~generative.networks.ResnetGenerator`
    (``base`` wide, default 32, ``n_blocks`` residual blocks, ``n_down`` stride-2 stages), or ``"look"``, the light
    camera model :class:`~generative.cyclegan.look.LookGenerator` (``base`` wide, default 16; ``n_blocks`` and
    ``n_down`` unused). One module, so that a distributed run wraps both generators in one
    ``DistributedDataParallel`` and the generators, each used several times per step, are synchronised once per
    backward pass.
    """

    def __init__(self, base: int | None = None, n_blocks: int = 6, n_down: int = 2, generator: str = "resnet"):
        super().__init__()
        self.generator = check_generator(generator)
        base = DEFAULT_BASE[generator] if base is None else int(base)
        if generator == "look":
            self.g: nn.Module = LookGenerator(base)
            self.f: nn.Module = LookGenerator(base)
        else:
            self.g = ResnetGenerator(3, 3, base=base, n_blocks=n_blocks, n_down=n_down)
            self.f = ResnetGenerator(3, 3, base=base, n_blocks=n_blocks, n_down=n_down)

    def forward(self, sim: torch.Tensor, real: torch.Tensor, identity: bool = True) -> dict[str, torch.Tensor]:
        """Translations, cycles and (with ``identity``) identity mappings of a sim batch and a real batch.

        Both kinds treat every image on its own (instance or group norm), so each generator is run once on the
        concatenation of the images it maps (the same result as separate calls, fewer kernel launches).
        """
        ns, nr = len(sim), len(real)
        g_in = torch.cat([sim, real]) if identity else sim
        f_in = torch.cat([real, sim]) if identity else real
        g_out, f_out = self.g(g_in), self.f(f_in)
        fake_real, fake_sim = g_out[:ns], f_out[:nr]
        out = {"fake_real": fake_real, "fake_sim": fake_sim,
               "rec_sim": self.f(fake_real), "rec_real": self.g(fake_sim)}
        if identity:
            out["idt_real"], out["idt_sim"] = g_out[ns:], f_out[nr:]
        return out


def default_n_down(size: int) -> int:
    """Stride-2 stages of the generators for ``size`` px images: 2 (CycleGAN's) from 128 px up, else 1, so that the
    residual blocks work at 32 x 32 or more and small objects (a few pixels at 64 px) survive the bottleneck."""
    return 2 if size >= 128 else 1


def _check_size(size: int) -> int:
    if not isinstance(size, int) or size < 16 or size % 4:
        raise ParamError("size", f"{{name}} must be an integer multiple of 4 of at least 16, got {size!r}")
    return size
