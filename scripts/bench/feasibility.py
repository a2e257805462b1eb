"""Feasibility of the reach stages: can a well-run optimizer solve every context, and does a zero signal fail?

For each stage, ``--contexts`` contexts are drawn with seeds ``seed .. seed+N-1``; CMA-ES
(``--budget`` evaluations, restarts) searches each one. Reported per stage: the share
of contexts solved to y < 1 cm (the bar is >= 95 %), the same share for the zero signal
(it must stay low: a trivial task is as wrong as an impossible one), median and 90th
percentile of the best y, evaluations used and wall time.

    armlab bench feasibility --robot arm2 --contexts 100 --budget 1500 --json
"""

from __future__ import annotations

import argparse
import time
from concurrent.futures import ProcessPoolExecutor

import numpy as np
from tqdm import tqdm

SOLVED = 0.01  # metres: the lecture's "reached" for this check


def _solve(job: tuple) -> tuple[float, float, int]:
    env_id, robot, seed, budget, env_kwargs = job
    import gymnasium as gym

    import robot_env  # noqa: F401  (registers the ids)
    from controllers.optimization import cmaes

    env = gym.make(env_id, robot=robot, **env_kwargs).unwrapped
    try:
        env.reset(seed=seed)
        res = cmaes(env.evaluate, env.action_space.shape[0], budget=budget, seed=seed, target=0.002)
        zero = env.evaluate(np.zeros(env.action_space.shape[0]))
        return res.y, zero, res.evaluations
    finally:
        env.close()


def measure(robot: str = "arm2", contexts: int = 100, budget: int = 1500, seed: int = 0, workers: int = 2,
            stages=("fixed", "velocity", "state"), env_kwargs: dict | None = None, progress: bool = True) -> dict:
    """Run the check and return ``{stage: figures}``."""
    from robot_env import OPEN_LOOP_IDS

    results = {}
    for stage in stages:
        jobs = [(OPEN_LOOP_IDS[stage], robot, seed + i, budget, env_kwargs or {}) for i in range(contexts)]
        t0 = time.perf_counter()
        with ProcessPoolExecutor(max_workers=workers) as pool:
            out = list(tqdm(pool.map(_solve, jobs), total=len(jobs), desc=f"{robot} {stage}", disable=not progress))
        ys = np.array([o[0] for o in out])
        zeros = np.array([o[1] for o in out])
        results[stage] = {
            "solved": float(np.mean(ys < SOLVED)),
            "zero_solved": float(np.mean(zeros < SOLVED)),
            "median_y": float(np.median(ys)),
            "p90_y": float(np.percentile(ys, 90)),
            "median_zero_y": float(np.median(zeros)),
            "mean_evaluations": float(np.mean([o[2] for o in out])),
            "wall_s": time.perf_counter() - t0,
        }
    return results


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--robot", default="arm2", help="robot name (arm2, arm3, panda, kuka)")
    p.add_argument("--contexts", type=int, default=100, help="contexts drawn per stage")
    p.add_argument("--budget", type=int, default=1500, help="CMA-ES evaluations per context (>= 1000)")
    p.add_argument("--seed", type=int, default=0, help="first context seed")
    p.add_argument("--workers", type=int, default=2, help="parallel processes")
    p.add_argument("--stages", default="fixed,velocity,state", help="comma-separated stages")
    p.add_argument("--json", action="store_true", help="print the figures as one JSON object on the last line")


def run(args: argparse.Namespace) -> int:
    from armlab_scripts._common import UsageError, emit_json
    from robot_env import ROBOTS, STAGES

    stages = tuple(s for s in args.stages.split(",") if s)
    bad = [s for s in stages if s not in STAGES]
    if bad:
        raise UsageError(f"unknown stage(s) {bad}; choose from {', '.join(STAGES)}.")
    if args.robot not in ROBOTS:
        raise UsageError(f"unknown robot {args.robot!r}; available robots: {', '.join(ROBOTS)}.")
    if args.contexts < 1 or args.budget < 1 or args.workers < 1:
        raise UsageError("--contexts, --budget and --workers must be positive integers.")
    res = measure(args.robot, args.contexts, args.budget, args.seed, args.workers, stages)
    print(f"\nfeasibility of {args.robot}: CMA-ES, {args.budget} evaluations, {args.contexts} contexts per stage")
    print(f"{'stage':<10}{'solved <1cm':>12}{'zero solved':>12}{'median y':>11}{'p90 y':>10}{'evals':>8}{'wall s':>8}")
    for stage, r in res.items():
        print(f"{stage:<10}{r['solved']:>12.0%}{r['zero_solved']:>12.0%}{r['median_y'] * 1000:>9.2f}mm"
              f"{r['p90_y'] * 1000:>8.2f}mm{r['mean_evaluations']:>8.0f}{r['wall_s']:>8.1f}")
    ok = all(r["solved"] >= 0.95 and r["zero_solved"] < 0.05 for r in res.values())
    print("bar (>= 95 % solved, zero signal < 5 %):", "met" if ok else "NOT met")
    if args.json:
        emit_json({"robot": args.robot, "budget": args.budget, "contexts": args.contexts, "stages": res, "bar_met": ok})
    return 0
