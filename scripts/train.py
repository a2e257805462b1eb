"""Train an SB3 agent on an armlab env, rl-zoo3 style: PPO, SAC, TD3, TQC, CrossQ; HER on dict observations.

    armlab train --algo sac --env armlab/ReachSignalVelocity-v0 --n-timesteps 200000 \\
        --env-kwargs robot:arm3 --hyperparams learning_rate:3e-4 -f runs/

The run lands in FOLDER/ALGO/ENV_N/ (N: the next free number): config.yml (everything
used), model.zip, best_model.zip (periodic evaluation on fixed seeds), evaluations.npz,
checkpoints/ (written atomically; a killed run loses nothing but the steps since its last
checkpoint). --resume continues the latest run (or --exp-id N) from its newest checkpoint
up to --n-timesteps in total, with the run's saved settings.

Defaults per algorithm and env family live in controllers/hyperparams.yml; --hyperparams
overrides them with key:value pairs read as YAML (learning_rate:3e-4, train_freq:[1,episode],
policy_kwargs:{net_arch:[64,64]} or policy_kwargs:"dict(net_arch=[64,64])", no eval).
learning_rate and clip_range take schedules: lin_3e-4 decays linearly to 0 over the run,
lin_3e-4@0.65 holds 3e-4 for the first 65 % of --n-timesteps and then decays to 0.
--env-kwargs go to the env's constructor (robot:arm3, obs_type:dict for HER, ...).
--hyperparams-file reads the best_hyperparams.yml of `armlab tune` (its hyperparameters, and
its env kwargs when the env is the one it was tuned on) under --hyperparams and --env-kwargs.
"""

from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--algo", required=True, help="ppo, sac, td3, tqc or crossq")
    p.add_argument("--env", required=True, help="env id, e.g. armlab/ReachSignalVelocity-v0 (see `armlab envs`)")
    p.add_argument("--n-timesteps", type=int, default=None,
                   help="total env steps (default: hyperparams.yml's n_timesteps; with --resume, the run's)")
    p.add_argument("--env-kwargs", nargs="*", default=[], metavar="KEY:VALUE", help="env constructor arguments")
    p.add_argument("--hyperparams", nargs="*", default=[], metavar="KEY:VALUE", help="hyperparameter overrides")
    p.add_argument("--hyperparams-file", default=None, metavar="YAML", help="hyperparameters from a file (armlab "
                   "tune's best_hyperparams.yml, or a plain mapping); --hyperparams and --env-kwargs win over it")
    p.add_argument("-f", "--folder", default="runs", help="runs folder (default: runs)")
    p.add_argument("--seed", type=int, default=None, help="seed of the envs and the model (default 0)")
    p.add_argument("--n-envs", type=int, default=None, help="parallel envs (default 1)")
    p.add_argument("--vec-env", default="dummy", help="dummy (one process) or subproc (one process per env)")
    p.add_argument("--normalize", action="store_true", default=None,
                   help="VecNormalize observations and rewards (statistics saved next to the model)")
    p.add_argument("--eval-freq", type=int, default=None,
                   help="evaluate every this many env steps (0: never; default 10000, with --resume the run's)")
    p.add_argument("--eval-episodes", type=int, default=None,
                   help="episodes per evaluation (default 20, with --resume the run's)")
    p.add_argument("--save-freq", type=int, default=None, help="checkpoint every this many env steps (0: only at "
                   "the end; default 10000, with --resume the run's)")
    p.add_argument("--time-limit", type=float, default=None, metavar="SECONDS",
                   help="stop after this much training wall time, whatever the step count (--n-timesteps is then the "
                        "cap); the run is saved as at the end")
    p.add_argument("--resume", action="store_true", help="continue the latest run (or --exp-id) from its checkpoint")
    p.add_argument("--exp-id", type=int, default=None, help="with --resume: the run number N to continue")
    p.add_argument("--device", default="cpu", help="torch device (default cpu)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1, fastest for small nets)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.add_argument("-v", "--verbose", type=int, default=0, help="SB3 verbosity (0, 1 or 2)")
    p.add_argument("--json", action="store_true", help="print the figures as one JSON object on the last line")


def run(args: argparse.Namespace) -> int:
    from armlab_scripts._common import UsageError, emit_json, parse_kwargs
    from controllers import rl

    algo, env_id = rl.algo_of(args.algo), rl.env_id_of(args.env)
    if args.exp_id is not None and not args.resume:
        raise UsageError("--exp-id picks the run to continue: use it with --resume.")
    if args.time_limit is not None and not (args.time_limit > 0 and args.time_limit < float("inf")):
        raise UsageError(f"--time-limit must be a positive number of seconds, got {args.time_limit}.")
    if args.threads < 1:
        raise UsageError(f"--threads must be a positive integer, got {args.threads}.")
    hyperparams, env_kwargs = {}, {}
    if args.hyperparams_file:
        from controllers.tune import read_hyperparams_file

        hyperparams, env_kwargs = read_hyperparams_file(args.hyperparams_file, algo, env_id)
    env_kwargs.update(parse_kwargs(args.env_kwargs))
    hyperparams.update(parse_kwargs(args.hyperparams))
    result = rl.train(
        algo, env_id, args.n_timesteps, folder=args.folder, env_kwargs=env_kwargs, hyperparams=hyperparams,
        seed=args.seed, n_envs=args.n_envs, vec_env=args.vec_env,
        normalize=args.normalize, eval_freq=args.eval_freq, eval_episodes=args.eval_episodes,
        save_freq=args.save_freq, resume=args.resume, exp_id=args.exp_id, device=args.device,
        progress_bar=not args.no_progress, verbose=args.verbose, torch_threads=args.threads,
        time_limit_s=args.time_limit,
    )
    r = result
    print(f"{algo} on {env_id}: {r.num_timesteps:,} steps ({r.num_timesteps - r.start_timesteps:,} in this run, "
          f"{r.wall_s:.1f} s, {r.steps_per_s:,.0f} steps/s) -> {r.run_dir}")
    if r.best_mean_reward is not None:
        print(f"evaluation: best mean reward {r.best_mean_reward:.4f}, last {r.last_mean_reward:.4f}")
    print(f"checkpoints at {', '.join(map(str, r.checkpoints))} steps")
    if args.json:
        emit_json(r.figures())
    return 0
