"""The shared evaluation protocol and the regression controller."""

import numpy as np
import pytest
import torch

from controllers.evaluation import (
    cmaes_controller,
    evaluate,
    held_out_contexts,
    to_csv,
    to_markdown,
    zero_controller,
)
from controllers.regression import Regressor, collect, fit, regression_controller

VEL = "armlab/ReachSignalVelocity-v0"


def test_held_out_contexts_are_fixed_by_the_seed():
    a = held_out_contexts(VEL, n=4)
    b = held_out_contexts(VEL, n=4)
    assert all(np.array_equal(x.qd, y.qd) for x, y in zip(a, b))
    assert len({tuple(c.qd.round(6)) for c in a}) == 4


def test_cmaes_beats_zero_and_counts_its_episodes():
    contexts = held_out_contexts(VEL, n=4)
    zero = evaluate(zero_controller(), VEL, contexts)
    es = evaluate(cmaes_controller(budget=400), VEL, contexts)
    assert zero.success_2cm == 0.0 and es.success_1cm == 1.0
    assert es.median_y < 0.01 < zero.median_y
    assert zero.episodes_per_decision == 1.0
    assert 10 < es.episodes_per_decision <= 401
    table = to_markdown([zero, es])
    assert "| CMA-ES 400 |" in table and "| zero signal |" in table
    assert to_csv([zero, es]).count("\n") == 3


def test_evaluation_is_reproducible():
    contexts = held_out_contexts("armlab/ReachSignalState-v0", n=3)
    ctrl = cmaes_controller(budget=60)
    a = evaluate(ctrl, "armlab/ReachSignalState-v0", contexts)
    b = evaluate(ctrl, "armlab/ReachSignalState-v0", contexts)
    assert a.ys == b.ys


def test_regression_fits_a_known_linear_map():
    rng = np.random.default_rng(0)
    v = rng.uniform(-1, 1, (256, 3)).astype(np.float32)
    a = np.array([[0.5, -0.2], [0.1, 0.3], [-0.3, 0.1]])
    x = np.tanh(v @ a)
    reg = fit(v, x, epochs=600, seed=0)
    assert reg.losses[-1] < 0.02 * reg.losses[0]
    test_v = rng.uniform(-1, 1, (64, 3)).astype(np.float32)
    assert np.abs(reg.predict(test_v) - np.tanh(test_v @ a)).max() < 0.05


def test_regression_learns_v_to_x_on_the_velocity_stage(tmp_path):
    ex = collect(VEL, n=40, budget=250, seed=0)
    assert ex.episodes > 40 and ex.obs.shape == (40, 7) and np.median(ex.y) < 0.01
    reg = fit(ex.obs, ex.x, epochs=1500, seed=0)
    contexts = held_out_contexts(VEL, n=20)
    learned = evaluate(regression_controller(reg, ex.episodes), VEL, contexts)
    zero = evaluate(zero_controller(), VEL, contexts)
    assert learned.median_y < 0.5 * zero.median_y
    assert learned.training_episodes == ex.episodes and learned.episodes_per_decision == 1.0
    path = tmp_path / "reg.pt"
    reg.save(path)
    again = Regressor.load(path)
    assert np.array_equal(again.predict(ex.obs), reg.predict(ex.obs))


def test_corrupt_regression_file_is_a_clear_error(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a model")
    with pytest.raises(ValueError, match="not a readable armlab regression model"):
        Regressor.load(bad)
    torch.save({"state_dict": {}}, tmp_path / "partial.pt")
    with pytest.raises(ValueError):
        Regressor.load(tmp_path / "partial.pt")


def test_comparison_store_resumes_its_own_settings_and_refuses_others(tmp_path):
    from controllers.comparison import ResultStore, markdown, ordered
    from robot_env.io.errors import ParamError

    store = ResultStore(tmp_path / "rows.json", {"robot": "arm2"})
    base = {"median_y": 0.01, "p90_y": 0.02, "success_2cm": 1.0, "success_1cm": 0.5, "training_episodes": 0,
            "episodes_per_decision": 1.0, "wall_s": 0.1}
    store.add({**base, "stage": "velocity", "controller": "SAC 300 steps", "family": "SAC", "budget": 300,
               "total_episodes": 500.0})
    store.add({**base, "stage": "velocity", "controller": "zero signal", "family": "zero", "budget": 0,
               "total_episodes": 200.0})
    again = ResultStore(tmp_path / "rows.json", {"robot": "arm2"})
    assert again.done("velocity", "zero signal") is not None and again.done("fixed", "zero signal") is None
    assert [r["controller"] for r in ordered(again.rows)] == ["zero signal", "SAC 300 steps"]
    assert "| velocity | SAC 300 steps | 10.0 mm |" in markdown(again.rows)
    with pytest.raises(ParamError, match="holds a comparison run with other settings; use another out") as err:
        ResultStore(tmp_path / "rows.json", {"robot": "arm3"})
    assert err.value.param == "out"
