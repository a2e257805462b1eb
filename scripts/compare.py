"""The lecture's comparison: optimization, regression and reinforcement learning side by side.

For each stage of the open-loop reach task (``fixed``, ``velocity``, ``state``; ``arm3`` by
default) every controller is evaluated on the same held-out contexts:

* CMA-ES per context at several budgets ("try hundreds of x" for every decision);
* regression (an MLP from the observation to x) trained on growing numbers of contexts
  that CMA-ES solved first: the examples are what costs;
* RL agents (SB3, SAC and PPO by default) at growing training budgets: they optimize x and
  learn the mapping at once; plus a closed-loop SAC+HER row on the ``state`` stage;
* the zero signal, as the floor.

The plot shows the median final distance y against the total simulated episodes a controller
needs to make ``--decisions`` decisions (training + deployment), log x-axis, one line per
controller: the lecture's point made visible. Finished rows are kept in ``rows.json``; a
killed run resumes with the same command.

    armlab compare --robot arm3 --out runs/compare
    armlab compare --quick          # small budgets, a few minutes
    armlab compare --seeds 5 ...    # each RL agent with 5 seeds: IQM [95 % interval] over them, profiles
"""

from __future__ import annotations

import argparse
import re
import time
from pathlib import Path

STAGES = ("fixed", "velocity", "state")


def _ints(text: str, name: str) -> list[int]:
    from armlab_scripts._common import UsageError

    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise UsageError(f"{name} must be comma-separated integers, got {text!r}.") from None
    if not values or min(values) < 1:
        raise UsageError(f"{name} must list positive integers, got {text!r}.")
    return values


def run_comparison(args: argparse.Namespace) -> list[dict]:
    """`controllers.comparison.run_comparison` with the command's settings (rows.json keeps them: a resumed run
    must have the same)."""
    from controllers.comparison import Comparison
    from controllers.comparison import run_comparison as run_rows

    # --seeds is left out: more seeds add rows to a comparison, fewer use the first ones
    settings = {k: v for k, v in vars(args).items() if k not in ("func", "json", "no_progress", "out", "seeds")}
    cmp = Comparison(out=Path(args.out), robot=args.robot, stages=args.stage_list, contexts=args.contexts,
                     decisions=args.decisions, cmaes_budgets=args.cmaes_budget_list,
                     regression_sizes=args.regression_size_list, regression_budget=args.regression_budget,
                     regression_epochs=args.regression_epochs, rl_algos=args.rl_algo_list, rl_steps=args.rl_step_list,
                     closed_loop_steps=args.closed_loop_steps, seed=args.seed, seeds=args.seeds,
                     progress=not args.no_progress)
    return run_rows(cmp, settings, report=lambda line: print(line, flush=True))


def plot(rows: list[dict], path: Path, decisions: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter

    stages = [s for s in STAGES if any(r["stage"] == s for r in rows)]
    fig, axes = plt.subplots(1, len(stages), figsize=(5.2 * len(stages), 4.4), squeeze=False, sharey=True)
    for ax, stage in zip(axes[0], stages):
        srows = [r for r in rows if r["stage"] == stage]
        zero = next((r for r in srows if r["family"] == "zero"), None)
        for family in dict.fromkeys(r["family"] for r in srows if r["family"] != "zero"):
            pts = sorted((r["total_episodes"], r["median_y"], r["budget"]) for r in srows if r["family"] == family)
            xs, ys, _ = zip(*pts)
            ax.loglog(xs, ys, "-o", label=family, ms=4)
        if zero:
            ax.axhline(zero["median_y"], color="0.5", ls=":", label="zero signal")
        ax.axhline(0.02, color="k", ls="--", lw=0.8, label="2 cm")
        ax.set(title=f"stage '{stage}'", xlabel=f"simulated episodes for {decisions} decisions (training + deployment)")
        ax.grid(True, which="both", alpha=0.3)
        ax.xaxis.set_minor_formatter(NullFormatter())  # decades only: minor labels collide
    axes[0][0].set_ylabel("median final distance y (m)")
    axes[0][-1].legend(fontsize=8)
    fig.tight_layout()
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)


FULL = dict(contexts=200, cmaes_budgets="30,100,300,1000", regression_sizes="25,100,400", regression_budget=300,
            regression_epochs=2000, rl_algos="sac,ppo", rl_steps="2000,10000,50000", closed_loop_steps=30000)
