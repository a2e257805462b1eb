"""Rollout videos: writers for WebM (VP9), MP4 and GIF, tiling, overlays and `RolloutRecorder`.

The format follows the file extension: ``.webm`` (VP9 through OpenCV, fourcc ``VP90``),
``.mp4`` (MPEG-4 Part 2 through OpenCV, fourcc ``mp4v``) or ``.gif`` (Pillow). Every
OpenCV writer is checked with ``isOpened()``; a writer that cannot be opened, an
unwritable folder or a bad extension raise a clear error before anything is simulated.
Videos are written atomically: frames go to a hidden temp file beside the target, moved
into place by `VideoWriter.close`, so an interrupted run never leaves half a video.

Frames are RGB uint8 ``(H, W, 3)`` everywhere (OpenCV's BGR stays inside the writer).
"""

from __future__ import annotations

import math
import os
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from robot_env._quiet import quiet_c_output
from robot_env.camera import Camera, named_camera
from robot_env.envs import ReachSignalEnv

FOURCC = {".webm": "VP90", ".mp4": "mp4v"}
VIDEO_EXTENSIONS = (".webm", ".mp4", ".gif")


class VideoWriteError(OSError):
    """A video could not be written (unwritable path, or a codec OpenCV could not open)."""


def video_format(path: str | Path) -> str:
    """The extension of ``path`` if it is a supported video format, else a clear ``ValueError``."""
    ext = Path(path).suffix.lower()
    if ext not in VIDEO_EXTENSIONS:
        raise ValueError(f"unsupported video extension {ext or '(none)'!r} in {str(path)!r}; "
                         f"use one of {', '.join(VIDEO_EXTENSIONS)}.")
    return ext


class VideoWriter:
    """Write RGB frames to ``path``; the format is chosen by its extension.

    Args:
        path: ``.webm``, ``.mp4`` or ``.gif`` file (its folder is created if needed).
        fps: frames per second of the video.
        size: ``(width, height)``; opens the codec at once (otherwise at the first frame).

    Every frame must have the size of the first. WebM and MP4 need even sizes: odd ones
    are padded by one pixel (edge pixels repeated). GIF frame times are whole 1/100 s
    (`gif_frame_ms`). Use as a context manager, or call
    `close` (publishes the file) or `abort` (discards it).
    """

    def __init__(self, path: str | Path, fps: float = 24.0, size: tuple[int, int] | None = None) -> None:
        self.path = Path(path)
        self.ext = video_format(self.path)
        if not fps > 0:
            raise ValueError(f"fps must be positive, got {fps!r}.")
        self.fps = float(fps)
        parent = self.path.parent
        if parent.exists() and not parent.is_dir():
            raise VideoWriteError(f"cannot write a video to {str(self.path)!r}: {str(parent)!r} is not a folder.")
        try:
            parent.mkdir(parents=True, exist_ok=True)
            # a unique hidden name beside the target; created like any file (mode 0o666 less the umask)
            tmp = parent / f".{self.path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp{self.ext}"
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        except OSError as exc:
            raise VideoWriteError(f"cannot write a video to {str(self.path)!r}: {exc.strerror or exc}.") from None
        self._tmp = Path(tmp)
        self._cv: cv2.VideoWriter | None = None
        self._gif: list = []
        self.size: tuple[int, int] | None = None  #: (width, height) of the frames written
        self.frames = 0
        self._closed = False
        if self.ext == ".gif":
            try:
                import PIL.Image  # noqa: F401
            except ImportError:
                self.abort()
                raise VideoWriteError("writing .gif needs Pillow (pip install pillow); use .webm or .mp4.") from None
        if size is not None:
            try:
                self._open((int(size[0]), int(size[1])))
            except BaseException:
                self.abort()
                raise

    def _open(self, size: tuple[int, int]) -> None:
        w, h = size
        if w < 1 or h < 1:
            raise ValueError(f"video size must be positive, got {w}x{h}.")
        self.size = (w, h)
        if self.ext == ".gif":
            return
        with quiet_c_output():  # FFmpeg warns that the webm muxer stores VP90 under its own tag
            cv = cv2.VideoWriter(str(self._tmp), cv2.VideoWriter_fourcc(*FOURCC[self.ext]), self.fps,
                                 (w + w % 2, h + h % 2))
        if not cv.isOpened():
            raise VideoWriteError(
                f"OpenCV could not open a {FOURCC[self.ext]} writer for {str(self.path)!r} at {w}x{h}; "
                f"this OpenCV build may lack the codec: try another of {', '.join(VIDEO_EXTENSIONS)}."
            )
        self._cv = cv

    def write(self, frame: np.ndarray) -> None:
        """Append one RGB uint8 frame ``(H, W, 3)``."""
        if self._closed:
            raise RuntimeError("this VideoWriter is closed.")
        frame = np.asarray(frame)
        if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
            raise ValueError(f"frames must be RGB uint8 (H, W, 3), got {frame.dtype} {frame.shape}.")
        h, w = frame.shape[:2]
        if self.size is None:
            self._open((w, h))
        elif (w, h) != self.size:
            raise ValueError(f"frame size {w}x{h} differs from the video's {self.size[0]}x{self.size[1]}.")
        if self.ext == ".gif":
            import PIL.Image

            self._gif.append(PIL.Image.fromarray(frame))
        else:
            if w % 2 or h % 2:
                frame = np.pad(frame, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")
            self._cv.write(np.ascontiguousarray(frame[:, :, ::-1]))
        self.frames += 1

    def close(self) -> Path:
        """Finish the file and move it into place; returns its path."""
        if self._closed:
            return self.path
        if self.frames == 0:
            self.abort()
            raise VideoWriteError(f"no frames were written to {str(self.path)!r}.")
        try:
            if self._cv is not None:
                self._cv.release()
            else:
                first, *rest = self._gif
                first.save(self._tmp, save_all=True, append_images=rest, duration=gif_frame_ms(self.fps),
                           loop=0)
            os.replace(self._tmp, self.path)
        except BaseException:
            self.abort()
            raise
        self._closed = True
        self._gif = []
        return self.path

    def abort(self) -> None:
        """Discard the video: nothing is left at ``path`` or beside it."""
        if self._cv is not None:
            self._cv.release()
            self._cv = None
        self._gif = []
        self._closed = True
        self._tmp.unlink(missing_ok=True)

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, exc_type, *exc) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def gif_frame_ms(fps: float) -> int:
    """A GIF frame's duration in ms: GIF counts in 1/100 s (24 fps plays at 25), and viewers
    slow frames under 20 ms down to 100 ms, so it is at least 20."""
    return max(20, 10 * round(100 / fps))


