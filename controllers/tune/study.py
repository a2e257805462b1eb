"""A tuning study, rl-zoo3 style: trials that train with sampled hyperparameters, are evaluated at intervals on
fixed contexts and pruned when behind, run by worker processes on one or several machines against one storage.

Each trial trains ``algo`` on ``env_id`` for ``n_timesteps`` steps (`controllers.rl.train`, seed ``seed + trial
number``) into ``FOLDER/STUDY/trial_N/``, with TensorBoard logs there. Every ``eval_freq`` steps its deterministic
policy plays ``eval_contexts`` fixed contexts (the periodic evaluation's seeds, `controllers.rl.EVAL_SEED`, apart
from the held-out contexts that `armlab evaluate` reports on, so tuning never sees the test set) under the
evaluation protocol of `controllers.evaluation`; the median final distance (mm) is reported to the pruner, and a
pruned trial stops training. The objective is the last evaluation's median distance (minimised); its success
within 2 cm is kept beside it.

The budget counts finished trials (COMPLETE and PRUNED). A worker starts a trial only while finished plus running
trials are fewer than ``n_trials``, and after drawing one checks that fewer than ``n_trials`` live trials precede
it (two workers that asked at the same moment: the later one is FAIL, marked ``surplus``); trials of dead
workers are marked FAIL (`storage.fail_dead_trials`) and replaced. So a study killed at any point continues with
the same command, and several workers never run more than the budget.

Every draw is seeded: the sampler is reseeded for each trial from (``seed``, trial number), so a trial's draws
depend only on the seed, its number and the trials finished before it, not on which worker runs it.
"""

from __future__ import annotations

import math
import multiprocessing
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from controllers.tune import space
from controllers.tune.storage import describe, fail_dead_trials, open_storage, worker_identity
from robot_env.io.errors import ArmlabError, ConfigError, ParamError

SAMPLERS = ("tpe", "random")
PRUNERS = ("median", "none")
POLL_S = 1.0  #: how often a worker with nothing to start looks again (others' trials still running)


@dataclass
class TuneConfig:
    """One study's settings (``armlab tune``'s flags)."""

    algo: str
    env_id: str
    study_name: str
    storage: str  #: canonical storage URL (`storage.storage_url`)
    n_trials: int = 20
    n_timesteps: int = 10_000
    n_jobs: int = 1
    sampler: str = "tpe"
    pruner: str = "median"
    env_kwargs: dict = field(default_factory=dict)
    eval_freq: int | None = None  #: None: a fifth of n_timesteps
    eval_contexts: int = 50
    seed: int = 0
    folder: Path = Path("runs/tune")

    @property
    def every(self) -> int:
        return int(self.eval_freq or max(self.n_timesteps // 5, 1))

    def identity(self) -> dict:
        """What a study is: a second command on the same study must agree (the budget may grow)."""
        return {"algo": self.algo, "env_id": self.env_id, "env_kwargs": self.env_kwargs,
                "n_timesteps": self.n_timesteps, "eval_freq": self.every, "eval_contexts": self.eval_contexts,
                "seed": self.seed, "sampler": self.sampler, "pruner": self.pruner}


def check(cfg: TuneConfig) -> TuneConfig:
    """``cfg`` with its names canonical, or a one-sentence `ArmlabError`."""
    from controllers import rl

    cfg.algo, cfg.env_id = rl.algo_of(cfg.algo), rl.env_id_of(cfg.env_id)
    for name, value, lo in (("n_trials", cfg.n_trials, 1), ("n_jobs", cfg.n_jobs, 1),
                            ("n_timesteps", cfg.n_timesteps, 1), ("eval_contexts", cfg.eval_contexts, 1),
                            ("eval_freq", cfg.eval_freq if cfg.eval_freq is not None else 1, 1)):
        if not isinstance(value, int) or isinstance(value, bool) or value < lo:
            raise ParamError(name, f"{{name}} must be an integer >= {lo}, got {value!r}.")
    if cfg.sampler not in SAMPLERS:
        raise ParamError("sampler", f"{{name}} must be one of {', '.join(SAMPLERS)}, got {cfg.sampler!r}.")
    if cfg.pruner not in PRUNERS:
        raise ParamError("pruner", f"{{name}} must be one of {', '.join(PRUNERS)}, got {cfg.pruner!r}.")
    if not cfg.study_name or any(c in cfg.study_name for c in "/\\") or cfg.study_name.startswith("."):
        raise ParamError("study_name", f"{{name}} must be a plain name (no slashes), got {cfg.study_name!r}.")
    rl.probe_env(cfg.env_id, {**rl.default_env_kwargs(cfg.algo, cfg.env_id), **cfg.env_kwargs})  # bad kwargs fail
    return cfg


# -- samplers, pruners, the study ------------------------------------------------------------------------------
def _trial_seed(seed: int, number: int) -> int:
    return int(np.random.SeedSequence([int(seed) & (2**63 - 1), int(number)]).generate_state(1)[0])


def make_sampler(kind: str, seed: int):
    import optuna

    if kind == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=5)


def make_pruner(kind: str, every: int):
    import optuna

    if kind == "none":
        return optuna.pruners.NopPruner()
    return optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=every + 1)  # never at the first evaluation


