"""SB3 agents on the armlab envs: PPO, SAC, TD3 (stable-baselines3), TQC (sb3-contrib), HER.

`train` runs one of them on any registered id, rl-zoo3 style, into
``{folder}/{algo}/{env_name}_{N}/`` (``env_name`` is the id without ``armlab/``)::

    config.yml                  everything used: algo, env id and kwargs, merged hyperparameters,
                                seed, timesteps, eval and checkpoint settings, package versions
    model.zip                   the final model (SB3's zip format), vecnormalize.npz next to it
    best_model.zip              the best model of the periodic evaluation (+ best_vecnormalize.npz)
    evaluations.npz             the periodic evaluation results
    checkpoints/                rl_model_{steps}_steps.zip (all kept) with
                                rl_model_vecnormalize_{steps}_steps.npz and, off-policy, the
                                latest rl_model_replay_buffer_{steps}_steps.npz
    tb/                         TensorBoard logs, when tensorboard is installed

Every file is written to a temporary name and moved into place with ``os.replace``, the
model zip of a checkpoint last, so a killed run never leaves a half-written file and its
newest checkpoint is always complete: ``train(..., resume=True)`` continues from it (model,
optimizers, entropy coefficient, replay buffer, VecNormalize statistics, step counter).

Loading is safe by construction. SB3's ``load`` unpickles parts of the zip (spaces,
schedules, the policy class) with cloudpickle, which runs code from the file. Here the
model is rebuilt from ``config.yml`` (YAML, ``safe_load``) and only its tensors are read
from the zip, with ``torch.load(weights_only=True)`` (SB3's ``load_from_zip_file`` with
``load_data=False``); the zip's JSON part is parsed as plain JSON for the step counters
and the recorded space shapes (checked against the env), and the VecNormalize statistics
are an ``.npz`` read with ``allow_pickle=False``. A truncated or corrupt zip, or one
trained with another algorithm, env, robot or network, raises a one-sentence
``ValueError``. The replay buffer is an ``.npz`` too (its numeric arrays, cut to the
filled rows), so nothing in a run folder is unpickled. SB3 itself can still ``load``
these zips (rl-zoo3, enjoy scripts).
"""

from __future__ import annotations

import ast
import contextlib
import copy
import importlib.util
import inspect
import json
import math
import os
import re
import time
import warnings
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch as th
import yaml
from stable_baselines3 import PPO, SAC, TD3, HerReplayBuffer
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback, CallbackList, CheckpointCallback, EvalCallback
from stable_baselines3.common.noise import NormalActionNoise, OrnsteinUhlenbeckActionNoise
from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm
from stable_baselines3.common.preprocessing import is_image_space
from stable_baselines3.common.save_util import load_from_zip_file, recursive_setattr
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from stable_baselines3.common.vec_env import VecEnv, VecNormalize

import robot_env
from controllers import envs
from controllers.evaluation import Controller

ALGOS: dict[str, type[BaseAlgorithm]] = {"ppo": PPO, "sac": SAC, "td3": TD3}
try:
    from sb3_contrib import TQC

    ALGOS["tqc"] = TQC
except ImportError:  # pragma: no cover - sb3-contrib is a dependency; keep the other algos usable without it
    TQC = None
OFF_POLICY = ("sac", "td3", "tqc")
HYPERPARAMS_FILE = Path(__file__).with_name("hyperparams.yml")
EVAL_SEED = 500_000  #: the periodic evaluation's contexts (apart from training and held-out seeds)
CONFIG = "config.yml"
CHECKPOINTS = "checkpoints"

# hyperparameters handled here rather than by the algorithm's constructor
_EXTRA_HP = {"n_timesteps", "policy", "noise_type", "noise_std", "target_entropy_per_action", "actor_init_std",
             "residual_her"}
# constructor arguments that `train` sets itself
_RESERVED = {"self", "env", "seed", "device", "verbose", "tensorboard_log", "_init_setup_model", "action_noise",
             "replay_buffer_class", "rollout_buffer_class"}
_INT_HP = {"n_timesteps": 1, "n_steps": 1, "batch_size": 1, "n_epochs": 1, "buffer_size": 1, "learning_starts": 0,
           "gradient_steps": -1, "target_update_interval": 1, "policy_delay": 1, "sde_sample_freq": -1,
           "stats_window_size": 1, "top_quantiles_to_drop_per_net": 0}
_FLOAT_HP = {"gamma": (0.0, 1.0), "tau": (0.0, 1.0), "gae_lambda": (0.0, 1.0), "vf_coef": (0.0, math.inf),
             "max_grad_norm": (0.0, math.inf), "target_policy_noise": (0.0, math.inf),
             "target_noise_clip": (0.0, math.inf), "noise_std": (0.0, math.inf),
             "target_entropy_per_action": (0.0, 100.0), "actor_init_std": (1e-3, 1.0)}
_SCHEDULE_HP = ("learning_rate", "clip_range", "clip_range_vf")
_BOOL_HP = ("use_sde", "normalize_advantage", "optimize_memory_usage", "use_sde_at_warmup", "residual_her")
_ACTIVATIONS = {cls.__name__.lower(): cls for cls in (th.nn.ReLU, th.nn.Tanh, th.nn.ELU, th.nn.LeakyReLU,
                                                       th.nn.GELU, th.nn.SiLU, th.nn.SELU, th.nn.Sigmoid)}
_ACTIVATIONS.update({"leaky_relu": th.nn.LeakyReLU, "swish": th.nn.SiLU})
#: train()'s evaluation and checkpoint schedule when not given (a resumed run keeps its own)
_SCHEDULE_DEFAULTS = {"eval_freq": 10_000, "eval_episodes": 20, "save_freq": 10_000}
_CKPT_MODEL = re.compile(r"^rl_model_(\d+)_steps\.zip$")


# -- names, folders, files ------------------------------------------------------------------------
def env_id_of(name: str) -> str:
    """The armlab id for ``name`` (with or without the ``armlab/`` prefix)."""
    if name in robot_env.ENV_IDS:
        return name
    if f"armlab/{name}" in robot_env.ENV_IDS:
        return f"armlab/{name}"
    raise ValueError(f"unknown env id {name!r}; armlab ids: {', '.join(robot_env.ENV_IDS)}.")


