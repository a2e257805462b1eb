"""One evaluation protocol for every controller, and the table the lecture's comparison prints.

A controller decides the signal for a context. Every controller is evaluated on the same
held-out contexts (drawn once from a fixed seed), and reported with the same figures:
median and 90th-percentile final distance y, success rate at 2 cm and 1 cm, simulated
episodes spent in training, simulated episodes spent per decision at deployment, and wall
time.
"""

from __future__ import annotations

import csv
import io
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import gymnasium as gym
import numpy as np

import controllers.residual  # noqa: F401  (serves the envs' residual keywords)
import robot_env  # noqa: F401  (registers the ids)
from robot_env.tasks import Context

HELD_OUT_SEED = 1_000_000  #: contexts of the evaluation protocol use seeds from here on


def held_out_contexts(env_id: str, n: int = 200, seed: int = HELD_OUT_SEED, **env_kwargs) -> list[Context]:
    """The evaluation contexts: ``n`` draws with seeds ``seed, seed + 1, ...``."""
    env = gym.make(env_id, **env_kwargs)
    try:
        out = []
        for i in range(n):
            env.reset(seed=seed + i)
            out.append(env.unwrapped.context)
        return out
    finally:
        env.close()


@dataclass
class Controller:
    """Something that acts in an env: ``act(env, obs) -> action`` for each step.

    For an open-loop env one call decides the whole signal; ``act`` may simulate candidate
    signals with ``env.unwrapped.evaluate`` (their count is read from the env's counter).
    """

    name: str
    act: Callable
    training_episodes: float = 0.0  #: simulated episodes spent before deployment
    info: dict = field(default_factory=dict)


@dataclass
class EvalResult:
    controller: str
    env_id: str
    contexts: int
    median_y: float
    p90_y: float
    success_2cm: float
    success_1cm: float
    training_episodes: float
    episodes_per_decision: float
    wall_s: float
    ys: list[float] = field(default_factory=list, repr=False)

    def row(self) -> dict:
        d = asdict(self)
        d.pop("ys")
        return d


def evaluate(controller: Controller, env_id: str, contexts: list[Context], seed: int = HELD_OUT_SEED,
             **env_kwargs) -> EvalResult:
    """Run ``controller`` once on each context and summarize the final distances."""
    env = gym.make(env_id, **env_kwargs)
    u = env.unwrapped
    ys, extra = [], 0
    t0 = time.perf_counter()
    try:
        for i, ctx in enumerate(contexts):
            obs, _ = env.reset(seed=seed + i, options={"context": ctx})
            before = getattr(u, "evaluations", 0)
            done, info = False, {}
            while not done:
                obs, _, term, trunc, info = env.step(controller.act(env, obs))
                done = term or trunc
            extra += getattr(u, "evaluations", 0) - before
            y = info.get("distance", math.inf)
            ys.append(float(y) if math.isfinite(y) else math.inf)
    finally:
        env.close()
    y = np.array(ys)
    return EvalResult(
        controller=controller.name, env_id=env_id, contexts=len(contexts),
        median_y=float(np.median(y)), p90_y=float(np.percentile(y, 90)),
        success_2cm=float(np.mean(y < 0.02)), success_1cm=float(np.mean(y < 0.01)),
        training_episodes=float(controller.training_episodes),
        episodes_per_decision=1.0 + extra / max(len(contexts), 1),
        wall_s=time.perf_counter() - t0, ys=ys,
    )


COLUMNS = ("controller", "env_id", "contexts", "median_y", "p90_y", "success_2cm", "success_1cm",
           "training_episodes", "episodes_per_decision", "wall_s")


def to_csv(results: list, columns=COLUMNS) -> str:
    """CSV of `EvalResult`s or row dicts (properly quoted: controller names hold commas)."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(columns), extrasaction="ignore")
    w.writeheader()
    for r in results:
        w.writerow(r if isinstance(r, dict) else r.row())
    return buf.getvalue()


def per_context_rows(contexts: list[Context], result: EvalResult, seed: int = HELD_OUT_SEED) -> list[dict]:
    """One row per context of ``result``: its final distance y and what was drawn for it (start
    state j and v, target p and, where drawn, the dynamics), to see *which* contexts fail."""
    rows = []
    for i, (ctx, y) in enumerate(zip(contexts, result.ys)):
        row = {"context": i, "seed": seed + i, "y": y, "success_2cm": int(y < 0.02), "success_1cm": int(y < 0.01)}
        row.update({f"target_{a}": float(v) for a, v in zip("xyz", ctx.target)})
        row.update({f"j{k}": float(v) for k, v in enumerate(ctx.q)})
        row.update({f"v{k}": float(v) for k, v in enumerate(ctx.qd)})
        if ctx.dynamics is not None:
            d = ctx.dynamics
            row["torque_gain"] = float(d.torque_gain)
            for name in ("mass_scale", "damping_scale", "friction"):
                row.update({f"{name}{k}": float(v) for k, v in enumerate(np.atleast_1d(getattr(d, name)))})
        rows.append(row)
    return rows


METRICS_HEADER = "median y | p90 y | success@2cm | success@1cm | training episodes | episodes / decision"


def metric_cells(row: dict) -> str:
    """The shared metric columns of a result row, as Markdown cells (see `METRICS_HEADER`)."""
    return (f"{row['median_y'] * 1000:.1f} mm | {row['p90_y'] * 1000:.1f} mm | {row['success_2cm']:.0%} "
            f"| {row['success_1cm']:.0%} | {row['training_episodes']:,.0f} | {row['episodes_per_decision']:,.1f}")


def to_markdown(results: list[EvalResult]) -> str:
    lines = [f"| controller | env | {METRICS_HEADER} | wall time |", "|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        lines.append(f"| {r.controller} | {r.env_id.split('/')[-1]} | {metric_cells(r.row())} | {r.wall_s:.1f} s |")
    return "\n".join(lines) + "\n"


# -- the controllers every comparison has ------------------------------------------------------
def zero_controller() -> Controller:
    """The zero signal: what happens if nobody decides anything."""
    return Controller("zero signal", lambda env, obs: np.zeros(env.action_space.shape))


def cmaes_controller(budget: int = 1000, seed: int = 0, target: float = 0.002) -> Controller:
    """Per-context CMA-ES on an open-loop env ("try hundreds of x" for every decision).

    Each decision's search is seeded from ``seed`` and a draw of the env's ``np_random``
    (itself seeded per context by the protocol), so repeated decisions on the same context,
    as in the ``fixed`` stage, are independent runs and the figures are medians over seeds.
    """
    from controllers.optimization import cmaes

    def act(env, obs):
        run_seed = seed + int(env.unwrapped.np_random.integers(0, 2**31 - 1))
        res = cmaes(env.unwrapped.evaluate, env.action_space.shape[0], budget=budget, seed=run_seed, target=target)
        return res.x

    return Controller(f"CMA-ES {budget}", act, info={"budget": budget})
