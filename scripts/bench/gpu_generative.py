"""The prepared GPU run of armlab's generative models: speed on the card and time-boxed quality runs.

    armlab bench gpu-generative --data DATASET --out OUT            # CUDA, about 7 minutes
    armlab bench gpu-generative --data DATASET --out OUT --device cpu --quick     # smoke test
    # GAN speed, then CycleGAN sim-to-real (SIM and REAL: paired --style sim / --style real datasets):
    armlab bench gpu-generative --data SIM --real REAL --out OUT \
        --stages matmul,gan-speed,cyclegan --cyclegan-budget 230

It uses armlab's own training loop and models (``generative.gan``, ``generative.diffusion``), needs torch,
diffusers, torchmetrics and OpenCV but not pybullet, and reads an armlab dataset written elsewhere (RGB, labels and
manifest; the probe cached in ``DATASET/.probe`` is reused when its key matches). Stages, each in its own process so
that one failure leaves the others' figures, each writing ``OUT/<stage>.json``:

``matmul``     an 8192^3 bf16 matrix product: the card's practical peak, measured in the same run;
``gan-speed``  StyleGAN2 (at 128 px first: issue 26's GPU target) and conditional GAN (class + target) training
               images/s and achieved TFLOP/s (the analytic FLOPs of ``train_gan``'s summary: the model's own
               convolutions and linear layers) as a fraction of the card's dense bf16 peak, for each row of
               ``GAN_SPEED`` (arch, size, base width, batch, ``pad_channels``, ``compile``), with bf16 autocast and
               channels-last (the trainer's CUDA defaults). Each row trains with no checkpoint for
               ``--speed-seconds`` at ``SPEED_CAP_TFLOPS`` worth of steps or for ``--speed-seconds`` +
               ``--warmup-seconds``, whichever comes first. The first logged interval (cuDNN's autotuning or
               compilation) is left out; images/s is then the median of the DCGAN's 10-step intervals, and for
               StyleGAN2 all images over all the time of whole 16-step R1 periods (8-step intervals), so that its
               slower R1 steps count. A compiled row runs as many steps as its uncompiled twin ran in
               ``--speed-seconds`` (StyleGAN2: at least 104), after up to ``--compile-seconds`` of compilation.
               ``--speed-rows`` picks rows and their order. ``gan-speed.json`` is rewritten after every row, so a
               stage stopped at its deadline keeps its rows;
``r1``         StyleGAN2's discriminator at 128 px: its main pass and R1's passes timed, and the top kernels
               (``armlab_scripts.bench.gpu_r1``);
``diffusion-speed``  ``armlab bench gpu-diffusion`` (diffusers UNet on synthetic shapes: training images/s,
               TFLOP/s, DDIM-50 guided sampling images/s);
``gan``        ``armlab gan train --cond class,target`` for ``--budget`` seconds (``--time-limit``), then
               ``armlab gan eval`` (class_acc_ratio, pos_err_ratio, diversity_ratio, fid_custom);
``diffusion``  pixel ``armlab diffusion train --cond class,target`` for ``--budget`` seconds, then eval with
               DDIM-50, DPM-Solver-20 and DDPM-1000 (guidance ``--guidance``): the quality ratios and each
               sampler's images/s.

``cyclegan``   CycleGAN sim -> real (``--data`` the sim dataset, ``--real`` the real-style one) in the protocol of
               ``armlab bench cyclegan``: the first 80 % of the frames train, ``sim2real_eval`` (regressors of 600
               steps, mean of 2 seeds) tests on the last 20 % of the real frames. One process per
               ``--cyclegan-variants`` entry (``CYCLEGAN_VARIANTS``: generator width, batch, ...), side by side on
               the card. Each trains until ``--cyclegan-budget`` seconds after the stage starts: a short first call
               measures its step rate, then the run is continued (resumed) with the step count that fills the
               budget, so the learning rate's linear decay ends with the budget. It writes
               ``cyclegan-<variant>.json`` after training and again after the evaluation (``gap_closure``,
               ``e_sim``, ``e_trans``, ``e_real``, ``psnr_sim``, ``psnr_trans``, ...), its EMA generators as a
               small checkpoint ``cyclegan-<variant>-gens.pt`` (put it in a folder as ``checkpoint.pt`` and
               ``generative.cyclegan.load_generators`` reads it) and its last sample grid
               ``cyclegan-<variant>-samples.png`` (rows: sim, G(sim), real, F(real)).

``gan``, ``diffusion`` and the ``cyclegan`` variants run side by side (one card; none fills it). The last line is
one JSON object with every stage's figures.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from armlab_scripts.bench.gpu_r1 import stage_r1
from robot_env.io.atomic import atomic_write_text

# Dense bf16 tensor-core peak (TFLOP/s) by card name, from the vendors' data sheets (SXM parts, no sparsity).
BF16_PEAK = {"H100": 989.4, "H200": 989.4, "A100": 312.0, "L40S": 362.1, "L4": 121.0}
# (arch, size, base, batch, pad_channels, compile): StyleGAN2 at 128 px first (issue 26's GPU target: >= 20 % of
# the card's bf16 peak), then the conditional GAN: the H100 session's two rows, then the speed options
GAN_SPEED = (
    ("stylegan2", 128, 128, 64, True, "off"),
    ("stylegan2", 128, 256, 64, True, "off"),
    ("stylegan2", 128, 256, 128, True, "off"),
    ("stylegan2", 128, 256, 256, True, "off"),
    ("stylegan2", 128, 256, 128, True, "default"),
    ("stylegan2", 128, 256, 256, True, "default"),
    ("dcgan", 128, 128, 128, False, "off"),
    ("dcgan", 128, 128, 512, True, "off"),
    ("dcgan", 128, 256, 128, True, "off"),
    ("dcgan", 64, 64, 256, False, "off"),
    ("dcgan", 64, 64, 256, True, "off"),
    ("dcgan", 128, 128, 512, True, "default"),
)
SPEED_CAP_TFLOPS = 300.0  # a row stops after --speed-seconds of steps at this rate, or at its time limit
GAN_SPEED_QUICK = (("dcgan", 32, 16, 8, False, "off"), ("dcgan", 32, 16, 8, True, "off"),
                   ("stylegan2", 32, 16, 8, True, "off"))
CYCLEGAN_VARIANTS = {  # generator width, batch, residual blocks, discriminator width
    "b64x16": {"base": 64, "batch_size": 16, "n_blocks": 6, "d_base": 64},
    "b64x4": {"base": 64, "batch_size": 4, "n_blocks": 6, "d_base": 64},
    "b32x8": {"base": 32, "batch_size": 8, "n_blocks": 6, "d_base": 64},
}
CYCLEGAN_QUICK = {"base": 8, "batch_size": 2, "n_blocks": 2, "d_base": 8}
STAGES = ("matmul", "r1", "gan-speed", "diffusion-speed", "gan", "diffusion", "cyclegan")


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


def _logged_rates(run: Path) -> list[float]:
    """The images/s of every logged interval of a run (``log.csv``): steady state, the first step excluded."""
    import csv

    try:
        with open(run / "log.csv", newline="") as f:
            return [float(r["images_per_s"]) for r in csv.DictReader(f) if r.get("images_per_s")]
    except (OSError, KeyError, ValueError):
        return []


def _steady_rate(rates: list[float], arch: str) -> float | None:
    """Images/s over the logged intervals after the first (whose step compiles or autotunes): all images over all
    the time, so that StyleGAN2's slower R1 steps count; for StyleGAN2 an even number of 8-step intervals (whole
    16-step R1 periods). DCGAN rows have no periodic step: the median interval, as before."""
    if arch != "stylegan2":
        return statistics.median(rates) if rates else None
    rest = rates[1:]
    rest = rest[: len(rest) - len(rest) % 2]
    return len(rest) / sum(1.0 / r for r in rest) if rest and all(r > 0 for r in rest) else None


def _write(args, name: str, result: dict) -> None:
    atomic_write_text(Path(args.out) / f"{name}.json", json.dumps(result, indent=1, default=str) + "\n")


def stage_gan_speed(args) -> dict:
    import torch

    from generative.gan import TRAIN_DEFAULTS, GANConfig, train_gan
    from generative.gan.train import _train_flops
    from generative.training import TrainConfig

    dev = _device(args.device)
    cuda = dev.startswith("cuda")
    name = torch.cuda.get_device_name(dev) if cuda else "cpu"
    peak = _peak(name)
    result = {"device": name, "bf16_peak_tflops": peak, "torch": torch.__version__, "configs": []}
    archs = [a for a in args.speed_archs.split(",") if a]
    table = GAN_SPEED_QUICK if args.quick else GAN_SPEED
    order = [int(i) for i in args.speed_rows.split(",")] if args.speed_rows else range(len(table))
    configs = [table[i] for i in order if i < len(table) and table[i][0] in archs]
    for arch, size, base, batch, pad, mode in configs:
        label = (f"gan-speed-{arch}-{size}px-b{base}-x{batch}{'-pad' if pad else ''}"
                 f"{'' if mode == 'off' else '-' + mode}")
        row = {"arch": arch, "size": size, "base": base, "batch_size": batch, "pad_channels": pad, "compile": mode}
        flops = _train_flops(GANConfig(size=size, cond=("class", "target"), g_base=base, d_base=base, aux_class=1.0,
                                       arch=arch))
        steps = max(40, int(args.speed_seconds * SPEED_CAP_TFLOPS * 1e12 / (flops * batch)))
        steps, limit = (8, 5.0) if args.quick else (steps, args.speed_seconds + args.warmup_seconds)
        # StyleGAN2 logs every 8 steps: its lazy R1 (every 16th step) falls in every other interval
        log_every = 2 if args.quick else 8 if arch == "stylegan2" else 10
        if mode != "off":  # as many steady-state steps as the uncompiled twin ran, after the compilation
            twin = [r for r in result["configs"] if (r["arch"], r["size"], r["base"], r["batch_size"],
                                                     r["pad_channels"], r["compile"]) == (arch, size, base, batch,
                                                                                          pad, "off")]
            ips = twin[0].get("images_per_s") if twin else None
            steps = max(20, int(ips * args.speed_seconds / batch)) if ips else 200
            if arch == "stylegan2":  # six R1 periods at least
                steps = max(steps, 6 * 16 + 8)
            limit = args.speed_seconds + args.compile_seconds
        t = time.perf_counter()
        try:
            if cuda:
                torch.cuda.reset_peak_memory_stats(dev)
            train = TrainConfig(out=Path(args.out) / "runs" / label, steps=steps,
                                **{**TRAIN_DEFAULTS, "batch_size": batch}, device=dev,
                                log_every=log_every, sample_every=10_000_000,
                                checkpoint_every=10_000_000, progress=False, tensorboard=False, time_limit_s=limit,
                                compile=mode, checkpoints=False)
            s = train_gan(args.data, train, ("class", "target"), size=size, g_base=base, d_base=base,
                          limit=max(2 * batch, 64 if args.quick else 1024), pad_channels=pad, arch=arch)
            rates = _logged_rates(Path(args.out) / "runs" / label)
            ips = _steady_rate(rates, arch) or s["images_per_s"]
            tflops = ips * s["train_flops_per_image"] / 1e12 if ips else None
            row.update({
                "steps": s["steps"], "images_per_s": ips, "images_per_s_incl_first_step": s["images_per_s"],
                "median_interval_images_per_s": statistics.median(rates) if rates else None,
                "logged_rates": [round(r, 1) for r in rates], "train_gflop_per_image": s["train_flops_per_image"] / 1e9,
                "achieved_tflops": tflops, "fraction_of_bf16_peak": tflops / peak if tflops and peak else None,
                "params_g": s["params_g"], "params_d": s["params_d"], "wall_s": time.perf_counter() - t,
                "max_memory_gib": torch.cuda.max_memory_allocated(dev) / 2**30 if cuda else None,
            })
        except Exception as exc:  # one row's failure (out of memory, a compiler error) keeps the others
            row.update({"error": f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:500],
                        "wall_s": time.perf_counter() - t})
        result["configs"].append(row)
        _write(args, "gan-speed", result)
        print(json.dumps(row, default=str), flush=True)
        gc.collect()
        if cuda:
            torch.cuda.empty_cache()
    return result


def stage_diffusion_speed(args) -> dict:
    cmd = [sys.executable, "-m", "armlab_scripts.bench.gpu_diffusion", "--device", _device(args.device),
           "--seconds", "3" if args.quick else "30"]
    if args.quick:
        cmd += ["--model", "tiny", "--batch-size", "4", "--sample-n", "2"]
    r = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(r.stdout.strip().splitlines()[-1])


def stage_gan(args) -> dict:
    from generative.gan import TRAIN_DEFAULTS, evaluate_gan, train_gan
    from generative.training import TrainConfig

    dev = _device(args.device)
    out = Path(args.out) / "runs" / "gan"
    train = TrainConfig(out=out, steps=1_000_000, **{**TRAIN_DEFAULTS, "batch_size": args.gan_batch}, device=dev,
                        log_every=100, sample_every=2000, checkpoint_every=2000, progress=False, tensorboard=False,
                        time_limit_s=args.budget)
    s = train_gan(args.data, train, ("class", "target"), size=64, g_base=args.gan_base, d_base=args.gan_base)
    r = evaluate_gan(out, args.data, n=64 if args.quick else 500, device=dev, quick=args.quick)
    return {"train": {k: s.get(k) for k in ("steps", "images_per_s", "gflops_per_s", "wall_time_s", "losses")},
            "settings": {"base": args.gan_base, "batch_size": args.gan_batch, "budget_s": args.budget},
            "eval": r}


def stage_diffusion(args) -> dict:
    from generative.diffusion import TRAIN_DEFAULTS, evaluate_diffusion, load_pipeline, train_diffusion
    from generative.training import TrainConfig

    dev = _device(args.device)
    out = Path(args.out) / "runs" / "diffusion"
    model = "tiny" if args.quick else "small"
    train = TrainConfig(out=out, steps=1_000_000, **{**TRAIN_DEFAULTS, "batch_size": args.diffusion_batch},
                        device=dev, log_every=100, sample_every=2000, checkpoint_every=2000, progress=False,
                        tensorboard=False, time_limit_s=args.budget)
    s = train_diffusion(args.data, train, size=64, cond=("class", "target"), model=model)
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


def _frames(root: str) -> int:
    return sum(1 for p in (Path(root) / "labels").glob("*.json") if not p.name.startswith("."))


def stage_cyclegan(args) -> dict:
    import torch

    from generative.cyclegan import TRAIN_DEFAULTS, train_cyclegan
    from generative.sim2real import sim2real_eval
    from generative.training import TrainConfig, load_checkpoint
    from robot_env.io.threads import set_threads

    set_threads(args.threads)
    dev = _device(args.device)
    v = args.variant
    settings = dict(CYCLEGAN_QUICK if args.quick else CYCLEGAN_VARIANTS[v])
    size = int(json.loads((Path(args.data) / "manifest.json").read_text()).get("size") or 64)
    limit = int(round(min(_frames(args.data), _frames(args.real)) * 0.8))  # armlab bench cyclegan's 80 / 20 split
    run = Path(args.out) / "runs" / f"cyclegan-{v}"
    trainer = {**TRAIN_DEFAULTS, "seed": 0, "device": dev, "ema_decay": 0.999, "progress": False,
               "tensorboard": False, "log_every": 5 if args.quick else 100, "sample_every": 10_000_000,
               "checkpoint_every": 50 if args.quick else 2000, "batch_size": settings["batch_size"]}
    common = {"size": size, "sim_limit": limit, "real_limit": limit,
              **{k: v for k, v in settings.items() if k != "batch_size"}}
    result = {"variant": v, "settings": {**settings, "size": size, "train_frames": limit, "ema_decay": 0.999},
              "device": torch.cuda.get_device_name(dev) if dev.startswith("cuda") else "cpu"}
    # 1. the step rate, at a constant learning rate (the first half of any linear-decay schedule)
    budget = args.train_until - time.time()
    first = train_cyclegan(args.data, args.real, TrainConfig(out=run, steps=10_000_000, **trainer,
                                                             time_limit_s=max(1.0, min(20.0, 0.1 * budget))), **common)
    steps_per_s = (first["images_per_s"] or 0) / settings["batch_size"]
    # 2. continued with the step count that fills the budget: the schedule's decay ends with it
    remaining = args.train_until - time.time()
    steps = first["steps"] + max(1, int(steps_per_s * remaining * 0.92))
    second = train_cyclegan(args.data, args.real, TrainConfig(out=run, steps=steps, **trainer,
                                                              time_limit_s=max(1.0, remaining)), **common)
    result["train"] = {"steps": second["steps"], "planned_steps": steps, "first_call_steps": first["steps"],
                       # the continued call's rate; the first call's when the continued one made a single
                       # step (a loaded machine), which leaves no steady-state interval to time
                       "images_per_s": second["images_per_s"] if second["images_per_s"] is not None
                       else first["images_per_s"], "images_per_s_first_call": first["images_per_s"],
                       "epochs": second["steps"] * settings["batch_size"] / limit,
                       "time_limited": second["time_limited"], "losses": second["losses"],
                       "train_s": first["wall_time_s"] + second["wall_time_s"]}
    _write(args, f"cyclegan-{v}", result)
    ckpt = load_checkpoint(run / "checkpoint.pt")  # the EMA generators as a small checkpoint load_generators reads
    slim = {k: ckpt[k] for k in ("format", "version", "step", "config", "task_config")}
    slim.update({"ema": {"gens": ckpt["ema"]["gens"]}, "modules": {}})
    torch.save(slim, Path(args.out) / f"cyclegan-{v}-gens.pt")
    grids = sorted((run / "samples").glob("step_*.png"))
    if grids:
        shutil.copyfile(grids[-1], Path(args.out) / f"cyclegan-{v}-samples.png")
    result["eval"] = sim2real_eval(args.data, args.real, run, quick=args.quick, seed=0, device=dev)
    _write(args, f"cyclegan-{v}", result)
    return result


def _sync(dev: str) -> None:
    import torch

    if dev.startswith("cuda"):
        torch.cuda.synchronize()


def _run_stage(label: str, args, argv: list[str], extra: tuple[str, ...] = ()) -> subprocess.Popen:
    out = Path(args.out)
    log = open(out / f"{label}.log", "w")  # noqa: SIM115 (closed with the process)
    stage = "cyclegan" if label.startswith("cyclegan") else label
    cmd = [sys.executable, "-m", "armlab_scripts.bench.gpu_generative", *argv, *extra, "--stage", stage]
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
    p.add_argument("--real", default=None, help="the real-style dataset of the cyclegan stage (--data: the sim one)")
    p.add_argument("--cyclegan-budget", type=float, default=230.0,
                   help="seconds from the cyclegan stage's start to the end of its training (default 230)")
    p.add_argument("--cyclegan-variants", default="b64x16,b64x4,b32x8",
                   help=f"comma list from {','.join(CYCLEGAN_VARIANTS)}, each in its own process")
    p.add_argument("--total", type=float, default=None,
                   help="seconds for the whole run: the cyclegan stage then trains until --total minus 100 s "
                        "after the start, whatever the stages before it took (instead of --cyclegan-budget)")
    p.add_argument("--speed-seconds", type=float, default=6.0, help="measuring seconds per gan-speed row")
    p.add_argument("--speed-budget", type=float, default=180.0, help="deadline of the gan-speed stage (seconds)")
    p.add_argument("--warmup-seconds", type=float, default=10.0,
                   help="seconds an uncompiled gan-speed row may take beyond --speed-seconds (cuDNN's autotuning)")
    p.add_argument("--speed-rows", default=None,
                   help="comma list of GAN_SPEED's rows to run, in this order (0-based; default all): "
                        + "; ".join(f"{i}: {a} {z} px base {b} batch {n}{' padded' if pad else ''}"
                                    f"{'' if m == 'off' else ' compiled'}"
                                    for i, (a, z, b, n, pad, m) in enumerate(GAN_SPEED)))
    p.add_argument("--speed-archs", default="stylegan2,dcgan",
                   help="comma list of the architectures whose gan-speed rows run (default stylegan2,dcgan)")
    p.add_argument("--compile-seconds", type=float, default=120.0,
                   help="seconds a compiled gan-speed row may spend compiling")
    p.add_argument("--threads", type=int, default=4, help="CPU threads per cyclegan process")
    p.add_argument("--stages", default=",".join(STAGES), help=f"comma list from {','.join(STAGES)}")
    p.add_argument("--quick", action="store_true", help="tiny settings (a CPU smoke test)")
    p.add_argument("--stage", default=None, help=argparse.SUPPRESS)  # internal: run one stage in this process
    p.add_argument("--variant", default=None, help=argparse.SUPPRESS)  # internal: the cyclegan variant
    p.add_argument("--train-until", type=float, default=None, help=argparse.SUPPRESS)  # internal: epoch seconds
    args = p.parse_args(argv)
    stages = [s for s in args.stages.split(",") if s]
    variants = [v for v in args.cyclegan_variants.split(",") if v]
    bad = [s for s in stages if s not in STAGES]
    bad_v = [v for v in variants if v not in CYCLEGAN_VARIANTS]
    bad_a = [a for a in args.speed_archs.split(",") if a not in {r[0] for r in GAN_SPEED}]
    bad_r = [r for r in (args.speed_rows or "").split(",") if r and not (r.isdigit() and int(r) < len(GAN_SPEED))]
    error = (f"unknown stage {bad[0]!r}" if bad
             else "--budget, --cyclegan-budget and --total must be > 0"
             if not (args.budget > 0 and args.cyclegan_budget > 0 and (args.total is None or args.total > 0))
             else f"{args.data!r} is not an armlab dataset (no manifest.json)"
             if not (Path(args.data) / "manifest.json").is_file()
             else "the cyclegan stage needs --real, an armlab dataset (real style)"
             if "cyclegan" in stages and not (args.real and (Path(args.real) / "manifest.json").is_file())
             else f"unknown cyclegan variant {bad_v[0]!r}" if bad_v or ("cyclegan" in stages and not variants)
             else f"unknown --speed-archs entry {bad_a[0]!r} (stylegan2 or dcgan)" if bad_a
             else f"--speed-rows entry {bad_r[0]!r} is not a row of GAN_SPEED (0 to {len(GAN_SPEED) - 1})" if bad_r
             else None)
    if error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    if args.stage:  # one stage, in this process
        t = time.perf_counter()
        fn = {"matmul": stage_matmul, "r1": stage_r1, "gan-speed": stage_gan_speed,
              "diffusion-speed": stage_diffusion_speed, "gan": stage_gan, "diffusion": stage_diffusion,
              "cyclegan": stage_cyclegan}[args.stage]
        if args.stage == "cyclegan" and (args.variant is None or args.train_until is None):
            args.variant = args.variant or variants[0]
            args.train_until = args.train_until or time.time() + args.cyclegan_budget
        result = fn(args)
        result["stage_seconds"] = time.perf_counter() - t
        _write(args, f"cyclegan-{args.variant}" if args.stage == "cyclegan" else args.stage, result)
        print(json.dumps(result, default=str))
        return 0

    t0 = time.time()
    slack = 60.0 if not args.quick else 120.0
    limits = {"matmul": 60 + slack, "r1": 60 + slack, "gan-speed": args.speed_budget, "diffusion-speed": 120 + slack}
    for name in ("matmul", "r1", "gan-speed", "diffusion-speed"):  # alone on the card: clean timings
        if name in stages:
            _wait(name, _run_stage(name, args, argv), time.time() + limits[name])
    side = [n for n in ("gan", "diffusion") if n in stages]
    procs = {n: _run_stage(n, args, argv) for n in side}
    deadline = time.time() + args.budget + 150 + slack if side else 0.0  # training, then evaluation and sampling
    if "cyclegan" in stages:
        until = t0 + args.total - 100 if args.total else time.time() + args.cyclegan_budget
        for v in variants:
            procs[f"cyclegan-{v}"] = _run_stage(f"cyclegan-{v}", args, argv,
                                                ("--variant", v, "--train-until", f"{until:.3f}"))
        deadline = max(deadline, until + 100 + (slack if args.quick else 0))  # loading, evaluation, writing
    for n, proc in procs.items():
        _wait(n, proc, deadline)
    summary = {"total_seconds": time.time() - t0}
    for name in stages:
        if name == "cyclegan":
            summary[name] = {v: _read(out / f"cyclegan-{v}.json") for v in variants}
        else:
            summary[name] = _read(out / f"{name}.json")
    print(json.dumps(summary, default=str))
    return 0


def _read(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


if __name__ == "__main__":
    raise SystemExit(main())
