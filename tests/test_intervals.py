"""Error bars over runs (controllers/intervals.py, rliable); `armlab evaluate` and `armlab compare` over seeds."""

import json

import numpy as np
import pytest

from armlab_scripts.cli import main
from controllers import rl
from controllers.intervals import interval_estimates, performance_profile, plot_profiles, summarize_runs


def test_iqm_mean_and_median_of_known_scores():
    est = interval_estimates([8, 1, 7, 2, 6, 3, 5, 4], reps=500)
    assert est["runs"] == 8
    assert est["iqm"]["value"] == pytest.approx(4.5)  # the middle half: 3, 4, 5, 6
    assert est["mean"]["value"] == pytest.approx(4.5) and est["median"]["value"] == pytest.approx(4.5)
    skewed = interval_estimates([0.0, 0.9, 0.91, 0.92, 0.93, 0.94, 0.95, 1.0], reps=500)
    assert skewed["iqm"]["value"] == pytest.approx(np.mean([0.91, 0.92, 0.93, 0.94]))  # the outlier run trimmed
    assert skewed["mean"]["value"] == pytest.approx(np.mean([0.0, 0.9, 0.91, 0.92, 0.93, 0.94, 0.95, 1.0]))


def test_intervals_contain_the_point_estimate_and_are_seeded():
    scores = np.random.default_rng(5).uniform(0.6, 1.0, size=(6, 2))  # 6 runs, 2 tasks
    a = interval_estimates(scores, reps=400, seed=3)
    assert a == interval_estimates(scores, reps=400, seed=3)  # seeded -> identical
    assert a != interval_estimates(scores, reps=400, seed=4)
    for name in ("iqm", "mean", "median"):
        assert a[name]["low"] <= a[name]["value"] <= a[name]["high"]
        assert a[name]["high"] - a[name]["low"] > 0
    one = interval_estimates([0.7], reps=100)
    assert one["iqm"] == {"value": 0.7, "low": 0.7, "high": 0.7}  # one run: nothing to resample
    rows = [{"success_2cm": s, "success_1cm": s / 2, "median_y": 0.01} for s in (0.8, 0.9, 1.0)]
    assert summarize_runs(rows, reps=100)["success_2cm"]["mean"]["value"] == pytest.approx(0.9)


