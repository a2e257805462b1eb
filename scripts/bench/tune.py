"""Benchmark: `armlab tune` trials per hour with 2 workers against 1 on one PostgreSQL study, side by side.

    armlab bench tune [--trials 8] [--n-timesteps 600] [--storage postgresql://...] [--json]

Both arms run the same trial budget (--trials of --algo on --env, --n-timesteps each) as separate `armlab tune`
processes against a PostgreSQL study of their own: first one worker, then two workers started together. The
random sampler with the same seed and no pruner makes trial N draw the same hyperparameters in both arms, so the
two arms do the same work. Trials per hour count from the first trial's start to the last one's end (the study's
own timestamps: process start-up left out); the wall time with start-up is printed beside it. The machine's own
two-process ceiling is measured in the same run, before and after the two arms: two independent CPU-bound processes
against one (2.0 on two idle cores; less where other work shares the machine). Without --storage a throwaway
PostgreSQL server is started (Debian's postgresql package) and removed afterwards.
"""

from __future__ import annotations

import argparse
import multiprocessing
import subprocess
import sys
import tempfile
import time
import uuid


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--trials", type=int, default=8, help="finished trials per arm (default 8)")
    p.add_argument("--n-timesteps", type=int, default=600, help="env steps per trial (default 600)")
    p.add_argument("--algo", default="sac", help="the tuned algorithm (default sac)")
    p.add_argument("--env", default="armlab/ReachSignalFixed-v0", help="the env (default armlab/ReachSignalFixed-v0)")
    p.add_argument("--storage", default=None, help="a PostgreSQL URL (default: a throwaway local server)")
    p.add_argument("--ceiling-s", type=float, default=4.0, help="seconds of CPU work per process in the ceiling "
                   "measurement (default 4)")
    p.add_argument("--json", action="store_true", help="print the figures as one JSON object on the last line")


def _spin(n: int) -> float:
    """CPU-bound pure-Python work; returns its own wall time."""
    t0 = time.perf_counter()
    acc = 0
    for i in range(n):
        acc += i * i % 7
    return time.perf_counter() - t0


def ceiling(seconds: float) -> dict:
    """Two independent CPU-bound processes against one: the throughput ratio this machine allows right now."""
    ctx = multiprocessing.get_context("spawn")
    n = 2_000_000
    with ctx.Pool(1) as pool:
        while (t := pool.apply(_spin, (n,))) < 0.5:
            n *= 4
        n = int(n * seconds / t)
        t0 = time.perf_counter()
        pool.apply(_spin, (n,))
        one = time.perf_counter() - t0
    with ctx.Pool(2) as pool:
        pool.map(_spin, [1000, 1000])  # both processes up before the clock starts
        t0 = time.perf_counter()
        pool.map(_spin, [n, n])
        two = time.perf_counter() - t0
    return {"one_process_s": one, "two_processes_s": two, "ceiling": 2 * one / two}


def _arm(workers: int, url: str, args: argparse.Namespace, folder: str) -> dict:
    """``workers`` `armlab tune` processes on a fresh study; its trials per hour."""
    from controllers import tune

    study = f"bench-{workers}w-{uuid.uuid4().hex[:8]}"
    argv = [sys.executable, "-m", "armlab_scripts.cli", "tune", "--algo", args.algo, "--env", args.env,
            "--n-timesteps", str(args.n_timesteps), "--n-trials", str(args.trials), "--storage", url,
            "--study-name", study, "--sampler", "random", "--pruner", "none", "--eval-contexts", "10", "-f", folder]
    t0 = time.perf_counter()
    procs = [subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
             for _ in range(workers)]
    errors = [p.communicate()[1] for p in procs]
    wall = time.perf_counter() - t0
    if any(p.returncode for p in procs):
        raise RuntimeError(f"a tuning worker failed: {' | '.join(e.strip()[-400:] for e in errors)}")
    import optuna

    trials = optuna.load_study(study_name=study, storage=tune.open_storage(tune.storage_url(url, folder, study)))
    done = [t for t in trials.get_trials(deepcopy=False) if t.state.name in ("COMPLETE", "PRUNED")]
    span = (max(t.datetime_complete for t in done) - min(t.datetime_start for t in done)).total_seconds()
    return {"workers": workers, "trials": len(done), "span_s": span, "wall_s": wall,
            "trials_per_hour": 3600.0 * len(done) / span, "trials_per_hour_wall": 3600.0 * len(done) / wall,
            "train_s_per_trial": sum(t.user_attrs.get("train_s", 0.0) for t in done) / len(done)}


