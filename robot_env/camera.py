"""`Camera`: pinhole intrinsics in pixels, OpenCV-frame extrinsics, RGB, metric depth and segmentation.

Conventions (the same as OpenCV's, stated once here and relied on everywhere):

* **Pixels.** ``u`` runs right along a row, ``v`` down a column. Pixel centres sit at
  integer coordinates: ``(0, 0)`` is the centre of the top-left pixel, so the image
  spans ``[-0.5, W - 0.5] x [-0.5, H - 0.5]`` and a centred principal point is
  ``cx = (W - 1) / 2``, ``cy = (H - 1) / 2``.
* **Intrinsics.** ``K = [[fx, 0, cx], [0, fy, cy], [0, 0, 1]]`` (pixels, no skew, no
  distortion): a point ``(X, Y, Z)`` in the camera frame lands on
  ``u = fx X / Z + cx``, ``v = fy Y / Z + cy``.
* **Camera frame.** OpenCV's: x right, y down, z forward along the optical axis.
* **Extrinsics.** ``T_cam_world`` (4x4) maps world points to the camera frame,
  ``p_cam = T_cam_world @ [p_world, 1]``; ``T_world_cam`` is its inverse, the camera's
  pose in the world.
* **Depth.** metres along the optical axis (the camera-frame z, not the ray length),
  recovered from PyBullet's non-linear depth buffer ``d`` in [0, 1] with
  ``z = far near / (far - (far - near) d)``. Pixels that hit nothing read ``far``.
* **Segmentation.** ``body`` (PyBullet body id) and ``link`` (link index, -1 for a
  body's base) as int32; background pixels are -1 in both.

PyBullet's OpenGL view and projection matrices are derived from ``T_cam_world`` and
``K`` (with ``near``/``far``), an off-centre principal point included, so what is
rendered is exactly what `Camera.project` predicts (tests/test_camera.py pins it to
within a pixel and 2 mm of depth).

Rendering uses TinyRenderer (CPU) by default. ``renderer="egl"`` uses PyBullet's
eglRenderer plugin, which draws only bodies created after it was loaded into the client:
call `enable_egl` on a fresh ``World(floor=False)`` before adding bodies.

Cameras are fixed in the world (`Camera.look_at`, `Camera.set_pose`) or mounted on a
link (`Camera.mount`: pose = link frame x fixed offset, recomputed at every render).
`named_camera` builds the scene cameras every tool shares (``front``, ``side``,
``top``, ``wrist``) for an `~robot_env.robots.Arm`.
"""

from __future__ import annotations

import importlib.util
import math
import weakref
from dataclasses import dataclass

import numpy as np
import pybullet as pb

from robot_env._quiet import quiet_c_output
from robot_env.io.errors import ConfigError, DeviceError

RENDERERS = ("tiny", "egl")
CAMERA_NAMES = ("front", "side", "top", "wrist")
_CV_TO_GL = np.diag([1.0, -1.0, -1.0, 1.0])  # OpenCV camera frame -> OpenGL eye frame (and back)
_SEG_BODY_MASK = (1 << 24) - 1


@dataclass
class CameraImage:
    """One rendered view. Arrays are ``(H, W[, 3])``, row 0 at the top of the image."""

    rgb: np.ndarray  #: uint8 (H, W, 3)
    depth: np.ndarray  #: float32 (H, W), metres along the optical axis; ``far`` where nothing was hit
    body: np.ndarray | None  #: int32 (H, W), PyBullet body id, -1 background (None without segmentation)
    link: np.ndarray | None  #: int32 (H, W), link index (-1: a body's base, or background)


# -- small rigid-transform helpers ----------------------------------------------------------------
def _rotation(quaternion) -> np.ndarray:
    """3x3 rotation matrix of a unit quaternion (x, y, z, w)."""
    x, y, z, w = np.asarray(quaternion, dtype=float) / np.linalg.norm(quaternion)
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ])


def _transform(position, quaternion) -> np.ndarray:
    T = np.eye(4)
    T[:3, :3] = _rotation(quaternion)
    T[:3, 3] = position
    return T


def _inverse(T: np.ndarray) -> np.ndarray:
    R, t = T[:3, :3], T[:3, 3]
    out = np.eye(4)
    out[:3, :3] = R.T
    out[:3, 3] = -R.T @ t
    return out


