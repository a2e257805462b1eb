"""Policies and the algorithm's constructor arguments: the asymmetric actor-critic for privileged
observations, action noise, HER, schedules."""

from __future__ import annotations

import copy

import gymnasium as gym
import numpy as np
import torch as th
from stable_baselines3 import HerReplayBuffer
from stable_baselines3.common.noise import (
    NormalActionNoise,
    OrnsteinUhlenbeckActionNoise,
)
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor

from controllers.rl.hyperparams import (
    _SCHEDULE_HP,
    _activation,
    _her_defaults,
    parse_schedule,
)
from controllers.rl.normalize import EnvInfo
from controllers.rl.runs import ALGOS, OFF_POLICY
from robot_env.io.errors import ConfigError, ParamError


class LeadingFeatures(BaseFeaturesExtractor):
    """The first ``n`` entries of a flat observation: what an asymmetric actor may read."""

    def __init__(self, observation_space: gym.spaces.Box, n: int) -> None:
        super().__init__(observation_space, int(n))
        self.n = int(n)

    def forward(self, observations: th.Tensor) -> th.Tensor:
        return th.flatten(observations, start_dim=1)[:, : self.n]


def asymmetric_policy(algo: str) -> type:
    """SAC's or TQC's MLP policy with an actor that reads only the first ``actor_obs_dim``
    observation entries while the critics read them all (an env's ``privileged=True``
    entries): asymmetric actor-critic, Pinto et al. 2017. The actor never sees the
    critic-only entries, so the trained policy needs none of them at deployment."""
    if algo == "sac":
        from stable_baselines3.sac.policies import SACPolicy as base
    elif algo == "tqc" and "tqc" in ALGOS:
        from sb3_contrib.tqc.policies import TQCPolicy as base
    else:
        raise ParamError("algo", f"privileged observations need an asymmetric actor-critic: use {{name}} sac or tqc, "
                                 f"not {algo}.")

    class AsymmetricPolicy(base):
        def __init__(self, *args, actor_obs_dim: int, **kwargs) -> None:
            if kwargs.get("share_features_extractor"):
                raise ConfigError("an asymmetric actor-critic cannot share its features extractor.")
            self.actor_obs_dim = int(actor_obs_dim)
            super().__init__(*args, **kwargs)

        def make_actor(self, features_extractor=None):
            return super().make_actor(LeadingFeatures(self.observation_space, self.actor_obs_dim))

        def _get_constructor_parameters(self) -> dict:
            return {**super()._get_constructor_parameters(), "actor_obs_dim": self.actor_obs_dim}

    AsymmetricPolicy.__name__ = AsymmetricPolicy.__qualname__ = f"Asymmetric{base.__name__}"
    return AsymmetricPolicy


def _policy_name(policy: str | type) -> str:
    return policy if isinstance(policy, str) else policy.__name__


def _model_kwargs(algo: str, hyperparams: dict, info: EnvInfo) -> tuple[str | type, dict]:
    """(policy, constructor kwargs) from checked hyperparameters."""
    hp = copy.deepcopy(hyperparams)
    hp.pop("n_timesteps", None)
    hp.pop("actor_init_std", None)  # applied to the built model by `_build_model`
    hp.pop("residual_her", None)  # a replay buffer that needs the env: set by `_build_model`
    default = {"dict": "MultiInputPolicy", "image": "CnnPolicy"}.get(info.obs_kind, "MlpPolicy")
    policy = hp.pop("policy", None) or default
    if info.actor_obs_dim is not None:
        if policy != "MlpPolicy":
            raise ConfigError(f"privileged observations train with MlpPolicy, not {policy}.")
        policy = asymmetric_policy(algo)
        hp["policy_kwargs"] = {**(hp.get("policy_kwargs") or {}), "actor_obs_dim": info.actor_obs_dim}
    for key in _SCHEDULE_HP:
        if key in hp:
            hp[key] = parse_schedule(hp[key])
    if isinstance(hp.get("train_freq"), list):
        hp["train_freq"] = (int(hp["train_freq"][0]), str(hp["train_freq"][1]))
    pk = hp.get("policy_kwargs")
    if pk:
        pk = dict(pk)
        if "activation_fn" in pk:
            pk["activation_fn"] = _activation(pk["activation_fn"])
        hp["policy_kwargs"] = pk
    per_action = hp.pop("target_entropy_per_action", None)
    if per_action is not None:
        if hp.get("target_entropy", "auto") != "auto":
            raise ConfigError("give target_entropy or target_entropy_per_action, not both.")
        hp["target_entropy"] = -float(per_action) * info.n_actions
    noise_type, noise_std = hp.pop("noise_type", None), float(hp.pop("noise_std", 0.1))
    zeros, ones = np.zeros(info.n_actions), np.ones(info.n_actions)
    if noise_type == "normal":
        hp["action_noise"] = NormalActionNoise(zeros, noise_std * ones)
    elif noise_type == "ornstein-uhlenbeck":
        hp["action_noise"] = OrnsteinUhlenbeckActionNoise(zeros, noise_std * ones)
    if info.goal_conditioned and algo in OFF_POLICY:
        hp["replay_buffer_class"] = HerReplayBuffer
        hp["replay_buffer_kwargs"] = {**_her_defaults(), **(hp.get("replay_buffer_kwargs") or {})}
    return policy, hp
