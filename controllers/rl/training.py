"""`train`: one SB3 agent on one armlab env into a new (or resumed) run folder."""

from __future__ import annotations

import contextlib
import importlib.util
import math
import time
import warnings
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch as th
import yaml
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import (
    BaseCallback,
    CallbackList,
)
from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm

import robot_env
from controllers.rl.checkpoints import (
    StopAfterSeconds,
    _AtomicCheckpoint,
    _save_model,
    _SeededEval,
    load_replay_buffer,
    save_checkpoint,
)
from controllers.rl.hyperparams import (
    _plain,
    _unsqueeze_yaml,
    default_env_kwargs,
    load_hyperparams,
)
from controllers.rl.models import _build_model, _restore_model
from controllers.rl.normalize import (
    _vec_env,
    _wrap_normalize,
    load_vecnormalize_stats,
    probe_env,
    save_vecnormalize,
)
from controllers.rl.policies import _model_kwargs, _policy_name
from controllers.rl.runs import (
    CONFIG,
    EVAL_SEED,
    OFF_POLICY,
    TQC,
    _ckpt_paths,
    _new_run_dir,
    algo_of,
    checkpoint_steps,
    env_id_of,
    find_run,
    read_config,
    resume_seed,
)
from robot_env.io import threads
from robot_env.io.atomic import atomic_write, atomic_write_text
from robot_env.io.errors import ConfigError, MissingPathError, ParamError, PathError

#: train()'s evaluation and checkpoint schedule when not given (a resumed run keeps its own)
_SCHEDULE_DEFAULTS = {"eval_freq": 10_000, "eval_episodes": 20, "save_freq": 10_000}

# -- training --------------------------------------------------------------------------------------
@dataclass
class TrainResult:
    """What `train` did. ``model`` is the trained model (its envs closed; `predict` works)."""

    run_dir: Path
    algo: str
    env_id: str
    num_timesteps: int
    start_timesteps: int
    wall_s: float
    best_mean_reward: float | None
    last_mean_reward: float | None
    checkpoints: list[int]
    model: BaseAlgorithm = field(repr=False)

    @property
    def steps_per_s(self) -> float:
        return (self.num_timesteps - self.start_timesteps) / max(self.wall_s, 1e-9)

    def figures(self) -> dict:
        """The result as JSON-ready figures."""
        return {"run_dir": str(self.run_dir), "algo": self.algo, "env_id": self.env_id,
                "num_timesteps": self.num_timesteps, "start_timesteps": self.start_timesteps,
                "wall_s": self.wall_s, "steps_per_s": self.steps_per_s, "best_mean_reward": self.best_mean_reward,
                "last_mean_reward": self.last_mean_reward, "checkpoints": self.checkpoints}


def _versions() -> dict:
    import stable_baselines3

    out = {"armlab": robot_env.__version__, "stable_baselines3": stable_baselines3.__version__,
           "torch": th.__version__, "gymnasium": gym.__version__, "numpy": np.__version__}
    if TQC is not None:
        import sb3_contrib

        out["sb3_contrib"] = sb3_contrib.__version__
    return out


def _resume_config(run_dir: Path, algo: str, env_id: str, env_kwargs: dict | None, overrides: dict | None,
                   n_envs: int | None, normalize: bool | None) -> dict:
    config = read_config(run_dir)
    if config["algo"] != algo or config["env_id"] != env_id:
        raise ConfigError(f"{run_dir} is a {config['algo']} run of {config['env_id']}, not {algo} on {env_id}.")
    saved_kwargs = config.get("env_kwargs") or {}
    wanted = {**default_env_kwargs(algo, env_id), **_unsqueeze_yaml(dict(env_kwargs or {}))}
    if env_kwargs and _plain(wanted) != saved_kwargs:
        raise ParamError("env_kwargs", f"resuming keeps the run's env kwargs {saved_kwargs}; drop {{name}} or start a "
                                       f"new run.")
    hp = config["hyperparams"]
    if overrides:
        checked = load_hyperparams(algo, env_id, overrides)
        changed = sorted(k for k in overrides if k != "n_timesteps" and checked.get(k) != hp.get(k))
        if changed:
            raise ConfigError(f"resuming keeps the run's hyperparameters ({', '.join(changed)} differ); "
                             f"drop them or start a new run.")
    if n_envs is not None and n_envs != config.get("n_envs", 1):
        raise ParamError("n_envs", f"resuming keeps the run's n_envs ({config.get('n_envs', 1)}); drop {{name}} or "
                                   f"start a new run.")
    if normalize is not None and bool(normalize) != bool(config.get("normalize")):
        raise ConfigError(f"resuming keeps the run's normalize setting ({bool(config.get('normalize'))}).")
    return config


