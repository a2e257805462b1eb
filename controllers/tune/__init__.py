"""Hyperparameter sweeps on Optuna, rl-zoo3 style (``armlab tune``).

A study lives in a storage (`storage`: SQLite, Optuna's journal file, PostgreSQL); each trial trains an SB3 agent
with hyperparameters drawn from `space`, is evaluated on fixed contexts at intervals and pruned when behind
(`study`); the best trial's hyperparameters become a YAML file that ``armlab train --hyperparams-file`` reads
(`best`). Worker processes on one machine (``--n-jobs``) or many (the same command on each) share one study; a
killed study continues with the same command.
"""

from __future__ import annotations

from controllers.tune.best import read_hyperparams_file, write_best
from controllers.tune.storage import describe, fail_dead_trials, open_storage, storage_url
from controllers.tune.study import PRUNERS, SAMPLERS, TuneConfig, best_line, check, open_study, run_study, work

__all__ = ["PRUNERS", "SAMPLERS", "TuneConfig", "best_line", "check", "describe", "fail_dead_trials", "open_storage",
           "open_study", "read_hyperparams_file", "run_study", "storage_url", "work", "write_best"]
