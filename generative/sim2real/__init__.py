"""Sim-to-real: how much of the gap between rendered and real camera frames a translation closes, measured by a
downstream model on held-out real frames.

Layout: ``gap`` (the gap closure of one translator run: :func:`sim2real_eval`, the position regressor).
``baselines`` (training-free translations: :func:`histogram_match`, :func:`fda`); ``stats`` (bootstrap intervals).
"""

from __future__ import annotations

from generative.sim2real.baselines import fda, histogram_match
from generative.sim2real.gap import PositionRegressor, regressor_error, sim2real_eval, train_regressor
from generative.sim2real.stats import bootstrap_mean_ci, gap_standard_error, hierarchical_bootstrap

__all__ = ["PositionRegressor", "bootstrap_mean_ci", "fda", "gap_standard_error", "hierarchical_bootstrap",
           "histogram_match", "regressor_error", "sim2real_eval", "train_regressor"]
