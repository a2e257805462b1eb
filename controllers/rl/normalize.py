"""What training needs to know about an env (`probe_env`), vec envs, and VecNormalize statistics saved
as ``.npz`` (no pickle) with the deployment-side `ObsNormalizer`."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import gymnasium as gym
import numpy as np
from stable_baselines3.common.preprocessing import is_image_space
from stable_baselines3.common.vec_env import VecEnv, VecNormalize

from controllers import envs
from controllers.rl.runs import _one_line, env_id_of
from robot_env.io.errors import ConfigError, DataError


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
        raise ConfigError(f"bad env kwargs for {env_id}: {_one_line(exc)}.") from exc
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
        raise DataError(f"VecNormalize file {path} is truncated or corrupt ({type(exc).__name__}).") from exc
    return {"meta": meta, "obs": obs, "ret": ret}


def _restore_vecnormalize(vec_normalize: VecNormalize, stats: dict) -> None:
    for key, (mean, var, count) in stats["obs"].items():
        rms = vec_normalize.obs_rms[key] if key else vec_normalize.obs_rms
        if np.shape(rms.mean) != np.shape(mean):
            raise DataError(f"VecNormalize statistics of shape {np.shape(mean)} do not fit observations of shape "
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
