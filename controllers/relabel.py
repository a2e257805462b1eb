"""Hindsight relabeling for residual RL: HER's ``final`` strategy with the action relabeled too.

On a ``residual=True`` env (`controllers.residual`) the arm gets ``u = clip(b + a)``,
where b is the signal of a model-based controller (`controllers.feedback.ComputedTorque`)
that reads the goal. SB3's `HerReplayBuffer` cannot be used there: a relabeled goal g'
changes b, so the stored action a would no longer produce the torque the arm got. This
buffer relabels the whole transition instead. When an episode ends it is stored a second
time, with

* the goal replaced by g' = the position the end effector reached at the last step (HER's
  ``final``: the reach envs score the distance at the last step only, so every episode is
  an exact example of reaching *that* point at time t);
* the base signal b' recomputed along the episode's observed states by a controller of
  its own that was told g' (one IK and one inverse-dynamics call per step);
* the action relabeled to a' = u - b' (``residual_mode="add"``; its inverse for ``span``):
  the correction that, on top of that controller, applies the same torque u the arm got; a
  step whose a' falls outside the action box is left out (it is no action the policy could
  have taken; with ``span`` every u has one);
* the reward recomputed from the true end-effector positions (``info["position"]``), by the
  env's own rule (``reward_at``).

Everything else (joint positions and speeds, the history entries, which hold the applied
signal u, the time left) is unchanged, so the relabeled episode is one the env could have
produced with target g'.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import numpy as np
from stable_baselines3.common.buffers import ReplayBuffer

from controllers import envs
from controllers.residual import residual_action, residual_part, residual_signal
from robot_env.io.errors import ConfigError


class ResidualFinalGoalBuffer(ReplayBuffer):
    """A `ReplayBuffer` that also stores every finished episode relabeled with its final position.

    Args (besides `ReplayBuffer`'s):
        env_id, env_kwargs: the training env; a private copy gives the observation layout,
            the base controller and the reward. It must be a closed-loop env with
            ``residual=True`` and ``state`` observations, without ``privileged`` entries
            (they describe the original target).
    """

    def __init__(self, buffer_size: int, observation_space, action_space, device="auto", n_envs: int = 1,
                 optimize_memory_usage: bool = False, handle_timeout_termination: bool = True, *,
                 env_id: str, env_kwargs: dict | None = None) -> None:
        if optimize_memory_usage:
            raise ConfigError("residual_her does not work with optimize_memory_usage: true (it stores relabeled "
                             "transitions out of order).")
        super().__init__(buffer_size, observation_space, action_space, device=device, n_envs=n_envs,
                         optimize_memory_usage=False, handle_timeout_termination=handle_timeout_termination)
        kwargs = dict(env_kwargs or {})
        if kwargs.get("residual") is not True:
            raise ConfigError(f"residual_her needs a closed-loop env with residual: true, not {env_id} with {kwargs}.")
        if kwargs.get("privileged"):
            raise ConfigError("residual_her does not work with privileged: true (the privileged entries describe "
                             "the original target).")
        self._env_id, self._env_kwargs = env_id, kwargs
        self._env = None  #: built at the first relabeling (a loaded run that only acts never needs it)
        self._episodes: list[list[tuple]] = [[] for _ in range(n_envs)]
        self._pending: list[deque] = [deque() for _ in range(n_envs)]
        self.relabeled = 0  #: relabeled transitions stored so far
        self.left_out = 0  #: relabeled transitions dropped because a' left the action box

    def _open(self):
        """The private env copy, and the observation layout read from it."""
        if self._env is None:
            env = envs.make(self._env_id, **self._env_kwargs).unwrapped
            n = env.arm.n
            self._goal = slice(2 * n + 3, 2 * n + 6)
            self._time = 2 * n + 6
            self._residual = residual_part(env)
            self._base = env.obs_slice(self._residual)
            self._control_dt = env.substeps * env.world.timestep
            self._env = env
        return self._env

    def add(self, obs, next_obs, action, reward, done, infos: list[dict[str, Any]]) -> None:
        super().add(obs, next_obs, action, reward, done, infos)
        action = np.asarray(action).reshape(self.n_envs, self.action_dim)
        for i in range(self.n_envs):
            self._episodes[i].append((np.array(obs[i], dtype=np.float64), np.array(next_obs[i], dtype=np.float64),
                                      action[i].astype(np.float64), bool(done[i]), infos[i]))
            if done[i]:
                self._pending[i].extend(self.relabel(self._episodes[i]))
                self._episodes[i] = []
        while all(self._pending):  # one row holds one transition per env
            rows = [q.popleft() for q in self._pending]
            super().add(*(np.stack([r[k] for r in rows]) for k in range(5)), [r[5] for r in rows])

    def relabel(self, episode: list[tuple]) -> list[tuple]:
        """The episode's transitions relabeled with its final position as the goal:
        ``(obs, next_obs, action, reward, done, info)`` tuples (those with a' in the box)."""
        if not episode or any("position" not in step[4] for step in episode):
            return []  # a physics error ended it: there is no reached position to learn from
        env = self._open()
        base, mode = self._residual.base, self._residual.mode
        goal = np.asarray(episode[-1][4]["position"], dtype=np.float64)
        n, max_steps = env.arm.n, env.max_steps

        def time_left(o) -> float:
            return float(round(float(o[self._time]) * max_steps)) * self._control_dt

        first = episode[0][0]
        base.reset(first[:n], first[n : 2 * n], goal, time_left(first))

        def signal(o) -> np.ndarray:
            t_left = time_left(o)
            return base.act(o[:n], o[n : 2 * n], t_left) if t_left > 0 else np.zeros(n)

        out = []
        b_new = signal(first)
        for obs, next_obs, action, done, info in episode:
            applied = residual_signal(obs[self._base], action, mode)
            a_new = residual_action(applied, b_new, mode)
            b_next = signal(next_obs)
            o, o2 = obs.copy(), next_obs.copy()
            o[self._goal] = o2[self._goal] = goal
            o[self._base], o2[self._base] = b_new, b_next
            low, high = env.observation_space.low, env.observation_space.high
            o, o2 = o.clip(low, high), o2.clip(low, high)  # as the env clips its own
            if np.all(np.abs(a_new) <= 1.0 + 1e-6):
                d = float(np.linalg.norm(np.asarray(info["position"], dtype=np.float64) - goal))
                truncated = {"TimeLimit.truncated": bool(info.get("TimeLimit.truncated", False))}
                out.append((o, o2, np.clip(a_new, -1.0, 1.0), env.step_reward(d, done), done, truncated))
            else:
                self.left_out += 1
            b_new = b_next
        self.relabeled += len(out)
        return out

    def close(self) -> None:
        if self._env is not None:
            self._env.close()
            self._env = None


__all__ = ["ResidualFinalGoalBuffer"]
