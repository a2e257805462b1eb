"""Benchmark: RL success after a fixed training wall time, over seeds, with intervals (issue 25's targets).

    armlab bench rl --json                                        # velocity: SAC and CrossQ, 3 seeds, 120 s each
    armlab bench rl --stage state --algos sac --budget-s 1500 --jobs 2 --json

For each algorithm and seed, one `armlab train` run (in this process, or ``--jobs`` at once, one torch thread each)
stops after ``--budget-s`` seconds of training wall time (`controllers.rl.StopAfterSeconds`; no evaluation or
checkpoint inside the budget, the model saved after it) and is evaluated on the ``--contexts`` held-out contexts of
`armlab evaluate`. Over the seeds: IQM, mean and median of success@2cm with 95 % stratified-bootstrap intervals
(rliable, `controllers.intervals`), and a performance profile (``profiles.png``). The reference is measured in the
same run on the same contexts: for the open-loop ``velocity`` stage CMA-ES with 1,000 evaluations per context (the
target: the IQM >= 0.9 x its success), for the closed-loop ``state`` stage the absolute target (IQM >= 90 %, the
interval's lower end >= 85 %).

Finished runs are kept in ``--out``/rows.json (with the settings they were measured with): a killed benchmark
continues with the same command and trains only the runs it lacks; a run killed mid-training starts over.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

#: the stages: env, env kwargs and hyperparameter overrides of the best known recipe, default budget, reference
STAGES = {
    "velocity": {"env": "armlab/ReachSignalVelocity-v0", "env_kwargs": {"robot": "arm3"}, "hyperparams": {},
                 "budget_s": 120.0, "reference": "cmaes"},
    # residual SAC, reward at the last step, relabeled episodes: the closed-loop recipe of docs/benchmarks.md, with a
    # constant learning rate (a decay needs a step count, and a time budget has none); sized for a time budget on
    # one core (session 18's probes, docs/benchmarks.md): [128, 128] networks (an update costs 5.7 ms against
    # 15.4 ms at [256, 256], with about the same progress per step), Adam over all tensors at once, a learning rate
    # of 1e-3 and tau 0.02
    "state": {"env": "armlab/ReachState-v0",
              "env_kwargs": {"robot": "arm3", "reward_type": "log", "history": True, "residual": True,
                             "reward_at": "end"},
              "hyperparams": {"train_freq": 1, "target_entropy_per_action": 3.0, "residual_her": True},
              "algo_hyperparams": {
                  "sac": {"learning_rate": 1.0e-3, "tau": 0.02,
                          "policy_kwargs": {"net_arch": [128, 128], "optimizer_kwargs": {"foreach": True}}},
                  # CrossQ has no target network (no tau); its own defaults otherwise, at the same width
                  "crossq": {"policy_kwargs": {"net_arch": {"pi": [128, 128], "qf": [128, 128]},
                                               "optimizer_kwargs": {"foreach": True}}}},
              "budget_s": 1500.0, "reference": "absolute"},
}
TARGET_RATIO = 0.9  #: velocity: the IQM against CMA-ES-1000's success
TARGET_ABS, TARGET_LOW = 0.9, 0.85  #: state: the IQM and its interval's lower end


def stage_hyperparams(stage: str, algo: str, overrides: dict | None = None) -> dict:
    """The hyperparameters ``algo`` trains with on ``stage``: the stage's recipe, then its overrides for ``algo``
    (``algo_hyperparams``), then the user's ``overrides``."""
    spec = STAGES[stage]
    return {**spec["hyperparams"], **spec.get("algo_hyperparams", {}).get(algo, {}), **(overrides or {})}


