"""Image networks for armlab's generative models, built from plain arguments.

* :class:`DCGANGenerator` / :class:`DCGANDiscriminator` - the DCGAN conv stacks (Radford et al. 2016) for square
  images of 32, 64 or 128 px (any power of two from 8 px up works). Both can be conditioned on a class id
  (``n_classes > 0``) and on a continuous vector such as the target's normalised pixel position in ``[0, 1]^2``
  (``cond_dim > 0``). The generator concatenates the condition embeddings with ``z``; the discriminator is a
  *projection discriminator* (Miyato & Koyama 2018): ``D(x, y, c) = w.h + <embed(y), h> + <W c, h>`` where ``h`` is
  the image's feature vector. The discriminator is spectrally normalised by default (Miyato et al. 2018), using
  ``torch.nn.utils.parametrizations.spectral_norm``; without it, it uses batch norm as in DCGAN.
* :class:`ResnetGenerator` and :class:`PatchDiscriminator` - CycleGAN's image-to-image generator (Johnson et al.
  2016, as used by Zhu et al. 2017) and the N-layer PatchGAN discriminator (Isola et al. 2017).
  :func:`patch_receptive_field` derives a PatchGAN's receptive field from its conv stack (70 px for the usual
  three layers) and :func:`choose_n_layers` picks the depth for an image size.
* Utilities: :func:`init_weights` (the papers' ``N(0, 0.02)`` init), :func:`count_params`, :func:`receptive_field`
  and :func:`flops_per_image`, which counts the multiply-adds of every conv / linear layer with forward hooks so
  that training scripts can report achieved FLOP/s.

All images are NCHW floats in ``[-1, 1]``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import spectral_norm

from robot_env.io.errors import ConfigError

__all__ = [
    "DCGANDiscriminator",
    "DCGANGenerator",
    "aligned_conv",
    "PatchDiscriminator",
    "ResnetGenerator",
    "choose_n_layers",
    "count_params",
    "flops_per_image",
    "init_weights",
    "patch_receptive_field",
    "receptive_field",
]


def _n_doublings(size: int) -> int:
    """The number of 2x steps from 4x4 to ``size`` x ``size``; a ValueError unless ``size`` is a power of two >= 8."""
    if not isinstance(size, int) or size < 8 or size & (size - 1):
        raise ConfigError(f"image size must be a power of two of at least 8 (32, 64, 128, ...), got {size!r}")
    return int(math.log2(size)) - 2


def _check_condition(name: str, value: torch.Tensor | None, wanted: int, batch: int) -> None:
    if wanted and value is None:
        raise ValueError(f"this network is conditional: pass {name}")
    if not wanted and value is not None:
        raise ValueError(f"this network is not conditional on {name}: leave it None")
    if value is not None and value.shape[0] != batch:
        raise ValueError(f"{name} has {value.shape[0]} rows for a batch of {batch}")


def _cell_centres(res: int, size: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """``pixel_norm`` coordinates of the centres of a ``res``-cell grid over a ``size`` px image (pixel centres at
    integer pixel coordinates, as in the labels)."""
    s = size / res
    return (torch.arange(res, device=device, dtype=dtype) * s + (s - 1) / 2) / size


def target_bump(target: torch.Tensor, res: int, size: int, sigma: float) -> torch.Tensor:
    """``(N, 1, res, res)`` Gaussian bumps (peak 1, ``sigma`` in image widths) at ``target`` ``(N, 2)``
    ``pixel_norm``; zero for non-finite targets."""
    t = target.float()
    ok = torch.isfinite(t).all(1)
    t = torch.where(ok[:, None], t, torch.zeros_like(t))
    c = _cell_centres(res, size, t.device, t.dtype)
    gx = torch.exp(-0.5 * ((c[None, :] - t[:, 0:1]) / sigma) ** 2)  # (N, res) along u (columns)
    gy = torch.exp(-0.5 * ((c[None, :] - t[:, 1:2]) / sigma) ** 2)  # (N, res) along v (rows)
    return (gy[:, :, None] * gx[:, None, :] * ok[:, None, None].to(t.dtype))[:, None]


def condition_maps(y: torch.Tensor | None, c: torch.Tensor, n_classes: int, res: int, size: int,
                   sigma: float, widen: bool = True) -> torch.Tensor:
    """Where-and-what maps ``(N, K, res, res)`` of a target at ``c`` (``pixel_norm``, ``(N, 2)``): a Gaussian bump
    (``sigma`` image widths) in channel ``y`` of ``K = n_classes`` channels when ``y`` is given, else one channel;
    zeros for a negative ``y``. They make "a cube *here*" a local job for a convolutional network (the GAN's maps,
    the diffusion UNet's input channels). With ``widen``, the bump is at least one cell wide (``max(sigma, 1 /
    res)``), so that at coarse resolutions it never falls between cells."""
    bump = target_bump(c, res, size, max(float(sigma), 1.0 / res) if widen else float(sigma))
    if y is None or not n_classes:
        return bump
    onehot = F.one_hot(y.long().clamp(0, n_classes - 1), n_classes).to(bump.dtype) * (y >= 0)[:, None].to(bump.dtype)
    return bump * onehot[:, :, None, None]


def aligned_conv(layer: nn.Conv2d | nn.ConvTranspose2d, x: torch.Tensor, multiple: int,
                 extra: list[torch.Tensor] | tuple[torch.Tensor, ...] = ()) -> torch.Tensor:
    """``layer(torch.cat([x, *extra], 1))`` computed with the input and output channels zero-padded to multiples of
    ``multiple`` (8 suits bf16 tensor cores).

    The padded input channels are zeros and meet zero weights, and the padded output channels are dropped, so the
    result and the gradient of every real weight are the layer's own (up to the order of floating-point sums); only
    the shapes change. cuDNN's fast bf16 / fp16 kernels want channel counts that are multiples of 8: a DCGAN layer
    that concatenates 3 condition maps to 512 channels (515), or outputs an RGB image (3), otherwise falls back to
    much slower ones. The layer is read, not changed (its weight, spectrally normalised where parametrised, and
    bias), so state dicts and checkpoints are unaffected. Without anything to pad, or with ``multiple`` <= 1, this
    is the plain call. ``extra`` tensors (e.g. condition maps) are concatenated in the same copy as the padding.
    """
    parts = [x, *(t.to(x.dtype) for t in extra)]
    cin = sum(t.shape[1] for t in parts)
    cout = layer.out_channels
    pin, pout = (-cin % multiple, -cout % multiple) if multiple > 1 else (0, 0)
    if not (pin or pout) or layer.groups != 1 or getattr(layer, "padding_mode", "zeros") != "zeros":
        return layer(torch.cat(parts, 1) if len(parts) > 1 else x)
    channels_last = x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
    if pin:
        parts.append(x.new_zeros(x.shape[0], pin, *x.shape[2:]))
    h = torch.cat(parts, 1) if len(parts) > 1 else x
    if channels_last:
        h = h.contiguous(memory_format=torch.channels_last)
    w = layer.weight
    b = F.pad(layer.bias, (0, pout)) if layer.bias is not None else None
    if isinstance(layer, nn.ConvTranspose2d):  # weight (in, out, kh, kw)
        w = F.pad(w, (0, 0, 0, 0, 0, pout, 0, pin))
        y = F.conv_transpose2d(h, w, b, layer.stride, layer.padding, layer.output_padding, 1, layer.dilation)
    else:  # Conv2d, weight (out, in, kh, kw)
        w = F.pad(w, (0, 0, 0, 0, 0, pin, 0, pout))
        y = F.conv2d(h, w, b, layer.stride, layer.padding, layer.dilation, 1)
    return y[:, :cout] if pout else y


class DCGANGenerator(nn.Module):
    """DCGAN generator: ``z`` (plus optional conditions) -> ``channels x size x size`` image in ``[-1, 1]``.

    A linear layer maps the input vector to a ``4 x 4`` feature map with ``base * size / 8`` channels; each of the
    ``log2(size) - 2`` stride-2 transposed convolutions doubles the resolution and halves the channels (batch norm +
    ReLU between them); the last one outputs ``channels`` maps through tanh.

    Conditioning: with ``n_classes > 0`` a learned class embedding of ``embed_dim`` numbers, and with ``cond_dim > 0``
    a small MLP of the continuous condition ``c`` (e.g. the target's normalised pixel position), are concatenated
    with ``z`` before the first layer. With ``map_channels > 0`` (needs ``cond_dim == 2``, ``c`` being the target's
    ``pixel_norm``) the :func:`condition_maps` of ``(y, c)`` at each resolution are also concatenated with the input
    of every transposed convolution, so that every layer sees where the target goes and which class it is.
    """

    def __init__(
        self,
        z_dim: int = 128,
        size: int = 64,
        channels: int = 3,
        base: int = 64,
        n_classes: int = 0,
        cond_dim: int = 0,
        embed_dim: int = 32,
        map_channels: int = 0,
        map_sigma: float = 0.04,
        channel_multiple: int = 0,
    ):
        super().__init__()
        n_up = _n_doublings(size)
        self.channel_multiple = int(channel_multiple)
        if map_channels and (cond_dim != 2 or map_channels not in (1, n_classes)):
            raise ValueError("map_channels needs cond_dim 2 (the target position) and 1 or n_classes channels")
        self.z_dim, self.size, self.channels = z_dim, size, channels
        self.n_classes, self.cond_dim = n_classes, cond_dim
        self.map_channels, self.map_sigma = int(map_channels), float(map_sigma)
        self.embed = nn.Embedding(n_classes, embed_dim) if n_classes > 0 else None
        self.cond = nn.Sequential(nn.Linear(cond_dim, embed_dim), nn.SiLU()) if cond_dim > 0 else None
        in_dim = z_dim + (embed_dim if n_classes > 0 else 0) + (embed_dim if cond_dim > 0 else 0)
        width = base * 2 ** (n_up - 1)
        self.stem = nn.Linear(in_dim, width * 16, bias=False)
        self.stem_norm = nn.Sequential(nn.BatchNorm2d(width), nn.ReLU(inplace=True))
        layers: list[nn.Module] = []
        for i in range(n_up):
            last = i == n_up - 1
            out = channels if last else width // 2
            layers.append(nn.ConvTranspose2d(width + self.map_channels, out, 4, stride=2, padding=1, bias=last))
            layers += [nn.Tanh()] if last else [nn.BatchNorm2d(out), nn.ReLU(inplace=True)]
            width = out
        self.body = nn.Sequential(*layers)
        init_weights(self)

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None, c: torch.Tensor | None = None) -> torch.Tensor:
        """``z``: ``(N, z_dim)``; ``y``: class ids ``(N,)`` long; ``c``: ``(N, cond_dim)`` -> ``(N, C, size, size)``."""
        z = z.flatten(1)
        _check_condition("y", y, self.n_classes, z.shape[0])
        _check_condition("c", c, self.cond_dim, z.shape[0])
        parts = [z]
        if self.embed is not None:
            parts.append(self.embed(y))
        if self.cond is not None:
            parts.append(self.cond(c.to(z.dtype)))
        h = self.stem(torch.cat(parts, 1) if len(parts) > 1 else z)
        h = self.stem_norm(h.view(z.shape[0], -1, 4, 4))
        if not self.map_channels and self.channel_multiple <= 1:
            return self.body(h)
        y_map = y if self.map_channels > 1 else None
        for layer in self.body:
            if isinstance(layer, nn.ConvTranspose2d):
                extra = [condition_maps(y_map, c, self.n_classes, h.shape[-1], self.size, self.map_sigma)
                         ] if self.map_channels else []
                if self.channel_multiple > 1:
                    h = aligned_conv(layer, h, self.channel_multiple, extra)
                    continue
                if extra:
                    h = torch.cat([h, extra[0].to(h.dtype)], 1)
            h = layer(h)
        return h


class DCGANDiscriminator(nn.Module):
    """DCGAN discriminator returning one logit per image, shape ``(N,)``; a projection discriminator when conditional.

    ``log2(size) - 2`` stride-2 4x4 convolutions (LeakyReLU 0.2; channels ``base, 2 base, ...``) reduce the image to
    ``4 x 4``; a final 4x4 convolution turns that into the feature vector ``h``. The logit is
    ``linear(h) + <embed(y), h> + <W c, h>`` (the last two terms only when conditioned on a class id / a continuous
    vector). With ``spectral=True`` every conv, linear and embedding weight is spectrally normalised and no batch
    norm is used; with ``spectral=False`` it is DCGAN's batch-norm discriminator. ``channel_multiple`` as in
    :class:`DCGANGenerator` (for the convolutions).
    """

    def __init__(
        self,
        size: int = 64,
        channels: int = 3,
        base: int = 64,
        n_classes: int = 0,
        cond_dim: int = 0,
        spectral: bool = True,
        channel_multiple: int = 0,
    ):
        super().__init__()
        n_down = _n_doublings(size)
        self.channel_multiple = int(channel_multiple)
        self.size, self.channels, self.n_classes, self.cond_dim = size, channels, n_classes, cond_dim
        layers: list[nn.Module] = []
        width_in, width = channels, base
        for i in range(n_down):
            layers.append(nn.Conv2d(width_in, width, 4, stride=2, padding=1, bias=spectral or i == 0))
            if i > 0 and not spectral:
                layers.append(nn.BatchNorm2d(width))
            layers.append(nn.LeakyReLU(0.2, inplace=True))
            width_in, width = width, width * 2
        feat = width_in
        layers += [nn.Conv2d(feat, feat, 4), nn.LeakyReLU(0.2, inplace=True), nn.Flatten(1)]
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(feat, 1)
        self.embed = nn.Embedding(n_classes, feat) if n_classes > 0 else None
        self.cond = nn.Linear(cond_dim, feat, bias=False) if cond_dim > 0 else None
        init_weights(self)
        if spectral:
            for m in self.modules():
                if isinstance(m, (nn.Conv2d, nn.Linear, nn.Embedding)):
                    spectral_norm(m)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None, c: torch.Tensor | None = None) -> torch.Tensor:
        """``x``: ``(N, C, size, size)`` in ``[-1, 1]``; ``y``: ``(N,)`` long; ``c``: ``(N, cond_dim)`` -> ``(N,)``."""
        _check_condition("y", y, self.n_classes, x.shape[0])
        _check_condition("c", c, self.cond_dim, x.shape[0])
        if self.channel_multiple > 1:
            h = x
            for layer in self.features:
                h = aligned_conv(layer, h, self.channel_multiple) if isinstance(layer, nn.Conv2d) else layer(h)
        else:
            h = self.features(x)
        out = self.head(h).squeeze(1)
        if self.embed is not None:
            out = out + (self.embed(y) * h).sum(1)
        if self.cond is not None:
            out = out + (self.cond(c.to(h.dtype)) * h).sum(1)
        return out


class _ResnetBlock(nn.Module):
    """``x + F(x)``, ``F`` = reflection pad, 3x3 conv, instance norm, ReLU, reflection pad, 3x3 conv, instance norm."""

    def __init__(self, ch: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.ReflectionPad2d(1), nn.Conv2d(ch, ch, 3), nn.InstanceNorm2d(ch), nn.ReLU(inplace=True),
            nn.ReflectionPad2d(1), nn.Conv2d(ch, ch, 3), nn.InstanceNorm2d(ch),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class ResnetGenerator(nn.Module):
    """CycleGAN's ResNet generator: image -> image of the same height and width, output through tanh.

    Reflection-padded 7x7 stem to ``base`` channels, ``n_down`` stride-2 3x3 convolutions doubling the channels,
    ``n_blocks`` residual blocks (6 is CycleGAN's choice for 128 px images, 9 for 256 px), ``n_down`` stride-2
    transposed convolutions back to full resolution and a reflection-padded 7x7 head. Every hidden layer uses instance
    norm (no affine parameters, as in CycleGAN) and ReLU. Height and width must be multiples of ``2 ** n_down``.
    """

    def __init__(self, in_ch: int = 3, out_ch: int = 3, base: int = 64, n_blocks: int = 6, n_down: int = 2):
        super().__init__()
        if n_blocks < 0 or n_down < 0:
            raise ValueError(f"n_blocks and n_down must be >= 0, got {n_blocks} and {n_down}")
        self.n_down, self.n_blocks = n_down, n_blocks
        layers: list[nn.Module] = [
            nn.ReflectionPad2d(3), nn.Conv2d(in_ch, base, 7), nn.InstanceNorm2d(base), nn.ReLU(inplace=True),
        ]
        ch = base
        for _ in range(n_down):
            layers += [nn.Conv2d(ch, ch * 2, 3, stride=2, padding=1), nn.InstanceNorm2d(ch * 2), nn.ReLU(inplace=True)]
            ch *= 2
        layers += [_ResnetBlock(ch) for _ in range(n_blocks)]
        for _ in range(n_down):
            layers += [
                nn.ConvTranspose2d(ch, ch // 2, 3, stride=2, padding=1, output_padding=1),
                nn.InstanceNorm2d(ch // 2), nn.ReLU(inplace=True),
            ]
            ch //= 2
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(ch, out_ch, 7), nn.Tanh()]
        self.net = nn.Sequential(*layers)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = 2**self.n_down
        if x.shape[-1] % m or x.shape[-2] % m:
            raise ValueError(f"image height and width must be multiples of {m}, got {tuple(x.shape[-2:])}")
        return self.net(x)


def _patch_specs(n_layers: int) -> list[tuple[int, int]]:
    """(kernel, stride) of a PatchGAN's convolutions: ``n_layers`` stride-2 ones, then two stride-1 ones."""
    return [(4, 2)] * n_layers + [(4, 1), (4, 1)]


class PatchDiscriminator(nn.Module):
    """N-layer PatchGAN: a map of logits, one per overlapping image patch (``(N, 1, h, w)``).

    4x4 convolutions: ``n_layers`` with stride 2 (channels ``base, 2 base, 4 base, 8 base, 8 base, ...``), one more
    with stride 1, then a stride-1 convolution to a single channel. Instance norm after every conv but the first and
    the last; LeakyReLU 0.2. Each output logit sees a ``patch_receptive_field(n_layers)`` square of the input.
    """

    def __init__(self, in_ch: int = 3, base: int = 64, n_layers: int = 3):
        super().__init__()
        if n_layers < 1:
            raise ValueError(f"n_layers must be >= 1, got {n_layers}")
        self.n_layers = n_layers
        specs = _patch_specs(n_layers)
        layers: list[nn.Module] = []
        ch_in, ch = in_ch, base
        for i, (k, s) in enumerate(specs):
            last = i == len(specs) - 1
            out = 1 if last else ch
            layers.append(nn.Conv2d(ch_in, out, k, stride=s, padding=1))
            if not last:
                if i > 0:
                    layers.append(nn.InstanceNorm2d(out))
                layers.append(nn.LeakyReLU(0.2, inplace=True))
            ch_in, ch = out, min(ch * 2, base * 8)
        self.net = nn.Sequential(*layers)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def receptive_field(module: nn.Module) -> int:
    """Receptive field (pixels) of a plain chain of convolutions: the module's ``Conv2d`` layers in order.

    Walking back from one output pixel, a layer with kernel ``k``, stride ``s`` and dilation ``d`` widens the field
    from ``r`` to ``(r - 1) * s + d * (k - 1) + 1``. Only valid for modules whose convs form a single chain (no
    branches, no pooling), such as :class:`PatchDiscriminator`.
    """
    r = 1
    convs = [m for m in module.modules() if isinstance(m, nn.Conv2d)]
    for conv in reversed(convs):
        r = (r - 1) * conv.stride[0] + conv.dilation[0] * (conv.kernel_size[0] - 1) + 1
    return r


def patch_receptive_field(n_layers: int) -> int:
    """Receptive field of :class:`PatchDiscriminator` with ``n_layers``, read off its conv stack (3 -> 70 px)."""
    return receptive_field(PatchDiscriminator(in_ch=1, base=1, n_layers=n_layers))


def choose_n_layers(image_size: int) -> int:
    """The largest PatchGAN depth whose receptive field is smaller than the image (at least 1).

    Receptive fields are 16, 34, 70, 142, ... px for 1, 2, 3, 4, ... layers, so 64 px images get 2 layers (34 px
    patches), 128 px images 3 (the usual 70 px PatchGAN) and 256 px images 4. A patch as large as the image would
    make the PatchGAN a whole-image discriminator with most of each patch in the zero padding.
    """
    n = 1
    while patch_receptive_field(n + 1) < image_size:
        n += 1
    return n


def init_weights(module: nn.Module, gain: float = 0.02) -> nn.Module:
    """The DCGAN / CycleGAN init, in place: conv, linear and embedding weights ``N(0, gain)``, norm-layer weights
    ``N(1, gain)``, biases zero. Spectrally normalised weights are reinitialised through their ``original`` and their
    power-iteration vectors re-estimated. Returns ``module``."""
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear, nn.Embedding)):
                param = m.parametrizations.weight.original if parametrize.is_parametrized(m, "weight") else m.weight
                nn.init.normal_(param, 0.0, gain)
                if getattr(m, "bias", None) is not None:
                    nn.init.zeros_(m.bias)
                if parametrize.is_parametrized(m, "weight"):
                    was_training = m.training
                    m.train()
                    for _ in range(15):  # each access in training mode runs one power iteration
                        _ = m.weight
                    m.train(was_training)
            elif isinstance(m, (nn.BatchNorm2d, nn.InstanceNorm2d, nn.GroupNorm)) and m.weight is not None:
                nn.init.normal_(m.weight, 1.0, gain)
                nn.init.zeros_(m.bias)
    return module