def algo_of(name: str) -> str:
    """The lower-case algorithm name, checked against `ALGOS`."""
    algo = str(name).lower()
    if algo not in ALGOS:
        raise ValueError(f"unknown algo {name!r}; choose one of {', '.join(ALGOS)}.")
    return algo


def env_name_of(env_id: str) -> str:
    """The id without its ``armlab/`` prefix: the run folders' name."""
    return env_id.split("/", 1)[-1]


def _runs(folder: Path, algo: str, env_id: str) -> dict[int, Path]:
    base = Path(folder) / algo
    pattern = re.compile(rf"^{re.escape(env_name_of(env_id))}_(\d+)$")
    if not base.is_dir():
        return {}
    return {int(m.group(1)): p for p in base.iterdir() if p.is_dir() and (m := pattern.match(p.name))}


def find_run(folder: str | Path, algo: str, env_id: str, exp_id: int | None = None) -> Path:
    """The run folder ``{folder}/{algo}/{env_name}_{exp_id}`` (the latest one when ``exp_id`` is None)."""
    algo, env_id = algo_of(algo), env_id_of(env_id)
    runs = _runs(Path(folder), algo, env_id)
    where = Path(folder) / algo / f"{env_name_of(env_id)}_N"
    if not runs:
        raise FileNotFoundError(f"no {algo} run of {env_id} in {folder} (looked for {where}).")
    if exp_id is None:
        return runs[max(runs)]
    if exp_id not in runs:
        raise FileNotFoundError(f"no run {exp_id} of {algo} on {env_id} in {folder}; runs there: "
                                f"{', '.join(str(n) for n in sorted(runs))}.")
    return runs[exp_id]


def _new_run_dir(folder: Path, algo: str, env_id: str) -> Path:
    n = max(_runs(folder, algo, env_id), default=0) + 1
    while True:
        path = folder / algo / f"{env_name_of(env_id)}_{n}"
        try:
            path.mkdir(parents=True)
            return path
        except FileExistsError:  # another process took it
            n += 1


def _atomic(path: Path, write: Callable[[str], Any]) -> None:
    """Call ``write(tmp)`` for a temp name next to ``path`` (same suffix), then move it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix}")
    try:
        write(str(tmp))
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _write_text(path: Path, text: str) -> None:
    _atomic(path, lambda tmp: Path(tmp).write_text(text))


def read_config(run_dir: str | Path) -> dict:
    """The ``config.yml`` of a run folder."""
    path = Path(run_dir) / CONFIG
    if not path.is_file():
        raise FileNotFoundError(f"{run_dir} is not a training run: it has no {CONFIG}.")
    try:
        config = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ValueError(f"{path} is not valid YAML ({type(exc).__name__}).") from exc
    if not isinstance(config, dict) or not {"algo", "env_id", "hyperparams"} <= set(config):
        raise ValueError(f"{path} lacks algo, env_id or hyperparams: not an armlab training config.")
    return config


def checkpoint_steps(run_dir: str | Path) -> list[int]:
    """Steps of the run's saved checkpoints, oldest first."""
    ckpt = Path(run_dir) / CHECKPOINTS
    if not ckpt.is_dir():
        return []
    return sorted(int(m.group(1)) for p in ckpt.iterdir() if (m := _CKPT_MODEL.match(p.name)))


def _ckpt_paths(run_dir: Path, steps: int) -> dict[str, Path]:
    ckpt = Path(run_dir) / CHECKPOINTS
    return {"model": ckpt / f"rl_model_{steps}_steps.zip",
            "vecnormalize": ckpt / f"rl_model_vecnormalize_{steps}_steps.npz",
            "replay_buffer": ckpt / f"rl_model_replay_buffer_{steps}_steps.npz"}


# -- hyperparameters -------------------------------------------------------------------------------
def _policy_kwargs_from_str(text: str) -> dict:
    """``dict(net_arch=[64, 64], activation_fn=nn.ReLU)`` or a YAML mapping, parsed without eval."""
    text = text.strip()
    if text.startswith("{"):
        value = yaml.safe_load(text)
        if not isinstance(value, dict):
            raise ValueError(f"policy_kwargs must be a mapping, got {text!r}.")
        return _unsqueeze_yaml(value)

    def convert(node: ast.AST):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "dict" and not node.args:
            return {kw.arg: convert(kw.value) for kw in node.keywords}
        if isinstance(node, ast.Dict):
            return {ast.literal_eval(k): convert(v) for k, v in zip(node.keys, node.values)}
        if isinstance(node, (ast.List, ast.Tuple)):
            return [convert(e) for e in node.elts]
        if isinstance(node, (ast.Name, ast.Attribute)):  # nn.ReLU: a name, resolved from a fixed table
            return ast.unparse(node)
        return ast.literal_eval(node)

    try:
        value = convert(ast.parse(text, mode="eval").body)
    except (SyntaxError, ValueError, TypeError) as exc:
        raise ValueError(f"cannot read policy_kwargs {text!r}: use dict(key=value, ...) or {{key: value}}.") from exc
    if not isinstance(value, dict):
        raise ValueError(f"policy_kwargs must be a mapping, got {text!r}.")
    return value


def _unsqueeze_yaml(value: Any) -> Any:
    """Undo YAML's reading of ``{key:value}`` (no space after the colon) as the key ``"key:value"``.

    Command lines drop spaces, so ``policy_kwargs:{net_arch:[64,64], n_critics:2}`` arrives as
    ``{"net_arch": [64, 64], "n_critics:2": None}``; such keys are split at their first colon."""
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if v is None and isinstance(k, str) and ":" in k:
                k, text = k.split(":", 1)
                v = yaml.safe_load(text)
            out[k] = _unsqueeze_yaml(v)
        return out
    if isinstance(value, list):
        return [_unsqueeze_yaml(v) for v in value]
    return value


def _activation(name: Any) -> type[th.nn.Module]:
    key = str(name).rsplit(".", 1)[-1].lower()
    if key not in _ACTIVATIONS:
        raise ValueError(f"unknown activation_fn {name!r}; choose one of {', '.join(sorted(_ACTIVATIONS))}.")
    return _ACTIVATIONS[key]


