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
"""

from __future__ import annotations

import argparse
import json
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


class Rows:
    """Finished result rows, persisted atomically after each one (resume = skip what is done)."""

    def __init__(self, path: Path, settings: dict) -> None:
        from armlab_scripts._common import UsageError

        self.path = path
        self.rows: list[dict] = []
        if path.exists():
            try:
                saved = json.loads(path.read_text())
            except json.JSONDecodeError:
                raise UsageError(f"{path} is not valid JSON; move it away to start the comparison afresh.") from None
            if saved.get("settings") != settings:
                raise UsageError(f"{path} holds a comparison run with other settings; use another --out.")
            self.rows = saved["rows"]
        self.settings = settings

    def done(self, stage: str, name: str, tag: str | None = None) -> dict | None:
        """The finished row of ``name`` on ``stage`` (with ``tag``, only a row made under that tag)."""
        return next((r for r in self.rows if r["stage"] == stage and r["controller"] == name
                     and (tag is None or r.get("tag") == tag)), None)

    def add(self, row: dict) -> None:
        from armlab_scripts._common import atomic_write_text

        self.rows = [r for r in self.rows if (r["stage"], r["controller"]) != (row["stage"], row["controller"])]
        self.rows.append(row)
        atomic_write_text(self.path, json.dumps({"settings": self.settings, "rows": self.rows}, indent=1))


def _row(stage: str, family: str, budget: float, result, decisions: int) -> dict:
    row = result.row()
    row.update(stage=stage, family=family, budget=budget,
               total_episodes=result.training_episodes + decisions * result.episodes_per_decision)
    return row


def run_comparison(args: argparse.Namespace) -> list[dict]:
    from controllers.evaluation import cmaes_controller, evaluate, held_out_contexts, zero_controller
    from controllers.regression import collect, fit, regression_controller
    from robot_env import OPEN_LOOP_IDS

    out = Path(args.out)
    settings = {k: v for k, v in vars(args).items() if k not in ("func", "json", "no_progress", "out")}
    rows = Rows(out / "rows.json", settings)
    kw = {"robot": args.robot}
    progress = not args.no_progress
    for stage in args.stage_list:
        env_id = OPEN_LOOP_IDS[stage]
        contexts = held_out_contexts(env_id, n=args.contexts, **kw)

        def run(name, family, budget, make_controller, env=None, tag=None, train_s=0.0, _stage=stage, _env=env_id,
                _ctx=contexts):
            if rows.done(_stage, name, tag):
                return
            eval_id, eval_kw = env or (_env, kw)
            t0 = time.perf_counter()
            result = evaluate(make_controller(), eval_id, _ctx, **eval_kw)
            row = _row(_stage, family, budget, result, args.decisions)
            row["wall_s"] = time.perf_counter() - t0
            row["train_s"] = float(train_s)
            row["controller"] = name
            if tag is not None:
                row["tag"] = tag
            rows.add(row)
            print(f"  {_stage:<9}{name:<24} median y {row['median_y'] * 1000:8.1f} mm   success@2cm "
                  f"{row['success_2cm']:5.0%}   total episodes {row['total_episodes']:>12,.0f}", flush=True)

        print(f"stage {stage}: {len(contexts)} held-out contexts of {env_id} ({args.robot})")
        run("zero signal", "zero", 0, zero_controller)
        for b in args.cmaes_budget_list:
            run(f"CMA-ES {b}", "CMA-ES", b, lambda b=b: cmaes_controller(budget=b, seed=args.seed))

        sizes = [n for n in args.regression_size_list if not rows.done(stage, f"regression {n}")]
        if sizes:
            t0 = time.perf_counter()
            ex = collect(env_id, max(sizes), budget=args.regression_budget, seed=args.seed, progress=progress, **kw)
            per_example = (time.perf_counter() - t0) / max(sizes)
            for n in sizes:
                t1 = time.perf_counter()
                reg = fit(ex.obs[:n], ex.x[:n], epochs=args.regression_epochs, seed=args.seed)
                cost = int(ex.costs[:n].sum())  # the examples are the cost
                run(f"regression {n}", "regression", n, lambda reg=reg, cost=cost: regression_controller(reg, cost),
                    train_s=n * per_example + time.perf_counter() - t1)

        tag = rl_defaults_tag()
        for algo in args.rl_algo_list:
            _rl_rows(run, out / "rl" / tag / stage, algo, env_id, args.rl_step_list, kw, args.seed, progress, tag)
        if stage == "state" and args.closed_loop_steps:
            # the settings that learn best in docs/benchmarks.md: log reward, history, HER "final"
            closed_kw = dict(kw, obs_type="dict", reward_type="log", history=True)
            _rl_rows(run, out / "rl" / tag / "state-closed-loop", "sac", "armlab/ReachState-v0",
                     [args.closed_loop_steps], closed_kw, args.seed, progress, tag, label="SAC+HER closed loop",
                     eval_env=("armlab/ReachState-v0", closed_kw))
    return rows.rows


def rl_defaults_tag() -> str:
    """A short hash of ``controllers/hyperparams.yml``: RL rows and runs made under other defaults are redone."""
    import hashlib

    from controllers.rl import HYPERPARAMS_FILE

    return hashlib.sha256(HYPERPARAMS_FILE.read_bytes()).hexdigest()[:8]


def _rl_rows(run, folder: Path, algo: str, env_id: str, budgets: list[int], env_kwargs: dict, seed: int,
             progress: bool, tag: str, label: str | None = None, eval_env: tuple | None = None) -> None:
    """Train one agent up through ``budgets`` (resuming its run between budgets, and after a
    kill) and evaluate it at each budget. The training time up to each budget is kept in
    ``train_s.json`` beside the runs."""
    from armlab_scripts._common import atomic_write_text
    from controllers import rl

    name = label or algo.upper()
    times_file = folder / algo / "train_s.json"
    times = json.loads(times_file.read_text()) if times_file.is_file() else {}
    for budget in sorted(budgets):
        existing = sorted((folder / algo).glob("*/config.yml"))
        run_dir = existing[0].parent if existing else None
        if run_dir is None or not any(s >= budget for s in rl.checkpoint_steps(run_dir)):
            res = rl.train(algo, env_id, budget, folder=folder, env_kwargs=env_kwargs, seed=seed, eval_freq=0,
                           save_freq=0, resume=run_dir is not None, progress_bar=progress)
            run_dir = res.run_dir
            before = max((v for k, v in times.items() if int(k) < budget), default=0.0)
            times[str(budget)] = before + res.wall_s
            atomic_write_text(times_file, json.dumps(times))
        # on-policy agents train in whole rollouts, so the checkpoint may lie a little past the budget
        steps = min(s for s in rl.checkpoint_steps(run_dir) if s >= budget)

        def make(run_dir=run_dir, steps=steps):
            ctrl = rl.policy_controller(run_dir, checkpoint_steps=steps)
            ctrl.name = f"{name} {steps:,} steps"
            return ctrl

        run(f"{name} {budget:,} steps", name, budget, make, tag=tag, train_s=times.get(str(budget), 0.0),
            **({"env": eval_env} if eval_env else {}))


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


def ordered(rows: list[dict]) -> list[dict]:
    """Rows by stage, then zero signal, CMA-ES, regression, the RL agents (open loop, then closed loop), then budget
    (a resumed comparison appends redone rows at the end of rows.json)."""
    first = {"zero": 0, "CMA-ES": 1, "regression": 2}
    rl = list(dict.fromkeys(r["family"] for r in rows if r["family"] not in first))
    rl.sort(key=lambda f: "closed loop" in f)
    rank = {**first, **{f: 3 + k for k, f in enumerate(rl)}}
    return sorted(rows, key=lambda r: (STAGES.index(r["stage"]) if r["stage"] in STAGES else len(STAGES),
                                       rank[r["family"]], r["budget"]))


def markdown(rows: list[dict]) -> str:
    from controllers.evaluation import METRICS_HEADER, metric_cells

    lines = [f"| stage | controller | {METRICS_HEADER} | total episodes | training time | deployment time |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        train = f"{r['train_s']:.0f} s" if r.get("train_s") else "—"
        lines.append(f"| {r['stage']} | {r['controller']} | {metric_cells(r)} | {r['total_episodes']:,.0f} "
                     f"| {train} | {r['wall_s']:.1f} s |")
    return "\n".join(lines) + "\n"


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
    p.add_argument("--out", default="runs/compare", help="output folder (rows.json, compare.md/.csv/.png)")
    p.add_argument("--quick", action="store_true", help="20 contexts and small budgets (explicit options win)")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.add_argument("--json", action="store_true", help="print the rows as one JSON object on the last line")


def run(args: argparse.Namespace) -> int:
    from armlab_scripts._common import UsageError, atomic_write_text, emit_json
    from robot_env import ROBOTS

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
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} exists and is not a folder.")
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    rows = run_comparison(args)
    rows = ordered([r for r in rows if r["stage"] in args.stage_list])
    from controllers.evaluation import COLUMNS, to_csv

    columns = ["stage", *COLUMNS, "family", "budget", "total_episodes", "train_s"]
    atomic_write_text(out / "compare.csv", to_csv(rows, columns))
    table = markdown(rows)
    atomic_write_text(out / "compare.md", table)
    plot(rows, out / "compare.png", args.decisions)
    print("\n" + table)
    print(f"wall time {time.perf_counter() - t0:.0f} s; table, CSV and plot in {out}/")
    if args.json:
        emit_json({"rows": rows, "wall_s": time.perf_counter() - t0})
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="armlab compare", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(p)
    return run(p.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())