def open_study(cfg: TuneConfig, create: bool = True):
    """The study ``cfg.study_name`` in ``cfg.storage`` (created when absent), checked against ``cfg``."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = open_storage(cfg.storage)
    sampler, pruner = make_sampler(cfg.sampler, cfg.seed), make_pruner(cfg.pruner, cfg.every)
    try:
        if create:
            study = optuna.create_study(study_name=cfg.study_name, storage=storage, sampler=sampler, pruner=pruner,
                                        direction="minimize", load_if_exists=True)
        else:
            study = optuna.load_study(study_name=cfg.study_name, storage=storage, sampler=sampler, pruner=pruner)
    except ArmlabError:
        raise
    except Exception as exc:  # a server that went away, a file that is not a study storage
        raise ConfigError(f"cannot open study {cfg.study_name!r} in {describe(cfg.storage)} "
                          f"({' '.join(str(exc).split())[:200].rstrip('.')}).") from None
    wanted = _plain(cfg.identity())
    saved = study.user_attrs.get("armlab")
    if saved is None:
        study.set_user_attr("armlab", wanted)
    elif saved != wanted:
        diff = sorted(k for k in wanted if saved.get(k) != wanted[k])
        raise ParamError("study_name", f"study {cfg.study_name!r} in {describe(cfg.storage)} was made with other "
                                       f"settings ({', '.join(f'{k}: {saved.get(k)!r}' for k in diff)}); use "
                                       f"another {{name}} or the same settings.")
    return study


def _plain(value):
    import json

    return json.loads(json.dumps(value))


def _counts(study) -> tuple[int, int]:
    """(finished, running) trials: COMPLETE or PRUNED, and RUNNING."""
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    finished = sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials)
    return finished, sum(t.state == TrialState.RUNNING for t in trials)


# -- one trial ---------------------------------------------------------------------------------------------------
class _Surplus(Exception):
    """A trial drawn when the budget was already taken by others (two workers asked at once)."""


def _evaluator(cfg: TuneConfig):
    """``evaluate(model) -> (median distance in mm, success within 2 cm)`` on the study's fixed contexts."""
    from controllers import rl
    from controllers.evaluation import Controller, evaluate, held_out_contexts

    kwargs = {**rl.default_env_kwargs(cfg.algo, cfg.env_id), **cfg.env_kwargs}
    contexts = held_out_contexts(cfg.env_id, cfg.eval_contexts, rl.EVAL_SEED, **kwargs)

    def run(model) -> tuple[float, float]:
        ctrl = Controller("trial", lambda env, obs: model.predict(obs, deterministic=True)[0])
        res = evaluate(ctrl, cfg.env_id, contexts, rl.EVAL_SEED, **kwargs)
        return float(res.median_y * 1000.0), float(res.success_2cm)

    return run