def _plain(value: Any) -> Any:
    """``value`` with tuples as lists and numpy scalars as Python numbers (for YAML)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, type):
        return value.__name__
    if isinstance(value, str):  # str subclasses such as torch's TorchVersion
        return str(value)
    return value


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _check_value(algo: str, key: str, value: Any) -> None:
    """Raise a one-sentence ValueError for a badly typed hyperparameter."""
    if key in _INT_HP:
        lo = _INT_HP[key]
        if not (isinstance(value, int) and not isinstance(value, bool)) or value < lo:
            raise ValueError(f"hyperparameter {key} must be an integer >= {lo}, got {value!r}.")
    elif key in _FLOAT_HP:
        lo, hi = _FLOAT_HP[key]
        if not _is_number(value) or not lo <= value <= hi:
            raise ValueError(f"hyperparameter {key} must be a number in [{lo}, {hi}], got {value!r}.")
    elif key in _SCHEDULE_HP:
        ok = _is_number(value) and value > 0 or (key == "clip_range_vf" and value is None)
        if isinstance(value, str) and value.startswith("lin_"):
            with contextlib.suppress(ValueError):
                ok = isinstance(_schedule(value), LinearDecay)  # ValueError when malformed
        if not ok:
            raise ValueError(f"hyperparameter {key} must be a positive number, 'lin_<number>' or "
                             f"'lin_<number>@<fraction in [0, 1)>', got {value!r}.")
    elif key in _BOOL_HP:
        if not isinstance(value, bool):
            raise ValueError(f"hyperparameter {key} must be true or false, got {value!r}.")
    elif key == "ent_coef":
        if algo == "ppo":
            ok = _is_number(value) and value >= 0
        else:
            ok = _is_number(value) and value >= 0 or isinstance(value, str) and value.startswith("auto")
        if not ok:
            what = "a number >= 0" if algo == "ppo" else "a number >= 0, 'auto' or 'auto_<number>'"
            raise ValueError(f"hyperparameter ent_coef must be {what}, got {value!r}.")
    elif key == "train_freq":
        ok = isinstance(value, int) and not isinstance(value, bool) and value >= 1
        if isinstance(value, (list, tuple)) and len(value) == 2:
            ok = isinstance(value[0], int) and value[0] >= 1 and value[1] in ("step", "episode")
        if not ok:
            raise ValueError(f"hyperparameter train_freq must be an integer >= 1 or [n, step|episode], got {value!r}.")
    elif key == "noise_type":
        if value not in (None, "normal", "ornstein-uhlenbeck"):
            raise ValueError(f"hyperparameter noise_type must be normal or ornstein-uhlenbeck, got {value!r}.")
    elif key == "policy":
        if value not in ("MlpPolicy", "MultiInputPolicy", "CnnPolicy"):
            raise ValueError(f"hyperparameter policy must be MlpPolicy, MultiInputPolicy or CnnPolicy, got {value!r}.")


def valid_hyperparams(algo: str) -> list[str]:
    """The hyperparameter names ``algo`` accepts (constructor arguments and `_EXTRA_HP`)."""
    names = set(inspect.signature(ALGOS[algo_of(algo)].__init__).parameters) - _RESERVED
    names |= _EXTRA_HP
    if algo not in OFF_POLICY:
        names -= {"noise_type", "noise_std", "residual_her"}
    if "target_entropy" not in names:
        names -= {"target_entropy_per_action", "actor_init_std"}  # SAC and TQC have both
    return sorted(names)


def _yaml_sections(algo: str, env_id: str) -> list[dict]:
    """Copies of the ``hyperparams.yml`` sections that apply to ``algo`` on ``env_id``, later ones winning:
    ``default``, the env family, the env name."""
    section = (yaml.safe_load(HYPERPARAMS_FILE.read_text()) or {}).get(algo) or {}
    family = "open_loop" if env_id in robot_env.OPEN_LOOP_IDS.values() else "closed_loop"
    return [copy.deepcopy(section.get(key) or {}) for key in ("default", family, env_name_of(env_id))]


def load_hyperparams(algo: str, env_id: str, overrides: dict | None = None) -> dict:
    """The defaults of ``hyperparams.yml`` for ``algo`` on ``env_id``, with ``overrides`` applied and checked."""
    algo, env_id = algo_of(algo), env_id_of(env_id)
    merged: dict = {}
    for section in _yaml_sections(algo, env_id):
        merged.update(section)
    merged.pop("env_kwargs", None)  # read by default_env_kwargs
    overrides = _unsqueeze_yaml(copy.deepcopy(overrides or {}))
    if "env_kwargs" in overrides:
        raise ValueError("env_kwargs is not a hyperparameter: pass env settings with --env-kwargs.")
    merged.update(overrides)
    if isinstance(merged.get("policy_kwargs"), str):
        merged["policy_kwargs"] = _policy_kwargs_from_str(merged["policy_kwargs"])
    valid = valid_hyperparams(algo)
    for key, value in merged.items():
        if key not in valid:
            raise ValueError(f"unknown hyperparameter {key!r} for {algo}; valid names: {', '.join(valid)}.")
        _check_value(algo, key, value)
    if merged.get("policy_kwargs") is not None and not isinstance(merged["policy_kwargs"], dict):
        raise ValueError(f"policy_kwargs must be a mapping such as {{net_arch: [64, 64]}}, got "
                         f"{merged['policy_kwargs']!r}.")
    return _plain(merged)


def default_env_kwargs(algo: str, env_id: str) -> dict:
    """The ``env_kwargs`` entries of ``hyperparams.yml`` for ``algo`` on ``env_id`` (merged like the hyperparameters);
    `train` puts the user's env kwargs on top of them."""
    merged: dict = {}
    for section in _yaml_sections(algo_of(algo), env_id_of(env_id)):
        merged.update(section.get("env_kwargs") or {})
    return merged


def _her_defaults() -> dict:
    table = yaml.safe_load(HYPERPARAMS_FILE.read_text()) or {}
    return dict(table.get("her") or {"n_sampled_goal": 4, "goal_selection_strategy": "final"})


