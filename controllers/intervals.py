"""Error bars over runs, reported the way Agarwal et al. (2021) recommend, computed with `rliable`.

A figure measured on several independent runs (training seeds) is summarised by its interquartile mean (IQM:
the mean of the middle 50 % of runs), mean and median, each with a 95 % interval from the stratified bootstrap
over runs (rliable's `StratifiedBootstrap`: runs are resampled with replacement within each task). Every
bootstrap is seeded, so the same scores give the same intervals.

A performance profile shows, for each distance tau, the fraction of held-out contexts a controller brings
within tau, pooled over its runs (rliable's score distribution, each context a "task"), with its own
bootstrap band over runs.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from robot_env.io.errors import ConfigError

#: the aggregates reported for every figure
AGGREGATES = ("iqm", "mean", "median")
DEFAULT_REPS = 2000  #: bootstrap replications (rliable's default for profiles; enough for two-digit intervals)


def _aggregate_funcs() -> dict:
    """rliable's IQM and mean; the median is the median of all (run, task) scores: rliable's
    ``aggregate_median`` is the median over tasks of each task's mean, which for one task is the mean again."""
    from rliable import metrics

    return {"iqm": metrics.aggregate_iqm, "mean": metrics.aggregate_mean, "median": lambda s: float(np.median(s))}


def _bootstrap(score: np.ndarray, func, reps: int, seed: int, confidence: float = 0.95) -> tuple:
    """rliable's stratified bootstrap of ``func`` over the runs of ``score``, seeded: (point, interval)."""
    import warnings

    from rliable import library as rly

    # rliable's StratifiedBootstrap draws its resampled runs from numpy's global RNG (np.random.choice), not from
    # the random_state it passes on to arch: seed that, and put the caller's global state back afterwards
    saved = np.random.get_state()
    np.random.seed(int(seed) % 2**32)
    try:
        with warnings.catch_warnings():  # arch prefers a Generator to the RandomState rliable hands it
            warnings.simplefilter("ignore", FutureWarning)
            points, cis = rly.get_interval_estimates({"x": score}, func, reps=int(reps),
                                                     confidence_interval_size=confidence,
                                                     random_state=np.random.RandomState(seed))
    finally:
        np.random.set_state(saved)
    return points["x"], cis["x"]


def _matrix(scores) -> np.ndarray:
    """``scores`` as a (runs, tasks) float matrix; a flat sequence is one task."""
    m = np.asarray(scores, dtype=float)
    if m.ndim == 1:
        m = m[:, None]
    if m.ndim != 2 or m.shape[0] < 1 or m.shape[1] < 1:
        raise ConfigError(f"scores must be a (runs, tasks) matrix with at least one run, got shape {m.shape}.")
    if not np.all(np.isfinite(m)):
        raise ConfigError("scores must be finite numbers.")
    return m


def interval_estimates(scores, reps: int = DEFAULT_REPS, seed: int = 0, confidence: float = 0.95) -> dict:
    """``{"iqm": {"value", "low", "high"}, "mean": ..., "median": ..., "runs": n}`` for a (runs, tasks) matrix
    (or a flat sequence of per-run scores), with stratified-bootstrap ``confidence`` intervals over runs.

    One run has no spread to resample: its interval is the point itself."""
    m = _matrix(scores)
    funcs = _aggregate_funcs()
    out: dict = {"runs": int(m.shape[0])}
    points, cis = _bootstrap(m, lambda s: np.array([f(s) for f in funcs.values()]), reps, seed, confidence)
    for k, name in enumerate(funcs):
        low, high = (float(v) for v in cis[:, k])
        value = float(points[k])
        out[name] = {"value": value, "low": min(low, value), "high": max(high, value)}
    return out


def summarize_runs(rows: Sequence[dict], keys: Sequence[str] = ("success_2cm", "success_1cm", "median_y"),
                   reps: int = DEFAULT_REPS, seed: int = 0) -> dict:
    """`interval_estimates` of each figure in ``keys`` over ``rows`` (one row per run)."""
    return {k: interval_estimates([float(r[k]) for r in rows], reps=reps, seed=seed) for k in keys}


def performance_profile(ys_by_run: Sequence[Sequence[float]], taus_mm: Sequence[float] | None = None,
                        reps: int = DEFAULT_REPS, seed: int = 0) -> dict:
    """The fraction of contexts within tau of the target for each tau (mm), pooled over runs, with a bootstrap
    band over runs: ``{"tau_mm": [...], "fraction": [...], "low": [...], "high": [...]}``.

    ``ys_by_run`` holds each run's final distances (m) on the same contexts (one row per run)."""
    ys = np.asarray([list(r) for r in ys_by_run], dtype=float) * 1000.0
    if ys.ndim != 2 or ys.shape[0] < 1 or ys.shape[1] < 1:
        raise ConfigError("a performance profile needs the distances of at least one run on at least one context.")
    ys = np.where(np.isfinite(ys), ys, 1e9)
    taus = np.asarray(taus_mm if taus_mm is not None else np.geomspace(1.0, 1000.0, 31), dtype=float)
    # rliable counts scores > tau; a distance y <= tau is the score -y >= -tau
    profile = lambda s: np.array([np.mean(s >= -t) for t in taus])  # noqa: E731
    points, cis = _bootstrap(-ys, profile, reps, seed)
    return {"tau_mm": taus.tolist(), "fraction": points.tolist(), "low": cis[0].tolist(), "high": cis[1].tolist(),
            "runs": int(ys.shape[0])}


def plot_profiles(profiles: dict[str, dict], path: str | Path, title: str = "") -> Path:
    """Performance profiles (`performance_profile` results by controller name) as one PNG, written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from robot_env.io.atomic import atomic_write

    fig, ax = plt.subplots(figsize=(6.0, 4.2))
    for name, p in profiles.items():
        line, = ax.semilogx(p["tau_mm"], p["fraction"], label=f"{name} ({p['runs']} runs)")
        ax.fill_between(p["tau_mm"], p["low"], p["high"], color=line.get_color(), alpha=0.2, lw=0)
    ax.axvline(20.0, color="k", ls="--", lw=0.8, label="2 cm")
    ax.set(xlabel="distance tau (mm)", ylabel="fraction of contexts with y <= tau", ylim=(0, 1.02),
           title=title or "performance profile (95 % bootstrap band over runs)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    path = Path(path)
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=110, format="png"))
    plt.close(fig)
    return path


def interval_text(est: dict, scale: float = 1.0, spec: str = ".1f", unit: str = "") -> str:
    """``IQM 91.5 [88.0, 94.0]`` for one `interval_estimates` aggregate (``est["iqm"]``-like), scaled."""
    return (f"{est['value'] * scale:{spec}}{unit} [{est['low'] * scale:{spec}}, {est['high'] * scale:{spec}}]")


__all__ = ["AGGREGATES", "interval_estimates", "interval_text", "performance_profile", "plot_profiles",
           "summarize_runs"]
