"""Dynamics randomization for the ``state`` stage, seeded from the env's ``np_random``."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import numpy as np

from robot_env.io.errors import ConfigError


@dataclass(frozen=True)
class Dynamics:
    """One draw of the arm's dynamics (all factors are multiplicative except friction)."""

    mass_scale: np.ndarray  #: per link, base first
    damping_scale: np.ndarray  #: per controlled joint
    friction: np.ndarray  #: Coulomb friction per controlled joint, N m
    torque_gain: float  #: actuator gain applied to every torque command

    @classmethod
    def nominal(cls, n_links: int, n_joints: int) -> Dynamics:
        return cls(np.ones(n_links), np.ones(n_joints), np.zeros(n_joints), 1.0)


@dataclass(frozen=True)
class Randomization:
    """Ranges of the ``state`` stage's randomization; zero switches a term off.

    Accepts a dict of the same fields anywhere a `Randomization` is expected, e.g.
    ``gym.make(id, randomization={"mass": 0.1, "obs_noise": 0.0})``.
    """

    mass: float = 0.2  #: link masses and inertias scaled by U[1 - mass, 1 + mass]
    damping: float = 0.5  #: joint damping scaled by U[1 - damping, 1 + damping]
    friction: float = 0.02  #: Coulomb friction U[0, friction] x the joint's max torque
    torque_gain: float = 0.1  #: torque gain U[1 - torque_gain, 1 + torque_gain]
    obs_noise: float = 0.002  #: std of Gaussian noise added to observed j (rad), v (rad/s) and positions (m)

    def __post_init__(self) -> None:
        for f in fields(self):
            v = getattr(self, f.name)
            if not (isinstance(v, (int, float)) and np.isfinite(v) and v >= 0):
                raise ConfigError(f"randomization {f.name!r} must be a finite number >= 0, got {v!r}.")
        for name in ("mass", "damping", "torque_gain"):
            if getattr(self, name) >= 1:
                value = getattr(self, name)
                raise ConfigError(f"randomization {name!r} must be < 1 (it is a relative range), got {value}.")

    @classmethod
    def off(cls) -> Randomization:
        return cls(0.0, 0.0, 0.0, 0.0, 0.0)

    @classmethod
    def from_any(cls, value) -> Randomization:
        """Build from ``None``/``True`` (defaults), ``False`` (off), a dict or a `Randomization`."""
        if value is None or value is True:
            return cls()
        if value is False:
            return cls.off()
        if isinstance(value, cls):
            return value
        if isinstance(value, dict):
            unknown = set(value) - {f.name for f in fields(cls)}
            if unknown:
                known = ", ".join(f.name for f in fields(cls))
                raise ConfigError(f"unknown randomization setting(s) {sorted(unknown)}; known: {known}.")
            return cls(**{k: float(v) for k, v in value.items()})
        raise ConfigError(f"randomization must be a bool, a dict or a Randomization, got {type(value).__name__}.")

    def as_dict(self) -> dict:
        return asdict(self)

    def sample(self, rng: np.random.Generator, n_links: int, max_torque: np.ndarray) -> Dynamics:
        """Draw one `Dynamics` with ``rng`` (always the same number of draws, for reproducibility)."""
        n = len(max_torque)
        u_mass = rng.uniform(-1.0, 1.0, n_links)
        u_damp = rng.uniform(-1.0, 1.0, n)
        u_fric = rng.uniform(0.0, 1.0, n)
        u_gain = rng.uniform(-1.0, 1.0)
        return Dynamics(
            mass_scale=1.0 + self.mass * u_mass,
            damping_scale=1.0 + self.damping * u_damp,
            friction=self.friction * u_fric * max_torque,
            torque_gain=float(1.0 + self.torque_gain * u_gain),
        )