@dataclass(frozen=True)
class LinearDecay:
    """The ``lin_<start>`` schedule: ``start`` at the beginning of training, 0 at the end.

    ``lin_<start>@<hold>`` keeps ``start`` for the first ``hold`` fraction of the run and then
    decays linearly to 0 at its end. The fraction counts against the run's total ``n_timesteps``
    (SB3's progress also does across ``--resume``), so a resumed run follows the same curve.
    """

    start: float
    hold: float = 0.0

    def __call__(self, progress_remaining: float) -> float:
        left = 1.0 - self.hold  # the decaying part, as a fraction of the run
        return float(self.start * min(1.0, max(progress_remaining, 0.0) / left))


def _schedule(value):
    """A ``LinearDecay`` for ``lin_<start>[@<hold>]``; ValueError for a malformed one; others as given."""
    if isinstance(value, str) and value.startswith("lin_"):
        start, _, hold = value[4:].partition("@")
        start, hold = float(start), float(hold) if hold else 0.0
        if not (start > 0 and math.isfinite(start) and 0.0 <= hold < 1.0):
            raise ValueError(f"bad schedule {value!r}: 'lin_<start>[@<hold>]' needs start > 0 and 0 <= hold < 1.")
        return LinearDecay(start, hold)
    return value


class LeadingFeatures(BaseFeaturesExtractor):
    """The first ``n`` entries of a flat observation: what an asymmetric actor may read."""

    def __init__(self, observation_space: gym.spaces.Box, n: int) -> None:
        super().__init__(observation_space, int(n))
        self.n = int(n)

    def forward(self, observations: th.Tensor) -> th.Tensor:
        return th.flatten(observations, start_dim=1)[:, : self.n]


def asymmetric_policy(algo: str) -> type:
    """SAC's or TQC's MLP policy with an actor that reads only the first ``actor_obs_dim``
    observation entries while the critics read them all (an env's ``privileged=True``
    entries): asymmetric actor-critic, Pinto et al. 2017. The actor never sees the
    critic-only entries, so the trained policy needs none of them at deployment."""
    if algo == "sac":
        from stable_baselines3.sac.policies import SACPolicy as base
    elif algo == "tqc" and "tqc" in ALGOS:
        from sb3_contrib.tqc.policies import TQCPolicy as base
    else:
        raise ValueError(f"privileged observations need an asymmetric actor-critic: use --algo sac or tqc, "
                         f"not {algo}.")

    class AsymmetricPolicy(base):
        def __init__(self, *args, actor_obs_dim: int, **kwargs) -> None:
            if kwargs.get("share_features_extractor"):
                raise ValueError("an asymmetric actor-critic cannot share its features extractor.")
            self.actor_obs_dim = int(actor_obs_dim)
            super().__init__(*args, **kwargs)

        def make_actor(self, features_extractor=None):
            return super().make_actor(LeadingFeatures(self.observation_space, self.actor_obs_dim))

        def _get_constructor_parameters(self) -> dict:
            return {**super()._get_constructor_parameters(), "actor_obs_dim": self.actor_obs_dim}

    AsymmetricPolicy.__name__ = AsymmetricPolicy.__qualname__ = f"Asymmetric{base.__name__}"
    return AsymmetricPolicy


def _policy_name(policy: str | type) -> str:
    return policy if isinstance(policy, str) else policy.__name__


def _model_kwargs(algo: str, hyperparams: dict, info: EnvInfo) -> tuple[str | type, dict]:
    """(policy, constructor kwargs) from checked hyperparameters."""
    hp = copy.deepcopy(hyperparams)
    hp.pop("n_timesteps", None)
    hp.pop("actor_init_std", None)  # applied to the built model by `_build_model`
    hp.pop("residual_her", None)  # a replay buffer that needs the env: set by `_build_model`
    default = {"dict": "MultiInputPolicy", "image": "CnnPolicy"}.get(info.obs_kind, "MlpPolicy")
    policy = hp.pop("policy", None) or default
    if info.actor_obs_dim is not None:
        if policy != "MlpPolicy":
            raise ValueError(f"privileged observations train with MlpPolicy, not {policy}.")
        policy = asymmetric_policy(algo)
        hp["policy_kwargs"] = {**(hp.get("policy_kwargs") or {}), "actor_obs_dim": info.actor_obs_dim}
    for key in _SCHEDULE_HP:
        if key in hp:
            hp[key] = _schedule(hp[key])
    if isinstance(hp.get("train_freq"), list):
        hp["train_freq"] = (int(hp["train_freq"][0]), str(hp["train_freq"][1]))
    pk = hp.get("policy_kwargs")
    if pk:
        pk = dict(pk)
        if "activation_fn" in pk:
            pk["activation_fn"] = _activation(pk["activation_fn"])
        hp["policy_kwargs"] = pk
    per_action = hp.pop("target_entropy_per_action", None)
    if per_action is not None:
        if hp.get("target_entropy", "auto") != "auto":
            raise ValueError("give target_entropy or target_entropy_per_action, not both.")
        hp["target_entropy"] = -float(per_action) * info.n_actions
    noise_type, noise_std = hp.pop("noise_type", None), float(hp.pop("noise_std", 0.1))
    zeros, ones = np.zeros(info.n_actions), np.ones(info.n_actions)
    if noise_type == "normal":
        hp["action_noise"] = NormalActionNoise(zeros, noise_std * ones)
    elif noise_type == "ornstein-uhlenbeck":
        hp["action_noise"] = OrnsteinUhlenbeckActionNoise(zeros, noise_std * ones)
    if info.goal_conditioned and algo in OFF_POLICY:
        hp["replay_buffer_class"] = HerReplayBuffer
        hp["replay_buffer_kwargs"] = {**_her_defaults(), **(hp.get("replay_buffer_kwargs") or {})}
    return policy, hp


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text[:300].rstrip(".")


