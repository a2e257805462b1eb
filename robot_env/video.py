"""Rollout videos: `RolloutRecorder` plays a controller in an env and films it, one frame per control step
(or replayed from the episode start for the open-loop envs), with an overlay per camera.

The writers it uses (WebM, MP4, GIF; atomic, checked with ``isOpened()``), tiling and overlays live in
`robot_env.io.video`, free of the simulator, and are re-exported here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from robot_env.camera import Camera, named_camera
from robot_env.envs import ReachSignalEnv
from robot_env.io.errors import ConfigError
from robot_env.io.video import (  # noqa: F401  (re-exported: armlab's video API in one place)
    FOURCC,
    VIDEO_EXTENSIONS,
    VideoWriteError,
    VideoWriter,
    draw_overlay,
    gif_frame_ms,
    tile,
    video_format,
    write_video,
)


def as_policy(policy):
    """``(env, obs) -> action`` from a controller (``.act(env, obs)``), an SB3 model
    (``.predict(obs)``, deterministic) or such a callable."""
    if hasattr(policy, "act"):
        return policy.act
    if hasattr(policy, "predict"):
        return lambda env, obs: policy.predict(obs, deterministic=True)[0]
    if callable(policy):
        return policy
    raise TypeError(f"a policy must be callable as policy(env, obs), got {type(policy).__name__}.")


@dataclass
class Recording:
    """What `RolloutRecorder.record` saw."""

    fps: float  #: frames per second of real (simulated) time
    frames: list[np.ndarray] = field(default_factory=list, repr=False)  #: empty when streamed to a writer
    n_frames: int = 0
    distances: list[float] = field(default_factory=list)  #: final y of each episode (m)
    successes: list[bool] = field(default_factory=list)


class RolloutRecorder:
    """Drive a reach env with a policy and record frames from one or more cameras.

    Args:
        env: an armlab env (``gym.make`` result or unwrapped).
        cameras: camera names (``front``, ``side``, ``top``, ``wrist``) or `Camera` objects
            (resized to ``size``); several are tiled side by side.
        size: ``(width, height)`` of each camera's view.
        overlay: draw the target's pixel (a ring), the distance y, the step and the time.
        fps: frames per simulated second for the open-loop envs, whose one step plays the
            whole signal (it is replayed from the episode start for the frames; the video
            ends where the step ended). Closed-loop envs give one frame per control step,
            at their ``render_fps``.
        hold: seconds the last frame of each episode is repeated.
    """

    def __init__(self, env, cameras=("front",), size: tuple[int, int] = (320, 240), overlay: bool = True,
                 fps: float = 24.0, hold: float = 0.5) -> None:
        self.env = env
        u = env.unwrapped
        if not hasattr(u, "task") or not hasattr(u, "world"):
            raise TypeError("RolloutRecorder needs an armlab reach env (robot_env.ReachEnv or ReachSignalEnv).")
        if isinstance(cameras, (str, Camera)):
            cameras = (cameras,)
        if not cameras:
            raise ConfigError("RolloutRecorder needs at least one camera.")
        w, h = int(size[0]), int(size[1])
        self.cameras = [
            named_camera(c, u.arm, w, h) if isinstance(c, str) else c.resized(w, h)
            for c in cameras
        ]
        self.overlay = overlay
        self.hold = float(hold)
        dt = u.world.timestep
        self._open_loop = isinstance(u, ReachSignalEnv)
        if self._open_loop:
            self._every = max(1, round(1.0 / (fps * dt)))
            self.fps = 1.0 / (self._every * dt)
        else:
            self._every = u.substeps
            self.fps = 1.0 / (u.substeps * dt)

    @property
    def frame_size(self) -> tuple[int, int]:
        """``(width, height)`` of the recorded (tiled) frames."""
        return tile([np.zeros((c.height, c.width, 3), np.uint8) for c in self.cameras]).shape[1::-1]

    def frame(self, episode: int | None = None, step: int = 0) -> np.ndarray:
        """The current scene from every camera, tiled, with the overlay."""
        u = self.env.unwrapped
        target = u.context.target if u.context is not None else None
        views = []
        for cam in self.cameras:
            rgb = cam.render(u.world, segmentation=False).rgb
            if self.overlay and target is not None:
                rgb = draw_overlay(rgb, point=cam.project(target)[0])  # render() placed a mounted camera
            views.append(rgb)
        out = tile(views)
        if self.overlay and target is not None:
            y = float(np.linalg.norm(u.arm.ee_position() - target))
            t = step * u.world.timestep * (1 if self._open_loop else u.substeps)
            head = f"ep {episode + 1}  " if episode is not None else ""
            out = draw_overlay(out, [f"{head}step {step}  t {t:.2f} s", f"y = {100 * y:.1f} cm"])
        return out

    def record(self, policy, episodes: int = 1, seed: int = 0, writer: VideoWriter | None = None) -> Recording:
        """Run ``episodes`` episodes (seeds ``seed, seed + 1, ...``) with ``policy`` (see
        `as_policy`); frames go to ``writer`` if given, else into the returned `Recording`."""
        act = as_policy(policy)
        env = self.env
        rec = Recording(fps=self.fps)

        def emit(frame):
            rec.n_frames += 1
            if writer is not None:
                writer.write(frame)
            else:
                rec.frames.append(frame)

        env.action_space.seed(seed)
        for ep in range(episodes):
            obs, info = env.reset(seed=seed + ep)
            last = self.frame(ep, 0)
            emit(last)
            done, k = False, 0
            while not done:
                action = act(env, obs)
                obs, _, term, trunc, info = env.step(action)
                done = term or trunc
                if self._open_loop and "physics_error" not in info:
                    for last in self._replay(np.asarray(action, dtype=float), ep):
                        emit(last)
                else:
                    k += 1
                    last = self.frame(ep, k)
                    emit(last)
            for _ in range(round(self.hold * self.fps)):
                emit(last)
            rec.distances.append(float(info.get("distance", math.inf)))
            rec.successes.append(bool(info.get("is_success", False)))
        return rec

    def _replay(self, x: np.ndarray, ep: int):
        """Frames of an open-loop signal played again from the episode start."""
        u = self.env.unwrapped
        u.task.set_context(u.context)
        rows, per = u.task.commands(np.clip(x.reshape(-1), -1.0, 1.0))
        every, t = self._every, 0
        for row in rows:
            left = per
            while left:
                k = min(left, every - t % every)
                u.arm.run((row,), k)
                t += k
                left -= k
                if t % every == 0 or t == u.task.n_steps:
                    yield self.frame(ep, t)


__all__ = [
    "FOURCC", "VIDEO_EXTENSIONS", "Recording", "RolloutRecorder", "VideoWriteError", "VideoWriter", "as_policy",
    "draw_overlay", "gif_frame_ms", "tile", "video_format", "write_video",
]
