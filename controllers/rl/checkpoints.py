"""Checkpoints: replay buffers as ``.npz`` (filled rows only, no pickle), complete atomic checkpoints
(model zip last), and the callbacks that write them, the best model and the evaluation history; and the one that
stops a run after a wall-time budget."""

from __future__ import annotations

import os
import time
import warnings
import zipfile
from pathlib import Path

import numpy as np
from stable_baselines3 import HerReplayBuffer
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import (
    BaseCallback,
    CheckpointCallback,
    EvalCallback,
)
from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm
from stable_baselines3.common.vec_env import VecEnv

from controllers.rl.normalize import save_vecnormalize
from controllers.rl.runs import CHECKPOINTS, _ckpt_paths, _one_line
from robot_env.io.atomic import atomic_write
from robot_env.io.errors import DataError


def save_replay_buffer(model: OffPolicyAlgorithm, path: str | Path) -> None:
    """Save the replay buffer's numeric arrays, cut to the rows filled so far, as an ``.npz``.

    No pickle: loading it back never executes code. SB3 preallocates ``buffer_size`` rows
    (300,000 rows of 64 x 64 images would be 7 GiB at every checkpoint), so only the filled
    rows are written and `load_replay_buffer` pads them back. HER's per-transition ``infos``
    (Python dicts) are not saved: armlab's ``compute_reward`` does not read them."""
    buf = model.replay_buffer
    n = buf.buffer_size
    # rows 0 .. pos: with optimize_memory_usage the last transition's next observation is in row pos
    used = n if buf.full else min(buf.pos + 1, n)

    def cut(v):
        return v[:used] if v.ndim >= 2 and v.shape[0] == n else v

    arrays = {"__pos": np.array(buf.pos), "__full": np.array(buf.full)}
    for name, value in vars(buf).items():
        if isinstance(value, np.ndarray) and value.dtype != object:
            arrays[name] = cut(value)
        elif isinstance(value, dict):
            for key, v in value.items():
                if isinstance(v, np.ndarray) and v.dtype != object:
                    arrays[f"{name}/{key}"] = cut(v)
    with open(path, "wb") as f:
        np.savez(f, **arrays)


def load_replay_buffer(model: OffPolicyAlgorithm, path: str | Path) -> None:
    """Load a `save_replay_buffer` file into ``model``'s own (freshly built) replay buffer."""
    buf = model.replay_buffer
    try:
        with np.load(path, allow_pickle=False) as data:
            for key in data.files:
                if key.startswith("__"):
                    continue
                name, _, sub = key.partition("/")
                holder = getattr(buf, name)
                current = holder[sub] if sub else holder
                value = data[key]
                if value.shape[1:] != current.shape[1:] or value.dtype != current.dtype:
                    raise ValueError(f"{key} has shape {value.shape} {value.dtype}, the model's buffer "
                                     f"{current.shape} {current.dtype}")
                if value.ndim >= 2 and value.shape[0] < current.shape[0]:
                    full = np.zeros_like(current)
                    full[: len(value)] = value
                    value = full
                if sub:
                    holder[sub] = value
                else:
                    setattr(buf, name, value)
            buf.pos, buf.full = int(data["__pos"]), bool(data["__full"])
    except (OSError, KeyError, ValueError, AttributeError, zipfile.BadZipFile) as exc:
        raise DataError(f"replay buffer {path} is corrupt or does not fit this run ({_one_line(exc)}).") from None
    if isinstance(buf, HerReplayBuffer):
        if buf.env is None:
            buf.set_env(model.get_env())
        buf.truncate_last_trajectory()  # an episode cut by the checkpoint cannot be relabelled


def _save_model(model: BaseAlgorithm, path: Path) -> None:
    atomic_write(path, model.save, durable=True)


def save_checkpoint(model: BaseAlgorithm, run_dir: str | Path, replay_buffer: bool = True) -> Path:
    """Write a complete checkpoint at ``model.num_timesteps``; returns the model file's path.

    VecNormalize statistics and the replay buffer go first and the model zip last, each
    atomically, so a checkpoint whose zip exists is complete. Older replay buffers are
    deleted once the new checkpoint is in place (the model checkpoints are all kept)."""
    paths = _ckpt_paths(Path(run_dir), model.num_timesteps)
    vn = model.get_vec_normalize_env()
    if vn is not None:
        atomic_write(paths["vecnormalize"], lambda tmp: save_vecnormalize(vn, tmp), durable=True)
    has_buffer = replay_buffer and isinstance(model, OffPolicyAlgorithm) and model.replay_buffer is not None
    if has_buffer:
        atomic_write(paths["replay_buffer"], lambda tmp: save_replay_buffer(model, tmp), durable=True)
    _save_model(model, paths["model"])
    if has_buffer:
        for old in paths["replay_buffer"].parent.glob("rl_model_replay_buffer_*_steps.npz"):
            if old != paths["replay_buffer"]:
                old.unlink(missing_ok=True)
    return paths["model"]


