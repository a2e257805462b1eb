"""Conditional GAN benchmark: train on a sim dataset on this machine, then measure what the generator learned.

1. Generates (or reuses) a sim dataset: --frames frames (default 4000) at --size px (default 64), seed 0, in
   OUT/data (unless --data names one).
2. Trains the conditional GAN (cond class,target; DCGAN generator, spectrally normalised projection
   discriminator, hinge loss) from scratch for --steps steps into OUT/run, and reports training images/s.
3. Evaluates it with the dataset's probe (trained once per dataset and cached in DATA/.probe/; the first
   evaluation of a dataset includes that training, about 2-3 minutes on 2 cores): fakes drawn with the labels of
   --n real frames, compared with those frames.

Targets: class_acc_ratio >= 0.9 (the probe recognises the requested shape class about as often as on real
images), pos_err_ratio <= 2.0 (the target is where it was asked to be, within twice the probe's own error),
diversity_ratio >= 0.8 (no mode collapse). fid_custom is a Frechet distance in probe features, comparable only
between runs on the same dataset (never with published FID).

    armlab bench gan --json                    # the full benchmark: 3000 steps of 32, 12-20 minutes on 2 cores
    armlab bench gan --quick                   # a 2-minute smoke run: 512 frames, 40 steps, quick probe
"""

from __future__ import annotations

import argparse
import math
import shutil
import sys
import time
from pathlib import Path

from armlab_scripts._common import UsageError, emit_json

DEFAULTS = {"frames": 4000, "steps": 3000, "batch_size": 32, "base": 32, "n": 500}
QUICK = {"frames": 512, "steps": 40, "batch_size": 32, "base": 32, "n": 200}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", default=None, help="use this armlab dataset instead of generating OUT/data")
    p.add_argument("--out", default="runs/bench/gan", help="benchmark folder (default runs/bench/gan)")
    p.add_argument("--steps", type=int, default=None,
                   help=f"training steps (default {DEFAULTS['steps']}; {QUICK['steps']} with --quick)")
    p.add_argument("--size", type=int, default=64, help="image size, a power of two (default 64)")
    p.add_argument("--frames", type=int, default=None,
                   help=f"frames of the generated dataset (default {DEFAULTS['frames']}; {QUICK['frames']} with "
                        "--quick)")
    p.add_argument("--batch-size", type=int, default=None,
                   help=f"images per step (default {DEFAULTS['batch_size']}; {QUICK['batch_size']} with --quick)")
    p.add_argument("--base", type=int, default=DEFAULTS["base"], help="base width of G and D (default 32)")
    p.add_argument("--n", type=int, default=None,
                   help=f"images compared in the evaluation (default {DEFAULTS['n']}; {QUICK['n']} with --quick)")
    p.add_argument("--probe-steps", type=int, default=None,
                   help="probe training steps (default 1000; 250 with --quick)")
    p.add_argument("--seed", type=int, default=0, help="training seed (default 0)")
    p.add_argument("--device", default="auto", help="auto (CUDA if available), cpu, cuda")
    p.add_argument("--threads", default="auto",
                   help="torch CPU threads, or auto (default): the cores the load average leaves free, at least 1 "
                        "(two threads on two cores that other processes also use run several times slower than one)")
    p.add_argument("--quick", action="store_true", help="a small smoke run (fewer frames and steps, quick probe)")
    p.add_argument("--aux-class", type=float, default=None, metavar="W",
                   help="weight of the local class loss (see `armlab gan train --help`; default 1, 0 turns it off)")
    p.add_argument("--json", action="store_true", help="print the figures as one JSON object on the last line")


