"""`armlab tune` (controllers/tune/): storages, the exact trial budget, kill and continue, several workers on SQLite,
a journal file and a real PostgreSQL server, and the best trial's YAML read back by `armlab train`."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import yaml

from armlab_scripts.cli import main
from controllers import rl, tune
from robot_env.io.errors import ParamError

ENV = "armlab/ReachSignalFixed-v0"
#: tiny trials: 120 env steps of a one-step env, evaluations at 40 and 80 steps and at the end on 4 contexts
TINY = ["--algo", "sac", "--env", ENV, "--n-timesteps", "120", "--eval-freq", "40", "--eval-contexts", "4"]
#: trials of the kill tests: long enough after their first evaluation (560 more steps) that the kill always lands
#: mid-trial (with 120 steps a trial sometimes finished between the poll that saw it and the kill)
KILLABLE = ("--n-timesteps", "600")


def tune_argv(folder, storage, study, n_trials, *extra):
    return ["tune", *TINY, "-f", str(folder), "--storage", storage, "--study-name", study, "--n-trials",
            str(n_trials), *extra]


def spawn(argv):
    return subprocess.Popen([sys.executable, "-m", "armlab_scripts.cli", *argv], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def trials(storage, study):
    s = tune.open_storage(tune.storage_url(storage, ".", study))
    import optuna

    return optuna.load_study(study_name=study, storage=s).get_trials(deepcopy=False)


def by_state(ts):
    out = {}
    for t in ts:
        out.setdefault(t.state.name, []).append(t.number)
    return out


def kill_mid_trial(proc, storage, study, timeout=120):
    """SIGKILL ``proc`` while one of its trials is RUNNING (after its first evaluation). Returns that trial's number."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        try:
            ts = trials(storage, study)
        except Exception:  # the study does not exist yet
            ts = []
        # once a trial of proc's has reported its first evaluation: it is training (not writing to the storage)
        mine = [t for t in ts if t.state.name == "RUNNING" and t.user_attrs.get("pid") == proc.pid
                and t.intermediate_values]
        if mine:
            time.sleep(0.05)
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            return mine[0].number
        time.sleep(0.05)
    proc.kill()
    raise AssertionError(f"no trial of worker {proc.pid} ran within {timeout} s")


def assert_budget_kept(ts, n, killed=None):
    numbers = [t.number for t in ts]
    assert len(numbers) == len(set(numbers)), numbers  # nothing duplicated
    states = by_state(ts)
    assert len(states.get("COMPLETE", [])) + len(states.get("PRUNED", [])) == n, states  # nothing lost, no extra
    assert not states.get("RUNNING"), states
    if killed is not None:
        assert killed in states.get("FAIL", []), states  # the killed trial: FAIL, not counted


# -- storage names ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("spec,url", [
    (None, "sqlite:///runs/tune/s.db"), ("sqlite:///x/y.db", "sqlite:///x/y.db"),
    ("journal:a/b.log", "journal:a/b.log"), ("a/b.log", "journal:a/b.log"), ("postgresql://u:p@h:5432/db", "postgresql+psycopg2://u:p@h:5432/db"),
    ("postgres://u@h/db", "postgresql+psycopg2://u@h/db"),
    ("postgresql+psycopg://u@h/db", "postgresql+psycopg://u@h/db")])
def test_storage_urls(spec, url):
    assert tune.storage_url(spec, "runs/tune", "s") == url
    assert "p@" not in tune.describe(tune.storage_url("postgresql://u:p@h/db", ".", "s"))  # no password in messages


@pytest.mark.parametrize("spec", ["ftp://x/y", "mysql://u@h/db", "sqlite://", "journal:", "study.db"])
def test_bad_storage_urls_are_one_sentence(spec):
    with pytest.raises(ParamError, match="storage must be|journal: needs"):
        tune.storage_url(spec, ".", "s")


