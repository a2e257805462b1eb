"""The prepared GPU run of armlab's generative models: speed on the card and time-boxed quality runs.

    PYTHONPATH=. python scripts/gpu_check_generative.py --data DATASET --out OUT            # CUDA, about 7 minutes
    python scripts/gpu_check_generative.py --data DATASET --out OUT --device cpu --quick     # smoke test

It uses armlab's own training loop and models (``generative.gan``, ``generative.diffusion``), needs torch,
diffusers, torchmetrics and OpenCV but not pybullet, and reads an armlab dataset written elsewhere (RGB, labels and
manifest; the probe cached in ``DATASET/.probe`` is reused when its key matches). Stages, each in its own process so
that one failure leaves the others' figures, each writing ``OUT/<stage>.json``:

``matmul``     an 8192^3 bf16 matrix product: the card's practical peak, measured in the same run;
``gan-speed``  conditional GAN training images/s and achieved TFLOP/s (the analytic FLOPs of ``train_gan``'s
               summary) at 64 px / base 64 / batch 256 and 128 px / base 128 / batch 128, bf16 autocast and
               channels-last (the trainer's CUDA defaults), as a fraction of the card's dense bf16 peak;
``diffusion-speed``  ``scripts/gpu_check_diffusion.py`` (diffusers UNet on synthetic shapes: training images/s,
               TFLOP/s, DDIM-50 guided sampling images/s);
``gan``        ``armlab gan train --cond class,target`` for ``--budget`` seconds (``--time-limit``), then
               ``armlab gan eval`` (class_acc_ratio, pos_err_ratio, diversity_ratio, fid_custom);
``diffusion``  pixel ``armlab diffusion train --cond class,target`` for ``--budget`` seconds, then eval with
               DDIM-50, DPM-Solver-20 and DDPM-1000 (guidance ``--guidance``): the quality ratios and each
               sampler's images/s.

``gan`` and ``diffusion`` run side by side (one card; neither fills it). The last line is one JSON object with
every stage's figures.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

# Dense bf16 tensor-core peak (TFLOP/s) by card name, from the vendors' data sheets (SXM parts, no sparsity).
BF16_PEAK = {"H100": 989.4, "H200": 989.4, "A100": 312.0, "L40S": 362.1, "L4": 121.0}
GAN_SPEED = ((64, 64, 256), (128, 128, 128))  # (size, base, batch)
STAGES = ("matmul", "gan-speed", "diffusion-speed", "gan", "diffusion")


def _peak(name: str) -> float | None:
    return next((v for k, v in BF16_PEAK.items() if k in name), None)


def _device(arg: str) -> str:
    import torch

    return ("cuda" if torch.cuda.is_available() else "cpu") if arg == "auto" else arg


def stage_matmul(args) -> dict:
    import torch

    dev = _device(args.device)
    n = 8192 if dev.startswith("cuda") else 512
    a = torch.randn(n, n, device=dev, dtype=torch.bfloat16)
    b = torch.randn(n, n, device=dev, dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    _sync(dev)
    reps = 10
    t = time.perf_counter()
    for _ in range(reps):
        a @ b
    _sync(dev)
    s = (time.perf_counter() - t) / reps
    name = torch.cuda.get_device_name(dev) if dev.startswith("cuda") else "cpu"
    return {"device": name, "n": n, "matmul_tflops": 2 * n**3 / s / 1e12, "bf16_peak_tflops": _peak(name),
            "torch": torch.__version__}


def stage_gan_speed(args) -> dict:
    import torch

    from generative.gan import train_gan

    dev = _device(args.device)
    name = torch.cuda.get_device_name(dev) if dev.startswith("cuda") else "cpu"
    rows = []
    configs = ((32, 16, 8),) if args.quick else GAN_SPEED
    for size, base, batch in configs:
        out = Path(args.out) / "runs" / f"gan-speed-{size}"
        s = train_gan(args.data, out, steps=8 if args.quick else 400, cond=("class", "target"), size=size,
                      batch_size=batch, device=dev, g_base=base, d_base=base, log_every=10, sample_every=100_000,
                      checkpoint_every=100_000, progress=False, tensorboard=False,
                      time_limit_s=5 if args.quick else 30)
        tflops = s["gflops_per_s"] / 1e3 if s.get("gflops_per_s") else None
        peak = _peak(name)
        rows.append({"size": size, "base": base, "batch_size": batch, "steps": s["steps"],
                     "images_per_s": s["images_per_s"], "train_gflop_per_image": s["train_flops_per_image"] / 1e9,
                     "achieved_tflops": tflops, "fraction_of_bf16_peak": tflops / peak if tflops and peak else None})
    return {"device": name, "bf16_peak_tflops": _peak(name), "configs": rows}


def stage_diffusion_speed(args) -> dict:
    script = Path(__file__).with_name("gpu_check_diffusion.py")
    cmd = [sys.executable, str(script), "--device", _device(args.device),
           "--seconds", "3" if args.quick else "30"]
    if args.quick:
        cmd += ["--model", "tiny", "--batch-size", "4", "--sample-n", "2"]
    r = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(r.stdout.strip().splitlines()[-1])


def stage_gan(args) -> dict:
    from generative.gan import evaluate_gan, train_gan

    dev = _device(args.device)
    out = Path(args.out) / "runs" / "gan"
    s = train_gan(args.data, out, steps=1_000_000, cond=("class", "target"), size=64, batch_size=args.gan_batch,
                  device=dev, g_base=args.gan_base, d_base=args.gan_base, log_every=100, sample_every=2000,
                  checkpoint_every=2000, progress=False, tensorboard=False, time_limit_s=args.budget)
    r = evaluate_gan(out, args.data, n=64 if args.quick else 500, device=dev, quick=args.quick)
    return {"train": {k: s.get(k) for k in ("steps", "images_per_s", "gflops_per_s", "wall_time_s", "losses")},
            "settings": {"base": args.gan_base, "batch_size": args.gan_batch, "budget_s": args.budget},
            "eval": r}


def stage_diffusion(args) -> dict:
    from generative.diffusion import evaluate_diffusion, load_pipeline, train_diffusion

    dev = _device(args.device)
    out = Path(args.out) / "runs" / "diffusion"
    model = "tiny" if args.quick else "small"
    s = train_diffusion(args.data, out, steps=1_000_000, size=64, cond=("class", "target"), model=model,
                        batch_size=args.diffusion_batch, device=dev,
                        log_every=100, sample_every=2000, checkpoint_every=2000, progress=False, tensorboard=False,
                        time_limit_s=args.budget)
    pipe = load_pipeline(out, device=dev)
    evals = {}
    n = 16 if args.quick else 256
    for sampler, steps, n_s in (("ddim", 50, n), ("dpm", 20, n), ("ddpm", 1000, 4 if args.quick else 128)):
        if args.quick and sampler == "ddpm":
            steps = 20
        evals[f"{sampler}{steps}"] = evaluate_diffusion(out, args.data, sampler=sampler, steps=steps,
                                                        guidance=args.guidance, n=n_s, device=dev,
                                                        quick=args.quick, pipeline=pipe)
    return {"train": {k: s.get(k) for k in ("steps", "images_per_s", "steps_per_s", "train_flops_per_image",
                                            "wall_time_s", "losses", "params")},
            "settings": {"model": model, "batch_size": args.diffusion_batch, "budget_s": args.budget,
                         "guidance": args.guidance},
            "eval": evals}


def _sync(dev: str) -> None:
    import torch

    if dev.startswith("cuda"):
        torch.cuda.synchronize()


def _run_stage(name: str, args, argv: list[str]) -> subprocess.Popen:
    out = Path(args.out)
    log = open(out / f"{name}.log", "w")  # noqa: SIM115 (closed with the process)
    cmd = [sys.executable, __file__, *argv, "--stage", name]
    return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"})


def _wait(name: str, proc: subprocess.Popen, deadline: float) -> None:
    try:
        proc.wait(timeout=max(1.0, deadline - time.time()))
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        print(f"{name}: killed at its deadline", file=sys.stderr)
    print(f"{name}: exit {proc.returncode}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, help="armlab dataset folder (64 px frames with class and target labels)")
    p.add_argument("--out", required=True, help="folder for the stages' JSON, logs and runs")
    p.add_argument("--device", default="auto", help="auto (CUDA if available), cuda or cpu")
    p.add_argument("--budget", type=float, default=210.0, help="training seconds of the gan and diffusion stages")
    p.add_argument("--gan-base", type=int, default=64, help="GAN base width (default 64)")
    p.add_argument("--gan-batch", type=int, default=64, help="GAN batch (default 64)")
    p.add_argument("--diffusion-batch", type=int, default=64, help="diffusion batch (default 64)")
    p.add_argument("--guidance", type=float, default=3.0, help="classifier-free guidance of the evaluations")
    p.add_argument("--stages", default=",".join(STAGES), help=f"comma list from {','.join(STAGES)}")
    p.add_argument("--quick", action="store_true", help="tiny settings (a CPU smoke test)")
    p.add_argument("--stage", default=None, help=argparse.SUPPRESS)  # internal: run one stage in this process
    args = p.parse_args(argv)
    stages = [s for s in args.stages.split(",") if s]
    bad = [s for s in stages if s not in STAGES]
    if bad or not (Path(args.data) / "manifest.json").is_file() or not args.budget > 0:
        print(f"error: unknown stage {bad[0]!r}" if bad else "error: --budget must be > 0" if not args.budget > 0
              else f"error: {args.data!r} is not an armlab dataset (no manifest.json)", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    if args.stage:  # one stage, in this process
        t = time.perf_counter()
        fn = {"matmul": stage_matmul, "gan-speed": stage_gan_speed, "diffusion-speed": stage_diffusion_speed,
              "gan": stage_gan, "diffusion": stage_diffusion}[args.stage]
        result = fn(args)
        result["stage_seconds"] = time.perf_counter() - t
        (out / f"{args.stage}.json").write_text(json.dumps(result, indent=1, default=str) + "\n")
        print(json.dumps(result, default=str))
        return 0

    t0 = time.time()
    slack = 60.0 if not args.quick else 120.0
    for name in ("matmul", "gan-speed", "diffusion-speed"):  # alone on the card: clean timings
        if name in stages:
            _wait(name, _run_stage(name, args, argv), time.time() + (120 if name != "matmul" else 60) + slack)
    side = [n for n in ("gan", "diffusion") if n in stages]
    procs = {n: _run_stage(n, args, argv) for n in side}
    deadline = time.time() + args.budget + 150 + slack  # training, then loading, evaluation and sampling
    for n, proc in procs.items():
        _wait(n, proc, deadline)
    summary = {"total_seconds": time.time() - t0}
    for name in stages:
        f = out / f"{name}.json"
        summary[name] = json.loads(f.read_text()) if f.is_file() else None
    print(json.dumps(summary, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
