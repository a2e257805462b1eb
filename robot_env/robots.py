"""Robot descriptions (`RobotSpec`, `ROBOTS`) and `Arm`, a controllable robot in a `World`.

Every URDF is loaded with ``URDF_USE_INERTIA_FROM_FILE``: without it PyBullet
replaces the file's inertia tensors with ones computed from the collision
shapes, which would make torque control meaningless.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pybullet as pb
import pybullet_data

from armlab_urdf import URDF_DIR
from robot_env.io.errors import ConfigError, MissingPathError
from robot_env.sim import World

CONTROL_MODES = ("torque", "velocity", "position")
HOLD_SPEED = 1.0e4  #: rad/s, the unreachable target speed of a velocity motor that holds a torque


@dataclass(frozen=True)
class RobotSpec:
    """Static description of a robot arm.

    ``home`` is the joint configuration the ``fixed`` and ``velocity`` stages start
    from; ``target_signal`` is the signal whose end point defines their target.
    """

    name: str
    urdf: str  #: file name in armlab's ``urdf/`` folder, or a path inside pybullet_data
    source: str  #: "armlab" or "pybullet_data"
    ee_link: str  #: name of the end-effector link
    home: tuple[float, ...]
    target_signal: tuple[float, ...]
    joints: tuple[str, ...] | None = None  #: controlled joints; None = every revolute joint
    velocity_range: float = 1.0  #: |v| bound (rad/s) drawn per joint in the velocity/state stages
    max_torque: tuple[float, ...] | None = None  #: overrides the URDF effort limits (N m)
    reach: float = 1.0  #: bound on |end-effector - base| in x and y (m), for observation bounds and cameras
    description: str = ""

    @property
    def path(self) -> Path:
        if self.source == "armlab":
            return URDF_DIR / self.urdf
        return Path(pybullet_data.getDataPath()) / self.urdf


ROBOTS: dict[str, RobotSpec] = {
    "arm2": RobotSpec(
        name="arm2",
        reach=0.6,
        urdf="arm2.urdf",
        source="armlab",
        ee_link="ee",
        home=(0.4, 1.2),
        target_signal=(0.3, 0.2),
        velocity_range=1.0,
        description="planar 2-joint arm in the horizontal plane (signal space drawable as a heat map)",
    ),
    "arm3": RobotSpec(
        name="arm3",
        reach=0.7,
        urdf="arm3.urdf",
        source="armlab",
        ee_link="ee",
        home=(0.0, -0.3, 1.0),
        target_signal=(0.25, -0.6, -0.5),
        velocity_range=1.0,
        description="spatial 3-joint arm (yaw, shoulder pitch, elbow pitch) under gravity",
    ),
    "panda": RobotSpec(
        name="panda",
        reach=1.2,
        urdf="franka_panda/panda.urdf",
        source="pybullet_data",
        ee_link="panda_grasptarget",
        joints=tuple(f"panda_joint{i}" for i in range(1, 8)),
        home=(0.0, 0.41, 0.0, -1.85, 0.0, 2.26, 0.79),
        target_signal=(0.2, 0.1, 0.1, 0.1, 0.0, 0.0, 0.0),
        velocity_range=0.5,
        max_torque=(20.0, 20.0, 20.0, 20.0, 5.0, 5.0, 5.0),
        description="Franka Emika Panda from pybullet_data (7 arm joints)",
    ),
    "kuka": RobotSpec(
        name="kuka",
        reach=1.4,
        urdf="kuka_iiwa/model.urdf",
        source="pybullet_data",
        ee_link="lbr_iiwa_link_7",
        home=(0.0, 0.5, 0.0, -1.2, 0.0, 0.8, 0.0),
        target_signal=(0.2, 0.1, 0.1, 0.1, 0.0, 0.0, 0.0),
        velocity_range=0.5,
        max_torque=(60.0, 60.0, 40.0, 40.0, 10.0, 10.0, 5.0),
        description="KUKA LBR iiwa from pybullet_data (7 joints)",
    ),
}


def get_spec(robot: str | RobotSpec) -> RobotSpec:
    """Look a robot up by name; the error lists the available robots."""
    if isinstance(robot, RobotSpec):
        spec = robot
    else:
        if robot not in ROBOTS:
            raise ConfigError(f"unknown robot {robot!r}; available robots: {', '.join(ROBOTS)}.")
        spec = ROBOTS[robot]
    if not spec.path.is_file():
        raise MissingPathError(
            f"URDF for robot {spec.name!r} not found at {spec.path}; available robots: {', '.join(ROBOTS)}."
        )
    return spec


class Arm:
    """A robot arm loaded into a `World`, with joint-space control.

    The signal ``x`` is always in [-1, 1] per controlled joint and is scaled by the
    control mode: ``torque`` -> ``x * max_torque * torque_gain`` (N m), ``velocity``
    -> ``x * max_velocity`` (rad/s), ``position`` -> joint targets (absolute, mapped
    onto the joint range). Velocity and position motors are limited to the URDF's
    effort (times the torque gain). PyBullet clears applied torques after every physics step,
    so torque commands are re-applied before each step.
    """

    def __init__(self, world: World, robot: str | RobotSpec = "arm2", base_position=(0.0, 0.0, 0.0)) -> None:
        self.spec = get_spec(robot)
        self.world = world
        self.cid = world.id
        self.body = world.load_urdf(
            "robot", self.spec.path, position=base_position, fixed=True, flags=pb.URDF_USE_INERTIA_FROM_FILE
        )
        c = world.client
        if "floor" in world.bodies:
            # the fixed base rests on the floor: a contact between two immovable parts
            c.setCollisionFilterPair(self.body, world.body("floor"), -1, -1, 0)
        names, links = {}, {}
        for j in range(c.getNumJoints(self.body)):
            info = c.getJointInfo(self.body, j)
            names[info[1].decode()] = (j, info)
            links[info[12].decode()] = j
        if self.spec.joints is None:
            chosen = [(n, ji) for n, ji in names.items() if ji[1][2] == pb.JOINT_REVOLUTE]
        else:
            chosen = [(n, names[n]) for n in self.spec.joints]
        self.joint_names = [n for n, _ in chosen]
        self.joints = [ji[0] for _, ji in chosen]
        self.n = len(self.joints)
        infos = [ji[1] for _, ji in chosen]
        self.lower = np.array([i[8] for i in infos])
        self.upper = np.array([i[9] for i in infos])
        effort = np.array([i[10] for i in infos])
        self.effort = effort  #: URDF effort limits: the force limit of velocity/position motors
        self.max_torque = np.array(self.spec.max_torque) if self.spec.max_torque else effort
        self.max_velocity = np.array([i[11] if i[11] > 0 else 2.0 for i in infos])
        self.nominal_damping = np.array([i[6] for i in infos])
        self.ee = links[self.spec.ee_link]
        self.links = links
        # nominal (mass, local inertia diagonal) of every link, for randomization
        self.nominal_dynamics = {
            link: (c.getDynamicsInfo(self.body, link)[0], c.getDynamicsInfo(self.body, link)[2])
            for link in range(-1, c.getNumJoints(self.body))
        }
        self.torque_gain = 1.0
        self._motor_forces = self.effort.tolist()
        self.friction = np.zeros(self.n)
        self.control = "torque"
        self.set_control("torque")

    # -- control ----------------------------------------------------------------------
    def set_control(self, mode: str) -> None:
        """Choose ``torque`` (default), ``velocity`` or ``position`` control."""
        if mode not in CONTROL_MODES:
            raise ConfigError(f"unknown control mode {mode!r}; choose one of {', '.join(CONTROL_MODES)}.")
        self.control = mode
        if mode == "torque":
            self._release_motors()

    def release(self) -> None:
        """Stop applying any held torque (the joints keep only their friction)."""
        if self.control == "torque":
            self._release_motors()

    def _release_motors(self) -> None:
        # PyBullet drives every joint with a velocity motor by default; torque control
        # needs it off. A joint's Coulomb friction is kept as that motor's force limit.
        pb.setJointMotorControlArray(
            self.body, self.joints, pb.VELOCITY_CONTROL, targetVelocities=[0.0] * self.n,
            forces=self.friction.tolist(), physicsClientId=self.cid,
        )

    def scale(self, x: np.ndarray) -> np.ndarray:
        """Map a signal in [-1, 1] to the physical command of the current mode."""
        if self.control == "torque":
            return x * self.max_torque * self.torque_gain
        if self.control == "velocity":
            return x * self.max_velocity
        return self.lower + (x + 1.0) * 0.5 * (self.upper - self.lower)

    def command(self, u) -> None:
        """Send one physical command (torques are consumed by the next physics step)."""
        u = list(u)
        if self.control == "torque":
            pb.setJointMotorControlArray(self.body, self.joints, pb.TORQUE_CONTROL, forces=u, physicsClientId=self.cid)
        elif self.control == "velocity":
            pb.setJointMotorControlArray(
                self.body, self.joints, pb.VELOCITY_CONTROL, targetVelocities=u,
                forces=self._motor_forces, physicsClientId=self.cid,
            )
        else:
            pb.setJointMotorControlArray(
                self.body, self.joints, pb.POSITION_CONTROL, targetPositions=u,
                forces=self._motor_forces, physicsClientId=self.cid,
            )

    def run(self, commands, steps_per_command: int) -> None:
        """Apply each physical command for ``steps_per_command`` physics steps.

        This is the hot loop of every env. PyBullet forgets a ``TORQUE_CONTROL`` torque
        after one physics step, so sending it costs as much as a small arm's step. A
        joint's velocity motor, by contrast, persists: asked for an unreachable speed
        (``HOLD_SPEED`` in the torque's direction) with the torque's magnitude as its force
        limit, it saturates and applies exactly that torque at every step (identical
        trajectories, see tests/test_robots.py). Torques are therefore *held* by the
        motors, one command per held value. Joints with Coulomb friction need that motor
        for the friction, so with friction (the ``state`` stage's randomization) the
        torques are re-sent before every step instead. Velocity and position targets are
        sent once per command.
        """
        body, joints, cid = self.body, self.joints, self.cid
        step, send = pb.stepSimulation, pb.setJointMotorControlArray
        if self.control == "torque" and self.friction.any():
            mode = pb.TORQUE_CONTROL
            for u in commands:
                for _ in range(steps_per_command):
                    send(body, joints, mode, forces=u, physicsClientId=cid)
                    step(physicsClientId=cid)
        elif self.control == "torque":
            mode = pb.VELOCITY_CONTROL
            for u in commands:
                send(body, joints, mode, targetVelocities=[math.copysign(HOLD_SPEED, t) for t in u],
                     forces=[abs(t) for t in u], physicsClientId=cid)
                for _ in range(steps_per_command):
                    step(physicsClientId=cid)
        else:
            for u in commands:
                self.command(u)
                for _ in range(steps_per_command):
                    step(physicsClientId=cid)

    # -- state ------------------------------------------------------------------------
    def joint_state(self) -> tuple[np.ndarray, np.ndarray]:
        """Joint positions (rad) and velocities (rad/s) of the controlled joints."""
        states = pb.getJointStates(self.body, self.joints, physicsClientId=self.cid)
        q = np.array([s[0] for s in states])
        qd = np.array([s[1] for s in states])
        return q, qd

    def read(self) -> list[float]:
        """``[q..., qd..., ee_x, ee_y, ee_z]`` as one flat list: the env's per-step read."""
        states = pb.getJointStates(self.body, self.joints, physicsClientId=self.cid)
        ee = pb.getLinkState(self.body, self.ee, computeForwardKinematics=1, physicsClientId=self.cid)[4]
        return [s[0] for s in states] + [s[1] for s in states] + list(ee)

    def reset_joints(self, q, qd=None) -> None:
        """Teleport the controlled joints to positions ``q`` and velocities ``qd``."""
        qd = np.zeros(self.n) if qd is None else qd
        pb.resetJointStatesMultiDof(self.body, self.joints, [[float(a)] for a in q], [[float(w)] for w in qd],
                                    physicsClientId=self.cid)  # one call for all joints (each has one DOF)

    def ee_position(self) -> np.ndarray:
        """World position of the end-effector link frame (metres)."""
        return np.array(
            pb.getLinkState(self.body, self.ee, computeForwardKinematics=1, physicsClientId=self.cid)[4]
        )

    # -- dynamics -------------------------------------------------------------------------
    def set_dynamics(self, mass_scale=None, damping_scale=None, friction=None, torque_gain: float = 1.0) -> None:
        """Scale link masses/inertias and joint damping, set joint friction (N m) and torque gain.

        Passing nothing restores the URDF's nominal dynamics.
        """
        c = self.world.client
        nlinks = len(self.nominal_dynamics) - 1
        ms = np.ones(nlinks + 1) if mass_scale is None else np.broadcast_to(mass_scale, (nlinks + 1,))
        for link, (mass, inertia) in self.nominal_dynamics.items():
            s = float(ms[link + 1])
            if mass > 0:
                c.changeDynamics(self.body, link, mass=mass * s, localInertiaDiagonal=[v * s for v in inertia])
        ds = np.ones(self.n) if damping_scale is None else np.broadcast_to(damping_scale, (self.n,))
        for j, d0, s in zip(self.joints, self.nominal_damping, ds):
            c.changeDynamics(self.body, j, jointDamping=float(d0 * s))
        self.friction = np.zeros(self.n) if friction is None else np.broadcast_to(friction, (self.n,)).astype(float)
        self.torque_gain = float(torque_gain)
        self._motor_forces = (self.effort * self.torque_gain).tolist()
        if self.control == "torque":
            self._release_motors()