# -- SQLite: the YAML, read back by train ---------------------------------------------------------------------------
def test_sqlite_study_writes_the_best_yaml_that_train_reads(tmp_path, capsys):
    storage = f"sqlite:///{tmp_path / 's.db'}"
    argv = lambda n, *extra: tune_argv(tmp_path, storage, "s", n, "--env-kwargs", "robot:arm2", *extra)  # noqa: E731
    assert main(argv(3, "--json")) == 0
    out = capsys.readouterr().out
    figures = json.loads(out.strip().splitlines()[-1])
    assert figures["finished"] == 3 and "best so far: trial" in out
    best_file = tmp_path / "s" / "best_hyperparams.yml"
    assert figures["hyperparams_file"] == str(best_file)
    doc = yaml.safe_load(best_file.read_text())
    assert doc["algo"] == "sac" and doc["trial"] == figures["best"]["number"]
    assert doc["env_kwargs"] == {"robot": "arm2"} and doc["hyperparams"] == figures["best"]["hyperparams"]
    # each trial: its own run folder with TensorBoard scalars
    run_dir = tmp_path / "s" / f"trial_{doc['trial']}" / "sac" / "ReachSignalFixed-v0_1"
    assert (run_dir / "model.zip").is_file() and list((run_dir / "tb").rglob("events.out.tfevents.*"))
    # armlab train --hyperparams-file: the tuned hyperparameters and env kwargs, --hyperparams winning
    runs = tmp_path / "runs"
    assert main(["train", "--algo", "sac", "--env", ENV, "-f", str(runs), "--n-timesteps", "30", "--eval-freq", "0",
                 "--no-progress", "--hyperparams-file", str(best_file), "--hyperparams", "batch_size:16"]) == 0
    config = rl.read_config(rl.find_run(runs, "sac", ENV))
    want = dict(doc["hyperparams"], batch_size=16)
    assert {k: config["hyperparams"][k] for k in want} == want
    assert config["env_kwargs"]["robot"] == "arm2"
    # the same command again: the budget is met, nothing runs; a larger one extends the study
    assert main(argv(3)) == 0
    assert len(trials(storage, "s")) == 3
    assert main(argv(4)) == 0
    assert_budget_kept(trials(storage, "s"), 4)
    capsys.readouterr()
    assert main(argv(5, "--sampler", "random")) == 2  # another study's settings
    assert "other settings" in capsys.readouterr().err


def test_a_trials_draws_depend_on_the_seed_and_its_number_only(tmp_path):
    a = [tune_argv(tmp_path / "a", f"sqlite:///{tmp_path / 'a.db'}", "s", 2, "--pruner", "none")]
    b = [tune_argv(tmp_path / "b", f"journal:{tmp_path / 'b.log'}", "s", 2, "--pruner", "none")]
    assert main(a[0]) == 0 and main(b[0]) == 0
    pa = [t.params for t in trials(f"sqlite:///{tmp_path / 'a.db'}", "s")]
    pb = [t.params for t in trials(f"journal:{tmp_path / 'b.log'}", "s")]
    assert pa == pb and pa[0] != pa[1]


# -- kill and continue --------------------------------------------------------------------------------------------
@pytest.mark.slow  # 10-15 s: a worker process started and killed, then the study finished here
@pytest.mark.parametrize("kind", ["sqlite", "journal"])
def test_a_killed_study_continues_with_the_same_command(tmp_path, kind):
    storage = f"sqlite:///{tmp_path / 'k.db'}" if kind == "sqlite" else str(tmp_path / "k.log")
    argv = tune_argv(tmp_path, storage, "k", 4, "--pruner", "none", *KILLABLE)
    killed = kill_mid_trial(spawn(argv), storage, "k")
    assert by_state(trials(storage, "k")).get("RUNNING") == [killed]  # left RUNNING by the kill
    assert main(argv) == 0  # the same command: the dead worker's trial is failed and replaced
    assert_budget_kept(trials(storage, "k"), 4, killed=killed)


