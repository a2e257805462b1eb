"""The main job: the lecture's reaching problem end to end, in a few minutes on a laptop CPU.

1. builds all six envs and checks each with Gymnasium's env checker;
2. runs CMA-ES ("try hundreds of x") on one context of each open-loop stage, beside
   random search, and prints a table (stage, best y, evaluations, wall time);
3. draws the arm2 ``fixed`` stage's landscape y(x) over the whole 2-D signal space with
   the CMA-ES search path on it, and the best-y-so-far curves (``landscape.png``);
4. on the ``velocity`` stage, compares the zero signal, CMA-ES per context, regression from
   optimized examples and a short SAC training on the same held-out contexts;
5. records the trained SAC policy from two cameras (``sac_rollout.webm``).

Everything lands in ``--out`` (default ``runs/demo``): the plot, the video, the SAC run
(``rl/``), ``results.json`` and ``summary.md``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm


def _check_envs(progress: bool) -> list[dict]:
    import gymnasium as gym
    from gymnasium.utils.env_checker import check_env

    import robot_env

    rows = []
    for env_id in tqdm(robot_env.ENV_IDS, desc="build + check envs", disable=not progress):
        env = gym.make(env_id)
        check_env(env.unwrapped, skip_render_check=True)
        rows.append({"id": env_id, "obs": list(env.observation_space.shape), "action": list(env.action_space.shape)})
        env.close()
    return rows


def _search(stage: str, budget: int, seed: int) -> dict:
    import gymnasium as gym

    import robot_env
    from controllers.optimization import cmaes, random_search

    env = gym.make(robot_env.OPEN_LOOP_IDS[stage], robot="arm2").unwrapped
    try:
        env.reset(seed=seed)
        dim = env.action_space.shape[0]
        es = cmaes(env.evaluate, dim, budget=budget, seed=seed)
        rs = random_search(env.evaluate, dim, budget=budget, seed=seed)
        zero = env.evaluate(np.zeros(dim))
    finally:
        env.close()
    return {"stage": stage, "cmaes": es, "random": rs, "zero_y": zero}


def _landscape(grid: int, progress: bool) -> tuple[np.ndarray, np.ndarray]:
    import gymnasium as gym

    import robot_env

    env = gym.make(robot_env.OPEN_LOOP_IDS["fixed"], robot="arm2").unwrapped
    try:
        env.reset(seed=0)
        xs = np.linspace(-1.0, 1.0, grid)
        y = np.empty((grid, grid))
        for i in tqdm(range(grid), desc=f"landscape {grid}x{grid}", disable=not progress):
            for j in range(grid):
                y[i, j] = env.evaluate(np.array([xs[j], xs[i]]))  # rows: x2, columns: x1
    finally:
        env.close()
    return xs, y


def _fmt_m(y: float) -> str:
    """A distance in the unit that shows it: um, mm or cm."""
    if y < 1e-3:
        return f"{y * 1e6:.1f} um"
    if y < 1e-2:
        return f"{y * 1e3:.2f} mm"
    return f"{y * 1e2:.1f} cm"


def _plot(path: Path, xs, y, fixed: dict) -> None:
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
    ax.plot(*es.x, "*", color="gold", ms=14, mec="k", label=f"best x (y = {_fmt_m(es.y)})")
    ax.plot(0, 0, "s", color="w", mec="k", label=f"zero signal (y = {_fmt_m(fixed['zero_y'])})")
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
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)


def _learn_the_mapping(out: Path, steps: int, n_contexts: int, seed: int, progress: bool) -> tuple[str, list]:
    """Velocity stage: zero signal, CMA-ES per context, regression from optimized examples and
    a short SAC training, on the same held-out contexts."""
    import shutil

    from controllers import rl
    from controllers.evaluation import cmaes_controller, evaluate, held_out_contexts, to_markdown, zero_controller
    from controllers.regression import collect, fit, regression_controller

    env_id, kw = "armlab/ReachSignalVelocity-v0", {"robot": "arm2"}
    contexts = held_out_contexts(env_id, n=n_contexts, **kw)
    rl_dir = out / "rl"
    if rl_dir.exists():  # a fresh, seeded run each time: the demo's figures are reproducible
        shutil.rmtree(rl_dir)
    res = rl.train("sac", env_id, steps, folder=rl_dir, env_kwargs=kw, seed=seed, eval_freq=0, save_freq=0,
                   progress_bar=progress)
    examples = collect(env_id, 30, budget=150, seed=seed, **kw)
    reg = fit(examples.obs, examples.x, epochs=1500, seed=seed)
    controllers = [zero_controller(), cmaes_controller(budget=150, seed=seed),
                   regression_controller(reg, examples.episodes, name=f"regression ({len(examples.obs)} examples)"),
                   rl.policy_controller(res.run_dir)]
    controllers[-1].name = f"SAC ({steps:,} steps, {res.wall_s:.0f} s)"
    results = [evaluate(c, env_id, contexts, **kw) for c in tqdm(controllers, desc="evaluate", disable=not progress)]
    return to_markdown(results), [r.row() for r in results]


def _video(rl_dir: Path, path: Path, seed: int) -> None:
    import gymnasium as gym

    from controllers import rl
    from robot_env.video import RolloutRecorder, VideoWriter

    ctrl = rl.policy_controller(next(rl_dir.glob("sac/*")))
    env = gym.make("armlab/ReachSignalVelocity-v0", robot="arm2")
    try:
        recorder = RolloutRecorder(env, ("front", "top"), size=(320, 240))
        with VideoWriter(path, fps=recorder.fps, size=recorder.frame_size) as writer:
            recorder.record(ctrl, episodes=3, seed=seed, writer=writer)
    finally:
        env.close()


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="runs/demo", help="output folder (created if needed)")
    p.add_argument("--quick", action="store_true", help="smaller grid and budgets (about a minute)")
    p.add_argument("--budget", type=int, default=None, help="evaluations per search (default 600, quick 300)")
    p.add_argument("--grid", type=int, default=None, help="landscape resolution per axis (default 81, quick 41)")
    p.add_argument("--rl-steps", type=int, default=None, help="SAC training steps (default 3000, quick 600)")
    p.add_argument("--seed", type=int, default=0, help="context and optimizer seed")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.add_argument("--json", action="store_true", help="print the figures as one JSON object on the last line")


def run(args: argparse.Namespace) -> int:
    from armlab_scripts._common import UsageError, atomic_write_text, emit_json

    budget = args.budget or (300 if args.quick else 600)
    grid = args.grid or (41 if args.quick else 81)
    rl_steps = args.rl_steps or (600 if args.quick else 3000)
    contexts = 20 if args.quick else 50
    if budget < 10 or grid < 5 or rl_steps < 100:
        raise UsageError("--budget must be >= 10, --grid >= 5 and --rl-steps >= 100.")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} exists and is not a folder.")
    out.mkdir(parents=True, exist_ok=True)
    progress = not args.no_progress
    t0 = time.perf_counter()

    envs = _check_envs(progress)
    print(f"[1/5] built and checked {len(envs)} envs: " + ", ".join(e["id"].split("/")[1] for e in envs))

    searches = [_search(stage, budget, args.seed) for stage in tqdm(("fixed", "velocity", "state"),
                                                                   desc="CMA-ES per stage", disable=not progress)]
    table = ["| stage | CMA-ES best y | random best y | zero-signal y | evaluations | wall time |",
             "|---|---|---|---|---|---|"]
    for s in searches:
        es, rs = s["cmaes"], s["random"]
        table.append(f"| {s['stage']} | {_fmt_m(es.y)} | {_fmt_m(rs.y)} | {_fmt_m(s['zero_y'])} "
                     f"| {es.evaluations} | {es.wall_time:.2f} s |")
    print("[2/5] CMA-ES on one context per stage (arm2, open loop):")
    print("\n".join(table))

    xs, y = _landscape(grid, progress)
    plot = out / "landscape.png"
    _plot(plot, xs, y, searches[0])
    print(f"[3/5] landscape of y(x) with the CMA-ES path: {plot}")

    rl_table, rl_rows = _learn_the_mapping(out, rl_steps, contexts, args.seed, progress)
    print(f"[4/5] the lecture's comparison on the velocity stage ({contexts} held-out contexts, arm2):")
    print(rl_table)
    video = out / "sac_rollout.webm"
    _video(out / "rl", video, args.seed)
    print(f"[5/5] rollout video of the trained SAC policy: {video}")

    results = {
        "envs": envs,
        "searches": [{"stage": s["stage"], "cmaes_y": s["cmaes"].y, "cmaes_x": s["cmaes"].x.tolist(),
                      "evaluations": s["cmaes"].evaluations, "wall_s": s["cmaes"].wall_time,
                      "random_y": s["random"].y, "zero_y": s["zero_y"]} for s in searches],
        "landscape": {"grid": grid, "min_y": float(y.min()), "share_below_1cm": float(np.mean(y < 0.01))},
        "comparison": rl_rows, "video": video.name,
        "budget": budget, "seed": args.seed, "wall_s": time.perf_counter() - t0,
    }
    atomic_write_text(out / "results.json", json.dumps(results, indent=2))
    atomic_write_text(out / "summary.md", "# armlab demo\n\n" + "\n".join(table) + f"\n\n![landscape]({plot.name})\n"
                      f"\n## Optimization vs regression vs RL (velocity stage)\n\n{rl_table}\n")
    print(f"done in {results['wall_s']:.0f} s; results in {out}/")
    if args.json:
        figures = {"best_y_" + s["stage"]: s["cmaes_y"] for s in results["searches"]}
        figures.update({f"velocity_median_y[{r['controller']}]": r["median_y"] for r in rl_rows})
        emit_json(figures | {"wall_s": results["wall_s"]})
    return 0
