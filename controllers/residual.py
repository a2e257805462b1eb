"""Residual control: a learned correction on top of a model-based controller (residual RL).

`ResidualControl` is a part of a closed-loop `robot_env.envs.ReachEnv`: every observation it
asks `controllers.feedback.ComputedTorque` for its signal b (from the observed, noisy j and v),
shows b after the history entries (before any privileged ones), and turns the policy's action a
into the signal the arm gets, u = `residual_signal` (b, a). A zero action is therefore that
controller alone (Johannink et al., 2019; Silver et al., 2018).

Importing this module serves the env keywords ``residual`` and ``residual_mode``, so
``gym.make("armlab/ReachState-v0", residual=True)`` works wherever it has been imported
(`controllers.envs` does, and so does every ``armlab`` command); `add_residual` attaches the
controller to an env that is already built.
"""

from __future__ import annotations

import numpy as np

from controllers.feedback import ComputedTorque
from robot_env.components import ObsPart, check_flag, register_plugin
from robot_env.io.errors import ConfigError

RESIDUAL_MODES = ("add", "span")  #: how a residual action a moves the base signal b (see `residual_signal`)


def residual_signal(base, action, mode: str = "add") -> np.ndarray:
    """The signal u in [-1, 1] the arm gets from base signal ``base`` (b, in [-1, 1]) and residual
    ``action`` (a, in [-1, 1]).

    ``add``: u = clip(b + a). Where b is near a limit, half of a's range is lost to the clip:
    with b = 1 the correction can only bring u down to 0. ``span``: a > 0 moves u from b
    towards 1 and a < 0 towards -1, in proportion (u = b + a (1 - b) or b + a (1 + b)), so
    a = +-1 always reaches the joint's full torque either way and a = 0 is b.
    """
    b, a = np.asarray(base, dtype=np.float64), np.asarray(action, dtype=np.float64)
    if mode == "span":
        return np.clip(b + a * np.where(a >= 0, 1.0 - b, 1.0 + b), -1.0, 1.0)
    return np.clip(b + a, -1.0, 1.0)


def residual_action(signal, base, mode: str = "add") -> np.ndarray:
    """The residual action that gives ``signal`` u on top of ``base`` b: the inverse of
    `residual_signal` (for ``add`` it may leave [-1, 1]: no action gives that u)."""
    u, b = np.asarray(signal, dtype=np.float64), np.asarray(base, dtype=np.float64)
    d = u - b
    if mode == "span":
        room = np.where(d >= 0, 1.0 - b, 1.0 + b)
        return np.clip(np.divide(d, room, out=np.zeros_like(d), where=room > 1e-12), -1.0, 1.0)
    return d


class ResidualControl(ObsPart):
    """The base controller's signal b as observation entries, and the map a -> u = `residual_signal` (b, a).

    ``base`` is the `ComputedTorque` controller (the env's nominal model, in a simulator of its
    own); ``signal`` is b for the current observation; ``mode`` is ``add`` or ``span``.
    """

    def __init__(self, env, mode: str = "add") -> None:
        self.mode = mode
        self.n = env.arm.n
        self.base = ComputedTorque(env.arm.spec, env.world.timestep, env.substeps * env.world.timestep)
        self.signal = np.zeros(self.n)

    def bounds(self, env):
        return -np.ones(self.n), np.ones(self.n)

    def observe(self, env, state):
        n, t_left = self.n, env.time_left
        if env.step_index == 0:
            self.base.reset(state[:n], state[n : 2 * n], env.context.target, t_left)
        self.signal = self.base.act(state[:n], state[n : 2 * n], t_left) if t_left > 0 else np.zeros(n)
        return self.signal

    def act(self, env, action):
        return residual_signal(self.signal, action, self.mode)

    def close(self) -> None:
        self.base.close()


def _check(env) -> None:
    if env.obs_type != "state":
        raise ConfigError(f"residual applies to obs_type 'state', not {env.obs_type!r}: its base controller "
                         f"reads the goal, so HER's relabeled goals would not match the actions taken.")
    if env.arm.control != "torque":
        raise ConfigError(f"residual needs torque control, not {env.arm.control!r}.")


def attach(env, residual=False, residual_mode: str = "add") -> None:
    """The ``residual`` / ``residual_mode`` keywords of `ReachEnv`: add a `ResidualControl` part when asked."""
    if residual_mode not in RESIDUAL_MODES:
        raise ConfigError(f"unknown residual_mode {residual_mode!r}; choose one of {', '.join(RESIDUAL_MODES)}.")
    if residual_mode != "add" and not residual:
        raise ConfigError(f"residual_mode {residual_mode!r} applies with residual: true.")
    if check_flag("residual", residual):
        add_residual(env, residual_mode)


def add_residual(env, mode: str = "add"):
    """Make the closed-loop ``env`` (or the env it wraps) a residual env in place; returns ``env``."""
    u = env.unwrapped
    if mode not in RESIDUAL_MODES:
        raise ConfigError(f"unknown residual_mode {mode!r}; choose one of {', '.join(RESIDUAL_MODES)}.")
    if not hasattr(u, "add_part"):
        raise ConfigError(f"residual control needs a closed-loop armlab env, not {type(u).__name__}.")
    if residual_part(u) is not None:
        raise ConfigError("this env already has residual control.")
    _check(u)
    u.add_part(ResidualControl(u, mode))
    return env


def residual_part(env) -> ResidualControl | None:
    """The `ResidualControl` of ``env`` (or of the env it wraps), or None."""
    part = getattr(env.unwrapped, "part", None)
    return part(ResidualControl) if part is not None else None


register_plugin(("residual", "residual_mode"), attach)

__all__ = ["RESIDUAL_MODES", "ResidualControl", "add_residual", "residual_action", "residual_part",
           "residual_signal"]
