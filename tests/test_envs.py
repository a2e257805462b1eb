"""The six reach envs: checkers, seeding, bad input, physics errors, stages and the evaluate API."""

import gymnasium as gym
import numpy as np
import pybullet as pb
import pytest
from gymnasium.utils.env_checker import check_env as gym_check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env

import robot_env
from controllers.residual import add_residual, residual_action, residual_part, residual_signal
from robot_env import CLOSED_LOOP_IDS, ENV_IDS, OPEN_LOOP_IDS
from robot_env.components import History


def _rollout(env, seed, actions):
    obs, info = env.reset(seed=seed)
    trace = [obs]
    for a in actions:
        obs, r, term, trunc, info = env.step(a)
        trace.append((obs, r, term, trunc, info["distance"], info["is_success"]))
        if term or trunc:
            break
    return trace


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_both_env_checkers_pass(make, env_id):
    gym_check_env(make(env_id).unwrapped, skip_render_check=True)
    sb3_check_env(make(env_id).unwrapped, warn=True)


def test_dict_observations_pass_checkers_and_compute_reward_is_vectorised(make):
    env = make(CLOSED_LOOP_IDS["velocity"], obs_type="dict", reward_type="sparse").unwrapped
    gym_check_env(env, skip_render_check=True)
    sb3_check_env(env)
    obs, _ = env.reset(seed=0)
    obs, r, *_ , info = env.step(env.action_space.sample())
    assert r == env.compute_reward(obs["achieved_goal"], obs["desired_goal"], info)
    a = np.zeros((5, 3))
    d = np.zeros((5, 3))
    d[:2, 0] = 0.5
    assert env.compute_reward(a, d, [{}] * 5).tolist() == [-1, -1, 0, 0, 0]


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_same_seed_same_rollout(make, env_id):
    a, b = make(env_id), make(env_id)
    actions = np.random.default_rng(3).uniform(-1, 1, (40,) + a.action_space.shape)
    ta, tb = _rollout(a, 11, actions), _rollout(b, 11, actions)
    assert np.array_equal(ta[0], tb[0])
    for sa, sb in zip(ta[1:], tb[1:]):
        assert np.array_equal(sa[0], sb[0]) and sa[1:] == sb[1:]
    # and the same env reset again with that seed replays it too
    tc = _rollout(a, 11, actions)
    assert all(np.array_equal(x[0], y[0]) for x, y in zip(ta[1:], tc[1:]))


@pytest.mark.parametrize("env_id", [OPEN_LOOP_IDS["state"], CLOSED_LOOP_IDS["state"]])
def test_different_seeds_differ(make, env_id):
    env = make(env_id)
    o1, _ = env.reset(seed=1)
    o2, _ = env.reset(seed=2)
    assert not np.allclose(o1, o2)


def _final_info(make, env_id, **kw):
    """The last step's flags and info of a seeded episode of fixed random actions."""
    env = make(env_id, **kw)
    env.reset(seed=0)
    rng = np.random.default_rng(0)
    done = False
    while not done:
        _, _, term, trunc, info = env.step(rng.uniform(-1, 1, env.action_space.shape).astype(np.float32))
        done = term or trunc
    return term, trunc, info


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_final_info_has_distance_and_success_on_both_sides_of_the_threshold(make, env_id):
    term, trunc, info = _final_info(make, env_id)
    assert term and not trunc
    y = info["distance"]
    assert y > 0.02 and info["is_success"] is False  # an ordinary miss at the default 2 cm threshold
    # the same episode (the threshold changes no physics) judged against thresholds around its own distance
    assert _final_info(make, env_id, success_threshold=y * 1.01)[2]["is_success"] is True
    for below in (y, y * 0.99, y / 9):  # strict: y < threshold; and `y < 10 * threshold` would say True at y / 9
        _, _, other = _final_info(make, env_id, success_threshold=below)
        assert other["distance"] == y and other["is_success"] is False, below