# -- envs and normalization ------------------------------------------------------------------------
@dataclass
class EnvInfo:
    """What training needs to know about an env: its observation kind and sizes."""

    obs_kind: str  #: "vector", "image" (a uint8 image Box: CnnPolicy) or "dict"
    goal_conditioned: bool  #: dict observations with achieved/desired goals and compute_reward (HER)
    steps_per_episode: int
    obs_shape: tuple | None  #: None for dict observations
    n_actions: int
    actor_obs_dim: int | None = None  #: the policy's leading entries when the rest are critic-only (privileged)

    @property
    def obs_is_dict(self) -> bool:
        return self.obs_kind == "dict"


def probe_env(env_id: str, env_kwargs: dict | None = None) -> EnvInfo:
    """Build the env once (in this process, so bad kwargs fail with a clear sentence) and describe it."""
    env_id = env_id_of(env_id)
    try:
        env = envs.make(env_id, **(env_kwargs or {}))
    except TypeError as exc:
        raise ValueError(f"bad env kwargs for {env_id}: {_one_line(exc)}.") from exc
    try:
        u, space = env.unwrapped, env.observation_space
        if isinstance(space, gym.spaces.Dict):
            kind = "dict"
        elif is_image_space(space, check_channels=False):
            kind = "image"
        else:
            kind = "vector"
        goals = kind == "dict" and {"achieved_goal", "desired_goal"} <= set(space.spaces)
        return EnvInfo(obs_kind=kind, goal_conditioned=bool(goals and hasattr(u, "compute_reward")),
                       steps_per_episode=int(getattr(u, "max_steps", 1)),
                       obs_shape=None if kind == "dict" else tuple(space.shape),
                       n_actions=int(np.prod(env.action_space.shape)),
                       actor_obs_dim=int(u.actor_obs_dim) if getattr(u, "privileged", False) else None)
    finally:
        env.close()


def _vec_env(env_id: str, env_kwargs: dict, n_envs: int, seed: int, vec_env: str) -> VecEnv:
    return envs.make_vec_env(env_id, n_envs=n_envs, seed=seed, subproc=vec_env == "subproc", **env_kwargs)


def save_vecnormalize(vec_normalize: VecNormalize, path: str | Path) -> None:
    """Write the statistics and settings of ``vec_normalize`` to an ``.npz`` (no pickle)."""
    arrays: dict[str, np.ndarray] = {}
    rms = vec_normalize.obs_rms if vec_normalize.norm_obs else {}
    items = rms.items() if isinstance(rms, dict) else [("", rms)]
    keys = []
    for key, r in items:
        suffix = f"__{key}" if key else ""
        keys.append(key)
        arrays[f"obs_mean{suffix}"], arrays[f"obs_var{suffix}"] = np.asarray(r.mean), np.asarray(r.var)
        arrays[f"obs_count{suffix}"] = np.asarray(r.count)
    ret = vec_normalize.ret_rms
    arrays["ret_mean"], arrays["ret_var"], arrays["ret_count"] = map(np.asarray, (ret.mean, ret.var, ret.count))
    meta = {"norm_obs": bool(vec_normalize.norm_obs), "norm_reward": bool(vec_normalize.norm_reward),
            "clip_obs": float(vec_normalize.clip_obs), "clip_reward": float(vec_normalize.clip_reward),
            "gamma": float(vec_normalize.gamma), "epsilon": float(vec_normalize.epsilon), "obs_keys": keys,
            "dict": isinstance(rms, dict)}
    arrays["meta"] = np.array(json.dumps(meta))
    with open(path, "wb") as f:
        np.savez(f, **arrays)


def load_vecnormalize_stats(path: str | Path) -> dict:
    """The content of a `save_vecnormalize` file: ``meta`` plus ``obs`` (key -> mean, var, count) and ``ret``."""
    try:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"][()]))
            obs = {}
            for key in meta["obs_keys"]:
                suffix = f"__{key}" if key else ""
                obs[key] = (z[f"obs_mean{suffix}"].copy(), z[f"obs_var{suffix}"].copy(), float(z[f"obs_count{suffix}"]))
            ret = (z["ret_mean"].copy(), z["ret_var"].copy(), float(z["ret_count"]))
    except FileNotFoundError:
        raise
    except Exception as exc:  # any failure to read it means the file is damaged
        raise ValueError(f"VecNormalize file {path} is truncated or corrupt ({type(exc).__name__}).") from exc
    return {"meta": meta, "obs": obs, "ret": ret}


def _restore_vecnormalize(vec_normalize: VecNormalize, stats: dict) -> None:
    for key, (mean, var, count) in stats["obs"].items():
        rms = vec_normalize.obs_rms[key] if key else vec_normalize.obs_rms
        if np.shape(rms.mean) != np.shape(mean):
            raise ValueError(f"VecNormalize statistics of shape {np.shape(mean)} do not fit observations of shape "
                             f"{np.shape(rms.mean)}.")
        rms.mean, rms.var, rms.count = mean, var, count
    vec_normalize.ret_rms.mean, vec_normalize.ret_rms.var, vec_normalize.ret_rms.count = stats["ret"]


def _wrap_normalize(venv: VecEnv, gamma: float, training: bool, stats: dict | None = None) -> VecNormalize:
    if stats is not None:
        m = stats["meta"]
        vn = VecNormalize(venv, training=training, norm_obs=m["norm_obs"], norm_reward=m["norm_reward"] and training,
                          clip_obs=m["clip_obs"], clip_reward=m["clip_reward"], gamma=m["gamma"], epsilon=m["epsilon"],
                          norm_obs_keys=[k for k in m["obs_keys"]] if m["dict"] else None)
        _restore_vecnormalize(vn, stats)
        return vn
    return VecNormalize(venv, training=training, norm_reward=training, gamma=gamma)


@dataclass
class ObsNormalizer:
    """VecNormalize's observation normalization from saved statistics (``key`` "" for Box observations)."""

    stats: dict[str, tuple[np.ndarray, np.ndarray, float]]
    clip_obs: float
    epsilon: float

    def _one(self, obs, key: str) -> np.ndarray:
        mean, var, _ = self.stats[key]
        return np.clip((obs - mean) / np.sqrt(var + self.epsilon), -self.clip_obs, self.clip_obs).astype(np.float32)

    def __call__(self, obs):
        if isinstance(obs, dict):
            return {k: self._one(v, k) if k in self.stats else v for k, v in obs.items()}
        return self._one(obs, "")

    @classmethod
    def from_file(cls, path: str | Path) -> ObsNormalizer | None:
        """The normalizer of a `save_vecnormalize` file, or None when it did not normalize observations."""
        s = load_vecnormalize_stats(path)
        if not s["meta"]["norm_obs"]:
            return None
        return cls(s["obs"], s["meta"]["clip_obs"], s["meta"]["epsilon"])