@pytest.mark.slow  # 12 s: two spawned worker processes
def test_n_jobs_runs_worker_processes_on_one_study(tmp_path, capfd):
    storage = str(tmp_path / "j.log")
    assert main([*tune_argv(tmp_path, storage, "j", 5), "--n-jobs", "2"]) == 0
    ts = trials(storage, "j")
    assert_budget_kept(ts, 5)
    workers = {t.user_attrs["pid"] for t in ts if "pid" in t.user_attrs}
    assert len(workers) == 2 and os.getpid() not in workers  # two processes, not this one
    assert capfd.readouterr().out.count("] trial ") == 5


# -- PostgreSQL: two workers, one killed ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def postgres():
    """A throwaway PostgreSQL server (Debian's postgresql package). Without one the test skips on a developer's
    machine and fails in CI (CI=true), where .ci/run installs it."""
    from armlab_scripts.bench._postgres import PostgresUnavailable, ThrowawayPostgres

    server = ThrowawayPostgres()
    try:
        url = server.start()
    except PostgresUnavailable as exc:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"the PostgreSQL test server could not start in CI: {exc}")
        pytest.skip(f"no PostgreSQL server: {exc}")
    yield url
    server.stop()


@pytest.mark.slow  # about 30 s with the server's start and stop: `make test-slow` (and so CI) runs it
def test_two_workers_on_postgres_lose_and_duplicate_nothing_and_survive_a_kill(tmp_path, postgres):
    argv = tune_argv(tmp_path, postgres, "pg", 4, "--pruner", "none", *KILLABLE)
    a, b = spawn(argv), spawn(argv)
    killed = kill_mid_trial(b, postgres, "pg")
    out, err = a.communicate(timeout=180)
    assert a.returncode == 0, err
    ts = trials(postgres, "pg")
    assert_budget_kept(ts, 4, killed=killed)  # worker a replaced the killed worker's trial
    assert {t.user_attrs.get("pid") for t in ts} == {a.pid, b.pid}  # both worked on the one study
    assert main(tune_argv(tmp_path, postgres, "pg", 5, "--pruner", "none", *KILLABLE)) == 0  # still usable
    assert_budget_kept(trials(postgres, "pg"), 5, killed=killed)


@pytest.mark.slow  # about 20 s: three tuning processes and the ceiling measurement
def test_bench_tune_measures_both_arms_and_the_ceiling(postgres, capsys):
    assert main(["bench", "tune", "--trials", "1", "--n-timesteps", "40", "--ceiling-s", "0.3", "--storage", postgres,
                 "--json"]) == 0
    figures = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert [a["workers"] for a in figures["arms"]] == [1, 2] and all(a["trials"] == 1 for a in figures["arms"])
    assert figures["speedup"] > 0 and 0 < figures["ceiling"]["ceiling"] < 3


def test_hyperparams_file_of_another_algo_or_a_plain_mapping(tmp_path, capsys):
    other = tmp_path / "td3.yml"
    other.write_text(yaml.safe_dump({"algo": "td3", "env_id": ENV, "hyperparams": {"noise_std": 0.2}}))
    base = ["train", "--algo", "sac", "--env", ENV, "-f", str(tmp_path / "runs"), "--n-timesteps", "20",
            "--eval-freq", "0", "--no-progress"]
    assert main([*base, "--hyperparams-file", str(other)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--hyperparams-file" in err[0] and "td3" in err[0]
    plain = tmp_path / "plain.yml"
    plain.write_text("learning_rate: 0.002\nbatch_size: 16\n")
    assert main([*base, "--hyperparams-file", str(plain)]) == 0
    hp = rl.read_config(rl.find_run(tmp_path / "runs", "sac", ENV))["hyperparams"]
    assert hp["learning_rate"] == 0.002 and hp["batch_size"] == 16
