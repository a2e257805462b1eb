"""Per-context search for the signal x ("try hundreds of x", the lecture's first answer).

`cmaes` wraps the ``cma`` package's CMA-ES; `random_search` is the naive baseline.
Both take ``evaluate(x) -> y`` (for instance `robot_env.ReachSignalEnv.evaluate`),
a budget in evaluations and a seed, and return an `OptResult` with the best x, the
best y and the best-y-so-far curve.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np


@dataclass
class OptResult:
    """Outcome of one search."""

    x: np.ndarray  #: best signal found
    y: float  #: its distance (m)
    evaluations: int  #: evaluations spent
    curve: list[float] = field(default_factory=list)  #: best y after each evaluation
    path: list[np.ndarray] = field(default_factory=list)  #: search mean per generation, in [-1, 1] (CMA-ES)
    wall_time: float = 0.0


def cmaes(
    evaluate: Callable[[np.ndarray], float],
    dim: int,
    budget: int = 1000,
    sigma0: float = 0.3,
    seed: int = 0,
    target: float = 0.0,
    x0: np.ndarray | None = None,
    restarts: bool = True,
    stall: int = 20,
) -> OptResult:
    """CMA-ES on the box [-1, 1]^dim, restarting from random points until ``budget`` evaluations.

    A run restarts from a random point once its best y improved by less than 5 % over
    the last ``stall`` generations (a local minimum: the reach landscape has several,
    elbow-up and elbow-down among them). Stops early once y <= ``target``. ``seed``
    fixes every draw, restarts included.
    """
    import cma

    t0 = time.perf_counter()
    rng = np.random.default_rng(seed)
    best_x, best_y, used = np.zeros(dim), math.inf, 0
    curve: list[float] = []
    path: list[np.ndarray] = []
    popsize = 4 + int(3 * math.log(max(dim, 1)))
    start = np.zeros(dim) if x0 is None else np.asarray(x0, float)
    while used < budget and best_y > target:
        opts = {
            "bounds": [-1.0, 1.0], "popsize": popsize, "seed": int(rng.integers(1, 2**31 - 1)),
            "verbose": -9, "maxfevals": budget - used, "tolfun": 1e-8, "tolx": 1e-6,
        }
        es = cma.CMAEvolutionStrategy(start, sigma0, opts)
        run_best: list[float] = []
        while not es.stop() and used < budget and best_y > target and not _stagnated(run_best, stall):
            xs = es.ask()
            ys = []
            for x in xs:
                y = float(evaluate(np.asarray(x)))
                ys.append(y if math.isfinite(y) else 1e9)
                used += 1
                if y < best_y:
                    best_x, best_y = np.asarray(x).copy(), y
                curve.append(best_y)
                if used >= budget or best_y <= target:
                    break
            if len(ys) == len(xs):
                es.tell(xs, ys)
            run_best.append(min(ys + run_best[-1:]))
            path.append(np.asarray(es.boundary_handler.transform(np.asarray(es.mean)), dtype=float))
        if not restarts:
            break
        start = rng.uniform(-0.8, 0.8, dim)
    return OptResult(best_x, best_y, used, curve, path, time.perf_counter() - t0)


def _stagnated(run_best: list[float], stall: int) -> bool:
    return len(run_best) > stall and run_best[-1] > 0.95 * run_best[-1 - stall]


def random_search(
    evaluate: Callable[[np.ndarray], float], dim: int, budget: int = 1000, seed: int = 0, target: float = 0.0
) -> OptResult:
    """Uniform random signals in [-1, 1]^dim: the baseline CMA-ES should beat."""
    t0 = time.perf_counter()
    rng = np.random.default_rng(seed)
    best_x, best_y, curve = np.zeros(dim), math.inf, []
    for _ in range(budget):
        x = rng.uniform(-1.0, 1.0, dim)
        y = float(evaluate(x))
        if y < best_y:
            best_x, best_y = x, y
        curve.append(best_y)
        if best_y <= target:
            break
    return OptResult(best_x, best_y, len(curve), curve, [], time.perf_counter() - t0)
