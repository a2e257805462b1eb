"""Video files: writers for WebM (VP9), MP4 and GIF, tiling and overlays (no simulator needed).

The format follows the file extension: ``.webm`` (VP9 through OpenCV, fourcc ``VP90``),
``.mp4`` (MPEG-4 Part 2 through OpenCV, fourcc ``mp4v``) or ``.gif`` (Pillow). Every
OpenCV writer is checked with ``isOpened()``; a writer that cannot be opened, an
unwritable folder or a bad extension raise a clear error before anything is written.
Videos are written atomically: frames go to a hidden temp file beside the target, moved
into place by `VideoWriter.close`, so an interrupted run never leaves half a video.

Frames are RGB uint8 ``(H, W, 3)`` everywhere (OpenCV's BGR stays inside the writer).
`robot_env.video` records rollouts of the envs with these writers.
"""

from __future__ import annotations

import math
import os
import uuid
from pathlib import Path

import cv2
import numpy as np

from robot_env._quiet import quiet_c_output
from robot_env.io.errors import ConfigError, PathError

__all__ = ["FOURCC", "VIDEO_EXTENSIONS", "VideoWriteError", "VideoWriter", "draw_overlay", "gif_frame_ms", "tile",
           "video_format", "write_video"]

FOURCC = {".webm": "VP90", ".mp4": "mp4v"}
VIDEO_EXTENSIONS = (".webm", ".mp4", ".gif")


class VideoWriteError(PathError):
    """A video could not be written (unwritable path, or a codec OpenCV could not open)."""


def video_format(path: str | Path) -> str:
    """The extension of ``path`` if it is a supported video format, else a clear ``ValueError``."""
    ext = Path(path).suffix.lower()
    if ext not in VIDEO_EXTENSIONS:
        raise ConfigError(f"unsupported video extension {ext or '(none)'!r} in {str(path)!r}; "
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
            raise ConfigError(f"fps must be positive, got {fps!r}.")
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
            raise ConfigError(f"video size must be positive, got {w}x{h}.")
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
