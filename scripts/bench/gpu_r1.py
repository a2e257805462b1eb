"""The ``r1`` stage of ``armlab bench gpu-generative``: what StyleGAN2's lazy R1 costs next to its discriminator's main
pass on the card, and which kernels take that time."""

from __future__ import annotations

import time


def stage_r1(args) -> dict:
    """StyleGAN2's discriminator pass with and without R1 (eager, as the trainer runs R1 next to a compiled D), timed
    by the wall clock between CUDA synchronisations: the main pass (reals and fakes, forward and backward), R1 on that
    joint pass, R1 in a separate pass on the reals alone (bf16 autocast, float32, either without channels-last), and
    the kernels that take the most time in the separate bf16 pass (torch.profiler)."""
    import copy

    import torch

    from armlab_scripts.bench.gpu_generative import _device, _sync, _write  # here: that module imports this one
    from generative.gan import GANConfig
    from generative.gan.layers import r1_penalty
    from generative.gan.model import build_discriminator

    dev = _device(args.device)
    cuda = dev.startswith("cuda")
    size, base, n = (32, 16, 8) if args.quick else (128, 256, 128)
    cfg = GANConfig(size=size, cond=("class", "target"), g_base=base, d_base=base, aux_class=1.0, arch="stylegan2")
    torch.manual_seed(0)
    D = build_discriminator(cfg).to(dev)
    if cuda:
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    D_cl = copy.deepcopy(D).to(memory_format=torch.channels_last)
    x = torch.randn(2 * n, 3, size, size, device=dev)
    y = torch.randint(0, cfg.n_classes, (2 * n,), device=dev)
    c = torch.rand(2 * n, 2, device=dev)

    def run(net, inp, r1: bool, bf16: bool, last: bool):
        xi = inp.contiguous(memory_format=torch.channels_last) if last else inp.contiguous()
        xi = xi.detach().requires_grad_(r1)
        m = len(inp)
        with torch.autocast("cuda" if cuda else "cpu", dtype=torch.bfloat16, enabled=bf16):
            out = net(xi, y[:m], c[:m]).float()
        loss = torch.nn.functional.softplus(out).mean()
        if r1:
            loss = loss + r1_penalty(out[:n], xi)
        loss.backward()

    variants = {
        "main_pass_bf16": (D_cl, x, False, True, True), "r1_joint_bf16": (D_cl, x, True, True, True),
        "r1_separate_bf16": (D_cl, x[:n], True, True, True), "r1_separate_fp32": (D_cl, x[:n], True, False, True),
        "r1_separate_fp32_contiguous": (D, x[:n], True, False, False),
        "r1_separate_bf16_contiguous": (D, x[:n], True, True, False),
    }
    reps = 1 if args.quick else 3
    result: dict = {"device": torch.cuda.get_device_name(dev) if cuda else "cpu", "size": size, "base": base,
                    "reals": n, "reps": reps, "ms": {}}
    for name, v in variants.items():
        try:
            for _ in range(2):  # cuDNN's autotuning, then a warm pass
                run(*v)
            _sync(dev)
            t = time.perf_counter()
            for _ in range(reps):
                run(*v)
            _sync(dev)
            result["ms"][name] = (time.perf_counter() - t) / reps * 1e3
        except Exception as exc:  # noqa: BLE001 - one variant's failure keeps the others
            result["ms"][name] = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:300]
        print(name, result["ms"][name], flush=True)
        _write(args, "r1", result)
    try:
        from torch.profiler import ProfilerActivity, profile

        acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
        with profile(activities=acts) as prof:
            run(*variants["r1_separate_bf16"])
            _sync(dev)
        key = "device_time_total" if cuda else "cpu_time_total"
        events = sorted(prof.key_averages(), key=lambda e: getattr(e, key, 0.0), reverse=True)
        result["top"] = [{"name": e.key[:120], "calls": e.count, "ms": getattr(e, key, 0.0) / 1e3}
                         for e in events[:15]]
    except Exception as exc:  # noqa: BLE001
        result["top"] = f"{type(exc).__name__}: {exc}"[:300]
    return result