def _report_callback(trial, evaluate, every: int):
    from stable_baselines3.common.callbacks import BaseCallback

    class ReportToPruner(BaseCallback):
        """Evaluate every ``every`` steps, log to TensorBoard, report to the pruner; stop when pruned."""

        def __init__(self) -> None:
            super().__init__()
            self.last: tuple[int, float, float] | None = None
            self.pruned = False

        def evaluate_now(self) -> None:
            median_mm, success = evaluate(self.model)
            step = int(self.model.num_timesteps)
            self.last = (step, median_mm, success)
            self.logger.record("tune/median_y_mm", median_mm)
            self.logger.record("tune/success_2cm", success)
            self.logger.dump(step)
            trial.report(median_mm, step)

        def _on_step(self) -> bool:
            if self.model.num_timesteps % every:
                return True
            self.evaluate_now()
            self.pruned = trial.should_prune()
            return not self.pruned

    return ReportToPruner()


def objective(cfg: TuneConfig, evaluate, trial) -> float:
    """Train one trial (see the module's docstring); its value is the last evaluation's median distance (mm)."""
    import optuna
    from optuna.trial import TrialState

    from controllers import rl

    trial.study.sampler = make_sampler(cfg.sampler, _trial_seed(cfg.seed, trial.number))
    for key, value in worker_identity().items():
        trial.set_user_attr(key, value)
    ahead = [t for t in trial.study.get_trials(deepcopy=False) if t.number < trial.number
             and t.state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)]
    if len(ahead) >= cfg.n_trials:
        trial.set_user_attr("surplus", True)
        raise _Surplus(f"{len(ahead)} trials before it already fill the budget of {cfg.n_trials}")
    hp = space.sample(trial, cfg.algo)
    trial.set_user_attr("hyperparams", _plain(hp))
    report = _report_callback(trial, evaluate, cfg.every)
    t0 = time.perf_counter()
    folder = cfg.folder / cfg.study_name / f"trial_{trial.number}"
    result = rl.train(cfg.algo, cfg.env_id, cfg.n_timesteps, folder=folder, env_kwargs=cfg.env_kwargs, hyperparams=hp,
                      seed=cfg.seed + trial.number, eval_freq=0, save_freq=0, callbacks=[report])
    if report.last is None or report.last[0] != result.num_timesteps and not report.pruned:
        report.evaluate_now()  # the final policy, when the schedule did not end on it
    step, median_mm, success = report.last
    trial.set_user_attr("success_2cm", success)
    trial.set_user_attr("train_s", time.perf_counter() - t0)
    trial.set_user_attr("run_dir", str(result.run_dir))
    if report.pruned:
        raise optuna.TrialPruned(f"median distance {median_mm:.1f} mm at {step:,} steps")
    return median_mm


# -- workers -------------------------------------------------------------------------------------------------------
def best_line(study) -> str:
    """The best trial so far, in one line."""
    try:
        b = study.best_trial
    except ValueError:
        return "no completed trial yet"
    return (f"best so far: trial {b.number}, median distance {b.value:.1f} mm, success@2cm "
            f"{b.user_attrs.get('success_2cm', math.nan):.0%}, {b.params}")