def look_at_rotation(eye, target, up=(0.0, 0.0, 1.0)) -> np.ndarray:
    """``R_world_cam`` (3x3, columns = the OpenCV camera axes in world coordinates) of a
    camera at ``eye`` looking at ``target``; ``up`` appears upwards in the image."""
    ex, ey, ez = (float(v) for v in eye)
    z = [float(target[0]) - ex, float(target[1]) - ey, float(target[2]) - ez]
    n = math.sqrt(z[0] ** 2 + z[1] ** 2 + z[2] ** 2)
    if not n > 0:
        raise ValueError("look_at: eye and target must differ.")
    z = [v / n for v in z]
    u = [float(v) for v in up]
    x = [z[1] * u[2] - z[2] * u[1], z[2] * u[0] - z[0] * u[2], z[0] * u[1] - z[1] * u[0]]
    n = math.sqrt(x[0] ** 2 + x[1] ** 2 + x[2] ** 2)
    if not n > 1e-9:
        raise ValueError("look_at: the up vector is parallel to the viewing direction; choose another up.")
    x = [v / n for v in x]
    y = [z[1] * x[2] - z[2] * x[1], z[2] * x[0] - z[0] * x[2], z[0] * x[1] - z[1] * x[0]]
    return np.array([x, y, z]).T  # columns x, y, z


def _quaternion(R: np.ndarray) -> tuple[float, float, float, float]:
    """(x, y, z, w) of a rotation matrix (Shepperd's method)."""
    m = R
    tr = m[0, 0] + m[1, 1] + m[2, 2]
    if tr > 0:
        s = 2.0 * math.sqrt(tr + 1.0)
        q = ((m[2, 1] - m[1, 2]) / s, (m[0, 2] - m[2, 0]) / s, (m[1, 0] - m[0, 1]) / s, 0.25 * s)
    elif m[0, 0] > m[1, 1] and m[0, 0] > m[2, 2]:
        s = 2.0 * math.sqrt(1.0 + m[0, 0] - m[1, 1] - m[2, 2])
        q = (0.25 * s, (m[0, 1] + m[1, 0]) / s, (m[0, 2] + m[2, 0]) / s, (m[2, 1] - m[1, 2]) / s)
    elif m[1, 1] > m[2, 2]:
        s = 2.0 * math.sqrt(1.0 + m[1, 1] - m[0, 0] - m[2, 2])
        q = ((m[0, 1] + m[1, 0]) / s, 0.25 * s, (m[1, 2] + m[2, 1]) / s, (m[0, 2] - m[2, 0]) / s)
    else:
        s = 2.0 * math.sqrt(1.0 + m[2, 2] - m[0, 0] - m[1, 1])
        q = ((m[0, 2] + m[2, 0]) / s, (m[1, 2] + m[2, 1]) / s, 0.25 * s, (m[1, 0] - m[0, 1]) / s)
    return tuple(float(v) for v in q)


# -- EGL -----------------------------------------------------------------------------------------
_egl_plugins: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # World -> plugin id


def _egl_plugin_path() -> str | None:
    spec = importlib.util.find_spec("eglRenderer")
    return spec.origin if spec is not None else None


def enable_egl(world) -> None:
    """Load PyBullet's eglRenderer plugin into ``world``'s client (once per client).

    The plugin only draws bodies created after it was loaded, so call this before adding
    any body: ``world = World(floor=False); enable_egl(world); world.load_urdf("floor",
    "plane.urdf")``. Raises ``RuntimeError`` if EGL is not available.
    """
    if world in _egl_plugins:
        return
    path = _egl_plugin_path()
    if path is None:
        raise DeviceError(
            "EGL is not available: this PyBullet build has no eglRenderer plugin; use renderer='tiny'."
        )
    if pb.getNumBodies(physicsClientId=world.id) > 0:
        raise RuntimeError(
            "renderer='egl' draws only the bodies created after its plugin was loaded, and this world already "
            "has bodies: call robot_env.camera.enable_egl(world) before adding any (World(floor=False) first), "
            "or use renderer='tiny'."
        )
    with quiet_c_output():  # the plugin prints its GL vendor and version
        plugin = pb.loadPlugin(path, "_eglRendererPlugin", physicsClientId=world.id)
    if plugin < 0:
        raise DeviceError(
            "EGL is not available: PyBullet could not load its eglRenderer plugin (no usable libEGL or GPU "
            "driver); use renderer='tiny'."
        )
    _egl_plugins[world] = plugin


