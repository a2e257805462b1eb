"""Gymnasium envs for the reach task: open-loop (the lecture's) and closed-loop.

* `ReachSignalEnv` (ids ``armlab/ReachSignal{Fixed,Velocity,State}-v0``): one decision
  per episode. The action is the whole signal x, held (or interpolated between K
  knots) over the horizon t; the episode ends after that one step with reward -y (or its
  log-shaped version, ``reward_type="log"``).
* `ReachEnv` (ids ``armlab/Reach{Fixed,Velocity,State}-v0``): a new action every control
  step (24 Hz at the default 240 Hz physics and 10 substeps) for t seconds, with an
  optional goal-conditioned dict observation for HER.

The envs keep the task and the physics; the variants compose from small pieces: image
observations (``obs_type="rgb"`` or ``"rgbd"``, `robot_env.pixels`), the reward rule
(`robot_env.rewards`) and the closed-loop observation's extra parts (``history``,
``privileged`` and plugins such as ``residual``: `robot_env.components`).

Actions outside [-1, 1] are clipped; NaN or inf actions raise ``ValueError``. The last
step's ``info`` holds ``distance`` (y, metres) and ``is_success`` (y < threshold). A
physics blow-up ends the episode with ``truncated=True`` and ``info["physics_error"]``.
Observations are clipped to the (finite) bounds of their Box.
"""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import pybullet as pb
from gymnasium import spaces

from robot_env.components import History, ObsPart, Privileged, check_flag, split_plugin_kwargs
from robot_env.io.errors import ConfigError, ParamError
from robot_env.pixels import DEPTH_MAX_PER_REACH, IMAGE_OBS_TYPES, ImageObservation, check_camera
from robot_env.pixels import image_size as _image_size
from robot_env.rewards import (
    CLOSED_REWARD_TYPES,
    LOG_REWARD_SCALE,
    REWARD_AT,
    REWARD_TYPES,
    SIGNAL_REWARD_TYPES,
    DistanceReward,
    check_choice,
    log_reward,
)
from robot_env.robots import Arm
from robot_env.sim import World
from robot_env.tasks import Context, ReachTask

OBS_TYPES = ("state", "dict", "rgb", "rgbd")
PHYSICS_ERROR = "the simulation produced a non-finite state"

__all__ = [
    "CLOSED_REWARD_TYPES", "DEPTH_MAX_PER_REACH", "IMAGE_OBS_TYPES", "LOG_REWARD_SCALE", "OBS_TYPES", "REWARD_AT",
    "REWARD_TYPES", "SIGNAL_REWARD_TYPES", "ReachEnv", "ReachSignalEnv", "log_reward",
]


def _box(low, high) -> spaces.Box:
    return spaces.Box(np.asarray(low, np.float32), np.asarray(high, np.float32), dtype=np.float32)


