"""The best trial's hyperparameters as a YAML file that ``armlab train --hyperparams-file`` reads.

    # armlab tune: the best of 20 finished trials of study sac-velocity
    algo: sac
    env_id: armlab/ReachSignalVelocity-v0
    env_kwargs: {robot: arm3}
    study: sac-velocity
    trial: 12
    median_y_mm: 4.2
    success_2cm: 0.98
    n_timesteps: 10000           # each trial's budget (train chooses its own with --n-timesteps)
    hyperparams: {learning_rate: 0.0012, batch_size: 256, ...}

``hyperparams`` are overrides on top of ``controllers/hyperparams.yml``, checked like ``--hyperparams``.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from robot_env.io.atomic import atomic_write_text
from robot_env.io.errors import DataError, MissingPathError, ParamError


def write_best(study, cfg, path: str | Path) -> Path | None:
    """Write the best trial of ``study`` (tuned with ``cfg``, a `TuneConfig`) to ``path``; None when no trial
    completed yet."""
    from optuna.trial import TrialState

    try:
        best = study.best_trial
    except ValueError:
        return None
    finished = sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in study.get_trials(deepcopy=False))
    doc = {"algo": cfg.algo, "env_id": cfg.env_id, "env_kwargs": dict(cfg.env_kwargs), "study": cfg.study_name,
           "trial": best.number, "median_y_mm": float(best.value),
           "success_2cm": best.user_attrs.get("success_2cm"), "n_timesteps": cfg.n_timesteps,
           "hyperparams": best.user_attrs.get("hyperparams") or {}}
    head = (f"# armlab tune: the best of {finished} finished trials of study {cfg.study_name}\n"
            f"# armlab train --algo {cfg.algo} --env {cfg.env_id} --hyperparams-file {Path(path).name} "
            f"[--n-timesteps N]\n")
    path = Path(path)
    atomic_write_text(path, head + yaml.safe_dump(doc, sort_keys=False))
    return path


def read_hyperparams_file(path: str | Path, algo: str, env_id: str) -> tuple[dict, dict]:
    """(hyperparameters, env kwargs) from a file `write_best` wrote, or a plain mapping of hyperparameters. The env
    kwargs come along only for the env the file was tuned on; a file tuned for another algorithm is refused."""
    path = Path(path)
    if not path.is_file():
        raise MissingPathError(f"hyperparams file {path} does not exist.")
    try:
        doc = yaml.safe_load(path.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise DataError(f"hyperparams file {path} is not valid YAML ({type(exc).__name__}).") from None
    if not isinstance(doc, dict):
        raise DataError(f"hyperparams file {path} must hold a mapping of hyperparameters.")
    if "hyperparams" not in doc:  # a plain mapping: the hyperparameters themselves
        return dict(doc), {}
    if not isinstance(doc["hyperparams"], dict):
        raise DataError(f"hyperparams file {path}: its hyperparams entry must be a mapping.")
    if doc.get("algo") not in (None, algo):
        raise ParamError("hyperparams_file", f"{{name}} {path} holds {doc['algo']} hyperparameters, not {algo}'s.")
    kwargs = doc.get("env_kwargs") if doc.get("env_id") == env_id else None
    return dict(doc["hyperparams"]), dict(kwargs or {})


__all__ = ["read_hyperparams_file", "write_best"]
