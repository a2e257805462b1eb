"""armlab's simulation layer: PyBullet worlds, arms, the lecture's reach task and its Gymnasium envs.

Importing this package registers six env ids:

========================================  ==========  =====================================
id                                        loop        stage
========================================  ==========  =====================================
``armlab/ReachSignalFixed-v0``            open        j, v, p fixed
``armlab/ReachSignalVelocity-v0``         open        v drawn per episode
``armlab/ReachSignalState-v0``            open        j, v, p and dynamics drawn
``armlab/ReachFixed-v0``                  closed      j, v, p fixed
``armlab/ReachVelocity-v0``               closed      v drawn per episode
``armlab/ReachState-v0``                  closed      j, v, p and dynamics drawn
========================================  ==========  =====================================

Cameras (pixel K, OpenCV-frame extrinsics, metric depth, decoded segmentation) live in
`robot_env.camera`, rollout videos in `robot_env.video`.
"""

from __future__ import annotations

import functools

import gymnasium as gym

from robot_env._quiet import quiet_c_output

with quiet_c_output():
    import pybullet  # noqa: F401  (first import prints a build banner)

from robot_env.camera import Camera, named_camera
from robot_env.envs import ReachEnv, ReachSignalEnv
from robot_env.randomization import Randomization
from robot_env.robots import ROBOTS, Arm, RobotSpec
from robot_env.sim import World
from robot_env.tasks import STAGES, Context, ReachTask

__version__ = "0.1.0"

OPEN_LOOP_IDS = {stage: f"armlab/ReachSignal{stage.capitalize()}-v0" for stage in STAGES}
CLOSED_LOOP_IDS = {stage: f"armlab/Reach{stage.capitalize()}-v0" for stage in STAGES}
ENV_IDS = tuple(OPEN_LOOP_IDS.values()) + tuple(CLOSED_LOOP_IDS.values())


def _register() -> None:
    for stage in STAGES:
        if OPEN_LOOP_IDS[stage] not in gym.registry:
            gym.register(OPEN_LOOP_IDS[stage], entry_point="robot_env.envs:ReachSignalEnv", kwargs={"stage": stage})
        if CLOSED_LOOP_IDS[stage] not in gym.registry:
            gym.register(CLOSED_LOOP_IDS[stage], entry_point="robot_env.envs:ReachEnv", kwargs={"stage": stage})


_register()


def make(env_id: str, **kwargs) -> gym.Env:
    """``gym.make`` for armlab ids with a clear error for unknown ones."""
    if env_id not in ENV_IDS:
        raise ValueError(f"unknown env id {env_id!r}; armlab ids: {', '.join(ENV_IDS)}.")
    return gym.make(env_id, **kwargs)


def make_vec_env(env_id: str, n_envs: int = 1, seed: int = 0, subproc: bool = False, start_method: str | None = None,
                 **env_kwargs):
    """An SB3 vec env of ``n_envs`` copies; the env factory pickles by reference, so
    ``SubprocVecEnv`` works with ``spawn`` and ``forkserver`` (each worker imports
    ``robot_env`` and owns its own physics client)."""
    from stable_baselines3.common.env_util import make_vec_env as sb3_make_vec_env
    from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv

    factory = functools.partial(make, env_id, **env_kwargs)
    vec_cls = SubprocVecEnv if subproc else DummyVecEnv
    vec_kwargs = {"start_method": start_method} if subproc and start_method else None
    return sb3_make_vec_env(factory, n_envs=n_envs, seed=seed, vec_env_cls=vec_cls, vec_env_kwargs=vec_kwargs)


__all__ = [
    "ENV_IDS", "OPEN_LOOP_IDS", "CLOSED_LOOP_IDS", "ROBOTS", "STAGES", "Arm", "Camera", "Context", "Randomization",
    "ReachEnv", "ReachSignalEnv", "ReachTask", "RobotSpec", "World", "make", "make_vec_env", "named_camera",
]
