"""SB3 agents (controllers/rl/) and `armlab train` / `armlab evaluate`: tiny budgets, one real-effect run."""

import csv
import json
import shutil
import signal
import subprocess
import sys
import time

import gymnasium as gym
import numpy as np
import pytest
import torch
import yaml
from stable_baselines3 import HerReplayBuffer

from controllers import rl
from controllers.evaluation import evaluate, held_out_contexts, zero_controller

SMALL = {"learning_starts": 100, "batch_size": 32, "policy_kwargs": {"net_arch": [32, 32]}}
PPO_SMALL = {"n_steps": 64, "batch_size": 32, "n_epochs": 2, "policy_kwargs": {"net_arch": [32, 32]}}


def armlab(*args, timeout=120):
    return subprocess.run([sys.executable, "-m", "armlab_scripts.cli", *args], capture_output=True, text=True,
                          timeout=timeout)


def last_json(stdout: str) -> dict:
    return json.loads(stdout.strip().splitlines()[-1])


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.strip()]


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory):
    """A SAC run made by `armlab train` on the state stage (randomized dynamics, noisy observations)."""
    folder = tmp_path_factory.mktemp("runs")
    out = armlab("train", "--algo", "sac", "--env", "armlab/ReachSignalState-v0", "-f", str(folder),
                 "--n-timesteps", "200", "--env-kwargs", "robot:arm2", "--hyperparams", "learning_starts:100",
                 "batch_size:32", "policy_kwargs:{net_arch:[32,32]}", "--eval-freq", "100", "--eval-episodes", "3",
                 "--save-freq", "100", "--seed", "3", "--no-progress", "--json")
    assert out.returncode == 0, out.stderr
    return folder, last_json(out.stdout)


def test_cli_train_writes_a_complete_run_folder(cli_run):
    folder, figures = cli_run
    run_dir = folder / "sac" / "ReachSignalState-v0_1"
    assert figures["run_dir"] == str(run_dir) and figures["num_timesteps"] == 200
    assert figures["checkpoints"] == [100, 200] and figures["best_mean_reward"] is not None
    config = yaml.safe_load((run_dir / "config.yml").read_text())
    assert config["algo"] == "sac" and config["env_id"] == "armlab/ReachSignalState-v0"
    # hyperparams.yml's env kwargs for open-loop envs (the log reward) under the user's
    assert config["env_kwargs"] == {"robot": "arm2", "reward_type": "log"}
    assert config["seed"] == 3 and config["n_timesteps"] == 200
    hp = config["hyperparams"]
    assert hp["n_timesteps"] == 200  # the run's budget, not hyperparams.yml's default
    assert hp["policy_kwargs"] == {"net_arch": [32, 32]} and hp["learning_starts"] == 100
    assert hp["tau"] == 0.005  # a default from hyperparams.yml, recorded with the overrides
    for name in ("model.zip", "best_model.zip", "evaluations.npz", "checkpoints/rl_model_100_steps.zip",
                 "checkpoints/rl_model_200_steps.zip", "checkpoints/rl_model_replay_buffer_200_steps.npz"):
        assert (run_dir / name).is_file(), name
    assert not list(run_dir.rglob(".*tmp*"))  # every write was moved into place
    assert not (run_dir / "checkpoints" / "rl_model_replay_buffer_100_steps.npz").exists()  # only the latest buffer
    with np.load(run_dir / "evaluations.npz") as z:
        assert list(z["timesteps"]) == [100, 200] and z["results"].shape == (2, 3)


CASES = [
    ("ppo", "armlab/ReachSignalFixed-v0", {}, PPO_SMALL, 128),
    ("sac", "armlab/ReachSignalVelocity-v0", {}, SMALL, 200),
    ("td3", "armlab/ReachSignalState-v0", {"robot": "arm3"}, SMALL, 200),
    ("tqc", "armlab/ReachFixed-v0", {}, dict(SMALL, policy_kwargs={"net_arch": [32, 32], "n_quantiles": 5}), 200),
    ("sac", "armlab/ReachFixed-v0", {"obs_type": "dict", "reward_type": "sparse"}, SMALL, 240),
]


@pytest.mark.parametrize("algo,env_id,env_kwargs,hyperparams,steps", CASES,
                         ids=["ppo", "sac", "td3-arm3", "tqc-closed-loop", "sac-her"])