def run(args: argparse.Namespace) -> int:
    import contextlib

    from armlab_scripts._common import UsageError, emit_json
    from armlab_scripts.bench._postgres import PostgresUnavailable, throwaway_postgres
    from controllers import rl, tune

    for name, value in (("--trials", args.trials), ("--n-timesteps", args.n_timesteps)):
        if value < 1:
            raise UsageError(f"{name} must be a positive integer, got {value}.")
    if args.ceiling_s <= 0:
        raise UsageError(f"--ceiling-s must be positive, got {args.ceiling_s}.")
    rl.algo_of(args.algo), rl.env_id_of(args.env)
    if args.storage is not None and not tune.storage_url(args.storage, ".", "x").startswith("postgresql"):
        raise UsageError(f"--storage must be a postgresql:// URL (the benchmark is about workers sharing a "
                         f"database), got {args.storage!r}.")
    def measure_ceiling(when: str) -> dict:
        print(f"two-process ceiling {when}: {args.ceiling_s:g} s of CPU work per process ...", flush=True)
        c = ceiling(args.ceiling_s)
        print(f"  one process {c['one_process_s']:.2f} s, two at once {c['two_processes_s']:.2f} s: ceiling "
              f"{c['ceiling']:.2f}x", flush=True)
        return c

    ceilings = [measure_ceiling("before")]
    if args.storage:
        server = contextlib.nullcontext(args.storage)
    else:
        server = throwaway_postgres()
    arms = []
    try:
        with server as url, tempfile.TemporaryDirectory(prefix="armlab-bench-tune-") as folder:
            for workers in (1, 2):
                print(f"{workers} worker(s): {args.trials} trials of {args.algo} on {args.env}, {args.n_timesteps:,} "
                      f"steps each ...", flush=True)
                arms.append(_arm(workers, url, args, folder))
                a = arms[-1]
                print(f"  {a['trials']} trials in {a['span_s']:.1f} s ({a['wall_s']:.1f} s with start-up): "
                      f"{a['trials_per_hour']:,.0f} trials/hour", flush=True)
    except PostgresUnavailable as exc:
        raise UsageError(f"no PostgreSQL server for the benchmark: {exc}.") from None
    ceilings.append(measure_ceiling("after"))
    ceil = {"before": ceilings[0], "after": ceilings[1], "ceiling": min(c["ceiling"] for c in ceilings)}
    ratio = arms[1]["trials_per_hour"] / arms[0]["trials_per_hour"]
    wall_ratio = arms[1]["trials_per_hour_wall"] / arms[0]["trials_per_hour_wall"]
    print("\n| workers | trials | trials/hour | wall with start-up |\n|---|---|---|---|")
    for a in arms:
        print(f"| {a['workers']} | {a['trials']} | {a['trials_per_hour']:,.0f} | {a['wall_s']:.1f} s |")
    print(f"\n2 workers / 1: {ratio:.2f}x (target >= 1.7x; {wall_ratio:.2f}x counting process start-up); "
          f"this machine's two-process ceiling: {ceilings[0]['ceiling']:.2f}x before, {ceilings[1]['ceiling']:.2f}x "
          f"after")
    if args.json:
        emit_json({"arms": arms, "speedup": ratio, "speedup_wall": wall_ratio, "ceiling": ceil,
                   "target": 1.7, "settings": {"trials": args.trials, "n_timesteps": args.n_timesteps,
                                               "algo": args.algo, "env": args.env}})
    return 0