class StopAfterSeconds(BaseCallback):
    """Stops training once ``seconds`` of wall time have passed since training started (checked after every env
    step, so a run overshoots by at most one step and its gradient updates): training for a time budget rather
    than a step count (`armlab train --time-limit`, `armlab bench rl`)."""

    def __init__(self, seconds: float):
        super().__init__()
        self.seconds = float(seconds)
        self.t0 = 0.0

    def _on_training_start(self) -> None:
        self.t0 = time.perf_counter()

    def _on_step(self) -> bool:
        return time.perf_counter() - self.t0 < self.seconds


class _AtomicCheckpoint(CheckpointCallback):
    """SB3's CheckpointCallback, writing complete checkpoints atomically (`save_checkpoint`).

    A due checkpoint is written when the next rollout starts: by then the step's transition
    is in the replay buffer and the model has trained on it, so resuming picks up exactly
    where the run was."""

    def __init__(self, save_freq: int, run_dir: Path, verbose: int = 0) -> None:
        super().__init__(save_freq, str(Path(run_dir) / CHECKPOINTS), save_replay_buffer=True, save_vecnormalize=True,
                         verbose=verbose)
        self.run_dir = Path(run_dir)
        self._due = False

    def _on_step(self) -> bool:
        if self.n_calls % self.save_freq == 0:
            self._due = True
        return True

    def _on_rollout_start(self) -> None:
        if self._due:
            self._due = False
            path = save_checkpoint(self.model, self.run_dir)
            if self.verbose >= 1:
                print(f"checkpoint {path}")


class _SaveBest(BaseCallback):
    """Called by the EvalCallback on a new best mean reward: writes ``best_model.zip`` atomically."""

    def __init__(self, run_dir: Path) -> None:
        super().__init__()
        self.run_dir = Path(run_dir)

    def _on_step(self) -> bool:
        vn = self.model.get_vec_normalize_env()
        if vn is not None:
            atomic_write(self.run_dir / "best_vecnormalize.npz", lambda tmp: save_vecnormalize(vn, tmp), durable=True)
        _save_model(self.model, self.run_dir / "best_model.zip")
        return True


class _PublishEvaluations(BaseCallback):
    """Called after each evaluation: moves the EvalCallback's fresh ``evaluations`` file into place."""

    def __init__(self, tmp: Path, final: Path) -> None:
        super().__init__()
        self.tmp, self.final = tmp, final

    def _on_step(self) -> bool:
        if self.tmp.exists():
            os.replace(self.tmp, self.final)
        return True


def _set_aside(path: Path) -> Path:
    """Rename ``path`` to the first free ``<stem>.<k><suffix>`` (k = 1, 2, ...) so nothing overwrites it."""
    k = 1
    while (dest := path.with_name(f"{path.stem}.{k}{path.suffix}")).exists():
        k += 1
    os.replace(path, dest)
    return dest


class _SeededEval(EvalCallback):
    """EvalCallback on the same contexts every time: the eval env is reseeded before each evaluation."""

    def __init__(self, eval_env: VecEnv, run_dir: Path, eval_seed: int, **kwargs) -> None:
        tmp_stem = Path(run_dir) / ".evaluations.tmp"
        super().__init__(eval_env, callback_on_new_best=_SaveBest(run_dir),
                         callback_after_eval=_PublishEvaluations(tmp_stem.with_suffix(".tmp.npz"),
                                                                 Path(run_dir) / "evaluations.npz"),
                         best_model_save_path=None, log_path=str(run_dir), **kwargs)
        self.log_path = str(tmp_stem)  # np.savez adds ".npz"; _PublishEvaluations moves it into place
        self.eval_seed = eval_seed
        self._restore_history(Path(run_dir) / "evaluations.npz")

    def _restore_history(self, path: Path) -> None:
        if not path.is_file():
            return
        try:
            with np.load(path, allow_pickle=False) as z:
                self.evaluations_timesteps = [int(t) for t in z["timesteps"]]
                self.evaluations_results = [list(map(float, r)) for r in z["results"]]
                self.evaluations_length = [list(map(int, r)) for r in z["ep_lengths"]]
                if "successes" in z:
                    self.evaluations_successes = [list(map(bool, r)) for r in z["successes"]]
        except (ValueError, KeyError, OSError, zipfile.BadZipFile):
            self.evaluations_timesteps, self.evaluations_results, self.evaluations_length = [], [], []
            self.evaluations_successes = []
            warnings.warn(f"{path} is unreadable; it is kept as {_set_aside(path).name} and the evaluation history "
                          f"starts afresh.", stacklevel=2)
            return
        if any(len(r) != self.n_eval_episodes for r in self.evaluations_results):
            self.evaluations_timesteps, self.evaluations_results, self.evaluations_length = [], [], []
            self.evaluations_successes = []
            warnings.warn(f"{path} holds evaluations of another size (another eval_episodes); it is kept as "
                          f"{_set_aside(path).name} and the evaluation history starts afresh.", stacklevel=2)
        if self.evaluations_results:
            self.best_mean_reward = max(float(np.mean(r)) for r in self.evaluations_results)

    def _on_step(self) -> bool:
        if self.eval_freq > 0 and self.n_calls % self.eval_freq == 0:
            self.eval_env.seed(self.eval_seed)
        return super()._on_step()