def test_performance_profile_counts_contexts_within_tau(tmp_path):
    ys = [[0.001, 0.005, 0.05, 0.5], [0.002, 0.03, 0.04, 0.5]]  # metres, two runs on four contexts
    p = performance_profile(ys, taus_mm=[1.5, 10.0, 45.0, 1000.0], reps=200, seed=1)
    assert p["fraction"] == pytest.approx([1 / 8, 3 / 8, 5 / 8, 1.0])
    assert all(lo <= f <= hi for lo, f, hi in zip(p["low"], p["fraction"], p["high"]))
    assert p == performance_profile(ys, taus_mm=[1.5, 10.0, 45.0, 1000.0], reps=200, seed=1)
    png = plot_profiles({"a": p}, tmp_path / "p.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def three_runs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("runs")
    hp = {"learning_starts": 50, "batch_size": 16, "policy_kwargs": {"net_arch": [16, 16]}}
    for seed in range(3):
        rl.train("sac", "armlab/ReachSignalFixed-v0", 80, folder=folder, hyperparams=hp, seed=seed, eval_freq=0,
                 save_freq=0)
    return folder


def test_evaluate_over_several_runs_reports_intervals_and_a_profile(three_runs, capsys):
    base = ["evaluate", "--algo", "sac", "--env", "ReachSignalFixed-v0", "-f", str(three_runs), "--contexts", "4"]
    assert main([*base, "--exp-id", "1,2,3", "--json"]) == 0
    figures = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert [r["run_dir"].rsplit("_", 1)[-1] for r in figures["runs"]] == ["1", "2", "3"]
    agg = figures["aggregate"]["median_y"]
    assert agg["runs"] == 3 and agg["iqm"]["low"] <= agg["iqm"]["value"] <= agg["iqm"]["high"]
    assert agg["mean"]["value"] == pytest.approx(np.mean([r["median_y"] for r in figures["runs"]]))
    assert len(figures["profile"]["fraction"]) == len(figures["profile"]["tau_mm"])
    png = three_runs / "sac" / "ReachSignalFixed-v0_profile.png"
    assert figures["profile_png"] == str(png) and png.is_file()
    assert main([*base, "--exp-id", "*", "--json"]) == 0  # a glob over the run numbers: the same three runs
    again = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert again["aggregate"] == figures["aggregate"]


@pytest.mark.parametrize("spec,word", [("7?", "7?"), ("1,x", "--exp-id"), ("1,9", "9")])
def test_evaluate_several_runs_bad_spec_is_one_sentence(three_runs, capsys, spec, word):
    code = main(["evaluate", "--algo", "sac", "--env", "ReachSignalFixed-v0", "-f", str(three_runs),
                 "--exp-id", spec])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and word in err[0], err


def test_the_bootstrap_leaves_numpys_global_rng_alone():
    np.random.seed(11)
    expected = np.random.random()
    np.random.seed(11)
    interval_estimates([0.1, 0.5, 0.9], reps=50, seed=2)
    assert np.random.random() == expected


def _row(stage, controller, family, budget, s2, ys=None):
    return {"stage": stage, "controller": controller, "family": family, "budget": budget, "median_y": 0.01 / s2,
            "p90_y": 0.05, "success_2cm": s2, "success_1cm": s2 / 2, "training_episodes": budget,
            "episodes_per_decision": 1.0, "wall_s": 0.1, "total_episodes": budget + 200.0, "train_s": 10.0 * s2,
            "ys": ys or [0.01, 0.03]}


def test_aggregate_seeds_makes_one_interval_row_per_family_and_budget():
    from controllers.comparison import aggregate_seeds, interval_markdown, seed_profiles

    rows = [_row("velocity", "CMA-ES 30", "CMA-ES", 30, 0.5),
            *[_row("velocity", f"SAC 500 steps{'' if k == 0 else f' seed {k}'}", "SAC", 500, s)
              for k, s in enumerate((0.6, 0.8, 0.7))],
            *[_row("velocity", f"SAC 100 steps{'' if k == 0 else f' seed {k}'}", "SAC", 100, s)
              for k, s in enumerate((0.1, 0.2))],
            _row("velocity", "PPO 500 steps", "PPO", 500, 0.3)]  # one seed: no interval row
    agg = aggregate_seeds(rows, reps=200)
    assert [(r["family"], r["budget"], r["seeds"]) for r in agg] == [("SAC", 500, 3), ("SAC", 100, 2)]
    assert agg[0]["success_2cm"] == pytest.approx(0.7) and agg[0]["intervals"]["success_2cm"]["runs"] == 3
    assert "ys" not in agg[0] and agg[0]["controller"] == "SAC 500 steps (3 seeds, IQM)"
    table = interval_markdown(agg)
    assert "| velocity | SAC 500 steps (3 seeds, IQM) | 3 | 70.0 % [" in table
    profiles = seed_profiles(rows, reps=100)
    assert list(profiles) == ["velocity"] and list(profiles["velocity"]) == ["SAC 500 steps"]  # the largest budget


def test_compare_with_seeds_reports_intervals_and_profiles(tmp_path, capsys):
    args = ["compare", "--out", str(tmp_path), "--stages", "fixed", "--contexts", "3", "--cmaes-budgets", "10",
            "--regression-sizes", "2", "--regression-budget", "10", "--regression-epochs", "5", "--rl-algos", "sac",
            "--rl-steps", "40", "--closed-loop-steps", "0", "--no-progress", "--robot", "arm2"]
    assert main([*args, "--seeds", "2", "--json"]) == 0
    figures = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    names = [r["controller"] for r in figures["rows"]]
    assert "SAC 40 steps" in names and "SAC 40 steps seed 1" in names and all("ys" not in r for r in figures["rows"])
    (agg,) = figures["intervals"]
    assert agg["seeds"] == 2 and agg["intervals"]["median_y"]["iqm"]["low"] <= agg["median_y"]
    assert (tmp_path / "compare_profile_fixed.png").is_file()
    assert "RL over seeds" in (tmp_path / "compare.md").read_text()
    assert main([*args, "--json"]) == 0  # one seed again: the same rows.json, the first seed's rows only
    one = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert "intervals" not in one and "SAC 40 steps seed 1" not in [r["controller"] for r in one["rows"]]
