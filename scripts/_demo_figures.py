"""The demo's figures: the y(x) landscape, the comparison plot, labelled and per-class image sheets, written
atomically (`robot_env.io.atomic`)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from robot_env.io.atomic import atomic_write


def fmt_m(y: float) -> str:
    """A distance in the unit that shows it: um, mm or cm."""
    if y < 1e-3:
        return f"{y * 1e6:.1f} um"
    if y < 1e-2:
        return f"{y * 1e3:.2f} mm"
    return f"{y * 1e2:.1f} cm"


def landscape_plot(path: Path, xs, y, fixed: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import LogNorm

    es, rs = fixed["cmaes"], fixed["random"]
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(12, 5.2), gridspec_kw={"width_ratios": [1.1, 1]})
    im = ax.pcolormesh(xs, xs, np.maximum(y, 1e-4), norm=LogNorm(vmin=1e-3, vmax=max(y.max(), 1e-2)),
                       cmap="viridis_r", shading="auto")
    fig.colorbar(im, ax=ax, label="distance y after t (m, log scale)")
    ax.contour(xs, xs, y, levels=[0.01, 0.02], colors=["white", "0.8"], linewidths=0.8)
    path_pts = np.array(es.path)
    ax.plot(path_pts[:, 0], path_pts[:, 1], "-o", color="tab:red", ms=3, lw=1.2, label="CMA-ES mean per generation")
    ax.plot(*es.x, "*", color="gold", ms=14, mec="k", label=f"best x (y = {fmt_m(es.y)})")
    ax.plot(0, 0, "s", color="w", mec="k", label=f"zero signal (y = {fmt_m(fixed['zero_y'])})")
    ax.set_xlim(-1, 1)
    ax.set_ylim(-1, 1)
    ax.set(xlabel="x1 (shoulder torque / max)", ylabel="x2 (elbow torque / max)",
           title="arm2, stage 'fixed': y(x) over the whole signal space")
    ax.legend(loc="lower left", fontsize=8, framealpha=0.85)
    bx.semilogy(np.arange(1, len(es.curve) + 1), es.curve, label="CMA-ES")
    bx.semilogy(np.arange(1, len(rs.curve) + 1), rs.curve, label="random search")
    bx.axhline(0.01, color="k", ls="--", lw=0.8, label="1 cm")
    bx.set(xlabel="evaluations (simulated episodes)", ylabel="best y so far (m)",
           title="try hundreds of x: best distance vs evaluations")
    bx.legend()
    fig.tight_layout()
    save_fig(fig, path)


def comparison_plot(rows: list[dict], path: Path, decisions: int = 200) -> None:
    """Median final distance against total simulated episodes for ``decisions`` decisions."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for r in rows:
        total = max(1.0, r["training_episodes"] + r["episodes_per_decision"] * decisions)
        ax.loglog(total, max(r["median_y"], 1e-4), "o", ms=8, label=r["controller"])
    ax.axhline(0.02, color="k", ls="--", lw=0.8, label="2 cm")
    ax.set(xlabel=f"simulated episodes for {decisions} decisions (training + deployment)",
           ylabel="median final distance y (m)", title="velocity stage: what each controller costs")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    save_fig(fig, path)


def save_fig(fig, path: Path) -> None:
    import matplotlib.pyplot as plt

    try:
        atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=110))
    finally:
        plt.close(fig)


def write_png(path: Path, rgb: np.ndarray) -> None:
    import cv2

    def write(tmp: str) -> None:
        if not cv2.imwrite(tmp, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)):
            raise OSError(f"could not write {path}")

    atomic_write(path, write)


def label_sheet(sim: Path, real: Path, frames: list[int], scale: int = 3) -> np.ndarray:
    """Sim (top row) and real-style (bottom row) frames with their labels drawn: COCO boxes
    (target red, others white) and the target's labelled pixel (green ring)."""
    import cv2

    rows = []
    for root in (sim, real):
        tiles = []
        for i in frames:
            lab = json.loads((root / "labels" / f"{i:06d}.json").read_text())
            img = cv2.cvtColor(cv2.imread(str(root / lab["rgb"])), cv2.COLOR_BGR2RGB)
            img = cv2.resize(img, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST)
            for o in lab["objects"]:
                if o["area"] == 0 or o["category"] == "robot":
                    continue
                x, y, w, h = (v * scale for v in o["bbox"])
                color = (230, 40, 40) if o["is_target"] else (255, 255, 255)
                cv2.rectangle(img, (x, y), (x + w - 1, y + h - 1), color, 1)
            u, v = (c * scale + (scale - 1) / 2 for c in lab["target"]["pixel"])
            if np.isfinite(u) and np.isfinite(v):
                cv2.circle(img, (int(round(u)), int(round(v))), 2 * scale, (40, 230, 40), 1, cv2.LINE_AA)
            cv2.putText(img, lab["class_name"], (3, 12), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 255), 1,
                        cv2.LINE_AA)
            tiles.append(img)
        rows.append(np.concatenate(tiles, axis=1))
    return np.concatenate(rows, axis=0)


def class_sheet(rows: list[np.ndarray], scale: int = 2) -> np.ndarray:
    """One row of images per class (uint8 NHWC each), upscaled for viewing."""
    import cv2

    sheet = np.concatenate([np.concatenate(list(r), axis=1) for r in rows], axis=0)
    return cv2.resize(sheet, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST)