class _ReachBase(gym.Env):
    """Shared construction, contexts, observations and rendering.

    Image observations (``obs_type="rgb"`` or ``"rgbd"``; `robot_env.pixels.ImageObservation`)
    are uint8, channel-first ``(C, H, W)`` renders at ``image_size`` (an int for square images,
    or ``(width, height)``; default 64) from the scene camera ``camera`` (the fixed ``front``
    camera by default; ``side``, ``top``, or ``wrist`` on the end effector: see
    `robot_env.camera.named_camera`), as SB3's ``CnnPolicy`` expects. ``rgbd`` adds depth as a
    fourth channel scaled to ``depth_max`` (an attribute) = 3 x the robot's reach (1.8 m for
    arm2, 2.1 m for arm3). Images get no observation noise and do not show velocities or the
    time left; after a physics blow-up they are all zeros.
    Observed joint speeds are clipped to ``speed_bound`` x the URDF's velocity limit plus the
    start-speed range (``vel_bound``). Under torque control nothing holds the joints to that
    limit: following its own target signal, arm3 passes the default bound (3; 16 rad/s for its
    first joint) in 14 % of the ``state`` contexts (up to 54 rad/s), and a clipped speed is
    hidden from the policy. ``speed_bound=12`` keeps them visible.
    """

    metadata = {"render_modes": ["rgb_array", "human"], "render_fps": 24}

    def __init__(
        self,
        robot: str = "arm2",
        stage: str = "fixed",
        control: str = "torque",
        horizon: float = 0.5,
        timestep: float = 1.0 / 240.0,
        knots: int = 1,
        velocity_range: float | None = None,
        joint_margin: float = 0.1,
        target_signal_range: float = 0.8,
        randomization=None,
        success_threshold: float = 0.02,
        render_mode: str | None = None,
        render_size: tuple[int, int] = (320, 240),
        obs_type: str = "state",
        solver_iterations: int | None = None,
        image_size: int | tuple[int, int] = 64,
        camera: str = "front",
        speed_bound: float = 3.0,
    ) -> None:
        super().__init__()
        if not (isinstance(speed_bound, (int, float)) and not isinstance(speed_bound, bool)
                and math.isfinite(speed_bound) and speed_bound > 0):
            raise ConfigError(f"speed_bound must be a positive number, got {speed_bound!r}.")
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ConfigError(f"unknown render_mode {render_mode!r}; choose one of {self.metadata['render_modes']}.")
        check_choice("obs_type", obs_type, OBS_TYPES)
        self._pixels = obs_type in IMAGE_OBS_TYPES
        if self._pixels:
            image_wh = _image_size(image_size)
            check_camera(camera)
        self.render_mode = render_mode
        self.render_size = (int(render_size[0]), int(render_size[1]))
        self.obs_type = obs_type
        self.world = World(timestep=timestep, gui=render_mode == "human", solver_iterations=solver_iterations)
        try:
            self.arm = Arm(self.world, robot)
            self.arm.set_control(control)
            self.task = ReachTask(
                self.arm, stage=stage, horizon=horizon, knots=knots, velocity_range=velocity_range,
                joint_margin=joint_margin, target_signal_range=target_signal_range,
                randomization=randomization, success_threshold=success_threshold,
            )
        except Exception:
            self.world.close()
            raise
        self.world.add_marker("target", radius=0.02)
        self.obs_noise = self.task.randomization.obs_noise
        reach = self.arm.spec.reach
        self.pixels: ImageObservation | None = None
        if self._pixels:
            self.pixels = ImageObservation(obs_type, self.arm, camera, image_wh)
            self.obs_camera, self.depth_max = self.pixels.camera, self.pixels.depth_max
        self.vel_bound = float(speed_bound) * self.arm.max_velocity + self.task.velocity_range
        self._pos_low = np.array([-reach, -reach, -0.2])
        self._pos_high = np.array([reach, reach, reach + 0.8])
        self._q_low, self._q_high = self.arm.lower, self.arm.upper
        self.context: Context | None = None

    # -- helpers ------------------------------------------------------------------------
    def _check_action(self, action) -> np.ndarray:
        a = np.asarray(action, dtype=np.float64)
        if a.shape != self.action_space.shape:
            a = a.reshape(-1)
            if a.shape != self.action_space.shape:
                raise ConfigError(f"action must have shape {self.action_space.shape}, got {np.shape(action)}.")
        if not math.isfinite(a.sum()):  # any NaN or inf makes the sum non-finite
            raise ConfigError(f"action contains NaN or inf: {np.asarray(action).tolist()}.")
        return a.clip(-1.0, 1.0)

    def _begin(self, seed, options) -> Context:
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0):
            raise ParamError("seed", f"{{name}} must be None or a whole number >= 0, got {seed!r}.")
        if options is not None and not isinstance(options, dict):
            raise ParamError("options", f"{{name}} must be None or a dict, got {type(options).__name__}.")
        super().reset(seed=seed)
        options = options or {}
        ctx = options.get("context")
        if ctx is None:
            ctx = self.task.sample_context(self.np_random)
        elif not isinstance(ctx, Context):
            raise ConfigError("options['context'] must be a robot_env.tasks.Context.")
        self.context = ctx
        self._target = tuple(ctx.target.tolist())
        self.task.set_context(ctx)
        self.world.move_body("target", ctx.target)
        return ctx

    def _physics_ok(self, *arrays) -> bool:
        return all(math.isfinite(float(np.sum(a))) for a in arrays)

    def _image(self) -> np.ndarray:
        """The ``rgb``/``rgbd`` observation: uint8 (C, H, W) from the scene camera."""
        return self.pixels.observe(self.world, self._physics_ok(self.arm.joint_state()[0]))

    def _result(self, y: float) -> dict:
        return {"distance": y, "is_success": bool(y < self.task.success_threshold)}

    @property
    def worst_distance(self) -> float:
        """The diagonal of the observed workspace: the distance a physics blow-up is scored with."""
        return float(np.linalg.norm(self._pos_high - self._pos_low))

    # -- rendering ----------------------------------------------------------------------------
    def render(self):
        if self.render_mode != "rgb_array":
            return None
        w, h = self.render_size
        reach = self.arm.spec.reach
        look = [0.0, 0.0, 0.15 if self.arm.n == 2 else 0.4 * reach]
        cid = self.world.id
        view = pb.computeViewMatrixFromYawPitchRoll(look, 1.9 * reach, 35.0, -45.0, 0.0, 2, physicsClientId=cid)
        proj = pb.computeProjectionMatrixFOV(50.0, w / h, 0.02, 10.0, physicsClientId=self.world.id)
        img = pb.getCameraImage(
            w, h, view, proj, renderer=pb.ER_TINY_RENDERER, flags=pb.ER_NO_SEGMENTATION_MASK,
            physicsClientId=self.world.id,
        )
        return np.asarray(img[2], dtype=np.uint8).reshape(h, w, 4)[:, :, :3].copy()

    def close(self) -> None:
        self.world.close()



