"""The reach envs' rewards: a score of the distance y, given every step or at the last step only.

``dense`` is ``-y``; ``log`` is ``-ln(1 + y / s)`` with s a quarter of the success threshold
(5 mm by default), 0 at the target with a gradient that grows as y shrinks; ``sparse`` is
``-(y >= threshold)``. `DistanceReward` holds one such rule and when it pays (``at``).
"""

from __future__ import annotations

import numpy as np

from robot_env.io.errors import ConfigError

REWARD_TYPES = ("dense", "sparse")
CLOSED_REWARD_TYPES = ("dense", "log", "sparse")
SIGNAL_REWARD_TYPES = ("dense", "log")
REWARD_AT = ("every", "end")  #: closed-loop envs: reward at every step, or at the last step only
LOG_REWARD_SCALE = 0.25  #: the ``log`` reward's length scale, as a fraction of the success threshold


def log_reward(y, scale: float):
    """The ``log`` reward ``-ln(1 + y / scale)``: 0 at the target, a gradient that grows as y shrinks."""
    return -np.log1p(np.asarray(y, dtype=np.float64) / scale)


def check_choice(name: str, value, choices: tuple[str, ...]) -> None:
    """ValueError naming the choices unless ``value`` is one of them."""
    if value not in choices:
        raise ConfigError(f"unknown {name} {value!r}; choose one of {', '.join(choices)}.")


class DistanceReward:
    """The reward of a distance y (metres): ``kind`` ``dense``, ``log`` or ``sparse`` for
    ``threshold`` (the success threshold), paid at ``every`` step or at the ``end`` only (0 before)."""

    def __init__(self, kind: str, threshold: float, at: str = "every", kinds: tuple[str, ...] = CLOSED_REWARD_TYPES):
        check_choice("reward_type", kind, kinds)
        check_choice("reward_at", at, REWARD_AT)
        self.kind, self.threshold, self.at = kind, float(threshold), at
        self.log_scale = LOG_REWARD_SCALE * self.threshold

    def __call__(self, d):
        """The reward of distance(s) ``d`` (float64, any shape)."""
        if self.kind == "sparse":
            return -(np.asarray(d) >= self.threshold).astype(np.float64)
        if self.kind == "log":
            return log_reward(d, self.log_scale)
        return -np.asarray(d, dtype=np.float64)

    def step(self, d: float, last: bool) -> float:
        """The reward of a step that ends at distance ``d`` (``last``: the episode's last step)."""
        if self.at == "end" and not last:
            return 0.0
        return float(self(d))