def _prepare(folder: Path, algo: str, env_id: str, env_kwargs: dict | None, hyperparams: dict | None,
             seed: int | None, n_envs: int | None, normalize: bool | None, resume: bool,
             exp_id: int | None) -> tuple[Path | None, dict, int]:
    """(run folder or None for a new run, config, steps already done)."""
    if not resume:
        if exp_id is not None:
            raise ConfigError("exp_id picks a run to resume: use it with resume=True.")
        env_kwargs = {**default_env_kwargs(algo, env_id), **_unsqueeze_yaml(dict(env_kwargs or {}))}
        config = {"algo": algo, "env_id": env_id, "env_kwargs": _plain(env_kwargs),
                  "hyperparams": load_hyperparams(algo, env_id, hyperparams),
                  "hyperparams_overrides": _plain(hyperparams or {}), "seed": 0 if seed is None else int(seed),
                  "n_envs": n_envs or 1, "normalize": bool(normalize), "eval_seed": EVAL_SEED}
        return None, config, 0
    run_dir = find_run(folder, algo, env_id, exp_id)
    config = _resume_config(run_dir, algo, env_id, env_kwargs, hyperparams, n_envs, normalize)
    steps = checkpoint_steps(run_dir)
    if not steps:
        raise MissingPathError(f"{run_dir} has no checkpoint to resume from.")
    for stray in run_dir.rglob(".*.tmp*"):  # leftovers of a kill in the middle of a write
        stray.unlink(missing_ok=True)
    return run_dir, config, steps[-1]