def test_algo_trains_saves_and_reloads_identical_actions(tmp_path, algo, env_id, env_kwargs, hyperparams, steps):
    result = rl.train(algo, env_id, steps, folder=tmp_path, env_kwargs=env_kwargs, hyperparams=hyperparams,
                      seed=1, eval_freq=0, save_freq=0)
    assert result.num_timesteps == steps and result.checkpoints == [steps]
    if env_kwargs.get("obs_type") == "dict":
        assert isinstance(result.model.replay_buffer, HerReplayBuffer)
    controller = rl.policy_controller(result.run_dir)
    env = gym.make(env_id, **env_kwargs)
    try:
        for seed in range(4):
            obs, _ = env.reset(seed=seed)
            expected = result.model.predict(obs, deterministic=True)[0]
            np.testing.assert_array_equal(controller.act(env, obs), expected)
            np.testing.assert_array_equal(controller.act(env, obs), expected)  # deterministic
        steps_per_episode = getattr(env.unwrapped, "max_steps", 1)
    finally:
        env.close()
    assert controller.training_episodes == pytest.approx(steps / steps_per_episode)
    assert controller.info["num_timesteps"] == steps


@pytest.mark.parametrize("algo", ["sac", "tqc"])
def test_privileged_observations_train_an_actor_that_ignores_them(tmp_path, algo):
    env_kwargs = {"robot": "arm2", "privileged": True}
    hp = dict(SMALL, policy_kwargs={"net_arch": [32, 32], **({"n_quantiles": 5} if algo == "tqc" else {})})
    result = rl.train(algo, "armlab/ReachState-v0", 200, folder=tmp_path, env_kwargs=env_kwargs, hyperparams=hp,
                      seed=1, eval_freq=0, save_freq=0)
    policy = result.model.policy
    assert type(policy).__name__.startswith("Asymmetric") and rl.read_config(result.run_dir)["policy"] == \
        type(policy).__name__
    env = gym.make("armlab/ReachState-v0", **env_kwargs)
    k = env.unwrapped.actor_obs_dim
    obs = np.stack([env.reset(seed=s)[0] for s in range(3)])
    env.close()
    assert policy.actor.features_extractor.features_dim == k
    assert policy.critic.features_extractor.features_dim == obs.shape[1]  # the critics read everything
    other = obs.copy()
    other[:, k:] = np.random.default_rng(0).uniform(-1, 1, other[:, k:].shape)
    np.testing.assert_array_equal(result.model.predict(obs, deterministic=True)[0],
                                  result.model.predict(other, deterministic=True)[0])
    with torch.no_grad():
        acts = torch.as_tensor(result.model.predict(obs, deterministic=True)[0])
        q = policy.critic(torch.as_tensor(obs), acts)[0]
        q_other = policy.critic(torch.as_tensor(other), acts)[0]
    assert not torch.allclose(q, q_other)  # ... and use what they read
    loaded = rl.load_run(result.run_dir)  # rebuilt from the config and weights, no pickle
    np.testing.assert_array_equal(loaded.predict(obs), result.model.predict(obs, deterministic=True)[0])


def test_actor_init_std_starts_a_residual_agent_as_its_base_controller(tmp_path):
    env_kwargs = {"robot": "arm3", "residual": True}
    hp = dict(SMALL, actor_init_std=0.1)  # 50 steps < learning_starts: no update moves the start
    result = rl.train("sac", "armlab/ReachState-v0", 50, folder=tmp_path, env_kwargs=env_kwargs, hyperparams=hp,
                      seed=2, eval_freq=0, save_freq=0)
    env = gym.make("armlab/ReachState-v0", **env_kwargs)
    obs = np.stack([env.reset(seed=s)[0] for s in range(4)])
    env.close()
    np.testing.assert_array_equal(result.model.predict(obs, deterministic=True)[0], 0.0)  # the base alone
    result.model.policy.actor.set_training_mode(False)
    with torch.no_grad():
        sampled = result.model.policy.actor(torch.as_tensor(np.repeat(obs[:1], 4000, axis=0)), deterministic=False)
    assert float(sampled.std()) == pytest.approx(0.1, rel=0.1)
    out = armlab("train", "--algo", "sac", "--env", "armlab/ReachState-v0", "-f", str(tmp_path),
                 "--n-timesteps", "64", "--hyperparams", "actor_init_std:0", "--no-progress")
    assert out.returncode == 2 and "actor_init_std must be a number in" in out.stderr, out.stderr
    out = armlab("train", "--algo", "ppo", "--env", "armlab/ReachState-v0", "-f", str(tmp_path),
                 "--n-timesteps", "64", "--hyperparams", "actor_init_std:0.1", "--no-progress")
    assert out.returncode == 2 and "actor_init_std" in out.stderr, out.stderr


