"""Tune an SB3 agent's hyperparameters with Optuna, rl-zoo3 style (controllers/tune/).

    armlab tune --algo sac --env armlab/ReachSignalVelocity-v0 --env-kwargs robot:arm3 \\
        --n-trials 40 --n-jobs 2 --n-timesteps 10000 --study-name sac-velocity

Each trial trains with sampled hyperparameters into FOLDER/STUDY/trial_N/ (TensorBoard logs
there: `tensorboard --logdir runs/tune/STUDY`), is evaluated every --eval-freq steps on
--eval-contexts fixed contexts (the periodic evaluation's seeds, not the held-out test
contexts) and reports the median final distance to the pruner (--pruner median stops a trial
that is behind the median of earlier trials at the same step). The best trial so far is
printed as trials finish; at the end its hyperparameters go to FOLDER/STUDY/best_hyperparams.yml
(--hyperparams-out), which `armlab train --hyperparams-file` reads.

--n-trials counts finished trials (complete or pruned) in the study: a killed study continues
with the same command, and a larger --n-trials extends it. --n-jobs J runs J worker processes
on the study. Storage (--storage):

    (default)                       sqlite:///FOLDER/STUDY.db, workers on this machine
    journal:PATH  or  PATH.log      Optuna's journal file, for a file system shared by machines
    postgresql://USER:PW@HOST/DB    PostgreSQL: the same command on several machines adds workers

`optuna-dashboard STORAGE` (pip install 'armlab[dashboard]') shows the study in a browser.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--algo", required=True, help="ppo, sac, td3, tqc or crossq")
    p.add_argument("--env", required=True, help="env id, e.g. armlab/ReachSignalVelocity-v0")
    p.add_argument("--n-trials", type=int, default=20, help="finished trials the study should have (default 20)")
    p.add_argument("--n-jobs", type=int, default=1, help="worker processes on this machine (default 1)")
    p.add_argument("--n-timesteps", type=int, default=None,
                   help="env steps per trial (default: hyperparams.yml's n_timesteps)")
    p.add_argument("--storage", default=None, help="sqlite:///FILE, journal:FILE (or FILE.log) or "
                   "postgresql://USER@HOST/DB (default sqlite:///FOLDER/STUDY.db)")
    p.add_argument("--study-name", default=None, help="the study (default ALGO-ENV)")
    p.add_argument("--sampler", default="tpe", help="tpe or random (default tpe)")
    p.add_argument("--pruner", default="median", help="median or none (default median)")
    p.add_argument("--env-kwargs", nargs="*", default=[], metavar="KEY:VALUE", help="env constructor arguments")
    p.add_argument("--eval-freq", type=int, default=None, help="evaluate every this many steps (default: a fifth "
                   "of --n-timesteps)")
    p.add_argument("--eval-contexts", type=int, default=50, help="fixed contexts per evaluation (default 50)")
    p.add_argument("--seed", type=int, default=0, help="seed of the sampler and the trials (trial N: seed + N)")
    p.add_argument("-f", "--folder", default="runs/tune", help="trial runs and the default SQLite file "
                   "(default runs/tune)")
    p.add_argument("--hyperparams-out", default=None, metavar="YAML",
                   help="the best trial's hyperparameters (default FOLDER/STUDY/best_hyperparams.yml)")
    p.add_argument("--json", action="store_true", help="print the figures as one JSON object on the last line")


def run(args: argparse.Namespace) -> int:
    from armlab_scripts._common import UsageError, emit_json, parse_kwargs
    from controllers import rl, tune
    from robot_env.io.atomic import make_dirs

    algo, env_id = rl.algo_of(args.algo), rl.env_id_of(args.env)
    study_name = args.study_name or f"{algo}-{rl.env_name_of(env_id)}"
    folder = Path(args.folder)
    if folder.exists() and not folder.is_dir():
        raise UsageError(f"--folder {folder} exists and is not a folder.")
    n_timesteps = args.n_timesteps or int(rl.load_hyperparams(algo, env_id).get("n_timesteps", 10_000))
    cfg = tune.TuneConfig(algo=algo, env_id=env_id, study_name=study_name,
                          storage=tune.storage_url(args.storage, folder, study_name), n_trials=args.n_trials,
                          n_timesteps=n_timesteps, n_jobs=args.n_jobs, sampler=args.sampler, pruner=args.pruner,
                          env_kwargs=parse_kwargs(args.env_kwargs), eval_freq=args.eval_freq,
                          eval_contexts=args.eval_contexts, seed=args.seed, folder=folder)
    tune.check(cfg)
    out = Path(args.hyperparams_out) if args.hyperparams_out else folder / study_name / "best_hyperparams.yml"
    blocking = next((p for p in (out, *out.parents) if p.exists() and not p.is_dir()), None)
    if out.is_dir() or blocking not in (None, out):
        raise UsageError(f"--hyperparams-out {out}: {out if out.is_dir() else blocking} is in the way (a "
                         f"{'folder' if out.is_dir() else 'file'}); choose another path.")
    figures = tune.run_study(cfg, report=lambda line: print(line, flush=True))  # bad storage: fails before writing
    make_dirs(out.parent)
    written = tune.write_best(tune.open_study(cfg, create=False), cfg, out)
    print(f"study {study_name}: {figures['finished']} finished trials ({figures['trials']}), "
          f"{figures['wall_s']:.0f} s here")
    if figures["best"]:
        b = figures["best"]
        print(f"best: trial {b['number']}, median distance {b['value']:.1f} mm -> {written}")
        print(f"train with it: armlab train --algo {algo} --env {env_id} --hyperparams-file {written}")
    if args.json:
        emit_json(dict(figures, hyperparams_file=str(written) if written else None))
    return 0
