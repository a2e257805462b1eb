"""Parts of the closed-loop env's observation, and the plugins that add parts from a layer above.

`ReachEnv` keeps the task and the physics; what its observation shows beyond ``[j, v, ee, p,
time left]`` is a list of `ObsPart`\\ s, each a block of entries appended in order:

* `History` (``history=True``): the previous applied signal and the velocities before it;
* a plugin's parts, e.g. the residual controller's base signal b (``residual=True``, served by
  `controllers.residual`);
* `Privileged` (``privileged=True``): critic-only entries, always last, outside ``actor_obs_dim``.

A part may also map the policy's action to the signal the arm gets (`ObsPart.act`) and hear the
signal applied (`ObsPart.applied`). Parts read the noisy, unclipped state and the env clips the
whole observation once, so the variants compose without changing a rollout.

Plugins: ``ReachEnv(residual=True)`` is served by code on the controllers floor (the residual
controller needs a model-based controller that robot_env must not import). That code calls
`register_plugin` when imported; until then, such a keyword is refused with one sentence naming
the module to import (`PLUGIN_HOMES`). ``residual=False`` needs no plugin.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from robot_env.io.errors import ConfigError

#: ReachEnv keywords served by a plugin from a layer above robot_env -> the module that registers it
PLUGIN_HOMES = {"residual": "controllers.residual", "residual_mode": "controllers.residual"}
PLUGIN_DEFAULTS = {"residual_mode": "add"}  #: a plugin keyword at its default calls for no plugin either


def check_flag(name: str, value) -> bool:
    """``value`` as a bool; ValueError unless it is one (numpy bools too)."""
    if not isinstance(value, (bool, np.bool_)):
        raise ConfigError(f"{name} must be true or false, got {value!r}.")
    return bool(value)


class ObsPart:
    """A block of observation entries (and optionally an action map) of a closed-loop env."""

    critic_only = False  #: entries a real robot's policy would not have: placed last, outside ``actor_obs_dim``

    def bounds(self, env) -> tuple[np.ndarray, np.ndarray]:
        """(low, high) of the entries."""
        raise NotImplementedError

    def reset(self, env, ctx) -> None:
        """A new episode with context ``ctx`` starts (before its first observation)."""

    def observe(self, env, state: np.ndarray) -> np.ndarray:
        """The entries for ``state = [q, qd, ee]`` (noisy, unclipped; do not modify it)."""
        raise NotImplementedError

    def act(self, env, action: np.ndarray) -> np.ndarray:
        """The signal the arm gets for the policy's checked ``action`` (the identity unless the part maps it)."""
        return action

    def applied(self, env, signal: np.ndarray) -> None:
        """The arm gets ``signal`` this step."""

    def close(self) -> None:
        """Release what the part holds."""


class History(ObsPart):
    """``[a_prev (n), v_prev (n)]``: the previous applied signal and the joint velocities the policy saw with it
    (zeros and the start velocities at the first step): how v answered the last action reveals the hidden
    dynamics to a memoryless policy."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.value = np.zeros(2 * n)
        self._seen_qd = np.zeros(n)

    def bounds(self, env):
        low = np.concatenate([-np.ones(self.n), -env.vel_bound])
        return low, -low

    def reset(self, env, ctx) -> None:
        self.value = np.concatenate([np.zeros(self.n), ctx.qd])

    def observe(self, env, state):
        self._seen_qd = state[self.n : 2 * self.n].copy()
        return self.value

    def applied(self, env, signal) -> None:
        self.value = np.concatenate([signal, self._seen_qd])  # the velocities the policy saw with this action


class Privileged(ObsPart):
    """What the simulator knows and a real robot's policy would not: the episode's dynamics draw ``[mass scale - 1
    (one per link, base first), damping scale - 1 (n), friction / max torque (n), torque gain - 1]`` and the
    constant signal that defined the target (``target_signal``, n; zeros outside the state stage)."""

    critic_only = True

    def __init__(self, arm) -> None:
        self.arm = arm
        self.size = len(arm.nominal_dynamics) + 3 * arm.n + 1
        self.value = np.zeros(0)

    def bounds(self, env):
        return -np.ones(self.size), np.ones(self.size)

    def reset(self, env, ctx) -> None:
        n, dyn = self.arm.n, ctx.dynamics
        if dyn is None:
            dyn_part = np.zeros(len(self.arm.nominal_dynamics) + 2 * n + 1)
        else:
            dyn_part = np.concatenate([dyn.mass_scale - 1.0, dyn.damping_scale - 1.0,
                                       dyn.friction / self.arm.max_torque, [dyn.torque_gain - 1.0]])
        signal = np.asarray(ctx.info.get("target_signal", np.zeros(n)), dtype=np.float64)[:n]
        self.value = np.concatenate([dyn_part, signal])

    def observe(self, env, state):
        return self.value


# -- plugins -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Plugin:
    """Keywords of `ReachEnv` served from a layer above: ``attach(env, **given)`` runs once the env is built."""

    keywords: tuple[str, ...]
    attach: Callable[..., None]


_PLUGINS: dict[str, Plugin] = {}


def register_plugin(keywords: tuple[str, ...], attach: Callable[..., None]) -> None:
    """Serve ``keywords`` of `ReachEnv` with ``attach(env, **the given ones)`` (idempotent)."""
    plugin = Plugin(tuple(keywords), attach)
    for key in plugin.keywords:
        _PLUGINS[key] = plugin


def split_plugin_kwargs(kwargs: dict) -> tuple[list[tuple[Plugin, dict]], dict]:
    """(the plugins that ``kwargs`` call for with their keywords, the other kwargs). A plugin keyword whose
    plugin is not registered is refused unless it is off (False or None)."""
    calls: dict[Plugin, dict] = {}
    rest = {}
    for key, value in kwargs.items():
        if key in _PLUGINS:
            calls.setdefault(_PLUGINS[key], {})[key] = value
        elif key in PLUGIN_HOMES:
            off = value is None or (isinstance(value, (bool, np.bool_)) and not value)
            if not (off or (key in PLUGIN_DEFAULTS and value == PLUGIN_DEFAULTS[key])):
                home = PLUGIN_HOMES[key]
                raise ConfigError(f"{key} is served by {home}: import {home} first (controllers.envs.make and "
                                 f"armlab's commands do), or build the env with {home}'s functions.")
        else:
            rest[key] = value
    return list(calls.items()), rest