# -- building, saving and loading models -----------------------------------------------------------
def _build_model(config: dict, env: VecEnv, info: EnvInfo, seed: int, device: str,
                 tensorboard_log: str | None = None, verbose: int = 0) -> BaseAlgorithm:
    algo = config["algo"]
    policy, kwargs = _model_kwargs(algo, config["hyperparams"], info)
    if config["hyperparams"].get("residual_her"):
        from controllers.relabel import ResidualFinalGoalBuffer

        kwargs["replay_buffer_class"] = ResidualFinalGoalBuffer
        kwargs["replay_buffer_kwargs"] = {**(kwargs.get("replay_buffer_kwargs") or {}), "env_id": config["env_id"],
                                          "env_kwargs": dict(config.get("env_kwargs") or {})}
    try:
        model = ALGOS[algo](policy, env, seed=seed, device=device, verbose=verbose, tensorboard_log=tensorboard_log,
                            **kwargs)
    except (TypeError, ValueError, AssertionError, KeyError, AttributeError) as exc:
        raise ValueError(f"bad hyperparameters for {algo} on {config['env_id']}: {_one_line(exc)}.") from exc
    init_std = config["hyperparams"].get("actor_init_std")
    if init_std is not None:
        _start_actor_at_zero(model, float(init_std))
    return model


def _start_actor_at_zero(model: BaseAlgorithm, std: float) -> None:
    """Make a fresh SAC or TQC actor's Gaussian start at mean 0 with standard deviation ``std``
    (before the tanh) for every observation: its mean and log-std layers get zero weights.
    On a ``residual=True`` env the agent then starts as the base controller, with a little
    exploration around it (zero-initialized residual policies: Silver et al., 2018)."""
    actor = model.policy.actor
    if getattr(actor, "use_sde", False):
        raise ValueError("actor_init_std does not apply with use_sde: true.")
    with th.no_grad():
        for layer in (actor.mu, actor.log_std):
            layer.weight.zero_()
            layer.bias.zero_()
        actor.log_std.bias.fill_(math.log(std))


def _read_model_file(path: Path, device: str) -> tuple[dict, dict, dict | None]:
    """(the zip's JSON data as parsed text, tensors, extra torch variables): nothing is unpickled."""
    if not path.is_file():
        raise FileNotFoundError(f"model file {path} does not exist.")
    try:
        with zipfile.ZipFile(path) as archive:
            data = json.loads(archive.read("data").decode())
        _, params, variables = load_from_zip_file(path, load_data=False, device=device)
    except Exception as exc:  # BadZipFile, CRC errors, truncated tensors, missing members: all mean "damaged"
        raise ValueError(f"model file {path} is truncated or corrupt ({type(exc).__name__}); "
                         f"load another checkpoint or retrain.") from exc
    if not isinstance(data, dict) or not params:
        raise ValueError(f"model file {path} holds no SB3 model.")
    return data, params, variables


def _check_fits(path: Path, data: dict, algo: str, env_id: str, env_kwargs: dict, info: EnvInfo) -> None:
    module = str((data.get("policy_class") or {}).get("__module__", ""))
    found = next((a for a in ALGOS if f".{a}." in module), None)  # PPO's policies live in sb3's common module
    if found is not None and found != algo:
        raise ValueError(f"model file {path} holds a {found} model, but the run is {algo}.")
    space = data.get("observation_space") or {}
    is_dict = "Dict" in str(space.get(":type:", ""))
    shape = space.get("_shape")
    if space and (is_dict != info.obs_is_dict or (not is_dict and shape is not None
                                                  and tuple(shape) != info.obs_shape)):
        was = "dict" if is_dict else tuple(shape or ())
        now = "dict" if info.obs_is_dict else info.obs_shape
        raise ValueError(f"model file {path} was trained on observations {was}, but {env_id} with "
                         f"{env_kwargs or {}} gives {now}.")
    act = (data.get("action_space") or {}).get("_shape")
    if act is not None and int(np.prod(act)) != info.n_actions:
        raise ValueError(f"model file {path} was trained on {int(np.prod(act))} actions, but {env_id} with "
                         f"{env_kwargs or {}} takes {info.n_actions}.")


def _restore_model(model: BaseAlgorithm, path: Path, config: dict, info: EnvInfo, device: str) -> None:
    """Put the weights, optimizer states, torch variables and counters of ``path`` into ``model``."""
    data, params, variables = _read_model_file(path, device)
    _check_fits(path, data, config["algo"], config["env_id"], config.get("env_kwargs") or {}, info)
    try:
        model.set_parameters(params, exact_match=True, device=device)
        for name, value in (variables or {}).items():
            if value is not None:
                recursive_setattr(model, f"{name}.data", value.data)
    except (RuntimeError, ValueError, AttributeError, KeyError) as exc:
        raise ValueError(f"model file {path} does not fit the {config['algo']} network of its run's config "
                         f"(other layers or sizes: was it copied from another run?).") from exc
    for key in ("num_timesteps", "_n_updates", "_episode_num"):
        value = data.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            setattr(model, key, value)




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
        raise ValueError(f"replay buffer {path} is corrupt or does not fit this run ({_one_line(exc)}).") from None
    if isinstance(buf, HerReplayBuffer):
        if buf.env is None:
            buf.set_env(model.get_env())
        buf.truncate_last_trajectory()  # an episode cut by the checkpoint cannot be relabelled


def _save_model(model: BaseAlgorithm, path: Path) -> None:
    _atomic(path, model.save)


