"""Confidence intervals for sim-to-real results: bootstrap over test frames and training seeds.

A sim-to-real number (a pixel error, an accuracy, a gap closure) varies for two reasons: the training run (its
seed) and the finite set of held-out test frames. Reporting the spread over seeds alone ignores the second;
resampling frames alone ignores the first. The hierarchical (two-level) bootstrap resamples both (B. Efron and
R. Tibshirani, "An Introduction to the Bootstrap", 1993; for nested data, V. Saravanan, G. J. Berman and
S. J. Sober, "Application of the hierarchical bootstrap to multi-level data in neuroscience", Neurons, Behavior,
Data analysis, and Theory, 2020):

* :func:`bootstrap_mean_ci` -- the percentile bootstrap interval of the mean of one sample.
* :func:`hierarchical_bootstrap` -- every method was evaluated on the SAME ``N`` test frames, each with its own
  seeds: ``errors[method]`` has shape ``(S_method, N)``. A replicate resamples the frames with replacement once,
  shared by every method (the frames are paired, so differences between methods keep their pairing), and each
  method's seeds with replacement, independently; the method's replicate value is the mean over the resampled
  seeds x frames. Statistics derived from the method means (the gap closure
  ``(sim - trans) / (sim - real)``, say) are computed on each replicate; percentile intervals throughout.
* :func:`gap_standard_error` -- the standard error of a difference of two independent per-seed means.

Everything is deterministic: one numpy generator seeded with ``seed``; the same inputs and seed give the same
result.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from robot_env.io.errors import ParamError

__all__ = ["bootstrap_mean_ci", "gap_standard_error", "hierarchical_bootstrap"]

_CHUNK_VALUES = 1 << 20  # replicates are drawn in chunks of about this many indices, to bound memory


def _check_boot(n_boot: int, level: float) -> None:
    if isinstance(n_boot, bool) or not isinstance(n_boot, int | np.integer) or n_boot < 1:
        raise ParamError("n_boot", f"{{name}} must be an integer of at least 1, got {n_boot!r}.")
    if isinstance(level, bool) or not isinstance(level, int | float | np.floating) or not 0.0 < level < 1.0:
        raise ParamError("level", f"{{name}} must be a number strictly between 0 and 1, got {level!r}.")


def _interval(values: np.ndarray, level: float) -> tuple[float, float]:
    """The percentile interval of ``values`` at ``level`` (linear interpolation between order statistics)."""
    lo, hi = np.quantile(values, [(1.0 - level) / 2.0, (1.0 + level) / 2.0])
    return float(lo), float(hi)


def bootstrap_mean_ci(
    values: Sequence[float] | np.ndarray, n_boot: int = 2000, level: float = 0.95, seed: int = 0
) -> tuple[float, float, float]:
    """``(mean, lo, hi)``: the mean of the 1-D sample ``values`` and its percentile bootstrap interval at ``level``.

    ``n_boot`` replicates each resample the values with replacement (a numpy generator seeded with ``seed``).
    """
    _check_boot(n_boot, level)
    x = np.asarray(values, dtype=np.float64)
    if x.ndim != 1 or x.size == 0 or not np.all(np.isfinite(x)):
        raise ParamError("values", f"{{name}} must be a non-empty 1-D sample of finite numbers, got shape {x.shape}.")
    mean = float(x.mean())
    if np.all(x == x[0]):
        return float(x[0]), float(x[0]), float(x[0])
    rng = np.random.default_rng(seed)
    step = max(1, _CHUNK_VALUES // x.size)
    means = np.concatenate([x[rng.integers(x.size, size=(min(step, n_boot - s), x.size))].mean(axis=1)
                            for s in range(0, int(n_boot), step)])
    lo, hi = _interval(means, level)
    return mean, lo, hi


def _counts(rng: np.random.Generator, n: int, reps: int) -> np.ndarray:
    """How often each of ``n`` items is drawn in each of ``reps`` resamples with replacement: (reps, n) floats."""
    idx = rng.integers(n, size=(reps, n)) + n * np.arange(reps)[:, None]
    return np.bincount(idx.ravel(), minlength=reps * n).reshape(reps, n).astype(np.float64)


def _call(fn: Callable[[dict[str, float]], float], means: Mapping[str, float]) -> float:
    """``fn(means)`` as a float; NaN where it divides by zero or overflows."""
    try:
        with np.errstate(all="ignore"):
            return float(fn(dict(means)))
    except ArithmeticError:
        return math.nan


def hierarchical_bootstrap(
    errors: Mapping[str, np.ndarray],
    derived: Mapping[str, Callable[[dict[str, float]], float]] | None = None,
    n_boot: int = 2000,
    level: float = 0.95,
    seed: int = 0,
) -> dict[str, dict[str, Any]]:
    """Percentile intervals of per-method means and derived statistics, resampling test frames and seeds.

    ``errors[method]``: shape ``(S_method, N)``, the per-seed, per-test-frame values of one method on the same ``N``
    test frames as every other method (``S`` may differ). Each of ``n_boot`` replicates draws ``N`` frames with
    replacement, shared by all methods, and, per method (in sorted name order), ``S_method`` seeds with replacement;
    a method's replicate value is its mean over the drawn seeds x frames. ``derived[name]`` maps the dict of method
    means to a number (``lambda m: (m["sim"] - m["trans"]) / (m["sim"] - m["real"])``); it is evaluated on the full
    data and on every replicate, and replicates where it is not finite are dropped (``lo`` and ``hi`` are None when
    more than half are).

    Returns ``{name: {"mean", "lo", "hi"}}`` for every method (with ``"n_seeds"`` too) and every derived statistic;
    ``"mean"`` is the point estimate on the full data.
    """
    _check_boot(n_boot, level)
    derived = dict(derived or {})
    if not errors:
        raise ParamError("errors", "{name} must hold at least one method.")
    clash = sorted(set(derived) & set(errors))
    if clash:
        raise ParamError("derived", f"{{name}} names {', '.join(clash)}, which are methods too; rename them.")
    names = sorted(errors)
    arrays: dict[str, np.ndarray] = {}
    for name in names:
        a = np.asarray(errors[name], dtype=np.float64)
        if a.ndim != 2 or a.shape[0] == 0 or a.shape[1] == 0 or not np.all(np.isfinite(a)):
            raise ParamError("errors", f"{{name}}[{name!r}] must be a (seeds, frames) array of finite numbers with at "
                                       f"least one of each, got shape {a.shape}.")
        arrays[name] = a
    n_frames = {a.shape[1] for a in arrays.values()}
    if len(n_frames) != 1:
        raise ParamError("errors", "{name} must hold every method on the same test frames, got frame counts "
                                   + ", ".join(f"{k}: {arrays[k].shape[1]}" for k in names) + ".")
    n = n_frames.pop()
    constant = {k: bool(np.all(a == a.flat[0])) for k, a in arrays.items()}
    point = {k: float(a.flat[0]) if constant[k] else float(a.mean()) for k, a in arrays.items()}

    rng = np.random.default_rng(seed)
    reps = {k: np.empty(int(n_boot)) for k in names}
    step = max(1, _CHUNK_VALUES // max(n, max(a.shape[0] for a in arrays.values())))
    for start in range(0, int(n_boot), step):
        m = min(step, int(n_boot) - start)
        frames = _counts(rng, n, m)  # (m, N), shared by every method
        for k in names:
            a = arrays[k]
            seeds = _counts(rng, a.shape[0], m)  # (m, S)
            per_seed = frames @ a.T  # (m, S): each seed's sum over the drawn frames
            reps[k][start:start + m] = (seeds * per_seed).sum(axis=1) / (a.shape[0] * n)
    for k in names:
        if constant[k]:  # a constant sample has a constant bootstrap: no rounding noise around it
            reps[k][:] = point[k]

    out: dict[str, dict[str, Any]] = {}
    for k in names:
        lo, hi = _interval(reps[k], level)
        out[k] = {"mean": point[k], "lo": lo, "hi": hi, "n_seeds": int(arrays[k].shape[0])}
    for name, fn in derived.items():
        values = np.array([_call(fn, {k: reps[k][b] for k in names}) for b in range(int(n_boot))])
        finite = values[np.isfinite(values)]
        lo_hi: tuple[float | None, float | None] = (None, None)
        if 2 * finite.size >= values.size:
            lo_hi = _interval(finite, level)
        out[name] = {"mean": _call(fn, point), "lo": lo_hi[0], "hi": lo_hi[1]}
    return out


def gap_standard_error(a_seeds: Sequence[float] | np.ndarray, b_seeds: Sequence[float] | np.ndarray) -> float:
    """The standard error of ``mean(a) - mean(b)`` from two independent per-seed samples.

    ``sqrt(var(a, ddof=1) / len(a) + var(b, ddof=1) / len(b))``; NaN when either sample has fewer than 2 values.
    """
    a = np.asarray(a_seeds, dtype=np.float64).ravel()
    b = np.asarray(b_seeds, dtype=np.float64).ravel()
    if a.size < 2 or b.size < 2:
        return math.nan
    return float(math.sqrt(a.var(ddof=1) / a.size + b.var(ddof=1) / b.size))