def work(cfg: TuneConfig, worker: int = 0, report=print) -> int:
    """Run trials of the study until it has ``cfg.n_trials`` finished ones; returns the trials this worker ran."""
    from optuna.trial import TrialState

    from robot_env.io import threads

    study = open_study(cfg, create=False)
    evaluate = _evaluator(cfg)
    me, done = worker_identity(), 0
    with threads.torch_threads(1):
        while True:
            fail_dead_trials(study)
            finished, running = _counts(study)
            if finished >= cfg.n_trials:
                return done
            if finished + running >= cfg.n_trials:
                time.sleep(POLL_S)  # the last trials are others'; wait in case one of them dies
                continue
            t0 = time.perf_counter()
            study.optimize(lambda trial: objective(cfg, evaluate, trial), n_trials=1, catch=(_Surplus,),
                           gc_after_trial=False)
            mine = [t for t in study.get_trials(deepcopy=False)
                    if (t.user_attrs.get("host"), t.user_attrs.get("pid")) == (me["host"], me["pid"])]
            last = max(mine, key=lambda t: t.number, default=None)
            if last is None or last.user_attrs.get("surplus"):
                continue
            done += 1
            value = f"{last.value:.1f} mm" if last.state == TrialState.COMPLETE else last.state.name.lower()
            if last.state == TrialState.PRUNED:
                value += f" ({last.last_step:,} steps)"
            report(f"[worker {worker}] trial {last.number}: {value} in {time.perf_counter() - t0:.1f} s; "
                   f"{best_line(study)}")


def _worker_process(cfg: TuneConfig, worker: int) -> None:
    import sys

    try:
        work(cfg, worker, report=lambda line: print(line, flush=True))
    except ArmlabError as exc:
        print(f"armlab: error: {' '.join(str(exc).split())}", file=sys.stderr, flush=True)
        raise SystemExit(2) from None
    except KeyboardInterrupt:
        raise SystemExit(130) from None


def run_study(cfg: TuneConfig, report=print) -> dict:
    """Open (or create) the study and run ``cfg.n_jobs`` worker processes on it (this process when 1) until it has
    ``cfg.n_trials`` finished trials. Returns its figures."""
    check(cfg)
    study = open_study(cfg)
    finished, _ = _counts(study)
    report(f"study {cfg.study_name!r} in {describe(cfg.storage)}: {cfg.algo} on {cfg.env_id}, {finished} of "
           f"{cfg.n_trials} trials finished; {cfg.n_jobs} worker(s)")
    t0 = time.perf_counter()
    if cfg.n_jobs == 1:
        ran = work(cfg, 0, report)
    else:
        ctx = multiprocessing.get_context("spawn")  # fresh interpreters: no forked torch or database connections
        procs = [ctx.Process(target=_worker_process, args=(cfg, k), name=f"armlab-tune-{k}")
                 for k in range(cfg.n_jobs)]
        for p in procs:
            p.start()
        try:
            for p in procs:
                p.join()
        finally:
            for p in procs:
                if p.is_alive():
                    p.terminate()
                    p.join()
        bad = [p.exitcode for p in procs if p.exitcode != 0]
        if bad:
            raise ConfigError(f"{len(bad)} of {cfg.n_jobs} tuning workers stopped (exit codes {bad}); see their "
                              f"messages above.")
        ran = None
    wall = time.perf_counter() - t0
    return summary(study, cfg, wall, ran)


def summary(study, cfg: TuneConfig, wall_s: float, ran: int | None = None) -> dict:
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    states = {s.name.lower(): sum(t.state == s for t in trials) for s in TrialState}
    try:
        b = study.best_trial
        best = {"number": b.number, "value": b.value, "success_2cm": b.user_attrs.get("success_2cm"),
                "params": b.params, "hyperparams": b.user_attrs.get("hyperparams")}
    except ValueError:
        best = None
    return {"study": cfg.study_name, "storage": describe(cfg.storage), "config": _plain(asdict(cfg) | {
        "folder": str(cfg.folder)}), "trials": states, "finished": states["complete"] + states["pruned"],
            "best": best, "wall_s": wall_s, "ran_here": ran}


__all__ = ["PRUNERS", "SAMPLERS", "TuneConfig", "best_line", "check", "make_pruner", "make_sampler", "objective",
           "open_study", "run_study", "summary", "work"]
