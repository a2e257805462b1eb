"""Image observations of the reach envs: ``obs_type="rgb"`` or ``"rgbd"`` from a scene camera.

`ImageObservation` renders uint8, channel-first ``(C, H, W)`` images, as SB3's ``CnnPolicy``
expects. ``rgbd`` adds depth as a fourth channel: ``round(255 * min(z, depth_max) /
depth_max)`` with z the metric depth along the optical axis and ``depth_max`` = 3 x the robot's
reach. Images get no observation noise; after a physics blow-up they are all zeros.
"""

from __future__ import annotations

import numpy as np
from gymnasium import spaces

from robot_env.camera import CAMERA_NAMES, named_camera
from robot_env.io.errors import ConfigError

IMAGE_OBS_TYPES = ("rgb", "rgbd")
DEPTH_MAX_PER_REACH = 3.0  #: the rgbd depth channel spans 0 .. 3 x the robot's reach (metres)


def image_size(size) -> tuple[int, int]:
    """``(width, height)`` from an int (square) or a pair."""
    w, h = (size, size) if np.isscalar(size) else tuple(size)
    if int(w) != w or int(h) != h or int(w) < 1 or int(h) < 1:
        raise ConfigError(f"image_size must be a positive int or a (width, height) pair, got {size!r}.")
    return int(w), int(h)


def check_camera(camera: str) -> None:
    """ValueError for a camera name that `robot_env.camera.named_camera` does not know."""
    if camera not in CAMERA_NAMES:
        raise ConfigError(f"unknown camera {camera!r}; choose one of {', '.join(CAMERA_NAMES)}.")


class ImageObservation:
    """The ``rgb`` / ``rgbd`` observation of ``arm``'s scene from the named ``camera`` at ``size`` (width, height)."""

    def __init__(self, obs_type: str, arm, camera: str, size: tuple[int, int]) -> None:
        self.obs_type = obs_type
        self.camera = named_camera(camera, arm, *size)
        self.depth_max = DEPTH_MAX_PER_REACH * arm.spec.reach
        channels = 3 if obs_type == "rgb" else 4
        self.space = spaces.Box(0, 255, (channels, self.camera.height, self.camera.width), dtype=np.uint8)

    def observe(self, world, physics_ok: bool = True) -> np.ndarray:
        """The image now (all zeros when ``physics_ok`` is false: nothing sensible to draw)."""
        if not physics_ok:
            return np.zeros(self.space.shape, np.uint8)
        img = self.camera.render(world, segmentation=False)
        rgb = img.rgb.transpose(2, 0, 1)
        if self.obs_type == "rgb":
            return np.ascontiguousarray(rgb)
        out = np.empty(self.space.shape, np.uint8)
        out[:3] = rgb
        out[3] = np.rint(np.clip(img.depth, 0.0, self.depth_max) * (255.0 / self.depth_max))
        return out
