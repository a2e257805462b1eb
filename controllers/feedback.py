"""A model-based feedback controller for the closed-loop reach, and the base of residual RL.

`ComputedTorque` is what a roboticist would write before reaching for RL: inverse kinematics
for a joint goal q* at the target p, a constant-acceleration plan that arrives there when the
horizon ends, and the torques that plan needs from the *nominal* model (the URDF's masses and
damping, in a simulator of its own: `pybullet.calculateInverseDynamics`), re-planned at every
control step from the observed j and v. It does not know the episode's hidden dynamics draw
and never simulates a rollout: its cost per decision is a few Jacobians and one inverse
dynamics call.

On the ``state`` stage it is a poor controller on its own (see docs/benchmarks.md): the
constant-acceleration plan often asks for more torque than the joints have, and the hidden
dynamics shift every step's result. `controllers.residual` (an env's ``residual=True``) adds a
learned correction to its signal (residual RL: Johannink et al., 2019; Silver et al., 2018),
so an agent starts from this controller instead of from nothing.
"""

from __future__ import annotations

import numpy as np
import pybullet as pb

from robot_env.robots import Arm, RobotSpec
from robot_env.sim import World

IK_TOLERANCE = 1e-3  #: an IK solution counts when its end effector is this close to p (m)
#: an IK start farther than IK_TOLERANCE whose step is below this (rad) has stalled, and stops: in the
#: 100 iterations left it could move the end effector by a few hundredths of a millimetre
STALL_STEP = 1e-6


class ComputedTorque:
    """Joint-space computed-torque control towards an IK goal, on the nominal model.

    Args:
        robot: robot name or spec (its URDF gives the nominal model).
        timestep: physics step of the controlled simulation (s).
        control_dt: time one command is held (s): the env's ``substeps * timestep``.
        ik_starts: random IK starts tried at `reset` besides the current pose and the pose the
            arm would coast to (seeded: the same context gives the same goal).
        ik_iterations: damped-least-squares iterations per IK start.
    """

    def __init__(self, robot: str | RobotSpec, timestep: float, control_dt: float, ik_starts: int = 8,
                 ik_iterations: int = 100) -> None:
        self.world = World(timestep=timestep)
        self.arm = Arm(self.world, robot)
        self.cid = self.world.id
        self.control_dt = float(control_dt)
        self.ik_starts = int(ik_starts)
        self.ik_iterations = int(ik_iterations)
        self._zeros = [0.0] * self.arm.n
        self.goal: np.ndarray | None = None  #: the joint goal q* of the current episode
        self._p = np.zeros(3)

    # -- kinematics ------------------------------------------------------------------------
    def _ee(self, q) -> tuple[np.ndarray, tuple]:
        self.arm.reset_joints(q)
        ls = pb.getLinkState(self.arm.body, self.arm.ee, computeForwardKinematics=1, physicsClientId=self.cid)
        return np.array(ls[4]), ls[2]

    def ik(self, p, start) -> tuple[np.ndarray, float]:
        """Damped least squares from ``start`` within the joint limits: ``(q, |ee(q) - p|)``."""
        a = self.arm
        q = np.clip(np.asarray(start, dtype=float), a.lower, a.upper)
        err = np.inf
        for _ in range(self.ik_iterations):
            ee, local = self._ee(q)
            e = p - ee
            err = float(np.linalg.norm(e))
            if err < 1e-5:
                break
            jac = np.array(pb.calculateJacobian(a.body, a.ee, local, q.tolist(), self._zeros, self._zeros,
                                                physicsClientId=self.cid)[0])
            q, before = np.clip(q + jac.T @ np.linalg.solve(jac @ jac.T + 1e-4 * np.eye(3), e), a.lower, a.upper), q
            if err > IK_TOLERANCE and np.abs(q - before).max() < STALL_STEP:
                break  # stuck in a local minimum (at a joint limit): the rest would not move it
        else:
            err = float(np.linalg.norm(p - self._ee(q)[0]))
        return q, err

    # -- control -----------------------------------------------------------------------------
    def reset(self, q, qd, p, time_left: float) -> np.ndarray:
        """Choose the episode's joint goal: of the IK solutions for ``p``, the one nearest the
        pose the arm would coast to in ``time_left`` seconds (the least acceleration)."""
        a = self.arm
        q, qd, self._p = (np.asarray(v, dtype=float) for v in (q, qd, p))
        coast = q + qd * time_left
        rng = np.random.default_rng(0)
        starts = [coast, q] + [rng.uniform(a.lower, a.upper) for _ in range(self.ik_starts)]
        best, best_cost, fallback = None, np.inf, (None, np.inf)
        for s in starts:
            sol, err = self.ik(self._p, s)
            if err < fallback[1]:
                fallback = (sol, err)
            cost = float(np.sum((sol - coast) ** 2))
            if err < IK_TOLERANCE and cost < best_cost:
                best, best_cost = sol, cost
        self.goal = best if best is not None else fallback[0]
        return self.goal

    def act(self, q, qd, time_left: float) -> np.ndarray:
        """The signal in [-1, 1] for the next control step, from the observed ``q``, ``qd``."""
        if self.goal is None:
            raise RuntimeError("call reset() before act().")
        a = self.arm
        q, qd = np.asarray(q, dtype=float), np.asarray(qd, dtype=float)
        self.goal = self.ik(self._p, self.goal)[0]  # refine: a few iterations from the last goal
        t = max(float(time_left), self.control_dt)
        acc = 2.0 * (self.goal - q - qd * t) / (t * t)  # constant acceleration, at q* when t runs out
        tau = np.array(pb.calculateInverseDynamics(a.body, q.tolist(), qd.tolist(), acc.tolist(),
                                                   physicsClientId=self.cid))
        tau += a.nominal_damping * qd
        return np.clip(tau / a.max_torque, -1.0, 1.0)

    def close(self) -> None:
        self.world.close()