@pytest.mark.parametrize("env_id", [OPEN_LOOP_IDS["fixed"], CLOSED_LOOP_IDS["fixed"]])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_action_raises(make, env_id, bad):
    env = make(env_id).unwrapped
    env.reset(seed=0)
    a = np.zeros(env.action_space.shape)
    a[0] = bad
    with pytest.raises(ValueError, match="NaN or inf"):
        env.step(a)


@pytest.mark.parametrize("env_id", [OPEN_LOOP_IDS["fixed"], CLOSED_LOOP_IDS["fixed"]])
def test_wrong_action_shape_raises(make, env_id):
    env = make(env_id).unwrapped
    env.reset(seed=0)
    with pytest.raises(ValueError, match="shape"):
        env.step(np.zeros(7))


@pytest.mark.parametrize("env_id", [OPEN_LOOP_IDS["velocity"], CLOSED_LOOP_IDS["velocity"]])
def test_out_of_range_actions_are_clipped(make, env_id):
    a, b = make(env_id), make(env_id)
    big = np.array([5.0, -3.0])
    ra = _rollout(a, 0, [big] * 3)
    rb = _rollout(b, 0, [np.clip(big, -1, 1)] * 3)
    assert all(np.array_equal(x[0], y[0]) for x, y in zip(ra[1:], rb[1:]))


@pytest.mark.parametrize("env_id", [OPEN_LOOP_IDS["fixed"], CLOSED_LOOP_IDS["fixed"]])
def test_physics_blow_up_truncates_with_error(make, env_id):
    env = make(env_id).unwrapped
    env.reset(seed=0)
    for j in env.arm.joints:  # corrupt the state as an exploding simulation would
        pb.resetJointState(env.arm.body, j, float("nan"), float("nan"), physicsClientId=env.world.id)
    obs, reward, term, trunc, info = env.step(np.zeros(env.action_space.shape))
    assert trunc and not term
    assert "physics_error" in info and info["is_success"] is False
    assert env.observation_space.contains(obs) and np.isfinite(reward)


def test_close_releases_the_client(make):
    env = make(OPEN_LOOP_IDS["fixed"])
    cid = env.unwrapped.world.id
    assert pb.isConnected(physicsClientId=cid)
    env.close()
    assert not pb.isConnected(physicsClientId=cid)
    env.close()  # twice is fine


def test_unknown_options_raise_clear_errors():
    with pytest.raises(ValueError, match="available robots"):
        gym.make(OPEN_LOOP_IDS["fixed"], robot="ur5")
    with pytest.raises(ValueError, match="stage"):
        robot_env.ReachSignalEnv(stage="hard")
    with pytest.raises(ValueError, match="control mode"):
        gym.make(CLOSED_LOOP_IDS["fixed"], control="impedance")
    with pytest.raises(ValueError, match="unknown randomization"):
        gym.make(OPEN_LOOP_IDS["state"], randomization={"gravity": 0.1})
    with pytest.raises(ValueError, match="horizon"):
        gym.make(OPEN_LOOP_IDS["fixed"], horizon=0.0)
    with pytest.raises(ValueError, match="unknown env id"):
        robot_env.make("armlab/Nope-v0")


def test_human_render_without_display_says_so(monkeypatch):
    monkeypatch.delenv("DISPLAY", raising=False)
    with pytest.raises(RuntimeError, match="display"):
        gym.make(OPEN_LOOP_IDS["fixed"], render_mode="human")


@pytest.mark.parametrize("env_id", [OPEN_LOOP_IDS["fixed"], CLOSED_LOOP_IDS["fixed"]])
def test_rgb_array_render(make, env_id):
    env = make(env_id, render_mode="rgb_array", render_size=(64, 48))
    env.reset(seed=0)
    frame = env.render()
    assert frame.shape == (48, 64, 3) and frame.dtype == np.uint8 and frame.std() > 0
    assert env.metadata["render_fps"] > 0


