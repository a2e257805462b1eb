"""Image observations (obs_type="rgb" / "rgbd"): checkers, layout, depth encoding, seeding, SB3's CnnPolicy."""

import numpy as np
import pybullet as pb
import pytest
from gymnasium.utils.env_checker import check_env as gym_check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env

from robot_env import CLOSED_LOOP_IDS, OPEN_LOOP_IDS

IDS = [OPEN_LOOP_IDS["state"], CLOSED_LOOP_IDS["state"]]


@pytest.mark.parametrize("obs_type", ["rgb", "rgbd"])
@pytest.mark.parametrize("env_id", IDS)
def test_image_observations_pass_both_checkers(make, env_id, obs_type):
    env = make(env_id, obs_type=obs_type).unwrapped
    channels = 3 if obs_type == "rgb" else 4
    assert env.observation_space.shape == (channels, 64, 64) and env.observation_space.dtype == np.uint8
    gym_check_env(env, skip_render_check=True)
    sb3_check_env(env, warn=True)
    obs, _ = env.reset(seed=0)
    assert obs.shape == (channels, 64, 64) and obs.dtype == np.uint8 and obs.flags["C_CONTIGUOUS"]
    assert obs[:3].std() > 10  # a scene, not a blank


@pytest.mark.parametrize("env_id", IDS)
def test_rgbd_depth_channel_is_metric_depth_scaled_to_depth_max(make, env_id):
    env = make(env_id, obs_type="rgbd", image_size=(80, 48), robot="arm3").unwrapped
    obs, _ = env.reset(seed=1)
    assert obs.shape == (4, 48, 80) and env.depth_max == pytest.approx(2.1)
    img = env.obs_camera.render(env.world)
    assert np.array_equal(obs[:3], img.rgb.transpose(2, 0, 1))
    expected = np.rint(np.clip(img.depth, 0, env.depth_max) * 255 / env.depth_max)
    assert np.array_equal(obs[3], expected.astype(np.uint8))
    arm = img.body == env.arm.body
    assert arm.any() and obs[3][arm].mean() < obs[3][~arm].mean()  # the arm stands in front of the floor


def test_images_follow_the_arm_and_replay_with_the_seed(make):
    a, b = make(CLOSED_LOOP_IDS["velocity"], obs_type="rgb"), make(CLOSED_LOOP_IDS["velocity"], obs_type="rgb")
    actions = np.random.default_rng(0).uniform(-1, 1, (6, 2))
    oa, _ = a.reset(seed=3)
    ob, _ = b.reset(seed=3)
    assert np.array_equal(oa, ob)
    first = oa
    for x in actions:
        oa, *_ = a.step(x)
        ob, *_ = b.step(x)
        assert np.array_equal(oa, ob)
    assert np.abs(oa.astype(int) - first).sum() > 0  # the arm moved in the picture


def test_open_loop_image_shows_the_target_of_each_context(make):
    env = make(OPEN_LOOP_IDS["state"], obs_type="rgb", camera="top").unwrapped
    o1, _ = env.reset(seed=1)
    o2, _ = env.reset(seed=2)
    assert not np.array_equal(o1, o2)
    o3, _ = env.reset(seed=1)
    assert np.array_equal(o1, o3)


def test_physics_blow_up_gives_a_black_image(make):
    env = make(CLOSED_LOOP_IDS["fixed"], obs_type="rgbd").unwrapped
    env.reset(seed=0)
    for j in env.arm.joints:
        pb.resetJointState(env.arm.body, j, float("nan"), float("nan"), physicsClientId=env.world.id)
    obs, reward, term, trunc, info = env.step(np.zeros(env.action_space.shape))
    assert trunc and "physics_error" in info and np.isfinite(reward)
    assert env.observation_space.contains(obs) and not obs.any()


def test_bad_image_options_raise(make):
    with pytest.raises(ValueError, match="image_size"):
        make(OPEN_LOOP_IDS["fixed"], obs_type="rgb", image_size=0)
    with pytest.raises(ValueError, match="unknown camera"):
        make(OPEN_LOOP_IDS["fixed"], obs_type="rgb", camera="back")
    with pytest.raises(ValueError, match="obs_type"):
        make(OPEN_LOOP_IDS["fixed"], obs_type="gray")


def test_state_observations_are_unchanged_by_the_image_options(make):
    a = make(CLOSED_LOOP_IDS["fixed"])
    b = make(CLOSED_LOOP_IDS["fixed"], image_size=32, camera="wrist")  # ignored for state observations
    assert a.observation_space == b.observation_space
    assert np.array_equal(a.reset(seed=0)[0], b.reset(seed=0)[0])
    assert not hasattr(a.unwrapped, "obs_camera")


def test_ppo_cnn_policy_updates_its_cnn_and_value_on_rgb(make):
    """Two PPO updates from pixels: every conv layer's weights and the value of a fixed observation move (learning
    to reach from pixels does not fit in a test's budget; a broken gradient step or frozen CNN fails here)."""
    import torch
    from stable_baselines3 import PPO

    env = make(CLOSED_LOOP_IDS["fixed"], obs_type="rgb")
    model = PPO("CnnPolicy", env, n_steps=32, batch_size=32, n_epochs=1, seed=0, verbose=0, device="cpu")
    cnn = model.policy.features_extractor.cnn
    convs = [m for m in cnn.modules() if isinstance(m, torch.nn.Conv2d)]
    before = [c.weight.detach().clone() for c in convs]
    obs = env.reset(seed=0)[0]
    value_before = model.policy.predict_values(model.policy.obs_to_tensor(obs)[0]).item()
    model.learn(64)
    assert model.num_timesteps == 64 and len(convs) == 3
    for c, w in zip(convs, before):
        assert (c.weight.detach() - w).abs().max() > 1e-6  # every conv layer got a gradient step
    value_after = model.policy.predict_values(model.policy.obs_to_tensor(obs)[0]).item()
    assert abs(value_after - value_before) > 1e-4
    action, _ = model.predict(obs, deterministic=True)
    assert env.action_space.contains(action.astype(np.float32))
