"""Sim-to-real with CycleGAN, end to end: training speed, gap closure and PSNR gain, with and without the
task-consistency term.

    armlab bench cyclegan --json                 # the full run (about 20 minutes on 2 idle CPU cores)
    armlab bench cyclegan --quick                # a smoke test of the whole pipeline (seconds)

1. Two 64 px datasets of the same scenes (same seed): --style sim and --style real, --n frames each, written once
   under --out/data and reused.
2. Two CycleGAN runs on the first 80% of the frames of each (the last 20% of the real frames stay unseen): without
   the task-consistency term, and with it (--task-weight; its probe is trained on the sim dataset first). They run
   side by side in two processes of one thread each (on two cores that beats one process with two threads). Runs
   live in --out/runs and resume; --fresh starts them again.
3. `armlab sim2real eval` figures for both: a target-position regressor trained on sim, on translated sim and on
   real images, tested on the held-out real frames, gives gap_closure (target >= 0.5); the paired frames give the
   PSNR gain of G(sim) over sim against the real frame (target >= 2 dB).

Defaults: CycleGANs with --base 16 generators (6 blocks, one downsampling at 64 px) and --d-base 32
discriminators, 1500 steps of 4 images, EMA 0.995; the probe of the task term trains 1000 steps (cached in the sim
dataset); the regressors train 600 steps, and each error is the mean of 2 seeds. Training images/s counts sim images
per second per run (each step also translates as many real images).
"""

from __future__ import annotations

import argparse
import csv
import json
import multiprocessing as mp
import shutil
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from armlab_scripts._common import UsageError, emit_json

TARGET_GAP_CLOSURE = 0.5
TARGET_PSNR_GAIN = 2.0

FULL = {"n": 3000, "size": 64, "steps": 1500, "batch_size": 4, "base": 16, "n_blocks": 6, "d_base": 32,
        "task_weight": 0.5, "probe_steps": None, "eval_steps": 600, "n_seeds": 2, "ema_decay": 0.995}
QUICK = {"n": 60, "size": 32, "steps": 12, "batch_size": 2, "base": 8, "n_blocks": 2, "d_base": 8,
         "task_weight": 0.5, "probe_steps": 20, "eval_steps": 20, "n_seeds": 1, "ema_decay": 0.9}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--steps", type=int, default=None, help=f"CycleGAN steps per run (default {FULL['steps']})")
    p.add_argument("--quick", action="store_true", help="tiny datasets, models and budgets: checks the pipeline only")
    p.add_argument("--out", default="runs/bench/cyclegan", help="working folder (default runs/bench/cyclegan)")
    p.add_argument("--n", type=int, default=None, help=f"frames per dataset (default {FULL['n']})")
    p.add_argument("--batch-size", type=int, default=None, help=f"batch size (default {FULL['batch_size']})")
    p.add_argument("--task-weight", type=float, default=None,
                   help=f"weight of the task-consistency term in the second run (default {FULL['task_weight']})")
    p.add_argument("--seed", type=int, default=0, help="dataset and training seed (default 0)")
    p.add_argument("--sequential", action="store_true", help="train the two runs one after the other")
    p.add_argument("--fresh", action="store_true", help="delete earlier runs (the datasets are kept)")
    p.add_argument("--json", action="store_true", help="print the figures as one JSON object on the last line")


def _settings(args: argparse.Namespace) -> dict:
    s = dict(QUICK if args.quick else FULL)
    for key, value in (("steps", args.steps), ("n", args.n), ("batch_size", args.batch_size),
                       ("task_weight", args.task_weight)):
        if value is not None:
            s[key] = value
    if s["steps"] < 1 or s["batch_size"] < 1:
        raise UsageError("--steps and --batch-size must be at least 1.")
    if s["n"] < 20:
        raise UsageError(f"--n must be at least 20 frames, got {s['n']}.")
    if s["task_weight"] <= 0:
        raise UsageError(f"--task-weight must be positive (the second run uses the term), got {s['task_weight']}.")
    s["seed"] = args.seed
    return s