def test_stages_draw_what_the_lecture_says(make):
    fixed, vel, state = (make(OPEN_LOOP_IDS[s]).unwrapped for s in ("fixed", "velocity", "state"))
    n = 2
    fo = [fixed.reset(seed=s)[0] for s in range(3)]
    assert all(np.array_equal(fo[0], o) for o in fo)
    vo = np.array([vel.reset(seed=s)[0] for s in range(5)])
    assert np.ptp(vo[:, :n], axis=0).max() == 0 and np.ptp(vo[:, 2 * n :], axis=0).max() == 0
    assert np.ptp(vo[:, n : 2 * n], axis=0).min() > 0.1
    so = np.array([state.reset(seed=s)[0] for s in range(5)])
    assert np.ptp(so[:, : 2 * n + 2], axis=0).min() > 0.01  # j, v and the target's x, y (arm2 is planar)


def test_state_stage_target_is_reachable_and_zero_signal_is_not(make):
    env = make(OPEN_LOOP_IDS["state"]).unwrapped
    for seed in range(5):
        env.reset(seed=seed)
        assert env.evaluate(env.context.info["target_signal"]) < 1e-9
        assert env.evaluate(np.zeros(2)) > 0.01


def test_evaluate_replays_the_episode_start(make):
    env = make(OPEN_LOOP_IDS["velocity"], robot="arm3").unwrapped
    env.reset(seed=4)
    x = np.array([0.3, -0.5, 0.2])
    y1 = env.evaluate(x)
    env.evaluate(np.array([-1.0, 1.0, -1.0]))
    y2 = env.evaluate(x)
    _, reward, *_ , info = env.step(x)
    assert y1 == y2 == info["distance"] == -reward
    assert env.evaluations == 3
    with pytest.raises(RuntimeError, match="reset"):
        env.step(x)


def test_log_reward_ranks_signals_like_the_distance(make):
    env = make(OPEN_LOOP_IDS["velocity"], robot="arm2", reward_type="log").unwrapped
    rewards, distances = [], []
    for x in ([0.3, -0.5], [-0.2, 0.4], [0.9, 0.9]):
        env.reset(seed=2)
        _, r, *_, info = env.step(np.array(x))
        rewards.append(r)
        distances.append(info["distance"])
    np.testing.assert_allclose(rewards, -np.log1p(np.array(distances) / 0.005))
    assert np.argsort(rewards).tolist() == np.argsort(distances)[::-1].tolist()
    with pytest.raises(ValueError, match="reward_type"):
        make(OPEN_LOOP_IDS["velocity"], reward_type="sparse")


def test_closed_loop_log_reward_every_step(make):
    env = make(CLOSED_LOOP_IDS["state"], robot="arm2", reward_type="log").unwrapped
    env.reset(seed=3)
    for x in ([0.3, -0.5], [-0.2, 0.4], [0.9, 0.9]):
        _, r, *_, info = env.step(np.array(x))
        assert r == pytest.approx(-np.log1p(info["distance"] / 0.005))
    dict_env = make(CLOSED_LOOP_IDS["state"], robot="arm2", reward_type="log", obs_type="dict").unwrapped
    ag, dg = np.zeros((3, 3)), np.zeros((3, 3))
    dg[:, 0] = [0.0, 0.005, 0.1]
    np.testing.assert_allclose(dict_env.compute_reward(ag, dg, None), [0.0, -np.log(2.0), -np.log1p(20.0)], rtol=1e-6)
    with pytest.raises(ValueError, match="reward_type"):
        make(CLOSED_LOOP_IDS["state"], reward_type="quadratic")