class ReachSignalEnv(_ReachBase):
    """Open-loop reach: the action is the whole signal x over the horizon t.

    Observation: ``[j (n), v (n), p (3)]``. Action: x in [-1, 1]^(K n), joint-major per
    knot (``x.reshape(K, n)``). One step per episode, reward ``-y`` (``reward_type="dense"``)
    or ``-ln(1 + y / s)`` (``"log"``, s = a quarter of the success threshold, 5 mm by
    default). Both rank signals the same way; the log reward is what makes RL precise here:
    with ``-y`` a critic must resolve millimetres on a scale of a metre, and SAC stalls at
    ~6 cm on arm3, while with ``log`` the last centimetre is worth as much reward as the
    first ten (`controllers/hyperparams.yml` picks it for the open-loop envs).

    `evaluate` plays any signal from the current episode's start state without ending the
    episode: the "evaluate this signal in this context" call an optimizer needs. The start
    state (joint positions, velocities, dynamics) is restored in place, in microseconds;
    the simulator is never rebuilt. (PyBullet's ``saveState`` snapshot costs ~0.7 ms per
    episode, more than the 0.5 s rollout itself on arm2, so it is not used here.)
    """

    def __init__(self, reward_type: str = "dense", **kwargs) -> None:
        check_choice("reward_type", reward_type, SIGNAL_REWARD_TYPES)
        super().__init__(**kwargs)
        self.reward_type = reward_type
        self.reward = DistanceReward(reward_type, self.task.success_threshold, kinds=SIGNAL_REWARD_TYPES)
        self.metadata = dict(self.metadata, render_fps=max(1, round(1.0 / self.task.horizon)))
        self.action_space = _box(-np.ones(self.task.signal_dim), np.ones(self.task.signal_dim))
        self.observation_space = _box(
            np.concatenate([self._q_low, -self.vel_bound, self._pos_low]),
            np.concatenate([self._q_high, self.vel_bound, self._pos_high]),
        )
        if self._pixels:
            self.observation_space = self.pixels.space
        self._done = True
        self._dirty = False
        self.evaluations = 0  #: episodes simulated by `evaluate` (the optimizer's cost)

    def _obs(self, q, qd, target) -> np.ndarray:
        if self._pixels:
            return self._image()
        size = 2 * self.arm.n + 3
        noise = self.np_random.normal(0.0, self.obs_noise, size) if self.obs_noise > 0 else np.zeros(size)
        o = np.concatenate([q, qd, target]) + noise
        return np.clip(o, self.observation_space.low, self.observation_space.high).astype(np.float32)

    def reset(self, *, seed=None, options=None):
        ctx = self._begin(seed, options)
        self._done = self._dirty = False
        return self._obs(ctx.q, ctx.qd, ctx.target), {"target": ctx.target.copy()}

    def step(self, action):
        if self._done:
            raise RuntimeError("the episode is over (one step per episode): call reset() first.")
        x = self._check_action(action)
        self._done = True
        if self._dirty:
            self.task.set_context(self.context)
            self._dirty = False
        self.task.play(x)
        q, qd = self.arm.joint_state()
        ee = self.arm.ee_position()
        target = self.context.target
        if not self._physics_ok(q, qd, ee):
            info = {"physics_error": PHYSICS_ERROR, "distance": math.inf, "is_success": False}
            obs = self._obs(np.nan_to_num(q), np.nan_to_num(qd), target)
            return obs, self._reward(self.worst_distance), False, True, info
        y = float(np.linalg.norm(ee - target))
        return self._obs(q, qd, target), self._reward(y), True, False, self._result(y)

    def _reward(self, y: float) -> float:
        return float(self.reward(y))

    def evaluate(self, x) -> float:
        """Distance y reached by signal ``x`` from this episode's start state."""
        if self.context is None:
            raise RuntimeError("call reset() before evaluate().")
        x = self._check_action(x)
        self.task.set_context(self.context)
        self._dirty = True
        self.task.play(x)
        self.evaluations += 1
        y = self.task.distance(self.context.target)
        return y if math.isfinite(y) else math.inf