@pytest.mark.parametrize("reward_at,residual_mode", [("every", "add"), ("end", "add"), ("every", "span")])
def test_residual_her_relabels_episodes_the_env_could_have_produced(reward_at, residual_mode):
    # an episode relabeled with its final position, replayed in the env with that target, the same
    # dynamics draw and the same noise: the relabeled actions on top of the base controller's new
    # signal reproduce the stored observations and rewards, and end at the new target
    from dataclasses import replace

    from controllers.relabel import ResidualFinalGoalBuffer

    kwargs = {"robot": "arm3", "history": True, "residual": True, "reward_type": "log", "reward_at": reward_at,
              "residual_mode": residual_mode}
    env = gym.make("armlab/ReachState-v0", **kwargs).unwrapped
    buf = ResidualFinalGoalBuffer(100, env.observation_space, env.action_space, env_id="armlab/ReachState-v0",
                                  env_kwargs=kwargs)
    rng = np.random.default_rng(3)
    ctx = env.task.sample_context(rng)
    obs, _ = env.reset(seed=7, options={"context": ctx})
    for t in range(env.max_steps):
        a = rng.uniform(-0.5, 0.5, env.action_space.shape).astype(np.float32)
        nxt, r, done, _, info = env.step(a)
        buf.add(obs[None], nxt[None], a[None], np.array([r]), np.array([done]), [info])
        obs = nxt
        assert buf.pos == t + 1 + (env.max_steps - buf.left_out if done else 0)  # the copy lands at the end
    assert buf.relabeled == env.max_steps - buf.left_out >= env.max_steps - 2
    if residual_mode == "span":  # every applied signal has a residual action on top of any base signal
        assert buf.left_out == 0
    goal = info["position"]
    original_rewards = buf.rewards[: env.max_steps, 0].copy()
    obs, _ = env.reset(seed=7, options={"context": replace(ctx, target=goal)})
    rows = range(env.max_steps, buf.pos)
    if buf.left_out == 0:
        for i in rows:
            np.testing.assert_allclose(buf.observations[i, 0], obs, atol=1e-4)
            obs, r, *_, info = env.step(buf.actions[i, 0])
            np.testing.assert_allclose(buf.next_observations[i, 0], obs, atol=1e-4)
            assert buf.rewards[i, 0] == pytest.approx(r, abs=1e-4)
        assert info["distance"] < 1e-4
    assert buf.rewards[buf.pos - 1, 0] == pytest.approx(0.0, abs=1e-6)  # the reached goal: the best reward
    if reward_at == "end":  # relabeled by the env's rule: nothing before the last step
        assert np.all(buf.rewards[rows.start : buf.pos - 1, 0] == 0.0) and original_rewards[-1] < -0.1
    else:
        assert np.all(buf.rewards[rows.start : buf.pos - 1, 0] < 0.0)
    assert not np.allclose(buf.rewards[rows.start : rows.start + len(original_rewards), 0], original_rewards)
    buf.close()
    env.close()


def test_residual_her_trains_and_refuses_other_envs(tmp_path):
    env_kwargs = {"robot": "arm3", "residual": True}
    hp = dict(SMALL, residual_her=True)
    result = rl.train("sac", "armlab/ReachState-v0", 240, folder=tmp_path, env_kwargs=env_kwargs, hyperparams=hp,
                      eval_freq=0, save_freq=0)
    buf = result.model.replay_buffer
    assert buf.relabeled > 0 and buf.pos == 240 + buf.relabeled  # 20 episodes, each stored twice (less a')
    assert buf.relabeled + buf.left_out == 240
    loaded = rl.load_run(result.run_dir)
    obs = buf.observations[:5, 0]
    np.testing.assert_array_equal(loaded.predict(obs), result.model.predict(obs, deterministic=True)[0])
    for extra, algo, needle in (([], "sac", "residual_her needs a closed-loop env with residual: true"),
                                (["residual:true"], "ppo", "residual_her")):
        out = armlab("train", "--algo", algo, "--env", "armlab/ReachState-v0", "--env-kwargs", "robot:arm3", *extra,
                     "-f", str(tmp_path), "--n-timesteps", "64", "--hyperparams", "residual_her:true",
                     "--no-progress")
        lines = error_lines(out.stderr)
        assert out.returncode == 2 and len(lines) == 1 and needle in lines[0], out.stderr


def test_privileged_observations_need_sac_or_tqc(tmp_path):
    out = armlab("train", "--algo", "ppo", "--env", "armlab/ReachState-v0", "--env-kwargs", "privileged:true",
                 "-f", str(tmp_path), "--n-timesteps", "64", "--no-progress")
    assert out.returncode == 2
    lines = error_lines(out.stderr)
    assert len(lines) == 1 and "use --algo sac or tqc" in lines[0], out.stderr