@pytest.mark.parametrize("obs_type", ["state", "dict"])
def test_history_shows_the_previous_action_and_the_velocities_before_it(make, obs_type):
    plain = make(CLOSED_LOOP_IDS["state"], robot="arm2", obs_type=obs_type).unwrapped
    env = make(CLOSED_LOOP_IDS["state"], robot="arm2", obs_type=obs_type, history=True).unwrapped
    gym_check_env(env, skip_render_check=True)

    def flat(o):
        return o["observation"] if obs_type == "dict" else o

    o0, _ = env.reset(seed=5)
    p0, _ = plain.reset(seed=5)
    n = env.arm.n
    assert flat(o0).shape[0] == flat(p0).shape[0] + 2 * n
    np.testing.assert_allclose(flat(o0)[: flat(p0).shape[0]], flat(p0))  # the plain observation comes first
    np.testing.assert_allclose(flat(o0)[-2 * n : -n], 0.0)  # no action yet
    np.testing.assert_allclose(flat(o0)[-n:], env.context.qd, atol=1e-5)  # the start velocities
    a = np.array([0.7, -2.0])  # clipped to [-1, 1] like the action the env applies
    o1, *_ = env.step(a)
    np.testing.assert_allclose(flat(o1)[-2 * n : -n], [0.7, -1.0], atol=1e-6)
    np.testing.assert_allclose(flat(o1)[-n:], flat(o0)[n : 2 * n], atol=1e-6)  # v seen with that action
    o2, *_ = env.step(np.array([0.1, 0.2]))
    np.testing.assert_allclose(flat(o2)[-2 * n : -n], [0.1, 0.2], atol=1e-6)
    np.testing.assert_allclose(flat(o2)[-n:], flat(o1)[n : 2 * n], atol=1e-6)
    with pytest.raises(ValueError, match="history"):
        make(CLOSED_LOOP_IDS["state"], history="yes")
    with pytest.raises(ValueError, match="history"):
        make(CLOSED_LOOP_IDS["state"], history=True, obs_type="rgb")


def test_privileged_entries_follow_the_plain_observation(make):
    plain = make(CLOSED_LOOP_IDS["state"], robot="arm3", history=True).unwrapped
    env = make(CLOSED_LOOP_IDS["state"], robot="arm3", history=True, privileged=True).unwrapped
    gym_check_env(env, skip_render_check=True)
    assert env.actor_obs_dim == plain.observation_space.shape[0] == plain.actor_obs_dim
    o, _ = env.reset(seed=7)
    p, _ = plain.reset(seed=7)
    k, n, links = env.actor_obs_dim, env.arm.n, len(env.arm.nominal_dynamics)
    np.testing.assert_allclose(o[:k], p)  # the policy's part is the plain observation
    dyn, priv = env.context.dynamics, o[k:]
    assert priv.shape == (links + 3 * n + 1,)
    np.testing.assert_allclose(priv[:links], dyn.mass_scale - 1, atol=1e-6)
    np.testing.assert_allclose(priv[links : links + n], dyn.damping_scale - 1, atol=1e-6)
    np.testing.assert_allclose(priv[links + n : links + 2 * n], dyn.friction / env.arm.max_torque, atol=1e-6)
    assert priv[links + 2 * n] == pytest.approx(dyn.torque_gain - 1, abs=1e-6)
    np.testing.assert_allclose(priv[-n:], env.context.info["target_signal"], atol=1e-6)
    o1, *_ = env.step(np.zeros(n))
    np.testing.assert_array_equal(o1[k:], priv)  # constant through the episode
    o2, _ = env.reset(seed=8)
    assert not np.allclose(o2[k:], priv)  # drawn per episode
    fixed = make(CLOSED_LOOP_IDS["fixed"], privileged=True).unwrapped
    of, _ = fixed.reset(seed=0)
    np.testing.assert_array_equal(of[fixed.actor_obs_dim :], 0.0)  # nominal dynamics, no signal
    with pytest.raises(ValueError, match="privileged"):
        make(CLOSED_LOOP_IDS["state"], privileged="yes")
    with pytest.raises(ValueError, match="privileged"):
        make(CLOSED_LOOP_IDS["state"], privileged=True, obs_type="dict")