def count_params(module: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (each spectrally normalised weight counted once, through its ``original``)."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


def flops_per_image(module: nn.Module, input_shape: tuple[int, ...], **forward_kwargs: torch.Tensor) -> int:
    """Estimated forward FLOPs for one input: ``2 *`` the multiply-adds of every Conv2d, ConvTranspose2d and Linear.

    Runs one forward pass of a zero input of shape ``(1, *input_shape)`` (e.g. ``(3, 64, 64)`` for an image,
    ``(z_dim,)`` for a generator) in eval mode under ``no_grad``, with forward hooks counting
    ``out.numel() * in_channels / groups * kh * kw`` for convolutions, ``in.numel() * out_channels / groups * kh * kw``
    for transposed convolutions and ``out.numel() * in_features`` for linear layers. Biases, norms, activations and
    embeddings are not counted, nor the zero channels that ``channel_multiple`` pads (the count is the model's own:
    it is taken with ``channel_multiple`` off). ``forward_kwargs`` (batch of one, e.g.
    ``y=torch.zeros(1, dtype=torch.long)``) are passed to ``forward``. A training step costs about three times the
    forward FLOPs.
    """
    macs = 0

    def hook(m: nn.Module, inputs: tuple, out: torch.Tensor) -> None:
        nonlocal macs
        if isinstance(m, nn.Conv2d):
            kh, kw = m.kernel_size
            macs += out.numel() * (m.in_channels // m.groups) * kh * kw
        elif isinstance(m, nn.ConvTranspose2d):
            kh, kw = m.kernel_size
            macs += inputs[0].numel() * (m.out_channels // m.groups) * kh * kw
        elif isinstance(m, nn.Linear):
            macs += out.numel() * m.in_features

    handles = [
        m.register_forward_hook(hook)
        for m in module.modules()
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear))
    ]
    modes = {m: m.training for m in module.modules()}
    multiples = {m: m.channel_multiple for m in module.modules() if hasattr(m, "channel_multiple")}
    try:
        for m in multiples:  # count the model's own convolutions (aligned_conv's zero channels are not its FLOPs)
            m.channel_multiple = 0
        module.eval()
        param = next(module.parameters(), None)
        device = param.device if param is not None else torch.device("cpu")
        with torch.no_grad():
            module(torch.zeros((1, *input_shape), device=device), **forward_kwargs)
    finally:
        for h in handles:
            h.remove()
        for m, training in modes.items():
            m.training = training
        for m, multiple in multiples.items():
            m.channel_multiple = multiple
    return 2 * macs
