"""CrossQ (sb3-contrib) as ``--algo crossq``: hyperparams.yml's defaults, a few hundred steps, safe save and load."""

import gymnasium as gym
import numpy as np
import pytest

from armlab_scripts.cli import main
from controllers import rl

TINY = {"learning_starts": 100, "batch_size": 32, "policy_kwargs": {"net_arch": {"pi": [32, 32], "qf": [32, 32]}}}


def test_crossq_defaults_come_from_hyperparams_yml():
    hp = rl.load_hyperparams("crossq", "armlab/ReachSignalVelocity-v0")
    assert hp["policy_kwargs"] == {"net_arch": {"pi": [256, 256], "qf": [256, 256]}}
    assert hp["policy_delay"] == 3 and hp["target_entropy_per_action"] == 3.0 and "tau" not in hp
    assert rl.default_env_kwargs("crossq", "armlab/ReachSignalVelocity-v0") == {"reward_type": "log"}
    assert "tau" not in rl.valid_hyperparams("crossq")  # no target network to track
    assert "crossq" in rl.OFF_POLICY


def test_crossq_trains_saves_and_reloads_identical_actions(tmp_path, one_thread):
    env_id = "armlab/ReachSignalVelocity-v0"
    result = rl.train("crossq", env_id, 300, folder=tmp_path, hyperparams=TINY, seed=4, eval_freq=0, save_freq=0)
    assert result.num_timesteps == 300 and result.checkpoints == [300]
    loaded = rl.load_run(result.run_dir)  # rebuilt from config.yml, tensors read with weights_only
    assert type(loaded.model).__name__ == "CrossQ"
    env = gym.make(env_id, **loaded.config["env_kwargs"])
    try:
        obs = np.stack([env.reset(seed=s)[0] for s in range(5)])
    finally:
        env.close()
    np.testing.assert_array_equal(loaded.predict(obs), result.model.predict(obs, deterministic=True)[0])
    # the batch-renorm statistics travel with the weights
    bn = {k: v for k, v in loaded.model.policy.state_dict().items() if k.endswith(("ra_mean", "ra_var", "steps"))}
    assert bn and all(np.array_equal(v.numpy(), result.model.policy.state_dict()[k].numpy()) for k, v in bn.items())


def test_cli_trains_crossq_and_refuses_a_target_network_setting(tmp_path, capsys, one_thread):
    args = ["train", "--algo", "crossq", "--env", "ReachSignalFixed-v0", "-f", str(tmp_path), "--n-timesteps", "150",
            "--hyperparams", "learning_starts:100", "--eval-freq", "0", "--no-progress"]
    assert main(args) == 0
    assert (tmp_path / "crossq" / "ReachSignalFixed-v0_1" / "model.zip").is_file()
    capsys.readouterr()
    assert main([*args, "tau:0.01"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "tau" in err[0]


@pytest.mark.parametrize("algo", ["crossq"])
def test_crossq_resumes_from_its_checkpoint(tmp_path, algo, one_thread):
    rl.train(algo, "armlab/ReachSignalFixed-v0", 150, folder=tmp_path, hyperparams=TINY, seed=1, eval_freq=0,
             save_freq=0)
    res = rl.train(algo, "armlab/ReachSignalFixed-v0", 250, folder=tmp_path, resume=True, eval_freq=0, save_freq=0)
    assert res.start_timesteps == 150 and res.num_timesteps == 250 and res.checkpoints == [150, 250]
