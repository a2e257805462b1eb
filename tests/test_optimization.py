"""The per-context optimizer: solves a context, beats random search, is seeded."""

import gymnasium as gym
import numpy as np
import pytest

import robot_env  # noqa: F401
from controllers.optimization import cmaes, random_search


@pytest.fixture
def fixed_env():
    env = gym.make("armlab/ReachSignalFixed-v0").unwrapped
    env.reset(seed=0)
    yield env
    env.close()


def test_cmaes_reaches_below_a_centimetre(fixed_env):
    res = cmaes(fixed_env.evaluate, 2, budget=1000, seed=0, target=0.002)
    assert res.y < 0.01
    assert res.evaluations == len(res.curve) <= 1000
    assert all(b <= a for a, b in zip(res.curve, res.curve[1:]))  # best-so-far never rises
    assert fixed_env.evaluate(res.x) == pytest.approx(res.y)


def test_cmaes_beats_random_search_on_the_same_budget(fixed_env):
    es = [cmaes(fixed_env.evaluate, 2, budget=300, seed=s).y for s in range(3)]
    rs = [random_search(fixed_env.evaluate, 2, budget=300, seed=s).y for s in range(3)]
    assert np.median(es) < 0.1 * np.median(rs)


def test_same_seed_same_search(fixed_env):
    a = cmaes(fixed_env.evaluate, 2, budget=200, seed=7)
    b = cmaes(fixed_env.evaluate, 2, budget=200, seed=7)
    assert np.array_equal(a.x, b.x) and a.curve == b.curve


def test_path_stays_in_the_signal_box(fixed_env):
    res = cmaes(fixed_env.evaluate, 2, budget=300, seed=1)
    assert np.all(np.abs(np.array(res.path)) <= 1.0)


def test_restarts_escape_a_local_minimum():
    """A 1-D function with a wide local basin at -0.6 and the global one at 0.7."""

    def f(x):
        x = float(x[0])
        return min(0.05 + (x + 0.6) ** 2, (x - 0.7) ** 2 * 50)

    res = cmaes(f, 1, budget=2000, seed=0, x0=np.array([-0.6]), sigma0=0.05, target=1e-6)
    assert res.y < 1e-4 and res.x[0] == pytest.approx(0.7, abs=0.01)
