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

Importing the package itself is light: the names below (`World`, `ReachEnv`, `Camera`, ...)
load PyBullet and Gymnasium when first used, and the env ids are registered as soon as
Gymnasium is imported (at once if it already is). So `robot_env.io`, the plumbing shared with
`generative` and the command line (atomic writes, the dataset format, video files), can be
imported without the simulator.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

STAGES = ("fixed", "velocity", "state")  #: the lecture's stages (`robot_env.tasks.STAGES`)
OPEN_LOOP_IDS = {stage: f"armlab/ReachSignal{stage.capitalize()}-v0" for stage in STAGES}
CLOSED_LOOP_IDS = {stage: f"armlab/Reach{stage.capitalize()}-v0" for stage in STAGES}
ENV_IDS = tuple(OPEN_LOOP_IDS.values()) + tuple(CLOSED_LOOP_IDS.values())

#: public name -> the module that defines it, imported on first use
_LAZY = {
    "Camera": "robot_env.camera", "named_camera": "robot_env.camera",
    "ReachEnv": "robot_env.envs", "ReachSignalEnv": "robot_env.envs",
    "Randomization": "robot_env.randomization",
    "ROBOTS": "robot_env.robots", "Arm": "robot_env.robots", "RobotSpec": "robot_env.robots",
    "World": "robot_env.sim",
    "Context": "robot_env.tasks", "ReachTask": "robot_env.tasks",
    "make": "robot_env.registry", "make_vec_env": "robot_env.registry",
}

if TYPE_CHECKING:
    from robot_env.camera import Camera, named_camera
    from robot_env.envs import ReachEnv, ReachSignalEnv
    from robot_env.randomization import Randomization
    from robot_env.registry import make, make_vec_env
    from robot_env.robots import ROBOTS, Arm, RobotSpec
    from robot_env.sim import World
    from robot_env.tasks import Context, ReachTask


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'robot_env' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


def _quiet_import(loader) -> None:
    """An extension module runs its C init in ``create_module``: PyBullet's prints a build banner there."""
    from robot_env._quiet import quiet_c_output

    create_module = loader.create_module

    def create_quietly(spec):
        with quiet_c_output():
            return create_module(spec)

    loader.create_module = create_quietly


def _then_register(loader) -> None:
    exec_module = loader.exec_module

    def exec_then_register(module):
        exec_module(module)
        from robot_env.registry import register

        register()

    loader.exec_module = exec_then_register


class _OnFirstImport(importlib.abc.MetaPathFinder):
    """Wraps the first import of ``pybullet`` (quiet) and of ``gymnasium`` (then registers armlab's env ids);
    it removes itself once both are loaded."""

    wrappers = {"pybullet": _quiet_import, "gymnasium": _then_register}

    def __init__(self) -> None:
        self.pending = {name for name in self.wrappers if name not in sys.modules}

    def find_spec(self, fullname, path=None, target=None):
        if fullname not in self.pending:
            return None
        self.pending.discard(fullname)
        if not self.pending:
            sys.meta_path.remove(self)
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is not None and spec.loader is not None and hasattr(spec.loader, "exec_module"):
            self.wrappers[fullname](spec.loader)
        return spec


_hook = _OnFirstImport()
if _hook.pending:
    sys.meta_path.insert(0, _hook)
if "gymnasium" in sys.modules:
    from robot_env.registry import register as _register

    _register()


__all__ = [
    "ENV_IDS", "OPEN_LOOP_IDS", "CLOSED_LOOP_IDS", "ROBOTS", "STAGES", "Arm", "Camera", "Context", "Randomization",
    "ReachEnv", "ReachSignalEnv", "ReachTask", "RobotSpec", "World", "make", "make_vec_env", "named_camera",
]