def test_residual_actions_are_added_to_the_feedback_controllers_signal(make):
    plain = make(CLOSED_LOOP_IDS["state"], robot="arm3", history=True).unwrapped
    env = make(CLOSED_LOOP_IDS["state"], robot="arm3", history=True, residual=True).unwrapped
    gym_check_env(env, skip_render_check=True)
    n, k = env.arm.n, plain.observation_space.shape[0]
    o, _ = env.reset(seed=3)
    p, _ = plain.reset(seed=3)
    assert o.shape == (k + n,)
    np.testing.assert_allclose(o[:k], p)  # the plain observation first, then the base signal b
    for a in (np.zeros(n), np.array([0.3, -0.2, 2.0])):
        b = o[k:]
        assert np.all(np.abs(b) <= 1) and np.any(b != 0)
        o, r, *_ = env.step(a)
        p, rp, *_ = plain.step(np.clip(b + np.clip(a, -1, 1), -1, 1))  # what the residual env applied
        np.testing.assert_allclose(o[:k], p, atol=1e-5)
        assert r == pytest.approx(rp, abs=1e-5)
    for bad in ({"residual": "yes"}, {"residual": True, "obs_type": "dict"}, {"residual": True, "control": "position"}):
        with pytest.raises(ValueError, match="residual"):
            make(CLOSED_LOOP_IDS["state"], robot="arm3", **bad)


def test_the_feedback_controller_alone_beats_a_zero_signal(make):
    env = make(CLOSED_LOOP_IDS["state"], robot="arm3", residual=True).unwrapped
    zero = make(CLOSED_LOOP_IDS["state"], robot="arm3").unwrapped
    ys = {"base": [], "zero": []}
    for seed in range(20):
        for name, e in (("base", env), ("zero", zero)):
            e.reset(seed=1000 + seed)
            done = False
            while not done:
                *_, term, trunc, info = e.step(np.zeros(e.arm.n))
                done = term or trunc
            ys[name].append(info["distance"])
    base, zero_y = np.array(ys["base"]), np.array(ys["zero"])
    assert np.median(base) < 0.3 * np.median(zero_y)
    assert np.mean(base < 0.02) >= 0.2  # about 40 % within 2 cm over 200 contexts
    base = residual_part(env).base
    assert base.goal is not None and base.goal.shape == (env.arm.n,)


def test_a_stalled_ik_start_stops_early_where_it_would_have_ended(monkeypatch):
    from controllers import feedback

    ct = feedback.ComputedTorque("arm3", 1 / 240, 10 / 240)
    try:
        a, rng = ct.arm, np.random.default_rng(0)
        calls = {"n": 0}
        ee = ct._ee

        def counted(q):
            calls["n"] += 1
            return ee(q)

        monkeypatch.setattr(ct, "_ee", counted)
        stalled, rule = [], feedback.STALL_STEP
        for _ in range(12):
            a.reset_joints(rng.uniform(a.lower, a.upper))
            p, start = a.ee_position(), rng.uniform(a.lower, a.upper)
            calls["n"] = 0
            q, err = ct.ik(p, start)
            early = calls["n"]
            monkeypatch.setattr(feedback, "STALL_STEP", 0.0)  # the old rule: every iteration
            calls["n"] = 0
            q_all, err_all = ct.ik(p, start)
            monkeypatch.setattr(feedback, "STALL_STEP", rule)
            np.testing.assert_allclose(q, q_all, atol=1e-5)
            assert err == pytest.approx(err_all, abs=1e-5)
            if err_all > feedback.IK_TOLERANCE:
                stalled.append(calls["n"] - early)
        assert stalled and min(stalled) > 0  # every start that missed saved iterations
    finally:
        ct.close()


def test_knots_interpolate_linearly(make):
    env = make(OPEN_LOOP_IDS["fixed"], knots=3).unwrapped
    assert env.action_space.shape == (6,)
    rows, per = env.task.commands(np.array([-1.0, 0.0, 0.0, 0.0, 1.0, 0.0]))
    rows = np.array(rows)
    assert per == 1 and rows.shape == (env.task.n_steps, 2)
    assert np.all(np.diff(rows[:, 0]) > 0) and rows[0, 0] < -1.4 and rows[-1, 0] > 1.4
    assert np.allclose(rows[:, 1], 0.0)
    env.reset(seed=0)
    assert env.evaluate(np.zeros(6)) != env.evaluate(np.array([-1.0, 0.0, 0.0, 0.0, 1.0, 0.0]))


