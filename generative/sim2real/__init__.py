"""Sim-to-real: how much of the gap between rendered and real camera frames a translation closes, measured by a
downstream model on held-out real frames.

Layout: ``gap`` (the gap closure of one translator run: :func:`sim2real_eval`, the position regressor).
"""

from __future__ import annotations

from generative.sim2real.gap import PositionRegressor, regressor_error, sim2real_eval, train_regressor

__all__ = ["PositionRegressor", "regressor_error", "sim2real_eval", "train_regressor"]