def test_resume_continues_the_step_counter_buffer_and_normalization(tmp_path):
    kwargs = dict(folder=tmp_path, hyperparams=SMALL, eval_freq=100, eval_episodes=2, save_freq=100, normalize=True)
    first = rl.train("sac", "armlab/ReachSignalVelocity-v0", 200, **kwargs)
    count = first.model.get_vec_normalize_env().obs_rms.count
    second = rl.train("sac", "armlab/ReachSignalVelocity-v0", 400, resume=True, folder=tmp_path, eval_freq=100,
                      eval_episodes=2, save_freq=100)
    assert second.run_dir == first.run_dir and second.start_timesteps == 200
    assert second.model.num_timesteps == 400
    assert second.checkpoints == [100, 200, 300, 400]  # the history is kept
    assert second.model.replay_buffer.size() == 400  # the first 200 transitions came back with the buffer
    assert second.model.get_vec_normalize_env().obs_rms.count > count + 199  # statistics continued, not restarted
    config = yaml.safe_load((first.run_dir / "config.yml").read_text())
    assert config["n_timesteps"] == 400 and config["resumes"][0]["from_timesteps"] == 200
    assert config["hyperparams"]["n_timesteps"] == 400
    with np.load(first.run_dir / "evaluations.npz") as z:
        assert list(z["timesteps"]) == [100, 200, 300, 400]
    assert rl.load_run(first.run_dir).num_timesteps == 400
    assert rl.load_run(first.run_dir, checkpoint_steps=100).num_timesteps == 100


def test_resume_keeps_the_runs_schedule_and_sets_aside_evaluations_it_cannot_continue(tmp_path):
    env_id = "armlab/ReachSignalVelocity-v0"
    first = rl.train("sac", env_id, 200, folder=tmp_path, hyperparams=SMALL, eval_freq=100, eval_episodes=2,
                     save_freq=100)
    second = rl.train("sac", env_id, 300, resume=True, folder=tmp_path)  # no schedule given: the run's own
    assert second.checkpoints == [100, 200, 300]
    with np.load(first.run_dir / "evaluations.npz") as z:
        assert list(z["timesteps"]) == [100, 200, 300] and z["results"].shape == (3, 2)
    with pytest.warns(UserWarning, match="kept as evaluations.1.npz"):
        rl.train("sac", env_id, 400, resume=True, folder=tmp_path, eval_episodes=3)
    with np.load(first.run_dir / "evaluations.1.npz") as z:  # the old history, not overwritten
        assert list(z["timesteps"]) == [100, 200, 300]
    with np.load(first.run_dir / "evaluations.npz") as z:
        assert list(z["timesteps"]) == [400] and z["results"].shape == (1, 3)


@pytest.mark.parametrize("env_kwargs", [{}, {"obs_type": "dict"}], ids=["plain", "her"])
def test_replay_buffer_is_saved_trimmed_and_restored_exactly(tmp_path, env_kwargs):
    # 144 steps: 12 whole episodes (HER truncates an unfinished last episode on load, as it should on resume)
    result = rl.train("sac", "armlab/ReachFixed-v0", 144, folder=tmp_path, env_kwargs=env_kwargs,
                      hyperparams=SMALL, eval_freq=0, save_freq=0)
    path = result.run_dir / "checkpoints" / "rl_model_replay_buffer_144_steps.npz"
    assert path.stat().st_size < 200_000  # 144 of 300,000 preallocated rows
    saved = result.model.replay_buffer
    fresh = rl.train("sac", "armlab/ReachFixed-v0", 10, folder=tmp_path / "fresh", env_kwargs=env_kwargs,
                     hyperparams=SMALL, eval_freq=0, save_freq=0).model
    rl.load_replay_buffer(fresh, path)
    loaded = fresh.replay_buffer
    assert type(loaded) is type(saved) and loaded.pos == saved.pos == 144 and loaded.size() == 144
    for name, value in vars(saved).items():
        if isinstance(value, np.ndarray) and value.dtype == object:  # HER infos: not saved (never read)
            assert all(info == {} for info in getattr(loaded, name).ravel())
        elif isinstance(value, np.ndarray):
            np.testing.assert_array_equal(getattr(loaded, name), value, err_msg=name)
        elif isinstance(value, dict):
            for key, array in value.items():
                np.testing.assert_array_equal(getattr(loaded, name)[key], array, err_msg=f"{name}[{key}]")


