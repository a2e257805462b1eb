"""Training for a wall-time budget, and `armlab bench rl`: runs over seeds against CMA-ES, resumable."""

from __future__ import annotations

import json
import time

import pytest

from armlab_scripts.cli import main as cli
from controllers import rl
from robot_env.io.errors import ConfigError, ParamError


def test_a_time_limit_stops_training_whatever_the_step_count(tmp_path):
    t0 = time.perf_counter()
    result = rl.train("sac", "armlab/ReachSignalFixed-v0", 1_000_000, folder=tmp_path, eval_freq=0, save_freq=0,
                      hyperparams={"learning_starts": 50}, time_limit_s=1.5)
    assert 50 < result.num_timesteps < 1_000_000  # it trained, and stopped long before the cap
    assert 1.5 <= result.wall_s < 4.0 and time.perf_counter() - t0 < 30
    assert (result.run_dir / "model.zip").is_file() and result.checkpoints == [result.num_timesteps]
    for bad in (0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ParamError, match="time_limit"):
            rl.train("sac", "armlab/ReachSignalFixed-v0", 10, folder=tmp_path / "bad", time_limit_s=bad)


def _bench(tmp_path, capsys, *extra) -> dict:
    argv = ["bench", "rl", "--budget-s", "1", "--seeds", "2", "--contexts", "3", "--cmaes-budget", "20",
            "--algos", "sac", "--out", str(tmp_path / "b"), "--no-progress", "--json", *extra]
    assert cli(argv) == 0
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_bench_rl_reports_seeds_with_intervals_against_cmaes_and_resumes(tmp_path, capsys):
    fig = _bench(tmp_path, capsys)
    sac = fig["algos"]["sac"]
    assert fig["stage"] == "velocity" and fig["cmaes"]["contexts"] == 3
    assert len(sac["runs"]) == 2 and sac["aggregate"]["success_2cm"]["runs"] == 2
    assert {r["seed"] for r in sac["runs"]} == {0, 1}
    for r in sac["runs"]:
        assert 1.0 <= r["train_s"] < 4.0 and r["num_timesteps"] > 0 and r["contexts"] == 3
    iqm = sac["aggregate"]["median_y"]["iqm"]
    assert iqm["low"] <= iqm["value"] <= iqm["high"]
    assert (tmp_path / "b" / "profiles.png").stat().st_size > 0
    # the same command again trains nothing: every run is in rows.json
    mtimes = {p: p.stat().st_mtime_ns for p in (tmp_path / "b").rglob("model.zip")}
    t0 = time.perf_counter()
    again = _bench(tmp_path, capsys)
    assert time.perf_counter() - t0 < 20 and again["algos"]["sac"]["runs"] == sac["runs"]
    assert {p: p.stat().st_mtime_ns for p in mtimes} == mtimes
    # other settings into the same folder are refused in one sentence
    assert cli(["bench", "rl", "--budget-s", "2", "--seeds", "2", "--contexts", "3", "--cmaes-budget", "20",
                "--algos", "sac", "--out", str(tmp_path / "b"), "--no-progress"]) == 2
    assert "other settings" in capsys.readouterr().err


def test_each_algorithm_gets_the_stage_recipe_with_its_own_overrides():
    from armlab_scripts.bench.rl import STAGES, stage_hyperparams
    from controllers.rl.hyperparams import load_hyperparams

    for stage, spec in STAGES.items():
        for algo in ("sac", "crossq"):
            hp = stage_hyperparams(stage, algo)
            load_hyperparams(algo, spec["env"], hp)  # every key is one the algorithm accepts
            assert stage_hyperparams(stage, algo, {"batch_size": 64})["batch_size"] == 64  # the user's win
    sac, crossq = stage_hyperparams("state", "sac"), stage_hyperparams("state", "crossq")
    assert sac["tau"] == 0.02 and sac["residual_her"] and sac["policy_kwargs"]["net_arch"] == [128, 128]
    assert "tau" not in crossq and crossq["residual_her"]  # CrossQ has no target network
    with pytest.raises(ConfigError, match="tau"):
        load_hyperparams("crossq", STAGES["state"]["env"], sac)  # why SAC's overrides are SAC's alone