class ReachEnv(_ReachBase):
    """Closed-loop reach: a new action every control step for the horizon t.

    Observation (``obs_type="state"``): ``[j (n), v (n), ee (3), p (3), time left (1)]``, then the
    entries of its parts (`robot_env.components`); ``obs_type="dict"`` splits it into
    ``observation`` ``[j, v, time left, parts]``, ``achieved_goal`` (ee) and ``desired_goal`` (p)
    for HER. ``control="position"`` is incremental here (target = j + x * ``position_delta``), as
    in panda-gym.
    ``history=True`` appends the previous action and the joint velocities before it
    (``[a_prev (n), v_prev (n)]``, zeros and the start velocities at the first step): how v
    answered the last action is what reveals the episode's hidden dynamics (state stage) to a
    memoryless policy.
    ``privileged=True`` (state observations) appends, last, what the simulator knows and a
    real robot's policy would not (`robot_env.components.Privileged`). Only the first
    ``actor_obs_dim`` entries are the policy's; `armlab train` then builds an asymmetric
    actor-critic whose critic alone reads the rest (Pinto et al., 2017), so the trained actor
    runs on the plain observation.
    ``residual=True`` (torque control, state observations; served by `controllers.residual`,
    which must be imported first) makes the action a correction to the signal of a model-based
    feedback controller (residual RL); the observation shows that controller's signal b after the
    history entries, before any privileged ones. ``residual_mode`` says how a moves b (``add`` or
    ``span``).
    ``info`` holds the true distance y, ``is_success`` and the true end-effector ``position``.
    Reward every step (`robot_env.rewards`): ``-y`` (``dense``), ``-ln(1 + y / s)`` (``log``, s = a
    quarter of the success threshold) or ``-(y >= threshold)`` (``sparse``). ``reward_at="end"``
    (not with dict observations) gives that reward at the last step only and 0 before it: the
    return is then the score of the final distance, which is what the task and its evaluation
    measure, instead of a sum over the whole path (``"every"``, the default).
    """

    def __init__(self, substeps: int = 10, reward_type: str = "dense", position_delta: float = 0.05,
                 history: bool = False, privileged: bool = False, reward_at: str = "every", **kwargs) -> None:
        plugins, kwargs = split_plugin_kwargs(kwargs)
        super().__init__(**kwargs)
        try:
            self._setup(substeps, reward_type, position_delta, history, privileged, reward_at)
            for plugin, given in plugins:
                plugin.attach(self, **given)
        except BaseException:
            self.close()
            raise

    def _setup(self, substeps, reward_type, position_delta, history, privileged, reward_at) -> None:
        check_choice("reward_at", reward_at, REWARD_AT)
        if reward_at == "end" and self.obs_type == "dict":
            raise ConfigError("reward_at 'end' does not work with dict observations: HER's compute_reward sees "
                             "goals, not the step, so it could not leave the earlier steps at 0.")
        self.privileged = check_flag("privileged", privileged)
        if self.privileged and self.obs_type != "state":
            raise ConfigError(f"privileged applies to obs_type 'state', not {self.obs_type!r}.")
        self.reward = DistanceReward(reward_type, self.task.success_threshold, reward_at)
        if int(substeps) < 1:
            raise ConfigError(f"substeps must be >= 1, got {substeps!r}.")
        self.history = check_flag("history", history)
        if self.history and self._pixels:
            raise ConfigError("history applies to state and dict observations, not to images.")
        self.substeps = int(substeps)
        self.position_delta = float(position_delta)
        self.max_steps = max(1, self.task.n_steps // self.substeps)
        self.control_dt = self.substeps * self.world.timestep  #: seconds one action is held
        self.metadata = dict(self.metadata, render_fps=max(1, round(1.0 / (self.world.timestep * self.substeps))))
        n = self.arm.n
        self.action_space = _box(-np.ones(n), np.ones(n))
        self.parts: list[ObsPart] = []
        if self.history:
            self.parts.append(History(n))
        if self.privileged:
            self.parts.append(Privileged(self.arm))
        if self.obs_type == "dict":  # goal-conditioned API only where it applies (SB3 checks for it)
            self.compute_reward = self._reward
        self._t = 0
        self._q = np.zeros(n)
        self._build_spaces()

    # -- composition ----------------------------------------------------------------------------
    @property
    def reward_type(self) -> str:
        return self.reward.kind

    @property
    def reward_at(self) -> str:
        return self.reward.at

    def add_part(self, part: ObsPart) -> None:
        """Append ``part``'s entries to the observation (before any critic-only parts) and rebuild the spaces."""
        at = next((i for i, p in enumerate(self.parts) if p.critic_only and not part.critic_only), len(self.parts))
        self.parts.insert(at, part)
        self._build_spaces()

    def part(self, kind: type) -> ObsPart | None:
        """The env's part of type ``kind``, or None."""
        return next((p for p in self.parts if isinstance(p, kind)), None)

    def obs_slice(self, part: ObsPart) -> slice:
        """Where ``part``'s entries are in a ``state`` observation."""
        start = 2 * self.arm.n + 7 if self.obs_type == "state" else 2 * self.arm.n + 1
        for p in self.parts:
            size = len(p.bounds(self)[0])
            if p is part:
                return slice(start, start + size)
            start += size
        raise ValueError(f"{type(part).__name__} is not a part of this env.")

    def _build_spaces(self) -> None:
        q_lo, q_hi, v = self._q_low, self._q_high, self.vel_bound
        bounds = [p.bounds(self) for p in self.parts]
        actor = [b for b, p in zip(bounds, self.parts) if not p.critic_only]
        p_lo = np.concatenate([np.zeros(0)] + [lo for lo, _ in bounds])
        p_hi = np.concatenate([np.zeros(0)] + [hi for _, hi in bounds])
        if self.obs_type == "dict":
            self.observation_space = spaces.Dict(
                {
                    "observation": _box(np.concatenate([q_lo, -v, [0.0], p_lo]),
                                        np.concatenate([q_hi, v, [1.0], p_hi])),
                    "achieved_goal": _box(self._pos_low, self._pos_high),
                    "desired_goal": _box(self._pos_low, self._pos_high),
                }
            )
            return
        low = np.concatenate([q_lo, -v, self._pos_low, self._pos_low, [0.0], p_lo])
        high = np.concatenate([q_hi, v, self._pos_high, self._pos_high, [1.0], p_hi])
        #: the leading observation entries a policy may read (the rest are critic-only)
        self.actor_obs_dim = 2 * self.arm.n + 7 + sum(len(lo) for lo, _ in actor)
        self.observation_space = _box(low, high)
        self._low, self._high = self.observation_space.low, self.observation_space.high
        if self._pixels:  # the state bounds above stay in use for clipping the parts' state
            self.observation_space = self.pixels.space

    # -- episodes -------------------------------------------------------------------------------
    @property
    def time_left(self) -> float:
        """Seconds left in the episode."""
        return (self.max_steps - self._t) * self.substeps * self.world.timestep

    @property
    def step_index(self) -> int:
        """Control steps taken in this episode."""
        return self._t

    def _obs(self, state: np.ndarray):
        """Observation from ``state = [q, qd, ee]`` (a fresh float array, modified in place)."""
        if self._pixels:
            return self._image()
        n = self.arm.n
        time_left = 1.0 - self._t / self.max_steps
        if self.obs_noise > 0:
            state += self.np_random.normal(0.0, self.obs_noise, state.shape)
        extra = [p.observe(self, state) for p in self.parts]
        if self.obs_type == "dict":
            raw = {
                "observation": np.concatenate([state[: 2 * n], (time_left,), *extra]),
                "achieved_goal": state[2 * n :],
                "desired_goal": self.context.target,
            }
            return {
                k: v.clip(self.observation_space[k].low, self.observation_space[k].high).astype(np.float32)
                for k, v in raw.items()
            }
        o = np.concatenate([state, self.context.target, (time_left,), *extra])
        return o.clip(self._low, self._high).astype(np.float32)

    def reset(self, *, seed=None, options=None):
        ctx = self._begin(seed, options)
        self._t = 0
        self._q = ctx.q.copy()
        for p in self.parts:
            p.reset(self, ctx)
        return self._obs(np.array(self.arm.read())), {"target": ctx.target.copy()}

    def close(self) -> None:
        for p in getattr(self, "parts", ()):
            p.close()
        super().close()

    def _reward(self, achieved_goal, desired_goal, info=None):
        """Reward for (batches of) goals; exposed as ``compute_reward`` with dict observations (HER)."""
        d = np.linalg.norm(np.asarray(achieved_goal) - np.asarray(desired_goal), axis=-1)
        return self.reward(d).astype(np.float32)

    def step_reward(self, d: float, last: bool) -> float:
        """The reward of a step that ends at distance ``d`` (``last``: the episode's last step)."""
        return self.reward.step(d, last)

    def step(self, action):
        if self.context is None:
            raise RuntimeError("call reset() before step().")
        x = self._check_action(action)
        for p in self.parts:
            x = p.act(self, x)
        for p in self.parts:
            p.applied(self, x)
        arm = self.arm
        if arm.control == "position":
            u = np.clip(self._q + x * self.position_delta, arm.lower, arm.upper)
        else:
            u = arm.scale(x)
        arm.run((u.tolist(),), self.substeps)
        self._t += 1
        read = arm.read()
        n = arm.n
        if not math.isfinite(sum(read)):
            self._t = self.max_steps
            info = {"physics_error": PHYSICS_ERROR, "distance": math.inf, "is_success": False}
            state = np.concatenate([self._q, np.zeros(n), self.context.target])
            return self._obs(state), float(self.reward(self.worst_distance)), False, True, info
        self._q = np.array(read[:n])
        y = math.dist(read[2 * n :], self._target)
        success = y < self.task.success_threshold
        reward = self.step_reward(y, self._t >= self.max_steps)
        info = {"distance": y, "is_success": success, "position": np.array(read[2 * n :])}
        return self._obs(np.array(read)), reward, self._t >= self.max_steps, False, info