# -- the camera ----------------------------------------------------------------------------------
class Camera:
    """A pinhole camera: pixel intrinsics, an OpenCV-frame pose, and PyBullet rendering.

    Args:
        fx, fy: focal lengths in pixels.
        cx, cy: principal point in pixels, pixel centres at integer coordinates
            (``(0, 0)`` = centre of the top-left pixel; centred = ``((W-1)/2, (H-1)/2)``).
        width, height: image size in pixels.
        near, far: clipping planes in metres (depth is recovered between them; ``far`` = nothing hit).
        renderer: ``"tiny"`` (TinyRenderer, CPU, default) or ``"egl"`` (PyBullet's
            eglRenderer plugin, loaded per physics client by `enable_egl`, which must run
            before the world's bodies are created; a clear ``RuntimeError`` if EGL is not
            available).
        name: a label (the named cameras use ``front``, ``side``, ``top``, ``wrist``).

    The pose starts at the world origin looking along world +z; set it with `look_at`,
    `set_pose` or `mount`. ``T_cam_world`` maps world points into the OpenCV camera frame
    (x right, y down, z forward).
    """

    def __init__(self, fx: float, fy: float, cx: float, cy: float, width: int, height: int,
                 near: float = 0.01, far: float = 10.0, renderer: str = "tiny", name: str = "camera") -> None:
        if int(width) < 1 or int(height) < 1:
            raise ConfigError(f"camera size must be positive, got {width}x{height}.")
        if not (fx > 0 and fy > 0):
            raise ConfigError(f"focal lengths must be positive, got fx={fx!r}, fy={fy!r}.")
        if not 0 < near < far:
            raise ConfigError(f"need 0 < near < far, got near={near!r}, far={far!r}.")
        if renderer not in RENDERERS:
            raise ConfigError(f"unknown renderer {renderer!r}; choose one of {', '.join(RENDERERS)}.")
        self.fx, self.fy, self.cx, self.cy = float(fx), float(fy), float(cx), float(cy)
        self.width, self.height = int(width), int(height)
        self.near, self.far = float(near), float(far)
        self.renderer = renderer
        self.name = name
        self._T_world_cam = np.eye(4)
        self._T_cam_world_cache: tuple[np.ndarray, np.ndarray] | None = None  #: (pose it inverts, inverse)
        self._mount: tuple[int, int, np.ndarray] | None = None
        self._set_projection()

    @classmethod
    def from_fov(cls, fov_y: float, width: int, height: int, **kwargs) -> Camera:
        """A camera with a vertical field of view ``fov_y`` (degrees), square pixels and a
        centred principal point."""
        if not 0 < fov_y < 180:
            raise ConfigError(f"fov_y must be in (0, 180) degrees, got {fov_y!r}.")
        f = 0.5 * height / math.tan(math.radians(fov_y) / 2.0)
        return cls(f, f, (width - 1) / 2.0, (height - 1) / 2.0, width, height, **kwargs)

    def resized(self, width: int, height: int) -> Camera:
        """The same camera (pose, mount, field of view) at another image size."""
        sx, sy = width / self.width, height / self.height
        cam = Camera(self.fx * sx, self.fy * sy, (self.cx + 0.5) * sx - 0.5, (self.cy + 0.5) * sy - 0.5,
                     width, height, near=self.near, far=self.far, renderer=self.renderer, name=self.name)
        cam._T_world_cam = self._T_world_cam.copy()
        cam._mount = self._mount
        return cam

    # -- intrinsics -------------------------------------------------------------------------------
    @property
    def K(self) -> np.ndarray:
        """3x3 intrinsics in pixels (principal point convention: see the module docstring)."""
        return np.array([[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]])

    def _gl_projection(self, cx: float, cy: float) -> list[float]:
        W, H, n, f = self.width, self.height, self.near, self.far
        P = np.zeros((4, 4))
        # OpenGL eye frame (x right, y up, looking down -z) -> clip space, with NDC x = -1 at
        # u = -0.5 and +1 at u = W - 0.5, NDC y = +1 at v = -0.5 (the top row).
        P[0, 0] = 2.0 * self.fx / W
        P[0, 2] = 1.0 - 2.0 * (cx + 0.5) / W
        P[1, 1] = 2.0 * self.fy / H
        P[1, 2] = 2.0 * (cy + 0.5) / H - 1.0
        P[2, 2] = -(f + n) / (f - n)
        P[2, 3] = -2.0 * f * n / (f - n)
        P[3, 2] = -1.0
        return P.flatten(order="F").tolist()

    def _set_projection(self) -> None:
        self._projection_list = self._gl_projection(self.cx, self.cy)
        # TinyRenderer samples each pixel at its corner, not its centre (measured: images come
        # out shifted by +1/2 pixel in u and -1/2 in v against OpenGL/EGL); its matrix
        # carries the opposite shift so that both renderers agree with K.
        self._tiny_projection_list = self._gl_projection(self.cx - 0.5, self.cy + 0.5)

    @property
    def projection_matrix(self) -> list[float]:
        """PyBullet's (OpenGL, column-major) projection matrix derived from K, near and far
        (the one the EGL renderer uses; TinyRenderer's carries a half-pixel correction)."""
        return list(self._projection_list)

    # -- pose --------------------------------------------------------------------------------------
    def look_at(self, eye, target, up=(0.0, 0.0, 1.0)) -> Camera:
        """Fix the camera at ``eye`` looking at ``target`` (world, metres); returns ``self``."""
        T = np.eye(4)
        T[:3, :3] = look_at_rotation(eye, target, up)
        T[:3, 3] = eye
        self._T_world_cam = T
        self._mount = None
        return self

    def set_pose(self, position, quaternion) -> Camera:
        """Fix the camera at ``position`` with orientation ``quaternion`` (x, y, z, w) of its
        OpenCV frame in the world; returns ``self``."""
        self._T_world_cam = _transform(position, quaternion)
        self._mount = None
        return self

    def mount(self, body: int, link: int, position=(0.0, 0.0, 0.0), quaternion=(0.0, 0.0, 0.0, 1.0)) -> Camera:
        """Mount the camera on ``link`` of ``body`` (link -1: the base): its OpenCV frame
        sits at ``position``/``quaternion`` in the link's URDF frame and follows the link
        (the pose is recomputed at every `render` or `update`). Returns ``self``."""
        self._mount = (int(body), int(link), _transform(position, quaternion))
        return self

    @property
    def mounted(self) -> bool:
        return self._mount is not None

    def update(self, world) -> np.ndarray:
        """Recompute a mounted camera's pose from ``world``; returns ``T_cam_world``."""
        if self._mount is not None:
            body, link, offset = self._mount
            cid = world.id
            if link < 0:
                pos, orn = pb.getBasePositionAndOrientation(body, physicsClientId=cid)
                info = pb.getDynamicsInfo(body, -1, physicsClientId=cid)
                T_world_link = _transform(pos, orn) @ _inverse(_transform(info[3], info[4]))
            else:
                state = pb.getLinkState(body, link, computeForwardKinematics=1, physicsClientId=cid)
                T_world_link = _transform(state[4], state[5])
            self._T_world_cam = T_world_link @ offset
        return self.T_cam_world

    @property
    def T_world_cam(self) -> np.ndarray:
        """4x4 pose of the OpenCV camera frame in the world (camera -> world)."""
        return self._T_world_cam.copy()

    @property
    def T_cam_world(self) -> np.ndarray:
        """4x4 world -> OpenCV camera frame (x right, y down, z forward) extrinsics."""
        T = self._T_world_cam  # a new array at every pose change, never changed in place
        cached = self._T_cam_world_cache
        if cached is None or cached[0] is not T:
            cached = self._T_cam_world_cache = (T, _inverse(T))
        return cached[1].copy()

    @property
    def position(self) -> np.ndarray:
        return self._T_world_cam[:3, 3].copy()

    @property
    def view_matrix(self) -> list[float]:
        """PyBullet's (OpenGL, column-major) view matrix: ``diag(1, -1, -1, 1) @ T_cam_world``."""
        return (_CV_TO_GL @ self.T_cam_world).flatten(order="F").tolist()

    # -- geometry ----------------------------------------------------------------------------------
    def to_camera(self, points_world) -> np.ndarray:
        """World points (N, 3) in the OpenCV camera frame (N, 3)."""
        p = np.atleast_2d(np.asarray(points_world, dtype=float))
        T = self.T_cam_world
        return p @ T[:3, :3].T + T[:3, 3]

    def project(self, points_world) -> np.ndarray:
        """Pixel coordinates (N, 2) as ``(u, v)`` of world points (N, 3); points at or behind
        the camera plane (z <= 0) give NaN."""
        pc = self.to_camera(points_world)
        z = pc[:, 2]
        with np.errstate(divide="ignore", invalid="ignore"):
            u = np.where(z > 0, self.fx * pc[:, 0] / z + self.cx, np.nan)
            v = np.where(z > 0, self.fy * pc[:, 1] / z + self.cy, np.nan)
        return np.stack([u, v], axis=1)

    def deproject(self, depth: np.ndarray, mask: np.ndarray | None = None, frame: str = "world") -> np.ndarray:
        """Point cloud (N, 3) of a depth image from this camera, in the ``world`` (default)
        or ``camera`` frame; pixels at ``far`` (nothing hit) and outside ``mask`` are dropped."""
        if frame not in ("world", "camera"):
            raise ValueError(f"frame must be 'world' or 'camera', got {frame!r}.")
        keep = np.asarray(depth) < self.far * (1.0 - 1e-6)
        if mask is not None:
            keep &= np.asarray(mask, dtype=bool)
        pts = depth_to_points(depth, self.K, keep)
        if frame == "camera":
            return pts
        T = self._T_world_cam
        return pts @ T[:3, :3].T + T[:3, 3]

    # -- rendering -----------------------------------------------------------------------------------
    def render(self, world, segmentation: bool = True) -> CameraImage:
        """Render ``world`` (a `~robot_env.sim.World`) from this camera: RGB, metric depth and,
        with ``segmentation``, the body id and link index of every pixel."""
        if self._mount is not None:
            self.update(world)
        if self.renderer == "egl":
            enable_egl(world)
            renderer, projection = pb.ER_BULLET_HARDWARE_OPENGL, self._projection_list
        else:
            renderer, projection = pb.ER_TINY_RENDERER, self._tiny_projection_list
        flags = pb.ER_SEGMENTATION_MASK_OBJECT_AND_LINKINDEX if segmentation else pb.ER_NO_SEGMENTATION_MASK
        W, H = self.width, self.height
        _, _, rgba, zbuf, seg = pb.getCameraImage(
            W, H, self.view_matrix, projection, renderer=renderer, flags=flags, physicsClientId=world.id
        )
        rgb = np.asarray(rgba, dtype=np.uint8).reshape(H, W, 4)[:, :, :3].copy()
        depth = buffer_to_depth(np.asarray(zbuf).reshape(H, W), self.near, self.far)
        body = link = None
        if segmentation:
            body, link = decode_segmentation(np.asarray(seg).reshape(H, W))
        return CameraImage(rgb=rgb, depth=depth, body=body, link=link)

    def __repr__(self) -> str:
        where = "mounted" if self.mounted else f"at {np.round(self.position, 3).tolist()}"
        return (f"Camera({self.name!r}, {self.width}x{self.height}, fx={self.fx:.2f}, fy={self.fy:.2f}, "
                f"cx={self.cx:.2f}, cy={self.cy:.2f}, {where}, renderer={self.renderer!r})")


