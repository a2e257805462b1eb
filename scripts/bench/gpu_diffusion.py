"""GPU check of class-conditional diffusion training: self-contained (torch + diffusers only, no pybullet, no data).

    armlab bench gpu-diffusion                         # CUDA: ~90 s of training, bf16 + channels_last
    armlab bench gpu-diffusion --device cpu --seconds 10   # smoke test

Synthetic 64 px images are drawn in the script: a random background colour and one shape of a random colour at a
random place, whose kind is the class (0 square, 1 disc, 2 triangle). A class-conditional diffusers UNet2DModel
(``num_class_embeds`` = 3 + 1, the last the null label of classifier-free guidance, dropped with probability 0.1)
learns them with the DDPM epsilon loss (1000-step cosine schedule), AdamW, bf16 autocast and channels-last memory
on CUDA, for --seconds of wall time. Then 50-step DDIM sampling with guidance 2 is timed.

Prints, as one JSON object on the last line: the device name, training images/s (after warm-up), sampling
images/s (DDIM 50, guided, so 100 UNet passes per image), the FLOPs of one training image (3 x the forward FLOPs
counted by ``torch.utils.flop_counter.FlopCounterMode``) and the achieved TFLOP/s they imply, the loss at the start
and the end, and the settings.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time

import torch
import torch.nn.functional as F

MODELS = {  # channels, layers per block, attention per level
    "tiny": ((16, 32), 1, (False, False)),
    "small": ((64, 128, 256), 2, (False, True, True)),
    "base": ((128, 256, 256, 512), 2, (False, True, True, True)),
}


def synthetic_batch(n: int, size: int, gen: torch.Generator, device: torch.device) -> tuple[torch.Tensor,
                                                                                              torch.Tensor]:
    """``n`` images in [-1, 1] ``(n, 3, size, size)`` and their classes: a shape (0 square, 1 disc, 2 triangle) of
    radius 0.12..0.25 image widths at a random place, random colours."""
    cls = torch.randint(0, 3, (n,), generator=gen)
    centre = 0.25 + 0.5 * torch.rand(n, 2, generator=gen)
    radius = 0.12 + 0.13 * torch.rand(n, 1, generator=gen)
    bg = torch.rand(n, 3, generator=gen) * 2 - 1
    fg = torch.rand(n, 3, generator=gen) * 2 - 1
    cls, centre, radius, bg, fg = (t.to(device) for t in (cls, centre, radius, bg, fg))
    coords = (torch.arange(size, device=device).float() + 0.5) / size
    dx = coords.view(1, 1, size) - centre[:, 0].view(n, 1, 1)
    dy = coords.view(1, size, 1) - centre[:, 1].view(n, 1, 1)
    r = radius.view(n, 1, 1)
    square = (dx.abs() <= r * 0.8) & (dy.abs() <= r * 0.8)
    disc = dx**2 + dy**2 <= r**2
    tri = (dy <= r * 0.7) & (dy >= -r) & (dx.abs() <= (dy + r) * 0.6)
    mask = torch.where(cls.view(n, 1, 1) == 0, square, torch.where(cls.view(n, 1, 1) == 1, disc, tri))
    img = torch.where(mask[:, None], fg[:, :, None, None], bg[:, :, None, None])
    return img.clamp(-1, 1), cls


def build(model: str, size: int):
    from diffusers import DDPMScheduler, UNet2DModel

    channels, layers, attention = MODELS[model]
    n = len(channels)
    unet = UNet2DModel(
        sample_size=size, in_channels=3, out_channels=3, block_out_channels=channels, layers_per_block=layers,
        down_block_types=tuple("AttnDownBlock2D" if attention[i] else "DownBlock2D" for i in range(n)),
        up_block_types=tuple("AttnUpBlock2D" if attention[n - 1 - i] else "UpBlock2D" for i in range(n)),
        norm_num_groups=8 if channels[0] < 32 else 32, attention_head_dim=32, add_attention=any(attention),
        num_class_embeds=3 + 1,
    )
    sched = DDPMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2", prediction_type="epsilon")
    return unet, sched


def forward_flops(unet, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor, autocast) -> int:
    """FLOPs of one forward pass on ``x`` (counted by FlopCounterMode)."""
    from torch.utils.flop_counter import FlopCounterMode

    with torch.no_grad(), autocast(), FlopCounterMode(display=False) as fc:
        unet(x, t, class_labels=y)
    return int(fc.get_total_flops())


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="auto", help="auto (CUDA if available), cuda, cpu")
    p.add_argument("--seconds", type=float, default=90.0, help="training wall time (default 90)")
    p.add_argument("--model", default=None, help="tiny, small or base (default: small on CUDA, tiny on CPU)")
    p.add_argument("--batch-size", type=int, default=None, help="default 128 on CUDA, 8 on CPU")
    p.add_argument("--size", type=int, default=64, help="image size (default 64)")
    p.add_argument("--sample-n", type=int, default=None, help="images sampled with DDIM-50 (default 256 / 2)")
    p.add_argument("--no-amp", action="store_true", help="float32 instead of bf16 autocast on CUDA")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)

    dev = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                       ("cpu" if args.device == "auto" else args.device))
    cuda = dev.type == "cuda"
    model = args.model or ("small" if cuda else "tiny")
    if model not in MODELS:
        print(f"error: unknown --model {model!r}: choose {', '.join(MODELS)}", file=sys.stderr)
        return 2
    batch = args.batch_size or (128 if cuda else 8)
    sample_n = args.sample_n or (256 if cuda else 2)
    if batch < 1 or sample_n < 1 or args.seconds <= 0 or args.size < 8 or args.size % 2 ** (len(MODELS[model][0])
                                                                                             - 1):
        print("error: --batch-size and --sample-n must be >= 1, --seconds > 0 and --size a multiple of the UNet's "
              "downsampling", file=sys.stderr)
        return 2
    amp = cuda and not args.no_amp
    if cuda:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True

    def autocast():
        return torch.autocast("cuda", dtype=torch.bfloat16) if amp else torch.autocast(dev.type, enabled=False)

    torch.manual_seed(args.seed)
    unet, sched = build(model, args.size)
    memory = torch.channels_last if cuda else torch.contiguous_format
    unet = unet.to(dev, memory_format=memory).train()
    opt = torch.optim.AdamW(unet.parameters(), lr=2e-4 if cuda else 1e-3, fused=cuda)
    gen = torch.Generator().manual_seed(args.seed)
    ac = sched.alphas_cumprod.to(dev)

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize(dev)

    def step(x0: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        n = x0.shape[0]
        t = torch.randint(0, 1000, (n,), device=dev)
        noise = torch.randn_like(x0)
        a = ac[t].view(n, 1, 1, 1)
        xt = (a.sqrt() * x0 + (1 - a).sqrt() * noise).contiguous(memory_format=memory)
        y = torch.where(torch.rand(n, device=dev) < 0.1, torch.full_like(y, 3), y)  # null label
        with autocast():
            pred = unet(xt, t, class_labels=y).sample
        loss = F.mse_loss(pred.float(), noise)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss.detach()

    x_probe, y_probe = synthetic_batch(batch, args.size, gen, dev)
    flops_fwd = forward_flops(unet, x_probe.contiguous(memory_format=memory),
                              torch.full((batch,), 500, device=dev), y_probe, autocast) / batch
    flops_train = 3 * flops_fwd

    warmup = 1 if not cuda else 10
    losses, n_images, t_measure = [], 0, None
    t0 = time.perf_counter()
    steps = 0
    while True:
        x0, y = synthetic_batch(batch, args.size, gen, dev)
        loss = step(x0.contiguous(memory_format=memory), y)
        steps += 1
        if steps == warmup:
            sync()
            t_measure = time.perf_counter()
            n_images = 0
        elif steps > warmup:
            n_images += batch
        if steps % 25 == 0 or steps <= 2:
            losses.append(float(loss))
        if time.perf_counter() - t0 >= args.seconds and steps > warmup:
            break
    sync()
    losses.append(float(loss))
    train_s = time.perf_counter() - t_measure
    train_ips = n_images / train_s if train_s > 0 and n_images else None

    # -- DDIM 50 with guidance 2
    from diffusers import DDIMScheduler

    unet.eval()
    ddim = DDIMScheduler.from_config(sched.config, timestep_spacing="trailing")
    ddim.set_timesteps(50)
    y = torch.arange(sample_n, device=dev) % 3
    sync()
    ts = time.perf_counter()
    with torch.no_grad():
        x = torch.randn(sample_n, 3, args.size, args.size, generator=gen).to(dev).contiguous(memory_format=memory)
        yy = torch.cat([y, torch.full_like(y, 3)])
        for t in ddim.timesteps:
            with autocast():
                eps = unet(torch.cat([x, x]), t.to(dev), class_labels=yy).sample.float()
            cond, uncond = eps.chunk(2)
            x = ddim.step(uncond + 2.0 * (cond - uncond), t, x).prev_sample
    sync()
    sample_s = time.perf_counter() - ts
    result = {
        "device": torch.cuda.get_device_name(dev) if cuda else "cpu",
        "torch": torch.__version__, "diffusers": __import__("diffusers").__version__,
        "model": model, "params": sum(p.numel() for p in unet.parameters()), "size": args.size, "batch_size": batch,
        "bf16_autocast": amp, "channels_last": cuda, "train_steps": steps, "train_seconds": time.perf_counter() - t0,
        "train_images_per_s": train_ips, "train_flops_per_image": flops_train,
        "forward_flops_per_image": flops_fwd,
        "achieved_tflops": train_ips * flops_train / 1e12 if train_ips else None,
        "sample_images_per_s_ddim50": sample_n / sample_s, "sample_n": sample_n, "guidance": 2.0,
        # the rates' inputs: images and seconds of the timed interval (after the warm-up steps), sampling seconds
        "train_measured_images": n_images, "train_measured_seconds": train_s, "sample_seconds": sample_s,
        "loss_first": losses[0], "loss_last": losses[-1],
        "sample_finite": bool(torch.isfinite(x).all()),
        "threads": torch.get_num_threads(),
    }
    if cuda:
        result["max_memory_gib"] = torch.cuda.max_memory_allocated(dev) / 2**30
    print(f"{result['device']}: training {_f(train_ips)} images/s ({_f(result['achieved_tflops'], '.2f')} TFLOP/s "
          f"at {flops_train / 1e9:.2f} GFLOP per image), DDIM-50 sampling {_f(result['sample_images_per_s_ddim50'])}"
          f" images/s; loss {losses[0]:.4f} -> {losses[-1]:.4f} in {steps} steps")
    sys.stdout.flush()
    print(json.dumps(result, sort_keys=True))
    return 0


def _f(v, spec: str = ".1f") -> str:
    return "-" if v is None or (isinstance(v, float) and not math.isfinite(v)) else format(v, spec)


if __name__ == "__main__":
    raise SystemExit(main())
