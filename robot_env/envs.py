"""Gymnasium envs for the reach task: open-loop (the lecture's) and closed-loop.

* `ReachSignalEnv` (ids ``armlab/ReachSignal{Fixed,Velocity,State}-v0``): one decision
  per episode. The action is the whole signal x, held (or interpolated between K
  knots) over the horizon t; the episode ends after that one step with reward -y (or its
  log-shaped version, ``reward_type="log"``).
* `ReachEnv` (ids ``armlab/Reach{Fixed,Velocity,State}-v0``): a new action every control
  step (24 Hz at the default 240 Hz physics and 10 substeps) for t seconds, with an
  optional goal-conditioned dict observation for HER.

Both take ``obs_type="rgb"`` or ``"rgbd"`` for image observations (see `_ReachBase`).

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

from robot_env.camera import CAMERA_NAMES, named_camera
from robot_env.robots import Arm
from robot_env.sim import World
from robot_env.tasks import Context, ReachTask

OBS_TYPES = ("state", "dict", "rgb", "rgbd")
IMAGE_OBS_TYPES = ("rgb", "rgbd")
DEPTH_MAX_PER_REACH = 3.0  #: the rgbd depth channel spans 0 .. 3 x the robot's reach (metres)
REWARD_TYPES = ("dense", "sparse")
CLOSED_REWARD_TYPES = ("dense", "log", "sparse")
REWARD_AT = ("every", "end")  #: closed-loop envs: reward at every step, or at the last step only
RESIDUAL_MODES = ("add", "span")  #: how a residual action a moves the base signal b (see `residual_signal`)
SIGNAL_REWARD_TYPES = ("dense", "log")
LOG_REWARD_SCALE = 0.25  #: the ``log`` reward's length scale, as a fraction of the success threshold


def log_reward(y, scale: float):
    """The ``log`` reward ``-ln(1 + y / scale)``: 0 at the target, a gradient that grows as y shrinks."""
    return -np.log1p(np.asarray(y, dtype=np.float64) / scale)


def residual_signal(base, action, mode: str = "add") -> np.ndarray:
    """The signal u in [-1, 1] the arm gets from base signal ``base`` (b, in [-1, 1]) and residual
    ``action`` (a, in [-1, 1]).

    ``add``: u = clip(b + a). Where b is near a limit, half of a's range is lost to the clip:
    with b = 1 the correction can only bring u down to 0. ``span``: a > 0 moves u from b
    towards 1 and a < 0 towards -1, in proportion (u = b + a (1 - b) or b + a (1 + b)), so
    a = +-1 always reaches the joint's full torque either way and a = 0 is b.
    """
    b, a = np.asarray(base, dtype=np.float64), np.asarray(action, dtype=np.float64)
    if mode == "span":
        return np.clip(b + a * np.where(a >= 0, 1.0 - b, 1.0 + b), -1.0, 1.0)
    return np.clip(b + a, -1.0, 1.0)


def residual_action(signal, base, mode: str = "add") -> np.ndarray:
    """The residual action that gives ``signal`` u on top of ``base`` b: the inverse of
    `residual_signal` (for ``add`` it may leave [-1, 1]: no action gives that u)."""
    u, b = np.asarray(signal, dtype=np.float64), np.asarray(base, dtype=np.float64)
    d = u - b
    if mode == "span":
        room = np.where(d >= 0, 1.0 - b, 1.0 + b)
        return np.clip(np.divide(d, room, out=np.zeros_like(d), where=room > 1e-12), -1.0, 1.0)
    return d


def _image_size(size) -> tuple[int, int]:
    """``(width, height)`` from an int (square) or a pair."""
    w, h = (size, size) if np.isscalar(size) else tuple(size)
    if int(w) != w or int(h) != h or int(w) < 1 or int(h) < 1:
        raise ValueError(f"image_size must be a positive int or a (width, height) pair, got {size!r}.")
    return int(w), int(h)


class _ReachBase(gym.Env):
    """Shared construction, contexts, observations and rendering.

    Image observations (``obs_type="rgb"`` or ``"rgbd"``) are uint8, channel-first
    ``(C, H, W)`` renders at ``image_size`` (an int for square images, or ``(width,
    height)``; default 64) from the scene camera ``camera`` (the fixed ``front`` camera by
    default; ``side``, ``top``, or ``wrist`` on the end effector: see
    `robot_env.camera.named_camera`), as SB3's ``CnnPolicy`` expects. ``rgbd`` adds depth
    as a fourth channel: ``round(255 * min(z, depth_max) / depth_max)`` with z the metric
    depth along the optical axis and ``depth_max`` (an attribute) = 3 x the robot's reach
    (1.8 m for arm2, 2.1 m for arm3). Images get no observation noise and do not show
    velocities or the time left; after a physics blow-up they are all zeros.
    Observed joint speeds are clipped to ``speed_bound`` x the URDF's velocity limit plus the
    start-speed range. Under torque control nothing holds the joints to that limit: following
    its own target signal, arm3 passes the default bound (3; 16 rad/s for its first joint) in
    14 % of the ``state`` contexts (up to 54 rad/s), and a clipped speed is hidden from the
    policy. ``speed_bound=12`` keeps them visible.
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
            raise ValueError(f"speed_bound must be a positive number, got {speed_bound!r}.")
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"unknown render_mode {render_mode!r}; choose one of {self.metadata['render_modes']}.")
        if obs_type not in OBS_TYPES:
            raise ValueError(f"unknown obs_type {obs_type!r}; choose one of {', '.join(OBS_TYPES)}.")
        self._pixels = obs_type in IMAGE_OBS_TYPES
        if self._pixels:
            image_wh = _image_size(image_size)
            if camera not in CAMERA_NAMES:
                raise ValueError(f"unknown camera {camera!r}; choose one of {', '.join(CAMERA_NAMES)}.")
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
        if self._pixels:
            self.obs_camera = named_camera(camera, self.arm, *image_wh)
            self.depth_max = DEPTH_MAX_PER_REACH * reach
        self._vel_bound = float(speed_bound) * self.arm.max_velocity + self.task.velocity_range
        self._pos_low = np.array([-reach, -reach, -0.2])
        self._pos_high = np.array([reach, reach, reach + 0.8])
        self._q_low, self._q_high = self.arm.lower, self.arm.upper
        self.context: Context | None = None

    # -- helpers ------------------------------------------------------------------------
    def _box(self, low, high) -> spaces.Box:
        return spaces.Box(np.asarray(low, np.float32), np.asarray(high, np.float32), dtype=np.float32)

    def _check_action(self, action) -> np.ndarray:
        a = np.asarray(action, dtype=np.float64)
        if a.shape != self.action_space.shape:
            a = a.reshape(-1)
            if a.shape != self.action_space.shape:
                raise ValueError(f"action must have shape {self.action_space.shape}, got {np.shape(action)}.")
        if not math.isfinite(a.sum()):  # any NaN or inf makes the sum non-finite
            raise ValueError(f"action contains NaN or inf: {np.asarray(action).tolist()}.")
        return a.clip(-1.0, 1.0)

    def _noise(self, size: int) -> np.ndarray:
        if self.obs_noise > 0:
            return self.np_random.normal(0.0, self.obs_noise, size)
        return np.zeros(size)

    def _begin(self, seed, options) -> Context:
        super().reset(seed=seed)
        options = options or {}
        ctx = options.get("context")
        if ctx is None:
            ctx = self.task.sample_context(self.np_random)
        elif not isinstance(ctx, Context):
            raise ValueError("options['context'] must be a robot_env.tasks.Context.")
        self.context = ctx
        self._target = tuple(ctx.target.tolist())
        self.task.set_context(ctx)
        self.world.move_body("target", ctx.target)
        return ctx

    def _physics_ok(self, *arrays) -> bool:
        return all(math.isfinite(float(np.sum(a))) for a in arrays)

    # -- image observations ------------------------------------------------------------------
    def _image_space(self) -> spaces.Box:
        cam = self.obs_camera
        shape = (3 if self.obs_type == "rgb" else 4, cam.height, cam.width)
        return spaces.Box(0, 255, shape, dtype=np.uint8)

    def _image(self) -> np.ndarray:
        """The ``rgb``/``rgbd`` observation: uint8 (C, H, W) from the scene camera."""
        if not self._physics_ok(self.arm.joint_state()[0]):  # nothing sensible to draw
            return np.zeros(self.observation_space.shape, np.uint8)
        img = self.obs_camera.render(self.world, segmentation=False)
        rgb = img.rgb.transpose(2, 0, 1)
        if self.obs_type == "rgb":
            return np.ascontiguousarray(rgb)
        out = np.empty(self.observation_space.shape, np.uint8)
        out[:3] = rgb
        out[3] = np.rint(np.clip(img.depth, 0.0, self.depth_max) * (255.0 / self.depth_max))
        return out

    def _result(self, y: float) -> dict:
        return {"distance": y, "is_success": bool(y < self.task.success_threshold)}

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
        if reward_type not in SIGNAL_REWARD_TYPES:
            raise ValueError(f"unknown reward_type {reward_type!r}; choose one of {', '.join(SIGNAL_REWARD_TYPES)}.")
        super().__init__(**kwargs)
        self.reward_type = reward_type
        self._log_scale = LOG_REWARD_SCALE * self.task.success_threshold
        self.metadata = dict(self.metadata, render_fps=max(1, round(1.0 / self.task.horizon)))
        self.action_space = self._box(-np.ones(self.task.signal_dim), np.ones(self.task.signal_dim))
        self.observation_space = self._box(
            np.concatenate([self._q_low, -self._vel_bound, self._pos_low]),
            np.concatenate([self._q_high, self._vel_bound, self._pos_high]),
        )
        if self._pixels:
            self.observation_space = self._image_space()
        self._done = True
        self._dirty = False
        self.evaluations = 0  #: episodes simulated by `evaluate` (the optimizer's cost)

    def _obs(self, q, qd, target) -> np.ndarray:
        if self._pixels:
            return self._image()
        o = np.concatenate([q, qd, target]) + self._noise(2 * self.arm.n + 3)
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
            info = {"physics_error": "the simulation produced a non-finite state", "distance": math.inf,
                    "is_success": False}
            obs = self._obs(np.nan_to_num(q), np.nan_to_num(qd), target)
            return obs, self._reward(float(np.linalg.norm(self._pos_high - self._pos_low))), False, True, info
        y = float(np.linalg.norm(ee - target))
        return self._obs(q, qd, target), self._reward(y), True, False, self._result(y)

    def _reward(self, y: float) -> float:
        return float(log_reward(y, self._log_scale)) if self.reward_type == "log" else -y

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

    Observation (``obs_type="state"``): ``[j (n), v (n), ee (3), p (3), time left (1)]``;
    ``obs_type="dict"`` splits it into ``observation`` ``[j, v, time left]``,
    ``achieved_goal`` (ee) and ``desired_goal`` (p) for HER. ``control="position"``
    is incremental here (target = j + x * ``position_delta``), as in panda-gym.
    ``history=True`` appends the previous action and the joint velocities before it
    (``[a_prev (n), v_prev (n)]``, zeros and the start velocities at the first step; in
    ``observation`` for dict observations): how v answered the last action is what
    reveals the episode's hidden dynamics (state stage) to a memoryless policy.
    ``privileged=True`` (state observations) appends, last, what the simulator knows and a
    real robot's policy would not: the episode's dynamics draw ``[mass scale - 1 (one per
    link, base first), damping scale - 1 (n), friction / max torque (n), torque gain - 1]``
    and the constant signal that defined the target (``target_signal``, n; zeros outside
    the state stage). Only the first ``actor_obs_dim`` entries are the policy's; `armlab
    train` then builds an asymmetric actor-critic whose critic alone reads the rest
    (Pinto et al., 2017), so the trained actor runs on the plain observation.
    ``residual=True`` (torque control, state observations) makes the action a correction
    added to the signal of a model-based feedback controller,
    `controllers.feedback.ComputedTorque` (residual RL): the arm gets ``clip(b + a)`` with b
    the controller's signal for the current observation, which the observation shows after
    the history entries (``[b (n)]``, before any privileged entries). A zero action is
    therefore that controller alone. ``residual_mode`` says how a moves b: ``add`` (the default)
    or ``span`` (a's range always covers the joint's whole torque range; `residual_signal`).
    ``info`` holds the true distance y, ``is_success`` and the true end-effector ``position``
    (`controllers.relabel` relabels residual episodes with it).
    Reward every step: ``-y`` (``dense``), ``-ln(1 + y / s)`` (``log``, s = a quarter of
    the success threshold, as in `ReachSignalEnv`) or ``-(y >= threshold)`` (``sparse``).
    ``reward_at="end"`` (not with dict observations) gives that reward at the last step only and 0
    before it: the return is then the score of the final distance, which is what the task
    and its evaluation measure, instead of a sum over the whole path (``"every"``, the
    default).
    """

    def __init__(self, substeps: int = 10, reward_type: str = "dense", position_delta: float = 0.05,
                 history: bool = False, privileged: bool = False, residual: bool = False, reward_at: str = "every",
                 residual_mode: str = "add", **kwargs) -> None:
        super().__init__(**kwargs)
        if residual_mode not in RESIDUAL_MODES:
            raise ValueError(f"unknown residual_mode {residual_mode!r}; choose one of {', '.join(RESIDUAL_MODES)}.")
        if residual_mode != "add" and not residual:
            raise ValueError(f"residual_mode {residual_mode!r} applies with residual: true.")
        self.residual_mode = residual_mode
        if reward_at not in REWARD_AT:
            raise ValueError(f"unknown reward_at {reward_at!r}; choose one of {', '.join(REWARD_AT)}.")
        if reward_at == "end" and self.obs_type == "dict":
            raise ValueError("reward_at 'end' does not work with dict observations: HER's compute_reward sees "
                             "goals, not the step, so it could not leave the earlier steps at 0.")
        self.reward_at = reward_at
        if not isinstance(residual, (bool, np.bool_)):
            raise ValueError(f"residual must be true or false, got {residual!r}.")
        if residual and self.obs_type != "state":
            raise ValueError(f"residual applies to obs_type 'state', not {self.obs_type!r}: its base controller "
                             f"reads the goal, so HER's relabeled goals would not match the actions taken.")
        if residual and self.arm.control != "torque":
            raise ValueError(f"residual needs torque control, not {self.arm.control!r}.")
        if not isinstance(privileged, (bool, np.bool_)):
            raise ValueError(f"privileged must be true or false, got {privileged!r}.")
        if privileged and self.obs_type != "state":
            raise ValueError(f"privileged applies to obs_type 'state', not {self.obs_type!r}.")
        self.privileged = bool(privileged)
        if reward_type not in CLOSED_REWARD_TYPES:
            raise ValueError(f"unknown reward_type {reward_type!r}; choose one of {', '.join(CLOSED_REWARD_TYPES)}.")
        if int(substeps) < 1:
            raise ValueError(f"substeps must be >= 1, got {substeps!r}.")
        if not isinstance(history, (bool, np.bool_)):
            raise ValueError(f"history must be true or false, got {history!r}.")
        self.history = bool(history)
        if self.history and self._pixels:
            raise ValueError("history applies to state and dict observations, not to images.")
        self.substeps = int(substeps)
        self.reward_type = reward_type
        self._log_scale = LOG_REWARD_SCALE * self.task.success_threshold
        self.position_delta = float(position_delta)
        self.max_steps = max(1, self.task.n_steps // self.substeps)
        self.metadata = dict(self.metadata, render_fps=max(1, round(1.0 / (self.world.timestep * self.substeps))))
        n = self.arm.n
        self.action_space = self._box(-np.ones(n), np.ones(n))
        q_lo, q_hi, v = self._q_low, self._q_high, self._vel_bound
        h_lo = np.concatenate([-np.ones(n), -v]) if self.history else np.zeros(0)
        h_hi = -h_lo
        self.residual = bool(residual)
        if self.residual:
            h_lo, h_hi = np.concatenate([h_lo, -np.ones(n)]), np.concatenate([h_hi, np.ones(n)])
        if obs_type_is_dict := self.obs_type == "dict":
            self.observation_space = spaces.Dict(
                {
                    "observation": self._box(np.concatenate([q_lo, -v, [0.0], h_lo]),
                                             np.concatenate([q_hi, v, [1.0], h_hi])),
                    "achieved_goal": self._box(self._pos_low, self._pos_high),
                    "desired_goal": self._box(self._pos_low, self._pos_high),
                }
            )
        else:
            low = np.concatenate([q_lo, -v, self._pos_low, self._pos_low, [0.0], h_lo])
            high = np.concatenate([q_hi, v, self._pos_high, self._pos_high, [1.0], h_hi])
            self.actor_obs_dim = len(low)  #: the leading observation entries a policy may read
            if self.privileged:
                m = len(self.arm.nominal_dynamics) + 3 * n + 1
                low, high = np.concatenate([low, -np.ones(m)]), np.concatenate([high, np.ones(m)])
            self.observation_space = self._box(low, high)
        self._dict = obs_type_is_dict
        if not obs_type_is_dict:
            self._low, self._high = self.observation_space.low, self.observation_space.high
        if self._pixels:  # the state bounds above stay in use for the physics-error reward
            self.observation_space = self._image_space()
        if obs_type_is_dict:  # goal-conditioned API only where it applies (SB3 checks for it)
            self.compute_reward = self._reward
        self._t = 0
        self._q = np.zeros(n)
        self._hist = np.zeros(2 * n)  #: [previous action, velocities before it] (history=True)
        self._priv = np.zeros(0)  #: the episode's critic-only entries (privileged=True)
        self._base_x = np.zeros(n)  #: the base controller's signal for the current observation
        self.base = None
        if self.residual:
            from controllers.feedback import ComputedTorque  # the env needs it only for residual=True

            self.base = ComputedTorque(self.arm.spec, self.world.timestep, self.substeps * self.world.timestep)

    def _obs(self, state: np.ndarray):
        """Observation from ``state = [q, qd, ee]`` (a fresh float array, modified in place)."""
        if self._pixels:
            return self._image()
        n = self.arm.n
        time_left = 1.0 - self._t / self.max_steps
        if self.obs_noise > 0:
            state += self.np_random.normal(0.0, self.obs_noise, state.shape)
        hist = ()
        if self.history:
            self._seen_qd = state[n : 2 * n].copy()
            hist = self._hist
        if self.residual:
            t_left = (self.max_steps - self._t) * self.substeps * self.world.timestep
            if self._t == 0:
                self.base.reset(state[:n], state[n : 2 * n], self.context.target, t_left)
            self._base_x = self.base.act(state[:n], state[n : 2 * n], t_left) if t_left > 0 else np.zeros(n)
            hist = np.concatenate([hist, self._base_x])
        if self._dict:
            raw = {
                "observation": np.concatenate([state[: 2 * n], (time_left,), hist]),
                "achieved_goal": state[2 * n :],
                "desired_goal": self.context.target,
            }
            return {
                k: v.clip(self.observation_space[k].low, self.observation_space[k].high).astype(np.float32)
                for k, v in raw.items()
            }
        o = np.concatenate([state, self.context.target, (time_left,), hist, self._priv])
        return o.clip(self._low, self._high).astype(np.float32)

    def _privileged(self, ctx: Context) -> np.ndarray:
        """The critic-only entries of ``privileged=True`` for episode context ``ctx``."""
        if not self.privileged:
            return np.zeros(0)
        n = self.arm.n
        dyn = ctx.dynamics
        if dyn is None:
            dyn_part = np.zeros(len(self.arm.nominal_dynamics) + 2 * n + 1)
        else:
            dyn_part = np.concatenate([dyn.mass_scale - 1.0, dyn.damping_scale - 1.0,
                                       dyn.friction / self.arm.max_torque, [dyn.torque_gain - 1.0]])
        signal = np.asarray(ctx.info.get("target_signal", np.zeros(n)), dtype=np.float64)[:n]
        return np.concatenate([dyn_part, signal])

    def reset(self, *, seed=None, options=None):
        ctx = self._begin(seed, options)
        self._t = 0
        self._q = ctx.q.copy()
        n = self.arm.n
        self._hist = np.concatenate([np.zeros(n), ctx.qd])
        self._priv = self._privileged(ctx)
        return self._obs(np.array(self.arm.read())), {"target": ctx.target.copy()}

    def close(self) -> None:
        if self.base is not None:
            self.base.close()
            self.base = None
        super().close()

    def _reward(self, achieved_goal, desired_goal, info=None):
        """Reward for (batches of) goals; exposed as ``compute_reward`` with dict observations (HER)."""
        d = np.linalg.norm(np.asarray(achieved_goal) - np.asarray(desired_goal), axis=-1)
        return self._distance_reward(d).astype(np.float32)

    def _distance_reward(self, d):
        """The reward of distance(s) ``d`` (float64, any shape)."""
        if self.reward_type == "sparse":
            return -(np.asarray(d) >= self.task.success_threshold).astype(np.float64)
        if self.reward_type == "log":
            return log_reward(d, self._log_scale)
        return -np.asarray(d, dtype=np.float64)

    def step_reward(self, d: float, last: bool) -> float:
        """The reward of a step that ends at distance ``d`` (``last``: the episode's last step)."""
        if self.reward_at == "end" and not last:
            return 0.0
        return float(self._distance_reward(d))

    def step(self, action):
        if self.context is None:
            raise RuntimeError("call reset() before step().")
        x = self._check_action(action)
        if self.residual:
            x = residual_signal(self._base_x, x, self.residual_mode)
        arm = self.arm
        if self.history:
            self._hist = np.concatenate([x, self._seen_qd])  # the velocities the policy saw with this action
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
            info = {"physics_error": "the simulation produced a non-finite state", "distance": math.inf,
                    "is_success": False}
            state = np.concatenate([self._q, np.zeros(n), self.context.target])
            worst = float(np.linalg.norm(self._pos_high - self._pos_low))
            return self._obs(state), float(self._distance_reward(worst)), False, True, info
        self._q = np.array(read[:n])
        y = math.dist(read[2 * n :], self._target)
        success = y < self.task.success_threshold
        reward = self.step_reward(y, self._t >= self.max_steps)
        info = {"distance": y, "is_success": success, "position": np.array(read[2 * n :])}
        return self._obs(np.array(read)), reward, self._t >= self.max_steps, False, info