def write_video(path: str | Path, frames, fps: float = 24.0) -> Path:
    """Write a sequence of RGB frames to ``path`` (format by extension); returns the path."""
    with VideoWriter(path, fps) as writer:
        for frame in frames:
            writer.write(frame)
    return writer.path


def tile(frames: list[np.ndarray], cols: int | None = None) -> np.ndarray:
    """Tile equally sized RGB frames into a grid (one row for up to three; black fills gaps)."""
    if not frames:
        raise ValueError("tile needs at least one frame.")
    h, w = frames[0].shape[:2]
    if any(f.shape != frames[0].shape for f in frames):
        raise ValueError(f"tiled frames must share one shape, got {[f.shape for f in frames]}.")
    n = len(frames)
    cols = cols or (n if n <= 3 else math.ceil(math.sqrt(n)))
    rows = math.ceil(n / cols)
    out = np.zeros((rows * h, cols * w, 3), np.uint8)
    for i, f in enumerate(frames):
        r, c = divmod(i, cols)
        out[r * h : (r + 1) * h, c * w : (c + 1) * w] = f
    return out


def draw_overlay(frame: np.ndarray, lines=(), point=None, color=(40, 220, 40)) -> np.ndarray:
    """A copy of ``frame`` with text ``lines`` at the top left and a ring at pixel ``point``
    ``(u, v)`` (skipped when it is not finite or off the image)."""
    out = np.ascontiguousarray(frame).copy()
    h, w = out.shape[:2]
    if point is not None and np.all(np.isfinite(point)):
        u, v = (int(round(float(p))) for p in point)
        if 0 <= u < w and 0 <= v < h:
            r = max(3, h // 30)
            cv2.circle(out, (u, v), r + 1, (0, 0, 0), 1, cv2.LINE_AA)
            cv2.circle(out, (u, v), r, color, 1, cv2.LINE_AA)
    scale = max(0.3, h / 500)
    thick = max(1, round(scale * 1.5))
    step = int(22 * scale) + 4
    for i, text in enumerate(lines):
        org = (4, step * (i + 1))
        cv2.putText(out, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), thick + 2, cv2.LINE_AA)
        cv2.putText(out, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), thick, cv2.LINE_AA)
    return out


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
            raise ValueError("RolloutRecorder needs at least one camera.")
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
