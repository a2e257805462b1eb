"""Evaluate a trained run on the shared held-out contexts (controllers/evaluation.py's protocol).

    armlab evaluate --algo sac --env armlab/ReachSignalVelocity-v0 -f runs/ [--exp-id N]
        [--load-best | --load-checkpoint STEPS] [--contexts 200] [--seed S] [--per-context CSV] [--json]

Loads the run (the latest one unless --exp-id; its final model unless --load-best or
--load-checkpoint), builds the same env with the run's env kwargs, and plays the
deterministic policy once on each of --contexts held-out contexts: median and 90th
percentile distance y, success at 2 cm and 1 cm, training episodes. --zero adds the
zero signal on the same contexts for reference. --per-context writes one CSV row per
context (its y, and the j, v, target and dynamics drawn for it), to see which contexts
fail. Loading reads only tensors from the model
file (no unpickling); a damaged file is reported in one sentence.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--algo", required=True, help="ppo, sac, td3, tqc or crossq")
    p.add_argument("--env", required=True, help="env id the run was trained on")
    p.add_argument("-f", "--folder", default="runs", help="runs folder (default: runs)")
    p.add_argument("--exp-id", type=int, default=None, help="run number N (default: the latest)")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--load-best", action="store_true", help="the best model of the periodic evaluation")
    which.add_argument("--load-checkpoint", type=int, default=None, metavar="STEPS", help="the checkpoint at STEPS")
    p.add_argument("--contexts", type=int, default=200, help="held-out contexts (default 200)")
    p.add_argument("--seed", type=int, default=None, help="first context seed (default: the protocol's)")
    p.add_argument("--zero", action="store_true", help="also evaluate the zero signal on the same contexts")
    p.add_argument("--per-context", default=None, metavar="CSV",
                   help="also write one row per context to CSV: y, success, and the context's j, v, target, dynamics")
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
    run_dir = rl.find_run(args.folder, algo, env_id, args.exp_id)
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