@pytest.mark.parametrize("control", ["velocity", "position"])
@pytest.mark.parametrize("env_id", [OPEN_LOOP_IDS["fixed"], CLOSED_LOOP_IDS["fixed"]])
def test_other_control_modes_move_the_arm(make, env_id, control):
    env = make(env_id, control=control)
    obs0, _ = env.reset(seed=0)
    obs, *_ = env.step(np.full(env.action_space.shape, 0.5))
    assert not np.allclose(obs0[:2], obs[:2], atol=1e-3)


def test_initial_velocity_matters_under_torque_control(make):
    env = make(OPEN_LOOP_IDS["velocity"]).unwrapped
    ys = set()
    for seed in range(3):
        env.reset(seed=seed)
        ys.add(round(env.evaluate(np.array([0.3, 0.2])), 6))
    assert len(ys) == 3


@pytest.mark.parametrize("robot", ["arm3", "panda", "kuka"])
def test_every_robot_runs_closed_loop(make, robot):
    env = make(CLOSED_LOOP_IDS["state"], robot=robot)
    env.reset(seed=0)
    for _ in range(3):
        obs, *_ = env.step(env.action_space.sample())
    assert env.observation_space.contains(obs)


def test_subproc_vec_env_with_spawn():
    venv = robot_env.make_vec_env(CLOSED_LOOP_IDS["velocity"], n_envs=2, seed=0, subproc=True, start_method="spawn")
    try:
        obs = venv.reset()
        assert obs.shape == (2, 11)
        assert not np.array_equal(obs[0], obs[1])  # each worker drew its own v
        for _ in range(15):
            obs, rewards, dones, infos = venv.step(np.zeros((2, 2)))
        assert any("distance" in i for i in infos)
    finally:
        venv.close()


def test_subproc_workers_build_residual_envs_through_controllers_envs():
    # spawn workers import the factory's module (controllers.envs), which serves residual=True there too
    from controllers import envs

    kw = {"robot": "arm3", "history": True, "residual": True}
    venv = envs.make_vec_env(CLOSED_LOOP_IDS["state"], n_envs=2, seed=0, subproc=True, start_method="spawn", **kw)
    local = envs.make_vec_env(CLOSED_LOOP_IDS["state"], n_envs=2, seed=0, **kw)
    try:
        np.testing.assert_array_equal(venv.reset(), local.reset())
        for _ in range(3):
            actions = np.full((2, 3), 0.1)
            np.testing.assert_array_equal(venv.step(actions)[0], local.step(actions)[0])
    finally:
        venv.close()
        local.close()


def _mean_final_distance(model, env, seeds) -> float:
    finals = []
    for seed in seeds:
        obs, _ = env.reset(seed=seed)
        done = False
        while not done:
            obs, _, term, trunc, info = env.step(model.predict(obs, deterministic=True)[0])
            done = term or trunc
        finals.append(info["distance"])
    return float(np.mean(finals))


def test_her_learns_on_dict_observations(make, one_thread):
    """SAC + HER on the goal-conditioned dict observation and a sparse reward (8 cm success: HER's relabelled goals
    then reward often enough) more than halves the final distance of the untrained policy on ten fixed evaluation
    seeds in 1200 steps (100 episodes). Measured on training seeds 0, 1, 2: 0.127 -> 0.006, 0.121 -> 0.016,
    0.087 -> 0.022 m; a broken update stays near its start (ratio ~1)."""
    from stable_baselines3 import SAC, HerReplayBuffer

    kw = dict(obs_type="dict", reward_type="sparse", success_threshold=0.08)
    env, eval_env = make(CLOSED_LOOP_IDS["fixed"], **kw), make(CLOSED_LOOP_IDS["fixed"], **kw)
    model = SAC("MultiInputPolicy", env, replay_buffer_class=HerReplayBuffer, learning_starts=100, batch_size=64,
                learning_rate=1e-3, gamma=0.9, policy_kwargs={"net_arch": [64, 64]}, seed=0, verbose=0, device="cpu")
    seeds = range(100, 110)
    before = _mean_final_distance(model, eval_env, seeds)
    model.learn(1200)
    after = _mean_final_distance(model, eval_env, seeds)
    assert model.replay_buffer.size() > 0 and before > 0.08
    assert after < 0.5 * before and after < 0.05, (before, after)


