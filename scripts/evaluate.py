"""Evaluate a trained run on the shared held-out contexts (controllers/evaluation.py's protocol).

    armlab evaluate --algo sac --env armlab/ReachSignalVelocity-v0 -f runs/ [--exp-id N | 1,2,3 | '*']
        [--load-best | --load-checkpoint STEPS] [--contexts 200] [--seed S] [--per-context CSV] [--json]

Loads the run (the latest one unless --exp-id; its final model unless --load-best or
--load-checkpoint), builds the same env with the run's env kwargs, and plays the
deterministic policy once on each of --contexts held-out contexts: median and 90th
percentile distance y, success at 2 cm and 1 cm, training episodes. --zero adds the
zero signal on the same contexts for reference. --per-context writes one CSV row per
context (its y, and the j, v, target and dynamics drawn for it), to see which contexts
fail. Loading reads only tensors from the model
file (no unpickling); a damaged file is reported in one sentence.

Several runs (--exp-id 1,2,3 or a glob over run numbers, '*' for all: one per training seed)
are each evaluated on the same contexts and summarised with error bars (controllers/intervals.py,
rliable): the IQM, mean and median over runs of success at 2 cm and 1 cm and of the median
distance, each with a stratified-bootstrap 95 % interval, and a performance profile (fraction
of contexts within tau, pooled over runs, with its bootstrap band) drawn to --profile PNG.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--algo", required=True, help="ppo, sac, td3, tqc or crossq")
    p.add_argument("--env", required=True, help="env id the run was trained on")
    p.add_argument("-f", "--folder", default="runs", help="runs folder (default: runs)")
    p.add_argument("--exp-id", default=None, help="run number N (default: the latest); several runs as 1,2,3 or "
                   "a glob such as '*': error bars over them")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--load-best", action="store_true", help="the best model of the periodic evaluation")
    which.add_argument("--load-checkpoint", type=int, default=None, metavar="STEPS", help="the checkpoint at STEPS")
    p.add_argument("--contexts", type=int, default=200, help="held-out contexts (default 200)")
    p.add_argument("--seed", type=int, default=None, help="first context seed (default: the protocol's)")
    p.add_argument("--zero", action="store_true", help="also evaluate the zero signal on the same contexts")
    p.add_argument("--per-context", default=None, metavar="CSV",
                   help="also write one row per context to CSV: y, success, and the context's j, v, target, dynamics")
    p.add_argument("--profile", default=None, metavar="PNG", help="with several runs: the performance-profile plot "
                   "(default FOLDER/ALGO/ENV_profile.png)")
    p.add_argument("--bootstrap-seed", type=int, default=0, help="seed of the bootstrap intervals (default 0)")
    p.add_argument("--device", default="cpu", help="torch device (default cpu)")
    p.add_argument("--json", action="store_true", help="print the figures as one JSON object on the last line")


def run(args: argparse.Namespace) -> int:
    from armlab_scripts._common import UsageError, atomic_write_text, emit_json
    from controllers import rl
    from controllers.evaluation import (
        HELD_OUT_SEED,
        evaluate,
        held_out_contexts,
        per_context_rows,
        to_csv,
        to_markdown,
        zero_controller,
    )

    algo, env_id = rl.algo_of(args.algo), rl.env_id_of(args.env)
    if args.contexts < 1:
        raise UsageError(f"--contexts must be a positive integer, got {args.contexts}.")
    seed = HELD_OUT_SEED if args.seed is None else args.seed
    per_context = Path(args.per_context) if args.per_context else None
    if per_context is not None and not per_context.parent.is_dir():
        raise UsageError(f"--per-context {per_context}: the folder {per_context.parent} does not exist.")
    spec = args.exp_id
    if spec is not None and not spec.strip().isdigit():  # several runs: error bars
        return _several(args, algo, env_id, rl.find_runs(args.folder, algo, env_id, spec), seed)
    run_dir = rl.find_run(args.folder, algo, env_id, None if spec is None else int(spec))
    controller = rl.policy_controller(run_dir, best=args.load_best, checkpoint_steps=args.load_checkpoint,
                                      device=args.device)
    env_kwargs = dict(controller.info["run"].config.get("env_kwargs") or {})
    contexts = held_out_contexts(env_id, args.contexts, seed, **env_kwargs)
    results = [evaluate(controller, env_id, contexts, seed, **env_kwargs)]
    if args.zero:
        results.append(evaluate(zero_controller(), env_id, contexts, seed, **env_kwargs))
    print(f"{run_dir}: {controller.info['model']} ({controller.info['num_timesteps']:,} steps), "
          f"{args.contexts} held-out contexts from seed {seed}, env kwargs {env_kwargs}\n")
    print(to_markdown(results), end="")
    if per_context is not None:
        rows = per_context_rows(contexts, results[0], seed)
        atomic_write_text(per_context, to_csv(rows, columns=list(rows[0])))
        print(f"per-context results: {per_context}")
    if args.json:
        figures = dict(results[0].row(), run_dir=str(run_dir), model=controller.info["model"],
                       num_timesteps=controller.info["num_timesteps"], seed=seed, env_kwargs=env_kwargs)
        if args.zero:
            figures["zero_median_y"] = results[1].median_y
        emit_json(figures)
    return 0


def _several(args: argparse.Namespace, algo: str, env_id: str, run_dirs: list, seed: int) -> int:
    """Each run on the same held-out contexts, then IQM / mean / median with bootstrap intervals over runs."""
    from armlab_scripts._common import UsageError, emit_json
    from controllers import rl
    from controllers.evaluation import evaluate, held_out_contexts, to_markdown
    from controllers.intervals import interval_text, performance_profile, plot_profiles, summarize_runs
    from robot_env.io.errors import DataError

    if args.per_context or args.zero:
        raise UsageError("--per-context and --zero evaluate one run: give --exp-id a single run number.")
    default_png = Path(args.folder) / algo / f"{rl.env_name_of(env_id)}_profile.png"
    profile_png = Path(args.profile) if args.profile else default_png
    if profile_png.suffix.lower() != ".png" or not profile_png.parent.is_dir():
        raise UsageError(f"--profile {profile_png} must be a .png in an existing folder.")
    controllers = [rl.policy_controller(d, best=args.load_best, checkpoint_steps=args.load_checkpoint,
                                        device=args.device) for d in run_dirs]
    kwargs = [dict(c.info["run"].config.get("env_kwargs") or {}) for c in controllers]
    if any(k != kwargs[0] for k in kwargs):
        raise DataError(f"the runs {', '.join(d.name for d in run_dirs)} were trained with different env kwargs; "
                        f"error bars need one setting.")
    contexts = held_out_contexts(env_id, args.contexts, seed, **kwargs[0])
    results = []
    for d, c in zip(run_dirs, controllers):
        c.name = f"{algo.upper()} {d.name}"
        results.append(evaluate(c, env_id, contexts, seed, **kwargs[0]))
    rows = [r.row() for r in results]
    summary = summarize_runs(rows, seed=args.bootstrap_seed)
    profile = performance_profile([r.ys for r in results], seed=args.bootstrap_seed)
    plot_profiles({f"{algo.upper()} {rl.env_name_of(env_id)}": profile}, profile_png,
                  title=f"{algo.upper()} on {rl.env_name_of(env_id)}: {len(results)} runs, {args.contexts} contexts")
    print(f"{len(run_dirs)} runs of {algo} on {env_id}, {args.contexts} held-out contexts from seed {seed}, "
          f"env kwargs {kwargs[0]}\n")
    print(to_markdown(results))
    print("over runs (95 % stratified-bootstrap intervals, rliable):")
    for key, scale, unit in (("success_2cm", 100, " %"), ("success_1cm", 100, " %"), ("median_y", 1000, " mm")):
        est = summary[key]
        print(f"  {key:<12} " + "   ".join(f"{name} {interval_text(est[name], scale, '.1f', unit)}"
                                           for name in ("iqm", "mean", "median")))
    print(f"performance profile: {profile_png}")
    if args.json:
        emit_json({"runs": [dict(r, run_dir=str(d)) for r, d in zip(rows, run_dirs)], "aggregate": summary,
                   "profile": profile, "profile_png": str(profile_png), "seed": seed, "env_kwargs": kwargs[0],
                   "bootstrap_seed": args.bootstrap_seed})
    return 0
