"""Making armlab envs on the controllers floor: robot_env's ids, with the keywords controllers serve.

`make` and `make_vec_env` are `robot_env.make` and `robot_env.make_vec_env` after importing
`controllers.residual` (which serves ``residual`` and ``residual_mode``); the vec env's factory is
this module's `make`, so ``SubprocVecEnv`` workers (``spawn`` and ``forkserver`` too) import it and
can build residual envs as well.
"""

from __future__ import annotations

import gymnasium as gym

import controllers.residual  # noqa: F401  (serves residual=True)
from robot_env import registry


def make(env_id: str, **kwargs) -> gym.Env:
    """``gym.make`` for armlab ids, residual envs included, with a clear error for unknown ids."""
    return registry.make(env_id, **kwargs)


def make_vec_env(env_id: str, n_envs: int = 1, seed: int = 0, subproc: bool = False, start_method: str | None = None,
                 **env_kwargs):
    """An SB3 vec env of ``n_envs`` copies (see `robot_env.make_vec_env`) whose workers can build residual envs."""
    return registry.make_vec_env(env_id, n_envs=n_envs, seed=seed, subproc=subproc, start_method=start_method,
                                 factory=make, **env_kwargs)
