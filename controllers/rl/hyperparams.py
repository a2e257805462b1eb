"""Hyperparameters: the defaults of ``controllers/hyperparams.yml``, overrides parsed without eval, checked
values with one-sentence errors, and the ``lin_<start>[@<hold>]`` schedules."""

from __future__ import annotations

import ast
import contextlib
import copy
import inspect
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch as th
import yaml

import robot_env
from controllers.rl.runs import ALGOS, OFF_POLICY, algo_of, env_id_of, env_name_of
from robot_env.io.errors import ConfigError, ParamError

HYPERPARAMS_FILE = Path(__file__).parent.parent / "hyperparams.yml"  #: controllers/hyperparams.yml

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

# -- hyperparameters -------------------------------------------------------------------------------
def _policy_kwargs_from_str(text: str) -> dict:
    """``dict(net_arch=[64, 64], activation_fn=nn.ReLU)`` or a YAML mapping, parsed without eval."""
    text = text.strip()
    if text.startswith("{"):
        value = yaml.safe_load(text)
        if not isinstance(value, dict):
            raise ConfigError(f"policy_kwargs must be a mapping, got {text!r}.")
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
        raise ConfigError(f"cannot read policy_kwargs {text!r}: use dict(key=value, ...) or {{key: value}}.") from exc
    if not isinstance(value, dict):
        raise ConfigError(f"policy_kwargs must be a mapping, got {text!r}.")
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
        raise ConfigError(f"unknown activation_fn {name!r}; choose one of {', '.join(sorted(_ACTIVATIONS))}.")
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
            raise ConfigError(f"hyperparameter {key} must be an integer >= {lo}, got {value!r}.")
    elif key in _FLOAT_HP:
        lo, hi = _FLOAT_HP[key]
        if not _is_number(value) or not lo <= value <= hi:
            raise ConfigError(f"hyperparameter {key} must be a number in [{lo}, {hi}], got {value!r}.")
    elif key in _SCHEDULE_HP:
        ok = _is_number(value) and value > 0 or (key == "clip_range_vf" and value is None)
        if isinstance(value, str) and value.startswith("lin_"):
            with contextlib.suppress(ValueError):
                ok = isinstance(parse_schedule(value), LinearDecay)  # ValueError when malformed
        if not ok:
            raise ConfigError(f"hyperparameter {key} must be a positive number, 'lin_<number>' or "
                             f"'lin_<number>@<fraction in [0, 1)>', got {value!r}.")
    elif key in _BOOL_HP:
        if not isinstance(value, bool):
            raise ConfigError(f"hyperparameter {key} must be true or false, got {value!r}.")
    elif key == "ent_coef":
        if algo == "ppo":
            ok = _is_number(value) and value >= 0
        else:
            ok = _is_number(value) and value >= 0 or isinstance(value, str) and value.startswith("auto")
        if not ok:
            what = "a number >= 0" if algo == "ppo" else "a number >= 0, 'auto' or 'auto_<number>'"
            raise ConfigError(f"hyperparameter ent_coef must be {what}, got {value!r}.")
    elif key == "train_freq":
        ok = isinstance(value, int) and not isinstance(value, bool) and value >= 1
        if isinstance(value, (list, tuple)) and len(value) == 2:
            ok = isinstance(value[0], int) and value[0] >= 1 and value[1] in ("step", "episode")
        if not ok:
            raise ConfigError(f"hyperparameter train_freq must be an integer >= 1 or [n, step|episode], got {value!r}.")
    elif key == "noise_type":
        if value not in (None, "normal", "ornstein-uhlenbeck"):
            raise ConfigError(f"hyperparameter noise_type must be normal or ornstein-uhlenbeck, got {value!r}.")
    elif key == "policy":
        if value not in ("MlpPolicy", "MultiInputPolicy", "CnnPolicy"):
            raise ConfigError(f"hyperparameter policy must be MlpPolicy, MultiInputPolicy or CnnPolicy, got {value!r}.")


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
        raise ParamError("env_kwargs", "env_kwargs is not a hyperparameter: pass env settings with {name}.")
    merged.update(overrides)
    if isinstance(merged.get("policy_kwargs"), str):
        merged["policy_kwargs"] = _policy_kwargs_from_str(merged["policy_kwargs"])
    valid = valid_hyperparams(algo)
    for key, value in merged.items():
        if key not in valid:
            raise ConfigError(f"unknown hyperparameter {key!r} for {algo}; valid names: {', '.join(valid)}.")
        _check_value(algo, key, value)
    if merged.get("policy_kwargs") is not None and not isinstance(merged["policy_kwargs"], dict):
        raise ConfigError(f"policy_kwargs must be a mapping such as {{net_arch: [64, 64]}}, got "
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


def parse_schedule(value):
    """A ``LinearDecay`` for ``lin_<start>[@<hold>]``; ValueError for a malformed one; others as given."""
    if isinstance(value, str) and value.startswith("lin_"):
        start, _, hold = value[4:].partition("@")
        start, hold = float(start), float(hold) if hold else 0.0
        if not (start > 0 and math.isfinite(start) and 0.0 <= hold < 1.0):
            raise ConfigError(f"bad schedule {value!r}: 'lin_<start>[@<hold>]' needs start > 0 and 0 <= hold < 1.")
        return LinearDecay(start, hold)
    return value