def test_her_relabels_with_the_goal_reached_at_the_end_of_the_episode(tmp_path):
    # the reach envs score the distance at the last step, so HER's default relabels a transition
    # with the end effector's final position in its episode (goal_selection_strategy "final")
    result = rl.train("sac", "armlab/ReachFixed-v0", 240, folder=tmp_path, env_kwargs={"obs_type": "dict"},
                      hyperparams=SMALL, eval_freq=0, save_freq=0)
    buf = result.model.replay_buffer
    assert isinstance(buf, HerReplayBuffer)
    ends = np.flatnonzero(buf.dones[: buf.pos, 0])
    assert len(ends) == 20  # 240 steps of 12-step episodes
    finals = {tuple(g) for g in buf.next_observations["achieved_goal"][ends, 0]}
    target = tuple(buf.observations["desired_goal"][0, 0])  # the fixed stage's one target
    goals = buf.sample(4000).observations["desired_goal"].numpy()
    relabeled = np.array([tuple(g) in finals for g in goals])
    assert all(r or tuple(g) == target for g, r in zip(goals, relabeled))  # no goal from mid-episode
    assert 0.75 < relabeled.mean() < 0.85  # n_sampled_goal 4: four relabeled for every real goal


def test_vecnormalize_statistics_are_saved_and_applied_on_load(tmp_path):
    result = rl.train("td3", "armlab/ReachSignalVelocity-v0", 150, folder=tmp_path, hyperparams=SMALL,
                      normalize=True, eval_freq=0, save_freq=0)
    vec_normalize = result.model.get_vec_normalize_env()
    run = rl.load_run(result.run_dir)
    mean, var, count = run.normalizer.stats[""]
    np.testing.assert_array_equal(mean, vec_normalize.obs_rms.mean)
    np.testing.assert_array_equal(var, vec_normalize.obs_rms.var)
    assert count == vec_normalize.obs_rms.count and count > 150
    assert not np.allclose(mean, 0.0)
    obs = np.random.default_rng(0).uniform(-1, 1, (6, 7)).astype(np.float32)
    np.testing.assert_allclose(run.normalizer(obs), vec_normalize.normalize_obs(obs), rtol=1e-6)
    for o in obs:
        expected = result.model.predict(vec_normalize.normalize_obs(o), deterministic=True)[0]
        np.testing.assert_array_equal(run.predict(o), expected)


def test_evaluate_matches_direct_evaluation_of_the_loaded_policy(cli_run):
    folder, _ = cli_run
    table = folder / "per-context.csv"
    out = armlab("evaluate", "--algo", "sac", "--env", "armlab/ReachSignalState-v0", "-f", str(folder),
                 "--contexts", "6", "--seed", "77", "--per-context", str(table), "--json")
    assert out.returncode == 0, out.stderr
    figures = last_json(out.stdout)
    assert "| SAC ReachSignalState-v0_1 (final) |" in out.stdout
    run_dir = folder / "sac" / "ReachSignalState-v0_1"
    controller = rl.policy_controller(run_dir)
    contexts = held_out_contexts("armlab/ReachSignalState-v0", 6, 77, robot="arm2")
    direct = evaluate(controller, "armlab/ReachSignalState-v0", contexts, 77, robot="arm2")
    assert len(set(direct.ys)) == 6  # the contexts differ
    assert figures["median_y"] == pytest.approx(direct.median_y, rel=1e-9)
    assert figures["p90_y"] == pytest.approx(direct.p90_y, rel=1e-9)
    assert figures["training_episodes"] == 200 and figures["num_timesteps"] == 200
    # one row per context: its y and what was drawn for it
    with table.open() as f:
        rows = list(csv.DictReader(f))
    assert [int(r["seed"]) for r in rows] == list(range(77, 83))
    np.testing.assert_allclose([float(r["y"]) for r in rows], direct.ys, rtol=1e-12)
    np.testing.assert_allclose([[float(r[f"target_{a}"]) for a in "xyz"] for r in rows],
                               [c.target for c in contexts], rtol=1e-12)
    assert [int(r["success_2cm"]) for r in rows] == [int(y < 0.02) for y in direct.ys]
    assert all(float(r["torque_gain"]) > 0 for r in rows)  # the state stage draws dynamics


