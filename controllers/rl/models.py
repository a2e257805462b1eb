"""Building a model from its run's config and restoring it from a zip safely: only tensors are read
(``torch.load(weights_only=True)``), the zip's JSON is parsed as plain JSON and checked against the env."""

from __future__ import annotations

import json
import math
import zipfile
from pathlib import Path

import numpy as np
import torch as th
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.save_util import recursive_setattr
from stable_baselines3.common.utils import get_device
from stable_baselines3.common.vec_env import VecEnv

from controllers.rl.normalize import EnvInfo
from controllers.rl.policies import _model_kwargs
from controllers.rl.runs import ALGOS, _one_line
from robot_env.io.errors import ConfigError, DataError, MissingPathError


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
        raise ConfigError(f"bad hyperparameters for {algo} on {config['env_id']}: {_one_line(exc)}.") from exc
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
        raise ConfigError("actor_init_std does not apply with use_sde: true.")
    with th.no_grad():
        for layer in (actor.mu, actor.log_std):
            layer.weight.zero_()
            layer.bias.zero_()
        actor.log_std.bias.fill_(math.log(std))


def _read_model_file(path: Path, device: str) -> tuple[dict, dict, dict | None]:
    """(the zip's JSON data as parsed text, tensors, extra torch variables): nothing is unpickled."""
    if not path.is_file():
        raise MissingPathError(f"model file {path} does not exist.")
    try:
        with zipfile.ZipFile(path) as archive:
            data = json.loads(archive.read("data").decode())
            params, variables = _read_tensors(archive, device)
    except Exception as exc:  # BadZipFile, CRC errors, truncated tensors, missing members: all mean "damaged"
        raise DataError(f"model file {path} is truncated or corrupt ({type(exc).__name__}); "
                         f"load another checkpoint or retrain.") from exc
    if not isinstance(data, dict) or not params:
        raise DataError(f"model file {path} holds no SB3 model.")
    return data, params, variables


def _read_tensors(archive: zipfile.ZipFile, device: str) -> tuple[dict, dict | None]:
    """SB3's ``load_from_zip_file(load_data=False)`` with ``weights_only=True`` passed here, not left to a default:
    each ``.pth`` member is a state dict named after the file, except ``pytorch_variables.pth`` (``tensors.pth`` before
    SB3 0.9). A member holding a pickled object that is not a tensor container is refused, never executed."""
    params, variables = {}, None
    for name in archive.namelist():
        stem, ext = name.rsplit(".", 1) if "." in name else (name, "")
        if ext != "pth":
            continue
        with archive.open(name) as member:
            obj = th.load(member, map_location=get_device(device), weights_only=True)
        if name in ("pytorch_variables.pth", "tensors.pth"):
            variables = obj
        else:
            params[stem] = obj
    return params, variables


def _check_fits(path: Path, data: dict, algo: str, env_id: str, env_kwargs: dict, info: EnvInfo) -> None:
    module = str((data.get("policy_class") or {}).get("__module__", ""))
    found = next((a for a in ALGOS if f".{a}." in module), None)  # PPO's policies live in sb3's common module
    if found is not None and found != algo:
        raise DataError(f"model file {path} holds a {found} model, but the run is {algo}.")
    space = data.get("observation_space") or {}
    is_dict = "Dict" in str(space.get(":type:", ""))
    shape = space.get("_shape")
    if space and (is_dict != info.obs_is_dict or (not is_dict and shape is not None
                                                  and tuple(shape) != info.obs_shape)):
        was = "dict" if is_dict else tuple(shape or ())
        now = "dict" if info.obs_is_dict else info.obs_shape
        raise DataError(f"model file {path} was trained on observations {was}, but {env_id} with "
                         f"{env_kwargs or {}} gives {now}.")
    act = (data.get("action_space") or {}).get("_shape")
    if act is not None and int(np.prod(act)) != info.n_actions:
        raise DataError(f"model file {path} was trained on {int(np.prod(act))} actions, but {env_id} with "
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
        raise DataError(f"model file {path} does not fit the {config['algo']} network of its run's config "
                         f"(other layers or sizes: was it copied from another run?).") from exc
    for key in ("num_timesteps", "_n_updates", "_episode_num"):
        value = data.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            setattr(model, key, value)
