"""The env ids in Gymnasium's registry, and `make` / `make_vec_env` for them."""

from __future__ import annotations

import functools
from collections.abc import Callable

import gymnasium as gym

from robot_env import CLOSED_LOOP_IDS, ENV_IDS, OPEN_LOOP_IDS, STAGES
from robot_env.io.errors import ConfigError


def register() -> None:
    """Register armlab's six env ids (idempotent; `import robot_env` does it once Gymnasium is loaded)."""
    for stage in STAGES:
        if OPEN_LOOP_IDS[stage] not in gym.registry:
            gym.register(OPEN_LOOP_IDS[stage], entry_point="robot_env.envs:ReachSignalEnv", kwargs={"stage": stage})
        if CLOSED_LOOP_IDS[stage] not in gym.registry:
            gym.register(CLOSED_LOOP_IDS[stage], entry_point="robot_env.envs:ReachEnv", kwargs={"stage": stage})


def make(env_id: str, **kwargs) -> gym.Env:
    """``gym.make`` for armlab ids with a clear error for unknown ones."""
    if env_id not in ENV_IDS:
        raise ConfigError(f"unknown env id {env_id!r}; armlab ids: {', '.join(ENV_IDS)}.")
    return gym.make(env_id, **kwargs)


def make_vec_env(env_id: str, n_envs: int = 1, seed: int = 0, subproc: bool = False, start_method: str | None = None,
                 factory: Callable[..., gym.Env] | None = None, **env_kwargs):
    """An SB3 vec env of ``n_envs`` copies; the env factory (``factory(env_id, **env_kwargs)``, `make` by
    default) pickles by reference, so ``SubprocVecEnv`` works with ``spawn`` and ``forkserver`` (each
    worker imports the factory's module and owns its own physics client)."""
    from stable_baselines3.common.env_util import make_vec_env as sb3_make_vec_env
    from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv

    factory = functools.partial(factory or make, env_id, **env_kwargs)
    vec_cls = SubprocVecEnv if subproc else DummyVecEnv
    vec_kwargs = {"start_method": start_method} if subproc and start_method else None
    return sb3_make_vec_env(factory, n_envs=n_envs, seed=seed, vec_env_cls=vec_cls, vec_env_kwargs=vec_kwargs)
