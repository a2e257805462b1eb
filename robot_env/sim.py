"""`World`: one PyBullet physics client per instance, bodies addressed by name.

No global pybullet state is touched: every call goes to this world's own client
(``physicsClientId``), so any number of worlds can live in one process and each
``SubprocVecEnv`` worker owns its own.
"""

from __future__ import annotations

import os
from pathlib import Path

import pybullet as pb
import pybullet_data
from pybullet_utils import bullet_client

from robot_env._quiet import quiet_c_output
from robot_env.io.errors import ConfigError, DeviceError


class World:
    """A PyBullet simulation with its own client.

    Args:
        timestep: physics step in seconds (``1/240`` is PyBullet's default).
        gravity: z component of gravity in m/s^2.
        gui: connect with the GUI instead of ``DIRECT`` (needs a display).
        solver_iterations: PGS solver iterations; ``None`` keeps PyBullet's default (50).
        floor: add a ground plane at z = 0.
    """

    def __init__(
        self,
        timestep: float = 1.0 / 240.0,
        gravity: float = -9.81,
        gui: bool = False,
        solver_iterations: int | None = None,
        floor: bool = True,
    ) -> None:
        if not timestep > 0:
            raise ConfigError(f"timestep must be positive, got {timestep!r}.")
        if gui and not os.environ.get("DISPLAY"):
            raise DeviceError(
                "render_mode='human' opens the PyBullet GUI, which needs a display; "
                "none is set (DISPLAY is empty). Use render_mode='rgb_array' on a headless machine."
            )
        with quiet_c_output():  # DIRECT connections print "argv[0]="
            self.client = bullet_client.BulletClient(connection_mode=pb.GUI if gui else pb.DIRECT)
        self.id: int = self.client._client
        self.timestep = float(timestep)
        self._bodies: dict[str, int] = {}
        self._states: list[int] = []
        c = self.client
        c.setAdditionalSearchPath(pybullet_data.getDataPath())
        c.setTimeStep(self.timestep)
        c.setGravity(0.0, 0.0, gravity)
        if solver_iterations is not None:
            c.setPhysicsEngineParameter(numSolverIterations=int(solver_iterations))
        if gui:
            c.configureDebugVisualizer(pb.COV_ENABLE_GUI, 0)
        if floor:
            self.load_urdf("floor", "plane.urdf", fixed=True)

    # -- bodies -----------------------------------------------------------------
    def load_urdf(
        self,
        name: str,
        path: str | Path,
        position=(0.0, 0.0, 0.0),
        orientation=(0.0, 0.0, 0.0, 1.0),
        fixed: bool = True,
        flags: int = 0,
    ) -> int:
        """Load a URDF under ``name`` and return its body id."""
        if name in self._bodies:
            raise ValueError(f"a body named {name!r} is already in this world.")
        body = self.client.loadURDF(
            str(path), list(position), list(orientation), useFixedBase=fixed, flags=flags
        )
        self._bodies[name] = body
        return body

    def add_marker(self, name: str, radius: float, rgba=(0.1, 0.8, 0.1, 0.8), position=(0, 0, 0)) -> int:
        """Add a visual-only sphere (no collision, no mass) such as a target marker."""
        visual = self.client.createVisualShape(pb.GEOM_SPHERE, radius=radius, rgbaColor=list(rgba))
        body = self.client.createMultiBody(
            baseMass=0.0, baseCollisionShapeIndex=-1, baseVisualShapeIndex=visual, basePosition=list(position)
        )
        self._bodies[name] = body
        return body

    def move_body(self, name: str, position, orientation=(0.0, 0.0, 0.0, 1.0)) -> None:
        self.client.resetBasePositionAndOrientation(self._bodies[name], list(position), list(orientation))

    def body(self, name: str) -> int:
        """Body id of ``name``."""
        try:
            return self._bodies[name]
        except KeyError:
            raise KeyError(f"no body named {name!r}; bodies: {sorted(self._bodies)}") from None

    @property
    def bodies(self) -> dict[str, int]:
        return dict(self._bodies)

    # -- stepping and state -------------------------------------------------------
    def step(self, n: int = 1) -> None:
        """Advance the physics by ``n`` steps."""
        step, cid = pb.stepSimulation, self.id
        for _ in range(n):
            step(physicsClientId=cid)

    def save_state(self) -> int:
        """Snapshot positions, velocities and contacts in memory; returns a handle."""
        sid = self.client.saveState()
        self._states.append(sid)
        return sid

    def restore_state(self, sid: int) -> None:
        self.client.restoreState(stateId=sid)

    def drop_state(self, sid: int) -> None:
        if sid in self._states:
            self._states.remove(sid)
            self.client.removeState(sid)

    # -- lifetime -------------------------------------------------------------------
    @property
    def connected(self) -> bool:
        return self.id >= 0 and pb.isConnected(physicsClientId=self.id)

    def close(self) -> None:
        """Disconnect the client; safe to call twice."""
        if self.id >= 0:
            try:
                if pb.isConnected(physicsClientId=self.id):
                    pb.disconnect(physicsClientId=self.id)
            finally:
                self.id = -1
                self.client._client = -1

    def __enter__(self) -> World:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:  # pragma: no cover - best effort at interpreter exit
        try:
            self.close()
        except Exception:
            pass