@pytest.mark.parametrize(
    "args,needle",
    [
        (["train", "--algo", "sac", "--env", "armlab/ReachNowhere-v0"], "unknown env id"),
        (["train", "--algo", "dqn", "--env", "armlab/ReachSignalFixed-v0"], "unknown algo"),
        (["train", "--algo", "sac", "--env", "armlab/ReachSignalFixed-v0", "--hyperparams", "learning_rate:abc"],
         "learning_rate must be"),
        (["train", "--algo", "sac", "--env", "armlab/ReachSignalFixed-v0", "--hyperparams", "lr:0.001"],
         "unknown hyperparameter 'lr'"),
        (["train", "--algo", "ppo", "--env", "armlab/ReachSignalFixed-v0", "--hyperparams",
          "policy_kwargs:{net_arch:wide}"], "bad hyperparameters for ppo"),
        (["evaluate", "--algo", "sac", "--env", "armlab/ReachSignalFixed-v0"], "no sac run"),
        (["evaluate", "--algo", "sac", "--env", "armlab/ReachSignalFixed-v0", "--per-context", "/no/such/dir/y.csv"],
         "the folder /no/such/dir does not exist"),
    ],
    ids=["env", "algo", "value", "name", "policy-kwargs", "missing-folder", "per-context-folder"],
)
def test_cli_bad_input_is_one_sentence_and_exit_2(tmp_path, args, needle):
    out = armlab(*args, "-f", str(tmp_path), "--json")
    assert out.returncode == 2
    lines = error_lines(out.stderr)
    assert len(lines) == 1 and needle in lines[0], out.stderr
    assert not (tmp_path / "sac").exists() and not (tmp_path / "ppo").exists()  # no run folder left behind