def buffer_to_depth(zbuf: np.ndarray, near: float, far: float) -> np.ndarray:
    """Metric depth (float32, metres along the optical axis) from PyBullet's depth buffer."""
    d = np.asarray(zbuf, dtype=np.float64)
    return (far * near / (far - (far - near) * d)).astype(np.float32)


def decode_segmentation(seg: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Body ids and link indices (int32, -1 background) from a mask rendered with
    ``ER_SEGMENTATION_MASK_OBJECT_AND_LINKINDEX`` (``body + ((link + 1) << 24)``)."""
    s = np.asarray(seg).astype(np.int64)
    background = s < 0
    body = np.where(background, -1, s & _SEG_BODY_MASK).astype(np.int32)
    link = np.where(background, -1, (s >> 24) - 1).astype(np.int32)
    return body, link


def depth_to_points(depth: np.ndarray, K: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """Camera-frame points (N, 3) (OpenCV frame) of the pixels of ``depth`` selected by ``mask``
    (all finite, positive depths by default), with pixel centres at integer coordinates."""
    depth = np.asarray(depth, dtype=np.float64)
    H, W = depth.shape
    keep = np.isfinite(depth) & (depth > 0)
    if mask is not None:
        keep &= np.asarray(mask, dtype=bool)
    v, u = np.nonzero(keep)
    z = depth[v, u]
    x = (u - K[0, 2]) / K[0, 0] * z
    y = (v - K[1, 2]) / K[1, 1] * z
    return np.stack([x, y, z], axis=1)


# -- the named scene cameras -----------------------------------------------------------------------
FOV_Y = 50.0  #: vertical field of view (degrees) of the named cameras

# (azimuth, elevation) in degrees of the fixed cameras around the workspace's look point
_FIXED_VIEWS = {"front": (0.0, 40.0), "side": (90.0, 20.0), "top": (0.0, 90.0)}


def look_point(arm) -> np.ndarray:
    """The point the fixed scene cameras look at: above the base, at the arm's working height."""
    reach = arm.spec.reach
    return np.array([0.0, 0.0, 0.15 if arm.n == 2 else 0.4 * reach])


def _wrist_offset(arm) -> tuple[tuple, tuple]:
    """Position and quaternion of the wrist camera in the end-effector link's frame.

    armlab's arms have their tool frame's x axis along the forearm: the camera sits 12 cm
    back and 8 cm above the tool point, looking ahead and down past it. The pybullet_data
    arms' tool frames point z out of the flange: the camera sits 8 cm off-axis, level
    with the tool frame, looking along z.
    """
    if arm.spec.source == "armlab":
        eye, target, up = (-0.12, 0.0, 0.08), (0.2, 0.0, -0.08), (0.0, 0.0, 1.0)
    else:
        eye, target, up = (0.08, 0.0, 0.0), (0.0, 0.0, 0.3), (1.0, 0.0, 0.0)
    return eye, _quaternion(look_at_rotation(eye, target, up))


def named_camera(name: str, arm, width: int = 128, height: int = 128, renderer: str = "tiny",
                 near: float = 0.01, far: float = 10.0) -> Camera:
    """One of the scene cameras every tool shares, for an `~robot_env.robots.Arm`.

    ``front`` (from +x, 40 degrees above the horizon), ``side`` (from +y, 20 degrees up)
    and ``top`` (straight down, world +x at the bottom of the image) are fixed and placed
    from the robot's reach; ``wrist`` is mounted on the end-effector link. All have a
    50 degree vertical field of view.
    """
    if name not in CAMERA_NAMES:
        raise ConfigError(f"unknown camera {name!r}; choose one of {', '.join(CAMERA_NAMES)}.")
    cam = Camera.from_fov(FOV_Y, width, height, near=near, far=far, renderer=renderer, name=name)
    if name == "wrist":
        position, quaternion = _wrist_offset(arm)
        return cam.mount(arm.body, arm.ee, position, quaternion)
    azimuth, elevation = (math.radians(a) for a in _FIXED_VIEWS[name])
    distance = 1.9 * arm.spec.reach
    target = look_point(arm)
    direction = np.array([math.cos(elevation) * math.cos(azimuth), math.cos(elevation) * math.sin(azimuth),
                          math.sin(elevation)])
    up = (-1.0, 0.0, 0.0) if name == "top" else (0.0, 0.0, 1.0)
    return cam.look_at(target + distance * direction, target, up)


__all__ = [
    "CAMERA_NAMES", "FOV_Y", "RENDERERS", "Camera", "CameraImage", "buffer_to_depth", "decode_segmentation",
    "depth_to_points", "enable_egl", "look_at_rotation", "look_point", "named_camera",
]