def run(args: argparse.Namespace) -> int:
    import torch

    from generative.gan import TRAIN_DEFAULTS, check_size, evaluate_gan, train_gan
    from generative.training import TrainConfig
    from robot_env.dataset import DatasetConfig, generate
    from robot_env.io.threads import resolve_threads, set_threads

    preset = QUICK if args.quick else DEFAULTS
    steps = args.steps if args.steps is not None else preset["steps"]
    frames = args.frames if args.frames is not None else preset["frames"]
    batch_size = args.batch_size if args.batch_size is not None else preset["batch_size"]
    n = args.n if args.n is not None else preset["n"]
    for name, value, low in (("--steps", steps, 1), ("--frames", frames, 2), ("--batch-size", batch_size, 1),
                             ("--n", n, 2), ("--base", args.base, 1)):
        if value < low:
            raise UsageError(f"{name} must be at least {low}, got {value}.")
    if args.aux_class is not None and not (math.isfinite(args.aux_class) and args.aux_class >= 0):
        raise UsageError(f"--aux-class must be a number >= 0, got {args.aux_class}.")
    if args.probe_steps is not None and args.probe_steps < 1:
        raise UsageError(f"--probe-steps must be at least 1, got {args.probe_steps}.")
    check_size(args.size)
    set_threads(resolve_threads(args.threads, torch.get_num_threads()))
    out = Path(args.out)
    progress = sys.stderr.isatty()
    t_all = time.perf_counter()

    t0 = time.perf_counter()
    if args.data is not None:
        data = Path(args.data)
        if not data.exists():
            raise UsageError(f"dataset folder {args.data!r} does not exist.")
        if not (data / "manifest.json").is_file():
            raise UsageError(f"{args.data!r} is not an armlab dataset (no manifest.json).")
    else:
        default = args.size == 64 and frames == DEFAULTS["frames"]
        data = out / ("data" if default else f"data-{args.size}px-{frames}")
        generate(data, DatasetConfig(n=frames, size=args.size, seed=0, style="sim"), workers=1, progress=progress)
    data_s = time.perf_counter() - t0

    run_dir = out / ("run-quick" if args.quick else "run")
    if run_dir.exists():
        shutil.rmtree(run_dir)  # a benchmark trains from scratch
    t0 = time.perf_counter()
    train = TrainConfig(out=run_dir, steps=steps, **{**TRAIN_DEFAULTS, "batch_size": batch_size}, seed=args.seed,
                        device=args.device, sample_every=max(steps // 4, 1), checkpoint_every=max(steps // 4, 1),
                        log_every=max(min(50, steps // 4), 1), progress=progress)
    summary = train_gan(data, train, ("class", "target"), size=args.size, g_base=args.base, d_base=args.base,
                        aux_class=args.aux_class)
    train_s = time.perf_counter() - t0

    t0 = time.perf_counter()
    report = evaluate_gan(run_dir, data, quick=args.quick, n=n, seed=0, device=args.device,
                          probe_steps=args.probe_steps, progress=progress)
    eval_s = time.perf_counter() - t0

    figures = {
        "data": str(data), "run": str(run_dir), "size": args.size, "frames": summary["n_train"], "steps": steps,
        "batch_size": batch_size, "base": args.base, "aux_class": summary["aux_class"], "device": summary["device"],
        "threads": torch.get_num_threads(),
        "train_images_per_s": summary["images_per_s"], "train_gflops_per_s": summary["gflops_per_s"],
        "class_acc_ratio": report["class_acc_ratio"], "pos_err_ratio": report["pos_err_ratio"],
        "diversity_ratio": report["diversity_ratio"], "fid_custom": report["fid_custom"],
        "kid_custom": report["kid_custom"], "class_acc_real": report["class_acc_real"],
        "class_acc_fake": report["class_acc_fake"], "pos_err_real_px": report["pos_err_real"],
        "pos_err_fake_px": report["pos_err_fake"], "mode_coverage": report["mode_coverage"],
        "probe_from_cache": report["probe_from_cache"],
        # the ratios' inputs: pos_err_ratio is of the errors in image widths, diversity_ratio of the diversities
        "pos_err_real_norm": report["pos_err_real_norm"], "pos_err_fake_norm": report["pos_err_fake_norm"],
        "diversity_real": report["diversity_real"], "diversity_fake": report["diversity_fake"],
        "data_seconds": data_s, "train_seconds": train_s, "eval_seconds": eval_s,
        "total_seconds": time.perf_counter() - t_all,
    }
    figures["targets_met"] = _targets_met(figures)

    from armlab_scripts.gan import print_report

    ips = figures["train_images_per_s"]
    speed = f"{ips:.0f} training images/s" if ips else "training images/s not measured"
    print(f"conditional GAN (class,target), {args.size} px, {figures['frames']} frames, {steps} steps of "
          f"{batch_size} on {figures['device']} ({figures['threads']} threads): {speed}")
    print_report(report)
    print(f"wall times: data {data_s:.1f} s, training {train_s:.1f} s, evaluation {eval_s:.1f} s "
          f"(probe {'from cache' if report['probe_from_cache'] else 'trained now'}), total "
          f"{figures['total_seconds']:.1f} s; targets met: {figures['targets_met']}")
    if args.json:
        emit_json(figures)
    return 0


def _targets_met(f: dict) -> bool:
    ok = [f["class_acc_ratio"] is not None and f["class_acc_ratio"] >= 0.9,
          f["pos_err_ratio"] is not None and f["pos_err_ratio"] <= 2.0,
          f["diversity_ratio"] is not None and f["diversity_ratio"] >= 0.8]
    return all(ok)