def _callbacks(run_dir: Path, config: dict, n_envs: int, eval_freq: int, eval_episodes: int, save_freq: int,
               verbose: int) -> tuple[list[BaseCallback], _SeededEval | None]:
    callbacks: list[BaseCallback] = []
    if save_freq:
        callbacks.append(_AtomicCheckpoint(max(save_freq // n_envs, 1), run_dir, verbose=verbose))
    if not eval_freq:
        return callbacks, None
    eval_env = _vec_env(config["env_id"], dict(config["env_kwargs"] or {}), 1, EVAL_SEED, "dummy")
    if config["normalize"]:
        eval_env = _wrap_normalize(eval_env, float(config["hyperparams"].get("gamma", 0.99)), False)
    eval_cb = _SeededEval(eval_env, run_dir, EVAL_SEED, n_eval_episodes=eval_episodes,
                          eval_freq=max(eval_freq // n_envs, 1), deterministic=True, verbose=verbose, warn=False)
    return callbacks + [eval_cb], eval_cb


def train(
    algo: str,
    env_id: str,
    n_timesteps: int | None = None,
    *,
    folder: str | Path = "runs",
    env_kwargs: dict | None = None,
    hyperparams: dict | None = None,
    seed: int | None = None,
    n_envs: int | None = None,
    vec_env: str = "dummy",
    normalize: bool | None = None,
    eval_freq: int | None = None,
    eval_episodes: int | None = None,
    save_freq: int | None = None,
    resume: bool = False,
    exp_id: int | None = None,
    device: str = "cpu",
    progress_bar: bool = False,
    verbose: int = 0,
    torch_threads: int | None = 1,
    callbacks: list[BaseCallback] | None = None,
    time_limit_s: float | None = None,
) -> TrainResult:
    """Train ``algo`` on ``env_id`` for ``n_timesteps`` env steps in total, into a new run folder.

    ``n_timesteps`` None takes the budget of ``hyperparams.yml`` (when resuming, the run's).
    ``eval_freq`` and ``save_freq`` count env steps over all ``n_envs`` envs (0 turns them
    off; a final checkpoint is always written); None gives 10,000 (and ``eval_episodes``
    None 20), or the run's own settings when resuming. ``resume=True`` continues run ``exp_id``
    (the latest when None) from its newest checkpoint up to ``n_timesteps`` in total, with
    the run's saved settings; its envs and model are reseeded with `resume_seed` (seed, steps done): a stream
    apart from the evaluation and held-out seeds.
    ``torch_threads`` sets torch's CPU threads during training (1: these small networks
    gain nothing from more, and parallel runs do not oversubscribe the cores; None leaves
    it), restored afterwards. ``callbacks`` (SB3 callbacks) run after the checkpoint and evaluation ones; one that
    returns False stops training early (the run is still saved). ``time_limit_s`` stops it after that many seconds
    of training wall time (`StopAfterSeconds`), whatever the step count reached: ``n_timesteps`` is then the cap.
    """
    algo, env_id, folder = algo_of(algo), env_id_of(env_id), Path(folder)
    if vec_env not in ("dummy", "subproc"):
        raise ConfigError(f"unknown vec env {vec_env!r}; choose dummy or subproc.")
    if time_limit_s is not None and not (isinstance(time_limit_s, (int, float)) and math.isfinite(time_limit_s)
                                         and time_limit_s > 0):
        raise ParamError("time_limit", f"{{name}} must be a positive number of seconds, got {time_limit_s!r}.")
    for name, value, lo in (("n_envs", n_envs, 1), ("eval_freq", eval_freq, 0), ("eval_episodes", eval_episodes, 1),
                            ("save_freq", save_freq, 0), ("n_timesteps", n_timesteps, 1)):
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < lo):
            raise ParamError(name, f"{{name}} must be an integer >= {lo}, got {value!r}.")
    if folder.exists() and not folder.is_dir():
        raise PathError(f"{folder} is not a folder.")
    run_dir, config, start_steps = _prepare(folder, algo, env_id, env_kwargs, hyperparams, seed, n_envs, normalize,
                                            resume, exp_id)
    schedule = {"eval_freq": eval_freq, "eval_episodes": eval_episodes, "save_freq": save_freq}
    for name, value in schedule.items():  # a resumed run keeps its own evaluation and checkpoint schedule
        if value is None:
            schedule[name] = int(config.get(name, _SCHEDULE_DEFAULTS[name]) if resume else _SCHEDULE_DEFAULTS[name])
    eval_freq, eval_episodes, save_freq = schedule["eval_freq"], schedule["eval_episodes"], schedule["save_freq"]
    env_kwargs = dict(config["env_kwargs"] or {})
    target = int(n_timesteps or config.get("n_timesteps") or config["hyperparams"].get("n_timesteps", 100_000))
    info = probe_env(env_id, env_kwargs)
    if config["normalize"] and info.obs_kind == "image":
        raise ConfigError("normalize works on vector observations; image observations are scaled by the CnnPolicy.")
    n_envs = int(config["n_envs"])
    run_seed = resume_seed(int(config["seed"]), start_steps) if resume else int(config["seed"])
    gamma = float(config["hyperparams"].get("gamma", 0.99))
    config.update({"n_timesteps": target, "vec_env": vec_env, "device": device, "eval_freq": eval_freq,
                   "eval_episodes": eval_episodes, "save_freq": save_freq,
                   "steps_per_episode": info.steps_per_episode, "her": info.goal_conditioned and algo in OFF_POLICY,
                   "policy": _policy_name(_model_kwargs(algo, config["hyperparams"], info)[0]),
                   "versions": _versions()})
    config["hyperparams"]["n_timesteps"] = target  # one budget in the file, not also hyperparams.yml's default

    with threads.torch_threads(torch_threads), contextlib.ExitStack() as closing:
        env = _vec_env(env_id, env_kwargs, n_envs, run_seed, vec_env)
        closing.callback(env.close)
        if config["normalize"]:
            stats = None
            if resume:
                vpath = _ckpt_paths(run_dir, start_steps)["vecnormalize"]
                if not vpath.is_file():
                    raise MissingPathError(f"checkpoint {start_steps} of {run_dir} lacks its VecNormalize file.")
                stats = load_vecnormalize_stats(vpath)
            env = _wrap_normalize(env, gamma, True, stats)
        model = _build_model(config, env, info, run_seed, device, verbose=verbose)  # bad values fail here
        close_buffer = getattr(getattr(model, "replay_buffer", None), "close", None)
        if close_buffer is not None:  # residual_her's private env (reopened if the buffer is used again)
            closing.callback(close_buffer)
        if run_dir is None:
            run_dir = _new_run_dir(folder, algo, env_id)
            config["created"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
        else:
            paths = _ckpt_paths(run_dir, start_steps)
            _restore_model(model, paths["model"], config, info, device)
            if isinstance(model, OffPolicyAlgorithm):
                if paths["replay_buffer"].is_file():
                    load_replay_buffer(model, paths["replay_buffer"])
                else:
                    warnings.warn(f"{run_dir} has no replay buffer for checkpoint {start_steps}; resuming with an "
                                  f"empty one.", stacklevel=2)
            config.setdefault("resumes", []).append({
                "from_timesteps": int(model.num_timesteps), "seed": run_seed,
                "at": datetime.now(timezone.utc).isoformat(timespec="seconds")})
        if importlib.util.find_spec("tensorboard") is not None:
            model.tensorboard_log = str(run_dir / "tb")
        atomic_write_text(run_dir / CONFIG, yaml.safe_dump(_plain(config), sort_keys=False), durable=True)

        own, eval_cb = _callbacks(run_dir, config, n_envs, eval_freq, eval_episodes, save_freq, verbose)
        callbacks = own + list(callbacks or []) + ([StopAfterSeconds(time_limit_s)] if time_limit_s else [])
        if eval_cb is not None:
            closing.callback(eval_cb.eval_env.close)
        remaining = max(target - model.num_timesteps, 0)
        t0 = time.perf_counter()
        try:
            if remaining:
                with warnings.catch_warnings():
                    warnings.filterwarnings("ignore", message="Training and eval env are not of the same type")
                    model.learn(remaining, callback=CallbackList(callbacks), reset_num_timesteps=not resume,
                                progress_bar=progress_bar, tb_log_name=algo)
        except KeyboardInterrupt:
            save_checkpoint(model, run_dir)
            raise
        wall = time.perf_counter() - t0
        if checkpoint_steps(run_dir)[-1:] != [model.num_timesteps]:
            save_checkpoint(model, run_dir)
        vn = model.get_vec_normalize_env()
        if vn is not None:
            atomic_write(run_dir / "vecnormalize.npz", lambda tmp: save_vecnormalize(vn, tmp), durable=True)
        _save_model(model, run_dir / "model.zip")

    def finite(x: float | None) -> float | None:
        return float(x) if x is not None and math.isfinite(x) else None

    return TrainResult(run_dir=run_dir, algo=algo, env_id=env_id, num_timesteps=int(model.num_timesteps),
                       start_timesteps=start_steps, wall_s=wall,
                       best_mean_reward=finite(eval_cb.best_mean_reward) if eval_cb else None,
                       last_mean_reward=finite(eval_cb.last_mean_reward) if eval_cb else None,
                       checkpoints=checkpoint_steps(run_dir), model=model)
