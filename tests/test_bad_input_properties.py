"""Open-ended bad input, drawn by hypothesis: env actions, reset seeds and options, ``--env-kwargs`` and
``--hyperparams`` strings, dataset settings. Each either works or raises an `ArmlabError` (what ``armlab``
answers with one sentence and exit code 2) -- never another exception, which would be reported as a bug.
"""

from __future__ import annotations

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from hypothesis.extra import numpy as hnp  # noqa: E402

from armlab_scripts._common import parse_kwargs  # noqa: E402
from robot_env.io.errors import ArmlabError  # noqa: E402

FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
FLOATS = st.floats(allow_nan=True, allow_infinity=True, width=64)
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-10**12, 10**12), FLOATS, st.text(max_size=12),
                    st.lists(st.integers(-5, 5), max_size=3))


def one_sentence(exc: BaseException) -> None:
    assert isinstance(exc, ArmlabError), f"{type(exc).__name__} is not an ArmlabError: {exc}"
    assert str(exc).strip(), "an empty message"


@pytest.fixture(scope="module")
def env():
    import gymnasium as gym

    import robot_env  # noqa: F401  (registers the ids)

    e = gym.make("armlab/ReachFixed-v0", robot="arm2").unwrapped
    e.reset(seed=0)
    yield e
    e.close()


ACTIONS = st.one_of(
    hnp.arrays(np.float64, st.just((2,)), elements=FLOATS),  # the right shape, any float
    hnp.arrays(np.float64, hnp.array_shapes(min_dims=0, max_dims=3, max_side=4), elements=FLOATS),
    hnp.arrays(np.float32, st.just((2,)), elements=st.floats(width=32)),
    st.lists(FLOATS, max_size=4), FLOATS,
)


@FAST
@given(action=ACTIONS)
def test_step_takes_any_float_array_or_says_why(env, action):
    if env.unwrapped._episode_over if hasattr(env.unwrapped, "_episode_over") else False:
        env.reset(seed=0)
    try:
        obs, reward, terminated, truncated, info = env.step(action)
    except ArmlabError as exc:
        one_sentence(exc)
        return
    except RuntimeError as exc:  # the episode ended on the previous example: a usage error of the caller
        assert "reset()" in str(exc)
        env.reset(seed=0)
        return
    assert np.all(np.isfinite(obs)) and np.isfinite(reward)
    if terminated or truncated:
        env.reset(seed=0)


@FAST
@given(seed=st.one_of(st.none(), st.integers(-2**70, 2**70)),
       options=st.one_of(st.none(), st.dictionaries(st.text(max_size=8), SCALARS, max_size=3)))
def test_reset_takes_any_seed_and_options_or_says_why(env, seed, options):
    try:
        obs, info = env.reset(seed=seed, options=options)
    except ArmlabError as exc:
        one_sentence(exc)
        return
    assert np.all(np.isfinite(obs))


KEYS = st.sampled_from(["robot", "speed_bound", "substeps", "obs_type", "reward_at", "history", "privileged",
                        "render_mode", "success_threshold", "randomization", "nope", "learning_rate", "gamma",
                        "batch_size", "buffer_size", "tau", "ent_coef", "train_freq", "policy_kwargs", "net_arch"])
VALUES = st.one_of(st.sampled_from(["arm2", "arm9", "-1", "0", "1e9", "nan", "inf", "[1, 2]", "{a: 1}", "true",
                                    "lin_0.3", "dict(net_arch=[8])", "", "'", "[", "human", "state"]),
                   st.text(max_size=10))
ITEMS = st.lists(st.one_of(st.builds(lambda k, v: f"{k}:{v}", KEYS, VALUES), st.text(max_size=12)), max_size=3)


@FAST
@given(items=ITEMS)
def test_env_kwargs_strings_work_or_say_why(items):
    from controllers.rl import probe_env

    try:
        probe_env("armlab/ReachSignalFixed-v0", parse_kwargs(items))
    except ArmlabError as exc:
        one_sentence(exc)


@FAST
@given(items=ITEMS)
def test_hyperparams_strings_work_or_say_why(items):
    from controllers.rl import load_hyperparams

    try:
        load_hyperparams("sac", "armlab/ReachSignalFixed-v0", parse_kwargs(items))
    except ArmlabError as exc:
        one_sentence(exc)


@FAST
@given(fields=st.fixed_dictionaries({}, optional={
    "n": SCALARS, "size": SCALARS, "seed": SCALARS, "style": SCALARS, "robot": SCALARS,
    "max_distractors": SCALARS, "pose_episodes": SCALARS, "poses_from": st.sampled_from([None, "runs/x"]),
    "randomize": st.one_of(st.lists(st.sampled_from(["colors", "light", "camera", "nope", ""]), max_size=3).map(tuple),
                           SCALARS),
}))
def test_dataset_settings_validate_or_say_why(fields):
    from robot_env.dataset import DatasetConfig

    try:
        DatasetConfig(**fields).validate()
    except ArmlabError as exc:
        one_sentence(exc)