def save_checkpoint(model: BaseAlgorithm, run_dir: str | Path, replay_buffer: bool = True) -> Path:
    """Write a complete checkpoint at ``model.num_timesteps``; returns the model file's path.

    VecNormalize statistics and the replay buffer go first and the model zip last, each
    atomically, so a checkpoint whose zip exists is complete. Older replay buffers are
    deleted once the new checkpoint is in place (the model checkpoints are all kept)."""
    paths = _ckpt_paths(Path(run_dir), model.num_timesteps)
    vn = model.get_vec_normalize_env()
    if vn is not None:
        _atomic(paths["vecnormalize"], lambda tmp: save_vecnormalize(vn, tmp))
    has_buffer = replay_buffer and isinstance(model, OffPolicyAlgorithm) and model.replay_buffer is not None
    if has_buffer:
        _atomic(paths["replay_buffer"], lambda tmp: save_replay_buffer(model, tmp))
    _save_model(model, paths["model"])
    if has_buffer:
        for old in paths["replay_buffer"].parent.glob("rl_model_replay_buffer_*_steps.npz"):
            if old != paths["replay_buffer"]:
                old.unlink(missing_ok=True)
    return paths["model"]


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
            _atomic(self.run_dir / "best_vecnormalize.npz", lambda tmp: save_vecnormalize(vn, tmp))
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
            warnings.warn(f"{path} holds evaluations of another size (another --eval-episodes); it is kept as "
                          f"{_set_aside(path).name} and the evaluation history starts afresh.", stacklevel=2)
        if self.evaluations_results:
            self.best_mean_reward = max(float(np.mean(r)) for r in self.evaluations_results)

    def _on_step(self) -> bool:
        if self.eval_freq > 0 and self.n_calls % self.eval_freq == 0:
            self.eval_env.seed(self.eval_seed)
        return super()._on_step()


@contextlib.contextmanager
def _torch_threads(n: int | None):
    """Run with ``n`` torch CPU threads (None: unchanged), restoring the previous count afterwards."""
    previous = th.get_num_threads()
    if n:
        th.set_num_threads(int(n))
    try:
        yield
    finally:
        th.set_num_threads(previous)


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
        raise ValueError(f"{run_dir} is a {config['algo']} run of {config['env_id']}, not {algo} on {env_id}.")
    saved_kwargs = config.get("env_kwargs") or {}
    wanted = {**default_env_kwargs(algo, env_id), **_unsqueeze_yaml(dict(env_kwargs or {}))}
    if env_kwargs and _plain(wanted) != saved_kwargs:
        raise ValueError(f"resuming keeps the run's env kwargs {saved_kwargs}; drop --env-kwargs or start a new run.")
    hp = config["hyperparams"]
    if overrides:
        checked = load_hyperparams(algo, env_id, overrides)
        changed = sorted(k for k in overrides if k != "n_timesteps" and checked.get(k) != hp.get(k))
        if changed:
            raise ValueError(f"resuming keeps the run's hyperparameters ({', '.join(changed)} differ); "
                             f"drop them or start a new run.")
    if n_envs is not None and n_envs != config.get("n_envs", 1):
        raise ValueError(f"resuming keeps the run's n_envs ({config.get('n_envs', 1)}); drop --n-envs or start a new "
                         f"run.")
    if normalize is not None and bool(normalize) != bool(config.get("normalize")):
        raise ValueError(f"resuming keeps the run's normalize setting ({bool(config.get('normalize'))}).")
    return config


def _prepare(folder: Path, algo: str, env_id: str, env_kwargs: dict | None, hyperparams: dict | None,
             seed: int | None, n_envs: int | None, normalize: bool | None, resume: bool,
             exp_id: int | None) -> tuple[Path | None, dict, int]:
    """(run folder or None for a new run, config, steps already done)."""
    if not resume:
        if exp_id is not None:
            raise ValueError("exp_id picks a run to resume: use it with resume=True.")
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
        raise FileNotFoundError(f"{run_dir} has no checkpoint to resume from.")
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
) -> TrainResult:
    """Train ``algo`` on ``env_id`` for ``n_timesteps`` env steps in total, into a new run folder.

    ``n_timesteps`` None takes the budget of ``hyperparams.yml`` (when resuming, the run's).
    ``eval_freq`` and ``save_freq`` count env steps over all ``n_envs`` envs (0 turns them
    off; a final checkpoint is always written); None gives 10,000 (and ``eval_episodes``
    None 20), or the run's own settings when resuming. ``resume=True`` continues run ``exp_id``
    (the latest when None) from its newest checkpoint up to ``n_timesteps`` in total, with
    the run's saved settings; its envs and model are reseeded with ``seed + steps done``.
    ``torch_threads`` sets torch's CPU threads during training (1: these small networks
    gain nothing from more, and parallel runs do not oversubscribe the cores; None leaves
    it), restored afterwards.
    """
    algo, env_id, folder = algo_of(algo), env_id_of(env_id), Path(folder)
    if vec_env not in ("dummy", "subproc"):
        raise ValueError(f"unknown vec env {vec_env!r}; choose dummy or subproc.")
    for name, value, lo in (("n_envs", n_envs, 1), ("eval_freq", eval_freq, 0), ("eval_episodes", eval_episodes, 1),
                            ("save_freq", save_freq, 0), ("n_timesteps", n_timesteps, 1)):
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < lo):
            raise ValueError(f"{name} must be an integer >= {lo}, got {value!r}.")
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"{folder} is not a folder.")
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
        raise ValueError("normalize works on vector observations; image observations are scaled by the CnnPolicy.")
    n_envs = int(config["n_envs"])
    run_seed = int(config["seed"]) + start_steps
    gamma = float(config["hyperparams"].get("gamma", 0.99))
    config.update({"n_timesteps": target, "vec_env": vec_env, "device": device, "eval_freq": eval_freq,
                   "eval_episodes": eval_episodes, "save_freq": save_freq,
                   "steps_per_episode": info.steps_per_episode, "her": info.goal_conditioned and algo in OFF_POLICY,
                   "policy": _policy_name(_model_kwargs(algo, config["hyperparams"], info)[0]),
                   "versions": _versions()})
    config["hyperparams"]["n_timesteps"] = target  # one budget in the file, not also hyperparams.yml's default

    with _torch_threads(torch_threads), contextlib.ExitStack() as closing:
        env = _vec_env(env_id, env_kwargs, n_envs, run_seed, vec_env)
        closing.callback(env.close)
        if config["normalize"]:
            stats = None
            if resume:
                vpath = _ckpt_paths(run_dir, start_steps)["vecnormalize"]
                if not vpath.is_file():
                    raise FileNotFoundError(f"checkpoint {start_steps} of {run_dir} lacks its VecNormalize file.")
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
        _write_text(run_dir / CONFIG, yaml.safe_dump(_plain(config), sort_keys=False))

        callbacks, eval_cb = _callbacks(run_dir, config, n_envs, eval_freq, eval_episodes, save_freq, verbose)
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
            _atomic(run_dir / "vecnormalize.npz", lambda tmp: save_vecnormalize(vn, tmp))
        _save_model(model, run_dir / "model.zip")

    def finite(x: float | None) -> float | None:
        return float(x) if x is not None and math.isfinite(x) else None

    return TrainResult(run_dir=run_dir, algo=algo, env_id=env_id, num_timesteps=int(model.num_timesteps),
                       start_timesteps=start_steps, wall_s=wall,
                       best_mean_reward=finite(eval_cb.best_mean_reward) if eval_cb else None,
                       last_mean_reward=finite(eval_cb.last_mean_reward) if eval_cb else None,
                       checkpoints=checkpoint_steps(run_dir), model=model)


