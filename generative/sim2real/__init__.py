"""Sim-to-real: how much of the gap between rendered and real camera frames a translation closes, measured by a
downstream model on held-out real frames.

Layout: ``gap`` (the gap closure of one translator run: :func:`sim2real_eval`, the position regressor).
``downstream`` (the camera model every figure is measured with: target position and class); ``benchmark`` (the
table: one downstream model per training set and seed, summarized with intervals);
``baselines`` (training-free translations: :func:`histogram_match`, :func:`fda`); ``stats`` (bootstrap intervals).
"""

from __future__ import annotations

from generative.sim2real.baselines import fda, histogram_match
from generative.sim2real.benchmark import Labelled, Row, closure, load_labelled, run_table, summarize, usable
from generative.sim2real.downstream import TargetNet, evaluate_downstream, train_downstream
from generative.sim2real.gap import PositionRegressor, regressor_error, sim2real_eval, train_regressor
from generative.sim2real.stats import bootstrap_mean_ci, gap_standard_error, hierarchical_bootstrap

__all__ = ["Labelled", "PositionRegressor", "Row", "TargetNet", "bootstrap_mean_ci", "closure", "evaluate_downstream",
           "fda", "gap_standard_error", "hierarchical_bootstrap", "histogram_match", "load_labelled", "regressor_error",
           "run_table", "sim2real_eval", "summarize", "train_downstream", "train_regressor", "usable"]