def test_residual_span_reaches_the_whole_torque_range_from_any_base_signal(make):
    rng = np.random.default_rng(0)
    b = np.concatenate([[-1.0, 1.0, 0.0], rng.uniform(-1, 1, 500)])
    a = rng.uniform(-1, 1, b.shape)
    for mode in ("add", "span"):
        assert np.all(residual_signal(b, 0 * a, mode) == b)  # a zero action is the base alone
    u = residual_signal(b, a, "span")
    assert np.all(np.abs(u) <= 1) and np.all(np.diff(residual_signal(0.6, np.linspace(-1, 1, 50), "span")) > 0)
    np.testing.assert_array_equal(residual_signal(b, np.ones_like(b), "span"), 1.0)
    np.testing.assert_array_equal(residual_signal(b, -np.ones_like(b), "span"), -1.0)
    np.testing.assert_allclose(residual_action(u, b, "span")[2:], a[2:], atol=1e-9)  # its inverse (b = +-1: flat side)
    assert residual_signal(1.0, -1.0, "add") == 0.0 and residual_action(-0.5, 1.0, "add") == -1.5  # add loses half
    # in the env: with the base pinned at +1, span lets a full negative action reverse the torque
    kw = {"robot": "arm3", "residual": True, "history": True, "randomization": False}
    for mode, expect in (("add", 0.0), ("span", -1.0)):
        env = make(CLOSED_LOOP_IDS["state"], residual_mode=mode, **kw).unwrapped
        env.reset(seed=2)
        residual_part(env).signal = np.ones(env.arm.n)
        env.step(-np.ones(env.arm.n))
        applied = env.part(History).value[: env.arm.n]  # the applied signal, as history shows it
        np.testing.assert_allclose(applied, expect)
    for bad, needle in (({"residual_mode": "scale"}, "unknown residual_mode 'scale'; choose one of add, span"),
                        ({"residual_mode": "span", "residual": False}, "residual_mode 'span' applies with residual")):
        with pytest.raises(ValueError, match=needle):
            make(CLOSED_LOOP_IDS["state"], **{**kw, **bad})


def test_residual_control_attached_to_a_built_env_gives_the_same_rollout(make):
    # residual control lives on the controllers floor: the keyword (a plugin) and `add_residual` on a built env
    # give the same observations and rewards for the same seed and actions, with b before the privileged entries
    kw = {"robot": "arm3", "history": True, "privileged": True, "reward_at": "end"}
    by_keyword = make(CLOSED_LOOP_IDS["state"], residual=True, residual_mode="span", **kw)
    by_wrapper = add_residual(make(CLOSED_LOOP_IDS["state"], **kw), "span")
    plain = make(CLOSED_LOOP_IDS["state"], **kw).unwrapped
    u = by_wrapper.unwrapped
    n = u.arm.n
    assert by_wrapper.observation_space == by_keyword.observation_space
    assert u.actor_obs_dim == plain.actor_obs_dim + n
    assert u.obs_slice(residual_part(u)) == slice(plain.actor_obs_dim, plain.actor_obs_dim + n)
    rng = np.random.default_rng(0)
    for seed in (0, 1):
        a, _ = by_keyword.reset(seed=seed)
        b, _ = by_wrapper.reset(seed=seed)
        np.testing.assert_array_equal(a, b)
        done = False
        while not done:
            action = rng.uniform(-1, 1, n)
            a, ra, term, trunc, _ = by_keyword.step(action)
            b, rb, *_ = by_wrapper.step(action)
            np.testing.assert_array_equal(a, b)
            assert ra == rb
            done = term or trunc
        np.testing.assert_array_equal(a[u.actor_obs_dim :], plain.reset(seed=seed)[0][plain.actor_obs_dim :])
    with pytest.raises(ValueError, match="already has residual control"):
        add_residual(by_wrapper)
    with pytest.raises(ValueError, match="closed-loop"):
        add_residual(make(OPEN_LOOP_IDS["state"]))