# -- loading runs ----------------------------------------------------------------------------------
@dataclass
class LoadedRun:
    """A trained model rebuilt from its run folder."""

    run_dir: Path
    config: dict
    model: BaseAlgorithm
    model_path: Path
    normalizer: ObsNormalizer | None
    steps_per_episode: int

    @property
    def num_timesteps(self) -> int:
        return int(self.model.num_timesteps)

    @property
    def training_episodes(self) -> float:
        """Simulated episodes spent in training: timesteps over steps per episode."""
        return self.num_timesteps / max(self.steps_per_episode, 1)

    def predict(self, obs) -> np.ndarray:
        """The deterministic action for one observation (normalized as in training)."""
        if self.normalizer is not None:
            obs = self.normalizer(obs)
        return self.model.predict(obs, deterministic=True)[0]


def _model_file(run_dir: Path, best: bool, steps: int | None) -> tuple[Path, Path]:
    """(model zip, its VecNormalize file) for the final, best or a given checkpoint's model."""
    if best and steps is not None:
        raise ValueError("choose either the best model or a checkpoint, not both.")
    if best:
        path = run_dir / "best_model.zip"
        if not path.is_file():
            raise FileNotFoundError(f"{run_dir} has no best model (its periodic evaluation was off or never ran).")
        return path, run_dir / "best_vecnormalize.npz"
    if steps is not None:
        paths = _ckpt_paths(run_dir, int(steps))
        if not paths["model"].is_file():
            have = checkpoint_steps(run_dir)
            raise FileNotFoundError(f"{run_dir} has no checkpoint at {steps} steps; checkpoints: "
                                    f"{', '.join(map(str, have)) or 'none'}.")
        return paths["model"], paths["vecnormalize"]
    if (run_dir / "model.zip").is_file():
        return run_dir / "model.zip", run_dir / "vecnormalize.npz"
    have = checkpoint_steps(run_dir)
    if not have:  # a run killed before its first checkpoint
        raise FileNotFoundError(f"{run_dir} has neither model.zip nor a checkpoint.")
    return _model_file(run_dir, False, have[-1])


def load_run(run_dir: str | Path, best: bool = False, checkpoint_steps: int | None = None,
             device: str = "cpu") -> LoadedRun:
    """Rebuild the model of ``run_dir`` (final, ``best`` or the checkpoint at ``checkpoint_steps``), safely."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"run folder {run_dir} does not exist.")
    config = read_config(run_dir)
    config["algo"], config["env_id"] = algo_of(config["algo"]), env_id_of(config["env_id"])
    model_path, vn_path = _model_file(run_dir, best, checkpoint_steps)
    env_kwargs = dict(config.get("env_kwargs") or {})
    info = probe_env(config["env_id"], env_kwargs)
    env = _vec_env(config["env_id"], env_kwargs, 1, int(config.get("seed", 0)), "dummy")
    try:
        model = _build_model(config, env, info, int(config.get("seed", 0)), device)
        _restore_model(model, model_path, config, info, device)
    finally:
        env.close()
    normalizer = None
    if config.get("normalize"):
        if not vn_path.is_file():
            raise FileNotFoundError(f"{model_path} was trained with VecNormalize, but {vn_path.name} is missing.")
        normalizer = ObsNormalizer.from_file(vn_path)
    return LoadedRun(run_dir=run_dir, config=config, model=model, model_path=model_path, normalizer=normalizer,
                     steps_per_episode=int(config.get("steps_per_episode") or info.steps_per_episode))


def policy_controller(run_dir: str | Path, best: bool = False, checkpoint_steps: int | None = None,
                      device: str = "cpu") -> Controller:
    """The run's deterministic policy as a `controllers.evaluation.Controller`."""
    run = load_run(run_dir, best=best, checkpoint_steps=checkpoint_steps, device=device)
    which = "best" if best else (f"@{checkpoint_steps}" if checkpoint_steps is not None else "final")
    name = f"{run.config['algo'].upper()} {run.run_dir.name} ({which})"
    return Controller(name, lambda env, obs: run.predict(obs), training_episodes=run.training_episodes,
                      info={"run_dir": str(run.run_dir), "model": str(run.model_path),
                            "num_timesteps": run.num_timesteps, "run": run})


__all__ = [
    "ALGOS", "EVAL_SEED", "HYPERPARAMS_FILE", "OFF_POLICY", "LinearDecay", "LoadedRun", "ObsNormalizer", "TrainResult",
    "algo_of", "checkpoint_steps", "default_env_kwargs", "env_id_of", "env_name_of", "find_run", "load_hyperparams",
    "load_run", "load_replay_buffer", "load_vecnormalize_stats", "policy_controller", "probe_env", "read_config",
    "save_checkpoint", "save_replay_buffer", "save_vecnormalize", "train", "valid_hyperparams",
]
