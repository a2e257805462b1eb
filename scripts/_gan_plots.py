"""The plots of `armlab gan`: ADA's p and r_t (`gan ada`) and `fid_custom` per snapshot (`gan eval --snapshots`),
each written atomically as a PNG."""

from __future__ import annotations

import io
from pathlib import Path

__all__ = ["plot_p", "plot_snapshots"]


def _save(fig, path: Path) -> None:
    import matplotlib.pyplot as plt

    from robot_env.io.atomic import atomic_write_bytes

    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, buf.getvalue())


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_p(rows: list[dict], r: dict, path: Path) -> None:
    """p and r_t against the step, the judged window shaded, written atomically as a PNG."""
    from generative.gan.ada import SETTLED_RANGE

    plt = _pyplot()
    steps = [x["step"] for x in rows]
    fig, ax = plt.subplots(figsize=(7, 3.6))
    ax.plot(steps, [x["ada_p"] for x in rows], label="p (augmentation probability)", color="C0")
    ax.plot(steps, [x["ada_rt"] for x in rows], label="r_t = E[sign D(real)]", color="C1", alpha=0.7)
    ax.axvspan(r["from_step"], r["steps"], color="0.9", zorder=0,
               label="judged: " + ("settled" if r["settled"] else "not settled"))
    ax.axvline(r["band_from"], color="C0", ls=":", lw=1,
               label=f"p within {SETTLED_RANGE:g} from step {r['band_from']}")
    ax.set_xlabel("step")
    ax.set_ylim(-0.05, 1.05)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    ax.set_title(f"ADA: p peaked at {r['p_peak']:.2f}; from step {r['from_step']} it stays in "
                 f"{r['p_min']:.2f}-{r['p_max']:.2f}")
    _save(fig, path)


def plot_snapshots(r: dict, path: Path) -> str:
    """``fid_custom`` of every evaluated step of :func:`generative.gan.evaluate_snapshots`'s report ``r``, the best
    step marked; returns the path written."""
    plt = _pyplot()
    steps = [row["step"] for row in r["rows"]]
    fig, ax = plt.subplots(figsize=(7, 3.4))
    ax.plot(steps, [row["fid_custom"] for row in r["rows"]], "o-", ms=3, color="C0", label="fid_custom")
    ax.plot([r["best"]["step"]], [r["best"]["fid_custom"]], "*", ms=12, color="C3",
            label=f"lowest: {r['best']['fid_custom']:.3f} at step {r['best']['step']}")
    ax.set_xlabel("step")
    ax.set_ylabel("fid_custom (lower is better)")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(f"{Path(r['run']).name}: fid_custom of each snapshot (the same frames and noise)")
    _save(fig, path)
    return str(path)