def test_residual_keyword_without_its_plugin_names_the_module_to_import():
    import subprocess
    import sys

    code = ("import gymnasium as gym, robot_env\n"
            "gym.make('armlab/ReachState-v0', residual=False).close()\n"
            "gym.make('armlab/ReachState-v0', residual_mode='add').close()\n"  # the defaults need no plugin
            "try:\n    gym.make('armlab/ReachState-v0', residual=True)\n"
            "except ValueError as exc:\n    print(exc)\n"
            "import sys; print(any(m.startswith('controllers') for m in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert "residual is served by controllers.residual: import controllers.residual first" in lines[-2]
    assert lines[-1] == "False"  # robot_env never imports the controllers floor


def test_reward_at_end_scores_the_final_distance_only(make):
    # the same context and actions: "end" gives 0 before the last step and there the same
    # reward as "every", so the return is the final distance's score
    kw = {"robot": "arm3", "reward_type": "log"}
    every = make(CLOSED_LOOP_IDS["state"], **kw).unwrapped
    end = make(CLOSED_LOOP_IDS["state"], reward_at="end", **kw).unwrapped
    rewards = {}
    for env in (every, end):
        env.reset(seed=5)
        rng = np.random.default_rng(1)
        rewards[env.reward_at] = [env.step(rng.uniform(-1, 1, env.arm.n))[1] for _ in range(env.max_steps)]
    assert rewards["every"][-1] == rewards["end"][-1] < 0
    assert rewards["end"][:-1] == [0.0] * (end.max_steps - 1) and all(r < 0 for r in rewards["every"][:-1])
    with pytest.raises(ValueError, match="unknown reward_at 'last'; choose one of every, end"):
        make(CLOSED_LOOP_IDS["state"], reward_at="last")
    with pytest.raises(ValueError, match="reward_at 'end' does not work with dict observations"):
        make(CLOSED_LOOP_IDS["state"], reward_at="end", obs_type="dict")


def test_speed_bound_keeps_fast_joints_visible(make):
    # following its own target signal, arm3 passes 3 x its velocity limit in some state contexts:
    # the default observation clips that speed, speed_bound=12 shows it as the simulator has it
    kw = {"robot": "arm3", "randomization": {"obs_noise": 0.0}}
    clipped = make(CLOSED_LOOP_IDS["state"], **kw).unwrapped
    wide = make(CLOSED_LOOP_IDS["state"], speed_bound=12, **kw).unwrapped
    n, bound = clipped.arm.n, clipped.vel_bound
    assert np.all(wide.vel_bound > 3 * bound)
    rng = np.random.default_rng(0)
    for _ in range(60):
        ctx = clipped.task.sample_context(rng)
        seen_clipped, seen_wide, true = [], [], []
        for env, seen in ((clipped, seen_clipped), (wide, seen_wide)):
            env.reset(seed=0, options={"context": ctx})
            for _ in range(env.max_steps):
                obs, *_ = env.step(ctx.info["target_signal"])
                seen.append(obs[n : 2 * n])
                if env is wide:
                    true.append(np.array(env.arm.read()[n : 2 * n]))
        if np.abs(true).max() > bound.max():
            break
    else:
        pytest.fail("no context passed the default speed bound")
    assert np.all(np.abs(seen_clipped) <= bound + 1e-5) and np.abs(seen_clipped).max() < np.abs(true).max()
    np.testing.assert_allclose(seen_wide, true, rtol=1e-5, atol=1e-4)
    for bad in (0, -1.0, float("nan"), "fast", True):
        with pytest.raises(ValueError, match="speed_bound must be a positive number"):
            make(CLOSED_LOOP_IDS["state"], speed_bound=bad)