MAX_STEPS = 5_000_000  #: the step cap of a time-budgeted run (never reached in the budgets here)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--stage", default="velocity", help="velocity (open loop, against CMA-ES-1000; default) or state "
                   "(closed loop, against 90 %%)")
    p.add_argument("--algos", default="sac,crossq", help="comma-separated algorithms (default sac,crossq)")
    p.add_argument("--seeds", type=int, default=3, help="training seeds per algorithm (default 3; at least 3 for "
                   "an interval worth reading)")
    p.add_argument("--budget-s", type=float, default=None,
                   help="training wall time per run in seconds (default: 120 for velocity, 1500 for state)")
    p.add_argument("--contexts", type=int, default=200, help="held-out contexts (default 200)")
    p.add_argument("--cmaes-budget", type=int, default=1000,
                   help="velocity: CMA-ES evaluations per context of the reference (default 1000)")
    p.add_argument("--jobs", type=int, default=1, help="runs trained at once, one process and one torch thread "
                   "each (default 1; at most the cores, or the runs slow each other down)")
    p.add_argument("--hyperparams", nargs="*", default=[], metavar="KEY:VALUE",
                   help="overrides on top of the stage's recipe, for every algorithm")
    p.add_argument("--out", default=None, help="folder of the runs and rows.json (default runs/bench/rl/STAGE)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.add_argument("--json", action="store_true", help="print the figures as one JSON object on the last line")


def _train_and_evaluate(job: dict) -> dict:
    """One run: train ``job["algo"]`` for ``job["budget_s"]`` seconds into a fresh folder, then evaluate it."""
    from controllers import rl
    from controllers.evaluation import evaluate, held_out_contexts

    folder = Path(job["folder"])
    shutil.rmtree(folder, ignore_errors=True)  # a run killed mid-training starts over
    t0 = time.perf_counter()
    result = rl.train(job["algo"], job["env"], MAX_STEPS, folder=folder, env_kwargs=dict(job["env_kwargs"]),
                      hyperparams=dict(job["hyperparams"]), seed=job["seed"], eval_freq=0, save_freq=0,
                      torch_threads=1, time_limit_s=job["budget_s"])
    total_s = time.perf_counter() - t0
    controller = rl.policy_controller(result.run_dir)
    env_kwargs = dict(controller.info["run"].config.get("env_kwargs") or {})
    contexts = held_out_contexts(job["env"], job["contexts"], **env_kwargs)
    ev = evaluate(controller, job["env"], contexts, **env_kwargs)
    return {"algo": job["algo"], "seed": job["seed"], "run_dir": str(result.run_dir),
            "num_timesteps": result.num_timesteps, "train_s": result.wall_s, "with_setup_s": total_s,
            "steps_per_s": result.steps_per_s, **ev.row(), "ys": ev.ys}


def _reference(stage: dict, algo: str, contexts: int, budget: int) -> dict:
    """CMA-ES with ``budget`` evaluations per context on the held-out contexts (the velocity stage's reference), in
    the env settings ``algo``'s runs train in (hyperparams.yml's env kwargs under the stage's)."""
    from controllers import rl
    from controllers.evaluation import cmaes_controller, evaluate, held_out_contexts

    kwargs = {**rl.default_env_kwargs(algo, stage["env"]), **stage["env_kwargs"]}
    ctx = held_out_contexts(stage["env"], contexts, **kwargs)
    ev = evaluate(cmaes_controller(budget), stage["env"], ctx, **kwargs)
    return {**ev.row(), "ys": ev.ys}


def _load_rows(path: Path, settings: dict) -> dict:
    if not path.is_file():
        return {"settings": settings, "runs": {}, "reference": None}
    from armlab_scripts._common import UsageError

    try:
        saved = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise UsageError(f"{path} cannot be read ({type(exc).__name__}); delete it to start over.") from None
    if saved.get("settings") != settings:
        raise UsageError(f"{path} holds runs measured with other settings ({saved.get('settings')}); choose another "
                         f"--out or delete it.")
    return saved


def run(args: argparse.Namespace) -> int:
    from armlab_scripts._common import UsageError, emit_json, parse_kwargs
    from controllers import rl
    from controllers.intervals import interval_text, performance_profile, plot_profiles, summarize_runs
    from robot_env.io.atomic import atomic_write_text

    if args.stage not in STAGES:
        raise UsageError(f"unknown --stage {args.stage!r}; choose one of {', '.join(STAGES)}.")
    stage = STAGES[args.stage]
    algos = [a.strip() for a in args.algos.split(",") if a.strip()]
    if not algos:
        raise UsageError("--algos must name at least one algorithm, e.g. sac,crossq.")
    algos = [rl.algo_of(a) for a in algos]
    for name, value in (("--seeds", args.seeds), ("--contexts", args.contexts), ("--cmaes-budget", args.cmaes_budget),
                        ("--jobs", args.jobs)):
        if value < 1:
            raise UsageError(f"{name} must be a positive integer, got {value}.")
    budget = stage["budget_s"] if args.budget_s is None else args.budget_s
    if not 0 < budget < float("inf"):
        raise UsageError(f"--budget-s must be a positive number of seconds, got {args.budget_s}.")
    user = parse_kwargs(args.hyperparams)
    hyper = {a: stage_hyperparams(args.stage, a, user) for a in algos}
    out = Path(args.out or f"runs/bench/rl/{args.stage}")
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} is not a folder.")
    out.mkdir(parents=True, exist_ok=True)
    settings = {"stage": args.stage, "env": stage["env"], "env_kwargs": stage["env_kwargs"],
                "hyperparams": {**stage["hyperparams"], **user}, "algo_hyperparams": stage.get("algo_hyperparams", {}),
                "budget_s": budget, "contexts": args.contexts, "cmaes_budget": args.cmaes_budget}
    rows_path = out / "rows.json"
    saved = _load_rows(rows_path, settings)

    def save() -> None:
        atomic_write_text(rows_path, json.dumps(saved, indent=1))

    if stage["reference"] == "cmaes" and saved["reference"] is None:
        print(f"reference: CMA-ES {args.cmaes_budget} on {args.contexts} held-out contexts ...", flush=True)
        saved["reference"] = _reference(stage, algos[0], args.contexts, args.cmaes_budget)
        save()
    jobs = [{"algo": a, "seed": s, "env": stage["env"], "env_kwargs": stage["env_kwargs"], "hyperparams": hyper[a],
             "budget_s": budget, "contexts": args.contexts, "folder": str(out / a / f"seed{s}")}
            for a in algos for s in range(args.seeds) if f"{a}/{s}" not in saved["runs"]]
    from tqdm.auto import tqdm

    bar = tqdm(total=len(algos) * args.seeds, initial=len(algos) * args.seeds - len(jobs), unit="run",
               desc=f"bench rl {args.stage}", disable=args.no_progress)

    def done(row: dict) -> None:
        saved["runs"][f"{row['algo']}/{row['seed']}"] = row
        save()
        bar.update(1)
        bar.write(f"{row['algo']} seed {row['seed']}: {row['num_timesteps']:,} steps in {row['train_s']:.0f} s "
                  f"({row['steps_per_s']:.0f} steps/s): success@2cm {100 * row['success_2cm']:.1f} %, median "
                  f"{1000 * row['median_y']:.1f} mm")

    if args.jobs == 1:
        for job in jobs:
            done(_train_and_evaluate(job))
    elif jobs:
        import multiprocessing as mp

        ctx = mp.get_context("spawn")  # torch and PyBullet in a fresh interpreter each
        with ctx.Pool(min(args.jobs, len(jobs)), maxtasksperchild=1) as pool:
            for row in pool.imap_unordered(_train_and_evaluate, jobs):
                done(row)
    bar.close()

    ref = saved["reference"]
    figures: dict = {"stage": args.stage, "env": stage["env"], "budget_s": budget, "contexts": args.contexts,
                     "seeds": args.seeds, "jobs": args.jobs, "algos": {}}
    if ref is not None:
        figures["cmaes"] = {k: v for k, v in ref.items() if k != "ys"}
        print(f"\nCMA-ES {args.cmaes_budget}: success@2cm {100 * ref['success_2cm']:.1f} %, median "
              f"{1000 * ref['median_y']:.1f} mm, {ref['episodes_per_decision']:.0f} episodes per decision")
    profiles = {}
    print(f"\n| algo | seeds | steps in {budget:g} s | success@2cm IQM [95 %] | median y IQM [95 %] | target |")
    print("|---|---|---|---|---|---|")
    for a in algos:
        runs = [saved["runs"][f"{a}/{s}"] for s in range(args.seeds)]
        summary = summarize_runs(runs)
        iqm = summary["success_2cm"]["iqm"]
        if ref is not None:
            cma = max(ref["success_2cm"], 1e-9)
            ratio = {k: iqm[k] / cma for k in ("value", "low", "high")}
            met = ratio["value"] >= TARGET_RATIO
            target = f"{ratio['value']:.2f} x CMA-ES [{ratio['low']:.2f}, {ratio['high']:.2f}] (>= {TARGET_RATIO})"
        else:
            ratio = None
            met = iqm["value"] >= TARGET_ABS and iqm["low"] >= TARGET_LOW
            target = f">= {100 * TARGET_ABS:.0f} %, low >= {100 * TARGET_LOW:.0f} %"
        median = interval_text(summary["median_y"]["iqm"], 1000, ".1f", " mm")
        print(f"| {a} | {len(runs)} | {sum(r['num_timesteps'] for r in runs) / len(runs):,.0f} | "
              f"{interval_text(iqm, 100, '.1f', ' %')} | {median} | {target}: {'met' if met else 'missed'} |")
        profiles[a.upper()] = performance_profile([r["ys"] for r in runs])
        figures["algos"][a] = {"aggregate": summary, "ratio_to_cmaes": ratio, "met": met,
                               "runs": [{k: v for k, v in r.items() if k != "ys"} for r in runs]}
    if ref is not None:
        profiles[f"CMA-ES {args.cmaes_budget}"] = performance_profile([ref["ys"]])
    png = plot_profiles(profiles, out / "profiles.png",
                        title=f"{args.stage}: {args.seeds} seeds x {budget:g} s of training, {args.contexts} contexts")
    figures["profile_png"] = str(png)
    print(f"\nperformance profiles: {png}")
    if args.json:
        emit_json(figures)
    return 0