def test_cli_truncated_model_file_is_one_sentence_and_exit_2(cli_run, tmp_path):
    folder, _ = cli_run
    copy = tmp_path / "runs"
    shutil.copytree(folder, copy)
    model = copy / "sac" / "ReachSignalState-v0_1" / "model.zip"
    data = model.read_bytes()
    model.write_bytes(data[: len(data) // 2])
    out = armlab("evaluate", "--algo", "sac", "--env", "armlab/ReachSignalState-v0", "-f", str(copy))
    assert out.returncode == 2
    lines = error_lines(out.stderr)
    assert len(lines) == 1 and "truncated or corrupt" in lines[0], out.stderr



def test_a_model_file_of_another_env_or_algo_is_refused(cli_run, tmp_path):
    folder, _ = cli_run
    run_dir = tmp_path / "run"
    shutil.copytree(folder / "sac" / "ReachSignalState-v0_1", run_dir)
    other = rl.train("sac", "armlab/ReachSignalState-v0", 10, folder=tmp_path / "arm3", env_kwargs={"robot": "arm3"},
                     hyperparams=SMALL, eval_freq=0, save_freq=0)
    shutil.copy(other.run_dir / "model.zip", run_dir / "model.zip")  # an arm3 model in an arm2 run
    with pytest.raises(ValueError, match=r"trained on observations \(9,\), but armlab/ReachSignalState-v0"):
        rl.load_run(run_dir)
    other = rl.train("td3", "armlab/ReachSignalState-v0", 10, folder=tmp_path / "td3", env_kwargs={"robot": "arm2"},
                     hyperparams=SMALL, eval_freq=0, save_freq=0)
    shutil.copy(other.run_dir / "model.zip", run_dir / "model.zip")
    with pytest.raises(ValueError, match="holds a td3 model, but the run is sac"):
        rl.load_run(run_dir)
    other = rl.train("sac", "armlab/ReachSignalState-v0", 10, folder=tmp_path / "wide", env_kwargs={"robot": "arm2"},
                     hyperparams=dict(SMALL, policy_kwargs={"net_arch": [48]}), eval_freq=0, save_freq=0)
    shutil.copy(other.run_dir / "model.zip", run_dir / "model.zip")
    with pytest.raises(ValueError, match="does not fit the sac network"):
        rl.load_run(run_dir)


def test_killed_training_resumes_from_its_last_checkpoint(tmp_path):
    cmd = [sys.executable, "-m", "armlab_scripts.cli", "train", "--algo", "sac", "--env", "armlab/ReachSignalFixed-v0",
           "-f", str(tmp_path), "--n-timesteps", "100000", "--hyperparams", "learning_starts:50", "batch_size:16",
           "policy_kwargs:{net_arch:[16]}", "--save-freq", "25", "--eval-freq", "0", "--no-progress"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    ckpt = tmp_path / "sac" / "ReachSignalFixed-v0_1" / "checkpoints"
    deadline = time.monotonic() + 60
    try:
        while not (ckpt / "rl_model_150_steps.zip").exists():
            assert proc.poll() is None and time.monotonic() < deadline, "training never reached 150 steps"
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    done = rl.checkpoint_steps(ckpt.parent)
    assert done[-1] >= 150
    result = rl.train("sac", "armlab/ReachSignalFixed-v0", done[-1] + 60, resume=True, folder=tmp_path, save_freq=25,
                      eval_freq=0)
    assert result.model.num_timesteps == done[-1] + 60
    assert set(done) <= set(result.checkpoints)
    assert not list(ckpt.parent.rglob(".*tmp*"))


def test_policy_kwargs_are_parsed_without_eval(tmp_path):
    hp = rl.load_hyperparams("sac", "ReachSignalVelocity-v0",
                             {"policy_kwargs": "dict(net_arch=dict(pi=[64], qf=[32]), activation_fn=nn.Tanh)"})
    assert hp["policy_kwargs"] == {"net_arch": {"pi": [64], "qf": [32]}, "activation_fn": "nn.Tanh"}
    hp = rl.load_hyperparams("tqc", "ReachFixed-v0", {"policy_kwargs": {"net_arch": [64, 64], "n_critics:3": None}})
    assert hp["policy_kwargs"] == {"net_arch": [64, 64], "n_critics": 3}  # YAML's {k:v} without a space
    with pytest.raises(ValueError, match="cannot read policy_kwargs"):
        rl.load_hyperparams("sac", "ReachSignalFixed-v0", {"policy_kwargs": "dict(x=__import__('os').getcwd())"})
    with pytest.raises(ValueError, match="unknown activation_fn"):
        rl.train("sac", "ReachSignalFixed-v0", 10, folder=tmp_path,
                 hyperparams={"policy_kwargs": {"activation_fn": "os.system"}})
    assert not list(tmp_path.iterdir())


def test_linear_schedule_and_activation_by_name(tmp_path):
    result = rl.train("ppo", "ReachSignalFixed-v0", 64, folder=tmp_path, eval_freq=0, save_freq=0,
                      hyperparams=dict(PPO_SMALL, learning_rate="lin_1e-3",
                                       policy_kwargs="dict(net_arch=[8], activation_fn=nn.Tanh)"))
    assert result.model.lr_schedule(1.0) == pytest.approx(1e-3) and result.model.lr_schedule(0.5) == pytest.approx(5e-4)
    assert result.model.policy.activation_fn is torch.nn.Tanh
    config = yaml.safe_load((result.run_dir / "config.yml").read_text())
    assert config["hyperparams"]["learning_rate"] == "lin_1e-3"
    assert config["hyperparams"]["policy_kwargs"] == {"net_arch": [8], "activation_fn": "nn.Tanh"}
    np.testing.assert_array_equal(rl.load_run(result.run_dir).predict(np.zeros(7, np.float32)),
                                  result.model.predict(np.zeros(7, np.float32), deterministic=True)[0])
    held = rl.load_hyperparams("sac", "ReachState-v0", {"learning_rate": "lin_3e-4@0.75"})["learning_rate"]
    schedule = rl.parse_schedule(held)  # 3e-4 for the first 75 % of the run, then down to 0 at its end
    assert [schedule(p) for p in (1.0, 0.5, 0.25, 0.125, 0.0)] == pytest.approx([3e-4, 3e-4, 3e-4, 1.5e-4, 0.0])
    for bad in ("lin_3e-4@1", "lin_3e-4@-0.1", "lin_0", "lin_x", "lin_3e-4@half"):
        with pytest.raises(ValueError, match="learning_rate must be a positive number"):
            rl.load_hyperparams("sac", "ReachState-v0", {"learning_rate": bad})


def test_sac_on_the_fixed_stage_beats_the_zero_signal(tmp_path):
    """Real effect: hyperparams.yml's defaults for ReachSignalFixed-v0, 2,000 steps (about 15 s on 2 cores)."""
    result = rl.train("sac", "armlab/ReachSignalFixed-v0", 2000, folder=tmp_path, env_kwargs={"robot": "arm2"},
                      seed=0, eval_freq=0, save_freq=0)
    contexts = held_out_contexts("armlab/ReachSignalFixed-v0", 5, robot="arm2")
    sac = evaluate(rl.policy_controller(result.run_dir), "armlab/ReachSignalFixed-v0", contexts, robot="arm2")
    zero = evaluate(zero_controller(), "armlab/ReachSignalFixed-v0", contexts, robot="arm2")
    assert zero.median_y > 0.1
    assert sac.median_y < 0.4 * zero.median_y, (sac.median_y, zero.median_y)
    print(f"SAC 2000 steps: median y {sac.median_y * 1000:.1f} mm, zero signal {zero.median_y * 1000:.1f} mm")
    assert sac.training_episodes == 2000


def test_yaml_env_kwargs_sit_under_the_users_and_entropy_scales_with_the_action_size(tmp_path):
    assert rl.default_env_kwargs("sac", "ReachSignalVelocity-v0") == {"reward_type": "log"}
    assert rl.default_env_kwargs("sac", "ReachVelocity-v0") == {}  # closed loop: the env's own reward
    result = rl.train("sac", "ReachSignalVelocity-v0", 50, folder=tmp_path, env_kwargs={"robot": "arm3",
                      "reward_type": "dense"}, hyperparams=SMALL, eval_freq=0, save_freq=0)
    assert result.model.env.get_attr("reward_type") == ["dense"]  # the user's value wins
    assert result.model.target_entropy == pytest.approx(-3.0 * 3)  # hyperparams.yml: 3 per action, arm3 has 3
    config = yaml.safe_load((result.run_dir / "config.yml").read_text())
    assert config["env_kwargs"] == {"reward_type": "dense", "robot": "arm3"}
    with pytest.raises(ValueError, match="not both"):
        rl.train("sac", "ReachSignalVelocity-v0", 50, folder=tmp_path, eval_freq=0, save_freq=0,
                 hyperparams=dict(SMALL, target_entropy=-2.0))
    with pytest.raises(ValueError, match="pass env settings with env_kwargs") as err:  # the library's own name
        rl.load_hyperparams("sac", "ReachSignalVelocity-v0", {"env_kwargs": {"robot": "arm3"}})
    assert err.value.param == "env_kwargs"  # which the command line shows as --env-kwargs
    out = armlab("train", "--algo", "sac", "--env", "ReachSignalVelocity-v0", "-f", str(tmp_path),
                 "--hyperparams", "env_kwargs:{robot:arm3}", "--no-progress")
    assert out.returncode == 2 and "pass env settings with --env-kwargs." in out.stderr, out.stderr
    with pytest.raises(ValueError, match="unknown hyperparameter 'target_entropy_per_action'"):
        rl.load_hyperparams("td3", "ReachSignalVelocity-v0", {"target_entropy_per_action": 2.0})


@pytest.mark.slow
def test_sac_meets_the_velocity_target_on_arm3(tmp_path):
    """Issue 3's open-loop target: SAC with hyperparams.yml's defaults, 10,000 steps (~3 min on 2 cores), reaches
    success@2cm >= 90 % of CMA-ES-1000's rate (98 % in docs/benchmarks.md) on 200 held-out contexts."""
    env_id, kwargs = "armlab/ReachSignalVelocity-v0", {"robot": "arm3"}
    result = rl.train("sac", env_id, 10_000, folder=tmp_path, env_kwargs=kwargs, seed=0, eval_freq=0, save_freq=0)
    contexts = held_out_contexts(env_id, 200, **kwargs)
    res = evaluate(rl.policy_controller(result.run_dir), env_id, contexts, **kwargs)
    print(f"SAC 10,000 steps on arm3 velocity: median {res.median_y * 1000:.1f} mm, success@2cm {res.success_2cm:.0%}, "
          f"{result.wall_s:.0f} s")
    assert res.success_2cm >= 0.9 * 0.98 and result.wall_s < 20 * 60


def test_replay_buffer_file_is_never_unpickled(tmp_path):
    result = rl.train("sac", "armlab/ReachSignalFixed-v0", 60, folder=tmp_path, hyperparams=SMALL, eval_freq=0,
                      save_freq=0)
    path = result.run_dir / "checkpoints" / "rl_model_replay_buffer_60_steps.npz"
    with np.load(path, allow_pickle=False) as data:  # plain arrays only
        assert "observations" in data.files and data["observations"].dtype != object
    bad = tmp_path / "bad.npz"
    np.savez(bad, observations=np.array([{"x": 1}], dtype=object))  # an object array would need pickle
    with pytest.raises(ValueError, match="corrupt or does not fit"):
        rl.load_replay_buffer(result.model, bad)


def test_train_names_its_parameters_and_the_command_line_its_flags(tmp_path):
    from robot_env.io.errors import ParamError

    with pytest.raises(ParamError, match=r"^n_envs must be an integer >= 1, got 0\.$") as err:
        rl.train("sac", "ReachSignalVelocity-v0", 50, folder=tmp_path, n_envs=0)
    assert err.value.param == "n_envs"
    out = armlab("train", "--algo", "sac", "--env", "ReachSignalVelocity-v0", "-f", str(tmp_path), "--n-envs", "0",
                 "--no-progress")
    assert out.returncode == 2 and "--n-envs must be an integer >= 1, got 0." in out.stderr, out.stderr