QUICK = dict(contexts=20, cmaes_budgets="30,100,300", regression_sizes="10,40", regression_budget=150,
             regression_epochs=800, rl_algos="sac", rl_steps="500,1500", closed_loop_steps=600)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--robot", default="arm3", help="robot (default arm3)")
    p.add_argument("--stages", default="fixed,velocity,state", help="comma-separated stages")
    p.add_argument("--contexts", type=int, default=None, help="held-out contexts per stage (200; quick 20)")
    p.add_argument("--decisions", type=int, default=200, help="deployment decisions counted in the total")
    p.add_argument("--cmaes-budgets", default=None, help="CMA-ES evaluations per context (30,100,300,1000)")
    p.add_argument("--regression-sizes", default=None, help="optimized contexts to learn from (25,100,400)")
    p.add_argument("--regression-budget", type=int, default=None, help="CMA-ES evaluations per example (300)")
    p.add_argument("--regression-epochs", type=int, default=None, help="full-batch training epochs (2000)")
    p.add_argument("--rl-algos", default=None, help="SB3 agents trained per stage (sac,ppo; empty: none)")
    p.add_argument("--rl-steps", default=None, help="training budgets in env steps, one row each (2000,10000,50000)")
    p.add_argument("--closed-loop-steps", type=int, default=None,
                   help="SAC+HER closed-loop training steps for the state stage (30000; 0: skip)")
    p.add_argument("--seed", type=int, default=0, help="seed of every search and fit")
    p.add_argument("--seeds", type=int, default=1, help="train each RL agent with this many seeds (seed, seed + 1, "
                   "...): IQM, mean and median over seeds with 95 %% bootstrap intervals, performance profiles")
    p.add_argument("--out", default="runs/compare", help="output folder (rows.json, compare.md/.csv/.png)")
    p.add_argument("--quick", action="store_true", help="20 contexts and small budgets (explicit options win)")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.add_argument("--json", action="store_true", help="print the rows as one JSON object on the last line")


def run(args: argparse.Namespace) -> int:
    from armlab_scripts._common import UsageError, atomic_write_text, emit_json
    from controllers.comparison import CSV_COLUMNS, markdown, ordered
    from controllers.evaluation import to_csv
    from robot_env import ROBOTS
    from robot_env.io.atomic import make_dirs

    for key, value in (QUICK if args.quick else FULL).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.robot not in ROBOTS:
        raise UsageError(f"unknown robot {args.robot!r}; available robots: {', '.join(ROBOTS)}.")
    args.stage_list = [s for s in args.stages.split(",") if s]
    bad = [s for s in args.stage_list if s not in STAGES]
    if bad or not args.stage_list:
        raise UsageError(f"unknown stage(s) {bad}; choose from {', '.join(STAGES)}.")
    if args.contexts < 1 or args.decisions < 1 or args.regression_budget < 1:
        raise UsageError("--contexts, --decisions and --regression-budget must be positive.")
    args.cmaes_budget_list = _ints(args.cmaes_budgets, "--cmaes-budgets")
    args.regression_size_list = _ints(args.regression_sizes, "--regression-sizes")
    args.rl_step_list = _ints(args.rl_steps, "--rl-steps")
    args.rl_algo_list = [a for a in args.rl_algos.split(",") if a]
    from controllers.rl import ALGOS

    bad_algos = [a for a in args.rl_algo_list if a not in ALGOS]
    if bad_algos:
        raise UsageError(f"unknown algo(s) {bad_algos}; choose from {', '.join(ALGOS)}.")
    if args.closed_loop_steps < 0:
        raise UsageError("--closed-loop-steps must be >= 0.")
    if args.seeds < 1:
        raise UsageError(f"--seeds must be a positive integer, got {args.seeds}.")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} exists and is not a folder.")
    make_dirs(out)
    t0 = time.perf_counter()
    rows = run_comparison(args)
    rows = ordered([r for r in rows if r["stage"] in args.stage_list and _seed_kept(r, args.seed, args.seeds)])
    atomic_write_text(out / "compare.csv", to_csv(rows, CSV_COLUMNS))
    table = markdown(rows)
    figures: dict = {}
    if args.seeds > 1:
        figures = _error_bars(rows, out, args.seed)
        table += "\nRL over seeds (IQM [95 % stratified-bootstrap interval], rliable):\n\n" + figures.pop("table")
    atomic_write_text(out / "compare.md", table)
    plot([r for r in rows if not _SEED_ROW.search(r["controller"])], out / "compare.png", args.decisions)
    print("\n" + table)
    print(f"wall time {time.perf_counter() - t0:.0f} s; table, CSV and plot in {out}/")
    if args.json:
        emit_json({"rows": [{k: v for k, v in r.items() if k != "ys"} for r in rows], **figures,
                   "wall_s": time.perf_counter() - t0})
    return 0


_SEED_ROW = re.compile(r" seed (\d+)$")  #: the rows of further seeds end so (controllers.comparison.rl_rows)


def _seed_kept(row: dict, seed: int, seeds: int) -> bool:
    """Whether ``row`` belongs to the first ``seeds`` seeds (rows.json may hold rows of more)."""
    m = _SEED_ROW.search(row["controller"])
    return m is None or seed <= int(m.group(1)) < seed + seeds


def _error_bars(rows: list[dict], out: Path, seed: int) -> dict:
    """The RL rows over seeds: interval rows, their table, and one performance-profile PNG per stage."""
    from controllers.comparison import aggregate_seeds, interval_markdown, seed_profiles
    from controllers.intervals import plot_profiles

    intervals = aggregate_seeds(rows, seed=seed)
    profiles = seed_profiles(rows, seed=seed)
    pngs = {stage: str(plot_profiles(p, out / f"compare_profile_{stage}.png",
                                     title=f"stage '{stage}': RL over seeds (95 % bootstrap band)"))
            for stage, p in profiles.items()}
    return {"intervals": intervals, "profiles": profiles, "profile_png": pngs, "table": interval_markdown(intervals)}
