import os

import gymnasium as gym
import pytest

os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture
def make():
    """``gym.make`` whose envs are closed after the test."""
    envs = []

    def _make(env_id, **kw):
        env = gym.make(env_id, **kw)
        envs.append(env)
        return env

    yield _make
    for e in envs:
        e.close()