def _dataset(out: Path, style: str, n: int, size: int, seed: int) -> str:
    """Generate (or reuse) one dataset; returns its folder."""
    from robot_env.dataset import DatasetConfig, generate

    manifest = out / "manifest.json"
    if manifest.is_file():
        m = json.loads(manifest.read_text())
        if (m.get("n"), m.get("size"), m.get("seed"), m.get("style")) == (n, size, seed, style):
            return str(out)
    generate(out, DatasetConfig(n=n, size=size, seed=seed, style=style), workers=1, progress=False)
    return str(out)


def _last_logged_rate(run: Path) -> float | None:
    try:
        with open(run / "log.csv", newline="") as f:
            rates = [r.get("images_per_s") for r in csv.DictReader(f)]
    except OSError:
        return None
    rates = [float(r) for r in rates if r]
    return rates[-1] if rates else None


def _train_and_eval(job: dict) -> dict:
    """One run: train (or resume) then evaluate. Runs in its own process with one thread."""

    from generative.cyclegan import TRAIN_DEFAULTS, train_cyclegan
    from generative.sim2real import sim2real_eval
    from generative.training import TrainConfig
    from robot_env.io.threads import set_threads

    set_threads(job["threads"])

    s = job["settings"]
    t0 = time.perf_counter()
    train = TrainConfig(
        out=job["run"], steps=s["steps"],
        **{**TRAIN_DEFAULTS, "batch_size": s["batch_size"], "ema_decay": s["ema_decay"]}, seed=s["seed"],
        device="cpu", progress=False, tensorboard=not job["quick"], log_every=max(1, min(50, s["steps"] // 4)),
        sample_every=max(1, s["steps"] // 3), checkpoint_every=max(1, min(250, s["steps"])),
    )
    summary = train_cyclegan(
        job["sim"], job["real"], train, size=s["size"], task_weight=job["task_weight"], base=s["base"],
        n_blocks=s["n_blocks"], d_base=s["d_base"], sim_limit=job["limit"], real_limit=job["limit"],
        probe_steps=s["probe_steps"],
    )
    t_train = time.perf_counter() - t0
    ips = summary["images_per_s"] or _last_logged_rate(Path(job["run"]))
    report = sim2real_eval(job["sim"], job["real"], job["run"], quick=job["quick"], seed=s["seed"],
                           steps=s["eval_steps"], n_seeds=s["n_seeds"])
    return {"report": report, "images_per_s": ips, "steps_run": summary["steps_run"], "train_s": t_train,
            "eval_s": report["seconds"]}


def measure(out: str | Path, settings: dict, quick: bool = False, sequential: bool = False, fresh: bool = False,
            progress: bool = True) -> dict:
    """Run the benchmark; returns the figures (see the module docstring)."""
    s = settings
    out = Path(out) / ("quick" if quick else "full")
    t0 = time.perf_counter()
    data = out / "data"
    n, size, seed = s["n"], s["size"], s["seed"]
    sim_dir, real_dir = data / f"sim_n{n}_{size}px_seed{seed}", data / f"real_n{n}_{size}px_seed{seed}"
    ctx = mp.get_context("spawn")  # fresh interpreters: no inherited torch / OpenMP state
    say = print if progress else (lambda *a, **k: None)
    say(f"datasets: {n} sim and {n} real-style frames at {size} px (seed {seed}) under {data}", flush=True)
    with ProcessPoolExecutor(2, mp_context=ctx) as pool:
        list(pool.map(_dataset, [sim_dir, real_dir], ["sim", "real"], [n, n], [size, size], [seed, seed]))
    t_data = time.perf_counter() - t0
    limit = int(round(n * 0.8))
    jobs = []
    for name, weight in (("plain", 0.0), ("task", s["task_weight"])):
        run = out / "runs" / name
        if fresh and run.exists():
            shutil.rmtree(run)
        jobs.append({"name": name, "sim": str(sim_dir), "real": str(real_dir), "run": str(run), "task_weight": weight,
                     "limit": limit, "settings": s, "quick": quick, "threads": 2 if sequential else 1})
    say(f"training two CycleGANs ({s['steps']} steps of {s['batch_size']} images, base {s['base']}, "
        f"{s['n_blocks']} blocks) {'one after the other' if sequential else 'side by side'}: without and with the "
        f"task-consistency term (weight {s['task_weight']:g}), then evaluating both", flush=True)
    if sequential:
        results = [_train_and_eval(j) for j in jobs]
    else:
        with ProcessPoolExecutor(2, mp_context=ctx) as pool:
            results = list(pool.map(_train_and_eval, jobs))
    figures: dict = {"settings": s, "data_s": t_data}
    for job, res in zip(jobs, results):
        r, k = res["report"], job["name"]
        figures.update({
            f"images_per_s_{k}": res["images_per_s"], f"train_s_{k}": res["train_s"], f"eval_s_{k}": res["eval_s"],
            f"gap_closure_{k}": r["gap_closure"], f"psnr_gain_{k}": r["psnr_gain"], f"e_trans_{k}": r["e_trans"],
            f"psnr_trans_{k}": r["psnr_trans"], f"ssim_trans_{k}": r["ssim_trans"], f"steps_run_{k}": res["steps_run"],
        })
    base = results[0]["report"]
    figures.update({"e_sim": base["e_sim"], "e_real": base["e_real"], "psnr_sim": base["psnr_sim"],
                    "ssim_sim": base["ssim_sim"], "gap": base["gap"], "n_test": base["n_test"],
                    "task_weight": s["task_weight"], "steps": s["steps"], "quick": quick,
                    "parallel_runs": not sequential, "wall_s": time.perf_counter() - t0,
                    "target_gap_closure": TARGET_GAP_CLOSURE, "target_psnr_gain": TARGET_PSNR_GAIN})
    rates = [figures[f"images_per_s_{k}"] for k in ("plain", "task")]
    figures["images_per_s_total"] = sum(rates) if all(rates) and not sequential else None
    for k in ("plain", "task"):
        g, p = figures[f"gap_closure_{k}"], figures[f"psnr_gain_{k}"]
        figures[f"meets_targets_{k}"] = bool(figures["gap"] > 0 and g is not None and p is not None
                                             and g >= TARGET_GAP_CLOSURE and p >= TARGET_PSNR_GAIN)
    return figures


def _f(v, digits: int = 2, unit: str = "") -> str:
    return "-" if v is None else f"{v:.{digits}f}{unit}"


def run(args: argparse.Namespace) -> int:
    s = _settings(args)
    r = measure(args.out, s, quick=args.quick, sequential=args.sequential, fresh=args.fresh)
    how = "two runs side by side, one thread each" if r["parallel_runs"] else "one run at a time"
    total = f" ({_f(r['images_per_s_total'], 1)} in total)" if r["images_per_s_total"] else ""
    print(f"\ntraining speed ({how}): {_f(r['images_per_s_plain'], 1)} images/s without the term, "
          f"{_f(r['images_per_s_task'], 1)} with it{total}")
    print(f"regressor error on held-out real frames: trained on sim {_f(r['e_sim'], 3)} px, on real (oracle) "
          f"{_f(r['e_real'], 3)} px; PSNR of sim vs real {_f(r['psnr_sim'])} dB")
    if r["gap"] <= 0:
        print("  (the sim-trained regressor is no worse than the oracle here, so there is no gap to close and the "
              "gap closure below means nothing)")
    print(f"  {'':<22}{'e_trans (px)':>14}{'gap closure':>14}{'PSNR gain':>12}{'SSIM':>8}   targets met")
    for k, label in (("plain", "without task term"), ("task", f"with task term {r['task_weight']:g}")):
        print(f"  {label:<22}{_f(r[f'e_trans_{k}'], 3):>14}{_f(r[f'gap_closure_{k}']):>14}"
              f"{_f(r[f'psnr_gain_{k}'], 2, ' dB'):>12}{_f(r[f'ssim_trans_{k}'], 3):>8}   "
              f"{'yes' if r[f'meets_targets_{k}'] else 'no'}")
    print(f"targets: gap closure >= {TARGET_GAP_CLOSURE}, PSNR gain >= {TARGET_PSNR_GAIN:g} dB"
          + (" (--quick: budgets far too small to meet them)" if r["quick"] else "")
          + f"; wall time {r['wall_s'] / 60:.1f} min")
    if args.json:
        emit_json({k: v for k, v in r.items() if k != "settings"} | {f"setting_{k}": v for k, v in
                                                                       r["settings"].items()})
    return 0
