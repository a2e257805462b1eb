"""The lecture's reach task: find the signal x that minimizes the distance y after t seconds.

A *context* is what the controller is given: joint positions j, joint velocities v,
the target point p (and, hidden from it, the dynamics draw). The three stages
follow the lecture:

* ``fixed``: j, v and p are always the same ("try hundreds of x");
* ``velocity``: j and p fixed, v drawn per episode ("learn a mapping v -> x");
* ``state``: j, v and p drawn per episode, plus dynamics randomization. The target is
  the end point of a random signal under that episode's dynamics, so every context
  is reachable by construction.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from robot_env.io.errors import ConfigError
from robot_env.randomization import Dynamics, Randomization
from robot_env.robots import Arm

STAGES = ("fixed", "velocity", "state")


@dataclass
class Context:
    """Start state and target of one episode."""

    q: np.ndarray  #: joint positions j (rad)
    qd: np.ndarray  #: joint velocities v (rad/s)
    target: np.ndarray  #: target point p (m, world frame)
    dynamics: Dynamics | None = None  #: None = the URDF's nominal dynamics
    info: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        d = {"q": self.q.tolist(), "qd": self.qd.tolist(), "target": self.target.tolist()}
        if self.dynamics is not None:
            d["dynamics"] = {
                "mass_scale": self.dynamics.mass_scale.tolist(),
                "damping_scale": self.dynamics.damping_scale.tolist(),
                "friction": self.dynamics.friction.tolist(),
                "torque_gain": self.dynamics.torque_gain,
            }
        return d


class ReachTask:
    """Reach task on an `Arm`: contexts, signal playback and the distance y.

    Args:
        arm: the arm to control.
        stage: ``fixed``, ``velocity`` or ``state``.
        horizon: t, seconds the signal is applied for.
        knots: K knots per joint of an open-loop signal, linearly interpolated over t
            (K = 1 holds one value per joint).
        velocity_range: |v| bound per joint (rad/s) in the velocity/state stages;
            None takes the robot's default.
        joint_margin: fraction of each joint range kept clear when drawing j (state stage).
        target_signal_range: |x| bound of the random signal whose end point is the
            state stage's target.
        randomization: dynamics randomization of the state stage (`Randomization`,
            dict, True for defaults, False for none).
        success_threshold: y below which an episode counts as a success (m).
    """

    def __init__(
        self,
        arm: Arm,
        stage: str = "fixed",
        horizon: float = 0.5,
        knots: int = 1,
        velocity_range: float | None = None,
        joint_margin: float = 0.1,
        target_signal_range: float = 0.8,
        randomization=None,
        success_threshold: float = 0.02,
    ) -> None:
        if stage not in STAGES:
            raise ConfigError(f"unknown stage {stage!r}; choose one of {', '.join(STAGES)}.")
        self.arm, self.stage = arm, stage
        self.max_target_draws = 10
        self.physics_steps = 0  #: physics steps simulated by `play` (targets and episodes)
        dt = arm.world.timestep
        self.n_steps = int(round(horizon / dt))
        if self.n_steps < 1 or not np.isfinite(horizon):
            raise ConfigError(f"horizon must be at least one physics step ({dt:.4g} s), got {horizon!r}.")
        self.horizon = self.n_steps * dt
        if int(knots) < 1:
            raise ConfigError(f"knots must be >= 1, got {knots!r}.")
        self.knots = int(knots)
        self.velocity_range = float(arm.spec.velocity_range if velocity_range is None else velocity_range)
        if self.velocity_range < 0 or not np.isfinite(self.velocity_range):
            raise ConfigError(f"velocity_range must be a finite number >= 0, got {velocity_range!r}.")
        if not 0 <= joint_margin < 0.5:
            raise ConfigError(f"joint_margin must be in [0, 0.5), got {joint_margin!r}.")
        self.joint_margin = joint_margin
        if not 0 < target_signal_range <= 1:
            raise ConfigError(f"target_signal_range must be in (0, 1], got {target_signal_range!r}.")
        self.target_signal_range = target_signal_range
        self.randomization = (
            Randomization.from_any(randomization) if stage == "state" else Randomization.off()
        )
        if not success_threshold > 0:
            raise ConfigError(f"success_threshold must be positive, got {success_threshold!r}.")
        self.success_threshold = float(success_threshold)
        self.signal_dim = self.knots * arm.n
        self.home = np.array(arm.spec.home, dtype=float)
        self._nominal = Dynamics.nominal(len(arm.nominal_dynamics), arm.n)
        self._applied: Dynamics | None = None
        x_t = np.tile(np.asarray(arm.spec.target_signal, dtype=float), self.knots)
        self.fixed_target = self._end_point(self.home, np.zeros(arm.n), self._nominal, x_t)

    # -- contexts ---------------------------------------------------------------------
    def sample_context(self, rng: np.random.Generator) -> Context:
        """Draw the next episode's context (the fixed stage draws nothing)."""
        n = self.arm.n
        if self.stage == "fixed":
            return Context(self.home.copy(), np.zeros(n), self.fixed_target.copy())
        qd = rng.uniform(-self.velocity_range, self.velocity_range, n)
        if self.stage == "velocity":
            return Context(self.home.copy(), qd, self.fixed_target.copy())
        span = self.arm.upper - self.arm.lower
        q = rng.uniform(self.arm.lower + self.joint_margin * span, self.arm.upper - self.joint_margin * span)
        dyn = self.randomization.sample(rng, len(self.arm.nominal_dynamics), self.arm.max_torque)
        # The target is where a random signal takes the arm. Signals that end with a
        # joint pressed against its limit are redrawn (a few times at most): such end
        # points sit on a plateau of y(x) that no optimizer can descend.
        for _ in range(self.max_target_draws):
            x_r = rng.uniform(-self.target_signal_range, self.target_signal_range, self.signal_dim)
            target = self._end_point(q, qd, dyn, x_r)
            q_end = self.arm.joint_state()[0]
            if np.all((q_end - self.arm.lower > 0.05 * span) & (self.arm.upper - q_end > 0.05 * span)):
                break
        return Context(q, qd, target, dyn, info={"target_signal": x_r})

    def set_context(self, ctx: Context) -> None:
        """Put the arm in the context's start state with its dynamics."""
        dyn = ctx.dynamics or self._nominal
        if dyn is not self._applied:
            self.arm.set_dynamics(dyn.mass_scale, dyn.damping_scale, dyn.friction, dyn.torque_gain)
            self._applied = dyn
        else:
            self.arm.release()
        self.arm.reset_joints(ctx.q, ctx.qd)

    def _end_point(self, q, qd, dyn: Dynamics, x) -> np.ndarray:
        self.set_context(Context(q, qd, np.zeros(3), dyn))
        self.play(x)
        return self.arm.ee_position()

    # -- signals ----------------------------------------------------------------------
    def commands(self, x: np.ndarray) -> tuple[list, int]:
        """Physical commands for signal ``x`` (shape ``(knots * n,)``) and steps per command."""
        x = np.clip(np.asarray(x, dtype=float).reshape(self.knots, self.arm.n), -1.0, 1.0)
        u = self.arm.scale(x)
        if self.knots == 1:
            return [u[0].tolist()], self.n_steps
        t = (np.arange(self.n_steps) + 0.5) / self.n_steps * (self.knots - 1)
        rows = np.stack([np.interp(t, np.arange(self.knots), u[:, j]) for j in range(self.arm.n)], axis=1)
        return rows.tolist(), 1

    def play(self, x: np.ndarray) -> None:
        """Apply the open-loop signal ``x`` for the whole horizon t."""
        rows, per = self.commands(x)
        self.arm.run(rows, per)
        self.physics_steps += self.n_steps

    def distance(self, target: np.ndarray) -> float:
        """y = ||end-effector - p|| in metres."""
        return float(np.linalg.norm(self.arm.ee_position() - target))
