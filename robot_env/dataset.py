"""Synthetic camera datasets: the arm on a table with a target object and distractors.

`generate` writes the format described in ``docs/dataset-format.md``: per frame an RGB PNG,
metric depth (uint16 millimetres PNG), instance segmentation (uint16 PNG) and a JSON label
(joints, end-effector pose, every object's 6-D pose and 2-D box, the target's pixel, K and
the OpenCV extrinsics); then a COCO ``instances.json`` and a ``manifest.json`` with the
SHA-256 of every file.

Determinism and scale
    Frame ``i`` draws everything from ``numpy.random.default_rng([seed, i, stream])``:
    stream 0 is the scene (arm, objects, colours, light, camera jitter), stream 1 the
    ``real`` style's camera effects. A frame therefore depends only on ``(seed, i,
    settings)``: any number of worker processes (``workers``), any shard split (``shard``)
    and any kill-and-resume produce byte-identical files, and ``style="real"`` with the same
    seed shows the same scene with the same 3-D labels as ``style="sim"`` (pairs for
    evaluation, although sim-to-real training is unpaired).

Reliability
    A frame counts as done when its label exists; the label is written last, to a
    temporary name moved into place, so a killed run never leaves a frame that looks done
    but is torn, and a restarted run regenerates exactly the frames without a label. The
    COCO file and the manifest are written the same way. `verify` re-checks checksums, counts and label consistency.

Poses from a trained policy
    With ``poses_from`` (a run folder of ``armlab train`` on the dataset's robot) the arm's
    poses are not random configurations but poses along rollouts of the run's deterministic
    policy (`build_pose_bank`). The bank is built once, before any frame, and stored as
    ``poses.npz`` in the dataset folder (listed in the manifest with its SHA-256); workers,
    shards and resumed runs read that file, so frame ``i`` stays a function of ``(seed, i,
    settings)``: it shows the pose ``default_rng([seed, i, POSE_STREAM])`` picks, and the rest
    of its scene is the one the same seed gives without ``poses_from``. The run's path and the
    hash of its model file are settings, so a folder started with one run refuses another.

The ``real`` style is a stand-in for a physical camera, so sim-to-real can be shown and
tested without photographs: textured table and floor, shadows, light falloff, vignetting,
a colour cast, blur, sensor noise, JPEG compression and barrel lens distortion (OpenCV).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import struct
import time
import zlib
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import cv2
import numpy as np
import pybullet as pb
from isal import isal_zlib

from robot_env.camera import Camera
from robot_env.robots import Arm
from robot_env.sim import World

FORMAT_VERSION = 1
CLASSES = ("cube", "cylinder", "sphere")  #: the target object's shape: the dataset's discrete label
CATEGORIES = ("robot",) + CLASSES  #: COCO categories (ids 1..4)
STYLES = ("sim", "real")
RANDOMIZE = ("colors", "textures", "light", "camera", "distractors", "background")
DEFAULT_RANDOMIZE = ("colors", "light", "camera", "distractors", "background")
SEG_BACKGROUND, SEG_TABLE, SEG_ROBOT = 0, 1, 2  #: fixed instance ids; objects follow from 3
POSES_FILE = "poses.npz"  #: the pose bank of a ``--poses-from`` dataset, in the dataset folder
POSE_SETTINGS = ("poses_from", "poses_model_sha256", "pose_episodes")
POSE_RATE = 24.0  #: poses recorded per simulated second along an open-loop signal
POSE_STREAM = 3  #: frame i's pick from the pose bank: default_rng([seed, i, POSE_STREAM])

TABLE_TOP = 0.30  #: z of the table surface (m); arm3's shoulder is at 0.6 m
TABLE_CENTER = (0.30, 0.0)
TABLE_HALF = (0.45, 0.55)

# target colour (always reddish) and the distractor palette (never red)
TARGET_RGB = (0.85, 0.12, 0.10)
PALETTE = (
    (0.10, 0.35, 0.85), (0.10, 0.70, 0.25), (0.95, 0.80, 0.10), (0.60, 0.20, 0.75),
    (0.10, 0.75, 0.80), (0.95, 0.95, 0.95), (0.20, 0.20, 0.20), (0.95, 0.55, 0.10),
)


class DatasetError(ValueError):
    """A dataset folder or option that cannot be used; the message says what and where."""


@dataclass
class DatasetConfig:
    """Everything that shapes the frames (recorded in the manifest)."""

    n: int = 1000
    size: int = 128
    seed: int = 0
    style: str = "sim"
    robot: str = "arm3"
    randomize: tuple[str, ...] = DEFAULT_RANDOMIZE
    max_distractors: int = 3
    object_size: float = 0.10  #: edge / diameter of the objects (m)
    fov: float = 45.0  #: vertical field of view (degrees)
    camera_distance: float = 1.05
    camera_elevation: float = 45.0
    jpeg_quality: tuple[int, int] = (70, 90)
    dist_coeffs: tuple[float, ...] = (-0.18, 0.05, 0.0, 0.0, 0.0)  #: the real style's lens (OpenCV k1 k2 p1 p2 k3)
    #: a `armlab train` run folder: arm poses come from its policy's rollouts (see `build_pose_bank`)
    poses_from: str | None = None
    poses_model_sha256: str | None = None  #: SHA-256 of the run's model file (filled in by `resolve_poses`)
    pose_episodes: int = 64  #: rollouts of the policy that fill the pose bank

    def validate(self) -> DatasetConfig:
        if int(self.n) < 1:
            raise DatasetError(f"--n must be at least 1, got {self.n}.")
        if not 16 <= int(self.size) <= 1024:
            raise DatasetError(f"--size must be between 16 and 1024 pixels, got {self.size}.")
        if self.style not in STYLES:
            raise DatasetError(f"unknown style {self.style!r}; choose one of {', '.join(STYLES)}.")
        bad = [r for r in self.randomize if r not in RANDOMIZE]
        if bad:
            raise DatasetError(
                f"unknown randomization {bad[0]!r}; choose from {', '.join(RANDOMIZE)}, 'all' or 'none'."
            )
        if self.robot != "arm3":
            raise DatasetError(f"the dataset scene is built for arm3, got robot {self.robot!r}.")
        if not 0 <= int(self.max_distractors) <= 6:
            raise DatasetError(f"--max-distractors must be between 0 and 6, got {self.max_distractors}.")
        if self.poses_from is not None and not 1 <= int(self.pose_episodes) <= 100_000:
            raise DatasetError(f"--pose-episodes must be between 1 and 100000, got {self.pose_episodes}.")
        self.n, self.size, self.seed = int(self.n), int(self.size), int(self.seed)
        self.pose_episodes = int(self.pose_episodes)
        self.randomize = tuple(r for r in RANDOMIZE if r in self.randomize)
        return self

    def settings(self) -> dict:
        d = asdict(self)
        d["randomize"] = list(self.randomize)
        d["jpeg_quality"] = list(self.jpeg_quality)
        d["dist_coeffs"] = list(self.dist_coeffs)
        if self.poses_from is None:  # the random-configuration datasets keep their settings (and bytes)
            for key in POSE_SETTINGS:
                d.pop(key)
        return d


def parse_randomize(text: str) -> tuple[str, ...]:
    """``"colors,light"`` / ``"all"`` / ``"none"`` -> a tuple of randomization names."""
    text = text.strip()
    if text == "all":
        return RANDOMIZE
    if text in ("none", ""):
        return ()
    return tuple(t.strip() for t in text.split(",") if t.strip())


def _uniform(rng: np.random.Generator, low, high, size=None):
    """``rng.uniform(low, high, size)``: the same draws and the same values (``low + (high -
    low) * u`` with ``u = rng.random(size)``, numpy's own formula), without its argument
    handling, which costs ~15 us a call for array bounds."""
    return low + (high - low) * rng.random(size)


# -- procedural textures (generated, never downloaded) -------------------------------------------
def make_texture(kind: str, rng: np.random.Generator, size: int = 128) -> np.ndarray:
    """An RGB uint8 texture: ``checker``, ``noise``, ``stripes`` or ``wood``."""
    base = rng.uniform(0.3, 0.9, 3)
    other = np.clip(base * rng.uniform(0.5, 0.8), 0, 1)
    yy, xx = np.mgrid[0:size, 0:size] / size
    if kind == "checker":
        n = rng.integers(4, 12)
        t = ((np.floor(xx * n) + np.floor(yy * n)) % 2)[..., None]
    elif kind == "stripes":
        n, angle = rng.integers(4, 16), rng.uniform(0, math.pi)
        t = (0.5 + 0.5 * np.sin(2 * math.pi * n * (xx * math.cos(angle) + yy * math.sin(angle))))[..., None]
    elif kind == "wood":
        warp = cv2.GaussianBlur(rng.standard_normal((size, size)), (0, 0), size / 16) * 6
        t = (0.5 + 0.5 * np.sin(2 * math.pi * (yy * rng.integers(6, 14) + warp)))[..., None] ** 2
    else:  # noise
        t = cv2.GaussianBlur(rng.standard_normal((size, size)), (0, 0), rng.uniform(1, 4))
        t = ((t - t.min()) / (np.ptp(t) + 1e-9))[..., None]
    img = base * (1 - t) + other * t
    img = img + rng.normal(0, 0.02, img.shape)
    return (np.clip(img, 0, 1) * 255).astype(np.uint8)


# -- the scene ---------------------------------------------------------------------------------------
@dataclass
class Frame:
    rgb: np.ndarray
    depth_mm: np.ndarray
    seg: np.ndarray
    label: dict = field(default_factory=dict)
    rles: list | None = None  #: COCO RLE masks of ``label["objects"]``, in order (computed with the boxes)


class Scene:
    """One PyBullet world with the arm, a table, a floor and a pool of objects, reused for
    every frame a process renders (bodies are moved and recoloured, never rebuilt).

    ``poses`` is the pose bank of a ``poses_from`` config (`build_pose_bank` or
    `load_pose_bank`): each frame then shows one of its poses instead of a random one."""

    def __init__(self, cfg: DatasetConfig, poses: dict | None = None) -> None:
        self.cfg = cfg.validate()
        if (poses is None) != (cfg.poses_from is None):
            raise DatasetError("a Scene takes a pose bank exactly when its config has poses_from.")
        self.world = World(floor=True)
        c = self.world.client
        self.cid = self.world.id
        self.arm = Arm(self.world, cfg.robot)
        self._poses = None
        if poses is not None:
            q, qd = poses["joint_positions"], poses["joint_velocities"]
            if q.ndim != 2 or q.shape[1] != self.arm.n or q.shape != qd.shape or len(q) == 0:
                raise DatasetError(f"the pose bank holds joint arrays of shapes {q.shape} and {qd.shape}, "
                                   f"not N x {self.arm.n} for {cfg.robot}.")
            self._poses = (q, qd)
        half = [TABLE_HALF[0], TABLE_HALF[1], TABLE_TOP / 2]
        vis = c.createVisualShape(pb.GEOM_BOX, halfExtents=half, rgbaColor=[0.55, 0.45, 0.35, 1])
        self.table = c.createMultiBody(0, -1, vis, [TABLE_CENTER[0], TABLE_CENTER[1], TABLE_TOP / 2])
        self.floor = self.world.body("floor")
        s = cfg.object_size
        self.pool: dict[str, list[int]] = {}
        for shape in CLASSES:
            if shape == "cube":
                vis_kwargs = {"shapeType": pb.GEOM_BOX, "halfExtents": [s / 2] * 3}
            elif shape == "cylinder":
                vis_kwargs = {"shapeType": pb.GEOM_CYLINDER, "radius": s / 2, "length": s}
            else:
                vis_kwargs = {"shapeType": pb.GEOM_SPHERE, "radius": s / 2}
            self.pool[shape] = []
            for _ in range(1 + cfg.max_distractors):
                v = c.createVisualShape(rgbaColor=[1, 1, 1, 1], **vis_kwargs)
                self.pool[shape].append(c.createMultiBody(0, -1, v, [0, 0, -5]))
        self.robot_links = [-1] + list(range(c.getNumJoints(self.arm.body)))
        self.camera = Camera.from_fov(cfg.fov, cfg.size, cfg.size, near=0.05, far=5.0, name="dataset")
        self.look = np.array([TABLE_CENTER[0] + 0.05, 0.0, TABLE_TOP + 0.08])
        self._textures: list[int] = []
        if "textures" in cfg.randomize or cfg.style == "real":
            self._textures = self._texture_bank()
        self._distortion_maps = None
        self._placed: list[int] = []
        self._looks: tuple | None = None  #: the table, floor and arm looks last sent to PyBullet
        # body id -> instance id, applied by cv2.LUT to the ids as uint8 (nothing hit, -1, reads
        # entry 255); the scene has a few dozen bodies at most (--max-distractors <= 6)
        if c.getNumBodies() >= 255:
            raise DatasetError(f"the dataset scene has {c.getNumBodies()} bodies; at most 254 fit its id table.")
        self._lut = np.zeros(256, np.uint16)

    # -- set-up helpers
    def _texture_bank(self) -> list[int]:
        """Eight procedural textures drawn from the dataset seed (identical in every worker),
        written to a private temporary folder (PyBullet loads textures from files) and loaded once."""
        import tempfile

        rng = np.random.default_rng([self.cfg.seed, 2**31 - 1])
        folder = Path(tempfile.mkdtemp(prefix="armlab-textures-"))
        ids = []
        try:
            for k in range(8):
                kind = ("wood", "checker", "noise", "stripes")[k % 4]
                path = folder / f"tex_{k}.png"
                cv2.imwrite(str(path), cv2.cvtColor(make_texture(kind, rng), cv2.COLOR_RGB2BGR))
                ids.append(self.world.client.loadTexture(str(path)))
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        return ids

    def close(self) -> None:
        self.world.close()

    # -- one frame
    def _sample_arm(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        arm = self.arm
        lo, hi = arm.lower.copy(), arm.upper.copy()
        lo[0], hi[0] = -1.4, 1.4  # face the table and the camera
        links = list(range(1, pb.getNumJoints(arm.body, physicsClientId=self.cid)))
        for _ in range(200):
            q = _uniform(rng, lo, hi, arm.n)
            arm.reset_joints(q)
            states = pb.getLinkStates(arm.body, links, computeForwardKinematics=1, physicsClientId=self.cid)
            if min(s[4][2] for s in states) > TABLE_TOP + 0.04:
                break
        qd = _uniform(rng, -1.0, 1.0, arm.n) * arm.spec.velocity_range
        arm.reset_joints(q, qd)
        return q, qd

    def _bank_pose(self, index: int, stream: int) -> tuple[np.ndarray, np.ndarray]:
        """Put the arm in the pose bank's pose drawn by ``default_rng([seed, index, stream])``."""
        q_bank, qd_bank = self._poses
        k = int(np.random.default_rng([self.cfg.seed, index, stream]).integers(len(q_bank)))
        q, qd = q_bank[k], qd_bank[k]
        self.arm.reset_joints(q, qd)
        return q, qd

    def _sample_objects(self, rng: np.random.Generator, ee_xy: np.ndarray) -> list[dict]:
        cfg = self.cfg
        n_distract = int(rng.integers(0, cfg.max_distractors + 1)) if "distractors" in cfg.randomize else 0
        target_class = int(rng.integers(len(CLASSES)))
        shapes = [target_class] + [int(rng.integers(len(CLASSES))) for _ in range(n_distract)]
        placed: list[np.ndarray] = []
        objects = []
        used = {c: 0 for c in CLASSES}
        for k, cls in enumerate(shapes):
            for _ in range(100):
                r = _uniform(rng, 0.22, 0.48)
                a = _uniform(rng, -1.1, 1.1)
                xy = np.array([r * math.cos(a), r * math.sin(a)])
                if all(math.hypot(xy[0] - p[0], xy[1] - p[1]) > 1.4 * cfg.object_size for p in placed):
                    break
            placed.append(xy)
            yaw = _uniform(rng, -math.pi, math.pi)
            if k == 0:
                color = np.array(TARGET_RGB) + (_uniform(rng, -0.08, 0.08, 3) if "colors" in cfg.randomize else 0)
            else:
                color = np.array(PALETTE[int(rng.integers(len(PALETTE)))])
                if "colors" in cfg.randomize:
                    color = color + _uniform(rng, -0.08, 0.08, 3)
            name = CLASSES[cls]
            body = self.pool[name][used[name]]
            used[name] += 1
            z = TABLE_TOP + cfg.object_size / 2
            quat = pb.getQuaternionFromEuler([0, 0, yaw])
            objects.append({"class_id": cls, "category": name, "body": body, "position": [xy[0], xy[1], z],
                            "quaternion": list(quat), "color": np.clip(color, 0, 1).tolist(),
                            "name": "target" if k == 0 else f"distractor_{k}", "is_target": k == 0})
        return objects

    def frame(self, index: int) -> Frame:
        """Render frame ``index`` (a pure function of the seed, the index and the settings)."""
        cfg = self.cfg
        rng = np.random.default_rng([cfg.seed, index, 0])
        c = self.world.client
        q, qd = self._sample_arm(rng)
        if self._poses is not None:  # the random draw above keeps the rest of the scene that of the seed
            q, qd = self._bank_pose(index, POSE_STREAM)
        ee_state = pb.getLinkState(self.arm.body, self.arm.ee, computeForwardKinematics=1, physicsClientId=self.cid)
        objects = self._sample_objects(rng, np.array(ee_state[4][:2]))
        # park the previous frame's objects that this frame does not use under the floor,
        # then place this frame's
        used = {o["body"] for o in objects}
        for b in self._placed:
            if b not in used:
                c.resetBasePositionAndOrientation(b, [0, 0, -5], [0, 0, 0, 1])
        self._placed = [o["body"] for o in objects]
        for o in objects:
            c.resetBasePositionAndOrientation(o["body"], o["position"], o["quaternion"])
            c.changeVisualShape(o["body"], -1, rgbaColor=o["color"] + [1.0])
        # colours, textures, light, camera
        rand = cfg.randomize
        table_rgb = _uniform(rng, 0.35, 0.85, 3) if "colors" in rand else np.array([0.55, 0.45, 0.35])
        floor_rgb = _uniform(rng, 0.2, 0.7, 3) if "background" in rand else np.array([0.45, 0.45, 0.5])
        table_tex = floor_tex = -1
        if self._textures:
            if cfg.style == "real" or "textures" in rand:
                table_tex = self._textures[int(rng.integers(0, 4)) * 2]  # wood / noise kinds
                floor_tex = self._textures[int(rng.integers(0, 4)) * 2 + 1]  # checker / stripes kinds
            else:
                rng.integers(0, 4, 2)
        else:
            rng.integers(0, 4, 2)
        robot_rgb = _uniform(rng, 0.5, 0.9, 3) if "colors" in rand else np.array([0.7, 0.7, 0.72])
        # the looks of table, floor and arm, sent to PyBullet only when they change
        looks = (tuple(table_rgb.tolist()), table_tex, tuple(floor_rgb.tolist()), floor_tex, tuple(robot_rgb.tolist()))
        if looks != self._looks:
            c.changeVisualShape(self.table, -1, rgbaColor=list(table_rgb) + [1], textureUniqueId=table_tex)
            c.changeVisualShape(self.floor, -1, rgbaColor=list(floor_rgb) + [1], textureUniqueId=floor_tex)
            for link in self.robot_links:
                c.changeVisualShape(self.arm.body, link, rgbaColor=list(robot_rgb) + [1])
            self._looks = looks
        if "light" in rand:
            az, el = _uniform(rng, -math.pi, math.pi), _uniform(rng, 0.5, 1.3)
            light_dir = [math.cos(el) * math.cos(az), math.cos(el) * math.sin(az), math.sin(el)]
            light_rgb = (1.0 - _uniform(rng, 0, 0.25, 3)).tolist()
        else:
            rng.uniform(size=5)
            light_dir, light_rgb = [0.4, 0.3, 1.0], [1.0, 1.0, 1.0]
        az = math.radians(_uniform(rng, -12, 12) if "camera" in rand else 0.0)
        el = math.radians(cfg.camera_elevation + (_uniform(rng, -6, 6) if "camera" in rand else 0.0))
        dist = cfg.camera_distance * (_uniform(rng, 0.93, 1.07) if "camera" in rand else 1.0)
        look = self.look + (_uniform(rng, -0.03, 0.03, 3) if "camera" in rand else 0.0)
        eye = look + dist * np.array([math.cos(el) * math.cos(az), math.cos(el) * math.sin(az), math.sin(el)])
        self.camera.look_at(eye, look)
        # render
        real = cfg.style == "real"
        W = H = cfg.size
        self.render_args = dict(
            width=W, height=H, viewMatrix=self.camera.view_matrix,
            projectionMatrix=self.camera._tiny_projection_list, renderer=pb.ER_TINY_RENDERER,
            flags=0, lightDirection=light_dir, lightColor=light_rgb,
            shadow=1 if real else 0, lightAmbientCoeff=0.55, lightDiffuseCoeff=0.5, lightSpecularCoeff=0.08,
            physicsClientId=self.cid,
        )  # kept: `armlab bench dataset` times bare getCameraImage calls with exactly these
        _, _, rgba, zbuf, seg = pb.getCameraImage(**self.render_args)
        rgb = cv2.cvtColor(np.asarray(rgba, dtype=np.uint8).reshape(H, W, 4), cv2.COLOR_RGBA2RGB)
        zb = np.asarray(zbuf, dtype=np.float32).reshape(H, W)
        near, far = self.camera.near, self.camera.far
        depth_mm = np.multiply(zb, -(far - near), dtype=np.float32)  # metric z in millimetres, in place:
        depth_mm += far  # 1000 far near / (far - (far - near) zb)
        np.divide(1000.0 * far * near, depth_mm, out=depth_mm)
        depth_mm[zb >= 0.99999] = 0.0  # nothing hit
        depth_mm += 0.5
        depth_mm = np.clip(depth_mm, 0, 65535, out=depth_mm).astype(np.uint16)
        # body id -> instance id through a lookup table (one pass over the image)
        lut = self._lut
        lut[:] = SEG_BACKGROUND
        lut[self.table] = SEG_TABLE
        lut[self.arm.body] = SEG_ROBOT
        for k, o in enumerate(objects):
            o["id"] = SEG_ROBOT + 1 + k
            lut[o["body"]] = o["id"]
        body = np.asarray(seg, dtype=np.int32).reshape(H, W)
        inst = cv2.LUT(body.astype(np.uint8), lut)
        if "background" in rand:
            # the far background (nothing hit) in one random colour
            bg = (_uniform(rng, 0, 1, 3) * 255).astype(np.uint8)
            rgb[body < 0] = bg
        dist_coeffs = np.zeros(5)
        if real:
            rgb, depth_mm, inst = self._real_camera(rgb, depth_mm, inst, np.random.default_rng([cfg.seed, index, 1]))
            dist_coeffs = np.array(cfg.dist_coeffs, dtype=np.float64)
        rles, boxes, areas = instance_masks(inst, [SEG_ROBOT] + [o["id"] for o in objects])
        label = self._label(index, q, qd, ee_state, objects, boxes, areas, dist_coeffs)
        return Frame(rgb=rgb, depth_mm=depth_mm, seg=inst, label=label, rles=rles)

    def sweep(self, index: int, n_frames: int = 48) -> list[np.ndarray]:
        """RGB frames of frame ``index``'s scene while the arm moves smoothly to another
        configuration (the scene, light, camera and style effects stay those of the frame):
        a short "rollout" in the dataset's look, for translation videos."""
        self.frame(index)
        q0, _ = self.arm.joint_state()
        if self._poses is not None:
            q1, _ = self._bank_pose(index, 2)
        else:
            q1, _ = self._sample_arm(np.random.default_rng([self.cfg.seed, index, 2]))
        args = dict(self.render_args)
        W = H = self.cfg.size
        frames = []
        for k in range(n_frames):
            s = 0.5 - 0.5 * math.cos(math.pi * k / max(1, n_frames - 1))  # ease in and out
            self.arm.reset_joints(q0 + s * (q1 - q0))
            rgb = np.asarray(pb.getCameraImage(**args)[2], dtype=np.uint8).reshape(H, W, 4)[:, :, :3].copy()
            if self.cfg.style == "real":
                inst = np.zeros((H, W), np.uint16)
                rgb = self._real_camera(rgb, np.zeros((H, W), np.uint16), inst,
                                        np.random.default_rng([self.cfg.seed, index, 1]))[0]
            frames.append(rgb)
        return frames

    # -- the real style's camera
    def _maps(self):
        if self._distortion_maps is None:
            W = H = self.cfg.size
            K = self.camera.K
            uu, vv = np.meshgrid(np.arange(W, dtype=np.float64), np.arange(H, dtype=np.float64))
            pts = np.stack([uu.ravel(), vv.ravel()], 1).reshape(-1, 1, 2)
            # for every pixel of the distorted output: where it comes from in the ideal render
            und = cv2.undistortPoints(pts, K, np.array(self.cfg.dist_coeffs), P=K).reshape(H, W, 2)
            self._distortion_maps = (und[..., 0].astype(np.float32), und[..., 1].astype(np.float32))
        return self._distortion_maps

    def _real_camera(self, rgb, depth_mm, inst, rng):
        H, W = inst.shape
        mx, my = self._maps()
        rgb = cv2.remap(rgb, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        depth_mm = cv2.remap(depth_mm, mx, my, cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        inst = cv2.remap(inst, mx, my, cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        img = rgb.astype(np.float32) / 255.0
        yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
        r2 = ((xx - (W - 1) / 2) ** 2 + (yy - (H - 1) / 2) ** 2) / (0.5 * (W**2 + H**2) / 2)
        vignette = 1.0 - rng.uniform(0.25, 0.4) * r2
        cx, cy = rng.uniform(0.2, 0.8) * W, rng.uniform(0.0, 0.5) * H  # a lamp: light falloff
        falloff = 1.0 - rng.uniform(0.1, 0.25) * np.sqrt((xx - cx) ** 2 + (yy - cy) ** 2) / max(W, H)
        cast = np.array([1.16, 1.06, 0.92]) * rng.uniform(0.95, 1.05, 3)  # warm sensor, auto-exposure gain
        img = img * (vignette * falloff)[..., None] * cast[None, None, :].astype(np.float32)
        img = cv2.GaussianBlur(img, (0, 0), rng.uniform(0.5, 0.9) * W / 128)
        img = img + rng.normal(0, rng.uniform(0.01, 0.025), img.shape).astype(np.float32)
        out = (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)
        quality = int(rng.integers(self.cfg.jpeg_quality[0], self.cfg.jpeg_quality[1] + 1))
        ok, buf = cv2.imencode(".jpg", out, [cv2.IMWRITE_JPEG_QUALITY, quality])
        out = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
        return out, depth_mm, inst

    # -- labels
    def _label(self, index, q, qd, ee_state, objects, boxes, areas, dist_coeffs) -> dict:
        cfg, cam = self.cfg, self.camera
        W = H = cfg.size
        T = cam.T_cam_world
        K = cam.K
        target = objects[0]

        distorted = bool(np.any(dist_coeffs))

        def pixel(p):
            p_cam = (T @ np.array([p[0], p[1], p[2], 1.0]))[:3]
            if p_cam[2] <= 0:
                return None
            if not distorted:  # the pinhole projection, without OpenCV's call overhead
                return [float(K[0, 0] * p_cam[0] / p_cam[2] + K[0, 2]), float(K[1, 1] * p_cam[1] / p_cam[2] + K[1, 2])]
            img, _ = cv2.projectPoints(p_cam.reshape(1, 1, 3), np.zeros(3), np.zeros(3), K, dist_coeffs)
            return img.reshape(2).tolist()

        def bbox(k):  # of instance k of [robot, objects...]
            area = int(areas[k])
            return ([int(v) for v in boxes[k]] if area else [0, 0, 0, 0]), area

        entries = []
        base_pos, base_orn = pb.getBasePositionAndOrientation(self.arm.body, physicsClientId=self.cid)
        box, area = bbox(0)
        entries.append({"id": SEG_ROBOT, "name": "robot", "category": "robot", "category_id": 1, "is_target": False,
                        "position": list(base_pos), "quaternion": list(base_orn), "bbox": box, "area": area,
                        "color": None})
        for k, o in enumerate(objects, 1):
            box, area = bbox(k)
            entries.append({"id": o["id"], "name": o["name"], "category": o["category"],
                            "category_id": 2 + o["class_id"], "is_target": o["is_target"],
                            "position": [float(v) for v in o["position"]],
                            "quaternion": [float(v) for v in o["quaternion"]], "bbox": box, "area": area,
                            "color": [round(float(v), 4) for v in o["color"]]})
        uv = pixel(np.array(target["position"]))
        visible = uv is not None and -0.5 <= uv[0] <= W - 0.5 and -0.5 <= uv[1] <= H - 0.5 and entries[1]["area"] > 0
        uv = uv if uv is not None else [float("nan"), float("nan")]
        return {
            "frame": int(index), "style": cfg.style, "width": W, "height": H,
            "rgb": f"rgb/{index:06d}.png", "depth": f"depth/{index:06d}.png", "seg": f"seg/{index:06d}.png",
            "K": K.tolist(), "T_cam_world": T.tolist(), "dist_coeffs": [float(v) for v in dist_coeffs],
            "robot": cfg.robot, "joint_positions": [float(v) for v in q], "joint_velocities": [float(v) for v in qd],
            "ee_pose": {"position": list(ee_state[4]), "quaternion": list(ee_state[5])},
            "class_id": target["class_id"], "class_name": target["category"],
            "target": {"position": [float(v) for v in target["position"]], "pixel": uv,
                       "pixel_norm": [uv[0] / W, uv[1] / H], "visible": bool(visible)},
            "objects": entries,
        }


# -- writing ------------------------------------------------------------------------------------------
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_WRITE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_BINARY", 0)


def _write(path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` with bare system calls (a Python file object costs more
    than the write itself for the few kilobytes of a frame's file)."""
    fd = os.open(path, _WRITE_FLAGS, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    finally:
        os.close(fd)


def _atomic_write(path: str | Path, data: bytes) -> None:
    path = os.fspath(path)
    head, name = os.path.split(path)
    tmp = os.path.join(head, f".{name}.{os.getpid()}.tmp")
    _write(tmp, data)
    os.replace(tmp, path)


def _png_chunk(tag: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(data, zlib.crc32(tag)))


_PNG_END = _png_chunk(b"IEND", b"")


def _png(img: np.ndarray) -> bytes:
    """A PNG of ``img``: (H, W, 3) uint8 RGB, (H, W) uint8 or (H, W) uint16 grey.

    Written here rather than with ``cv2.imencode`` because the compression dominates: every
    row gets PNG's "Up" filter (each byte minus the byte above it) and goes into ISA-L's
    fastest deflate (level 0). On the sim renders that is as small as unfiltered rows at
    level 1 (+1 %) in 70 % of the time, and 14 % smaller on the noisy `real` style; zlib's
    level 1 takes about four times as long. Any PNG reader reads the files (OpenCV returns the
    RGB image as BGR, as for every colour PNG)."""
    if img.ndim == 3 and img.shape[2] == 3 and img.dtype == np.uint8:
        color_type, bit_depth = 2, 8
    elif img.ndim == 2 and img.dtype == np.uint8:
        color_type, bit_depth = 0, 8
    elif img.ndim == 2 and img.dtype == np.uint16:
        color_type, bit_depth = 0, 16
        img = img.astype(">u2")  # PNG stores 16-bit samples big-endian
    else:
        raise ValueError(f"cannot write a {img.dtype} image of shape {img.shape} as PNG")
    h, w = img.shape[:2]
    flat = np.ascontiguousarray(img).reshape(h, -1).view(np.uint8)
    rows = np.empty((h, 1 + flat.shape[1]), np.uint8)
    rows[:, 0] = 2  # filter type "Up" on every row; the first row's "above" is zeros
    rows[0, 1:] = flat[0]
    np.subtract(flat[1:], flat[:-1], out=rows[1:, 1:])  # modulo 256, as PNG's filters are
    header = struct.pack(">IIBBBBB", w, h, bit_depth, color_type, 0, 0, 0)
    return b"".join((_PNG_SIGNATURE, _png_chunk(b"IHDR", header),
                     _png_chunk(b"IDAT", isal_zlib.compress(rows, 0)), _PNG_END))


# the bytes of json.dumps(label, separators=(",", ":")); labels are trees built here (no cycles
# to look for, which saves a sixth of the encoding time)
_LABEL_ENCODER = json.JSONEncoder(separators=(",", ":"), check_circular=False)


def label_bytes(label: dict) -> bytes:
    return (_LABEL_ENCODER.encode(label) + "\n").encode()  # key order is fixed by the code


def _frame_files(i: int) -> list[str]:
    return [f"rgb/{i:06d}.png", f"depth/{i:06d}.png", f"seg/{i:06d}.png", f"labels/{i:06d}.json"]


def instance_masks(inst: np.ndarray, ids) -> tuple[list[dict], np.ndarray, np.ndarray]:
    """COCO RLE masks, boxes (x, y, w, h) and pixel areas of the instances ``ids`` of the
    instance image ``inst``, in one pass (one mask per id, encoded together)."""
    from pycocotools import mask as mask_utils

    h, w = inst.shape
    masks = np.empty((h, w, len(ids)), np.uint8, order="F")  # the column-major stack pycocotools takes
    for k, i in enumerate(ids):
        np.equal(inst, i, out=masks[:, :, k].view(bool))
    rles = mask_utils.encode(masks)
    return rles, mask_utils.toBbox(rles), mask_utils.area(rles)


def _annotations(label: dict, seg: np.ndarray, rles: list | None = None) -> list[dict]:
    """COCO annotations (without ids) of one frame: box, area and RLE mask of every visible
    instance. ``rles`` are the masks of ``label["objects"]`` when already computed."""
    if rles is None:
        rles = instance_masks(seg, [o["id"] for o in label["objects"]])[0]
    anns = []
    for o, r in zip(label["objects"], rles):
        if o["area"] == 0:
            continue
        rle = {"size": list(r["size"]), "counts": r["counts"].decode("ascii")}
        anns.append({"image_id": label["frame"], "category_id": o["category_id"], "bbox": o["bbox"],
                     "area": int(o["area"]), "iscrowd": 0, "segmentation": rle,
                     "attributes": {"name": o["name"], "is_target": o["is_target"]}})
    return anns


def write_frame(out: Path, frame: Frame) -> dict:
    """Write one frame's three images, then its label: the commit marker, written atomically
    (temporary name, then ``os.replace``). A frame counts only once its label exists.

    Returns what the manifest and the COCO file need (checksums and annotations), computed
    from the bytes in memory so that finishing a dataset does not read it back."""
    i = frame.label["frame"]
    blobs = [_png(frame.rgb), _png(frame.depth_mm), _png(frame.seg), label_bytes(frame.label)]
    sums = {}
    root = os.fspath(out)
    for k, (rel, data) in enumerate(zip(_frame_files(i), blobs)):
        # images plainly (a frame without its label is regenerated whole, so a torn image never
        # counts), then the label atomically
        (_write if k < 3 else _atomic_write)(os.path.join(root, rel), data)
        sums[rel] = hashlib.sha256(data).hexdigest()
    return {"files": sums, "annotations": _annotations(frame.label, frame.seg, frame.rles), "label": frame.label}


def _frame_record(out: Path, i: int) -> dict:
    """`write_frame`'s record for a frame already on disk (a resumed run's earlier frames)."""
    label = json.loads((out / "labels" / f"{i:06d}.json").read_text())
    sums = {rel: _sha256(out / rel) for rel in _frame_files(i)}
    return {"files": sums, "annotations": _annotations(label, _read_png(out / label["seg"])), "label": label}


# -- pose banks: arm poses from a trained policy's rollouts ---------------------------------------
def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()).rstrip(".") or type(exc).__name__


def _rl():
    """``controllers.rl``, imported only for ``poses_from`` (it brings torch and stable-baselines3)."""
    try:
        from controllers import rl
    except ImportError as exc:
        raise DatasetError(f"--poses-from needs controllers.rl, which could not be imported ({_one_line(exc)}).") \
            from None
    return rl


def _make_env(env_id: str, env_kwargs: dict, run_dir: str):
    import robot_env
    from robot_env._quiet import quiet_c_output

    try:
        with quiet_c_output():
            return robot_env.make(env_id, **env_kwargs)
    except (TypeError, ValueError, FileNotFoundError) as exc:
        raise DatasetError(f"--poses-from: the env {env_id} of run {run_dir} cannot be built ({_one_line(exc)}).") \
            from None


def resolve_poses(cfg: DatasetConfig) -> DatasetConfig:
    """``cfg`` with ``poses_from`` made absolute and ``poses_model_sha256`` set to the hash of the
    run's model file (its final model, else its newest checkpoint), after checking that the folder
    is a training run of ``cfg.robot``. Without ``poses_from``, ``cfg`` itself."""
    if cfg.poses_from is None:
        return cfg
    rl = _rl()
    run_dir = Path(cfg.poses_from).expanduser().resolve()
    if not run_dir.is_dir():
        raise DatasetError(f"--poses-from {cfg.poses_from} is not a folder (give a run folder of `armlab train`).")
    try:
        config = rl.read_config(run_dir)
        env_id = rl.env_id_of(config["env_id"])
        model_path, _ = rl._model_file(run_dir, False, None)
    except (FileNotFoundError, ValueError) as exc:
        raise DatasetError(f"--poses-from: {_one_line(exc)}.") from None
    env_kwargs = dict(config.get("env_kwargs") or {})
    env = _make_env(env_id, env_kwargs, str(run_dir))
    try:
        robot = env.unwrapped.arm.spec.name
    finally:
        env.close()
    if robot != cfg.robot:
        raise DatasetError(f"--poses-from: run {run_dir} was trained on {robot}, but the dataset's robot is "
                           f"{cfg.robot}; use a run trained with --env-kwargs robot:{cfg.robot}.")
    return replace(cfg, poses_from=str(run_dir), poses_model_sha256=_sha256(model_path))


def _clear_of_table(body: int, cid: int) -> bool:
    """Every link above the dataset's table top (the test `Scene._sample_arm` applies)."""
    n = pb.getNumJoints(body, physicsClientId=cid)
    return min(pb.getLinkState(body, j, computeForwardKinematics=1, physicsClientId=cid)[4][2]
               for j in range(1, n)) > TABLE_TOP + 0.04


def build_pose_bank(cfg: DatasetConfig) -> dict[str, np.ndarray]:
    """Roll the deterministic policy of ``cfg.poses_from`` out for ``cfg.pose_episodes`` episodes
    of its own env (its env kwargs; episode seeds from ``SeedSequence([cfg.seed, POSE_STREAM])``)
    and record the arm's joint positions and velocities along the way: after every step of a
    closed-loop env, and every 1/`POSE_RATE` simulated seconds while an open-loop env's single
    action plays its signal (and at its end). Poses with a link below the dataset's table top
    (+4 cm; the reach envs have no table) are dropped, like the random configurations' misses.

    Returns the bank's arrays: ``joint_positions`` and ``joint_velocities`` (N x n),
    ``episode`` and ``time`` (N, seconds since the episode's start) and the provenance
    (``rolled_out``: poses recorded before the table test, ``model_sha256``, ``env_id``,
    ``algo``, ``seed``, ``episodes``)."""
    cfg = resolve_poses(cfg.validate()) if cfg.poses_model_sha256 is None else cfg
    rl = _rl()
    from robot_env._quiet import quiet_c_output
    from robot_env.envs import ReachSignalEnv

    try:
        with quiet_c_output():
            run = rl.load_run(cfg.poses_from)
    except (FileNotFoundError, ValueError) as exc:
        raise DatasetError(f"--poses-from: {_one_line(exc)}.") from None
    if _sha256(run.model_path) != cfg.poses_model_sha256:
        raise DatasetError(f"--poses-from: the model file {run.model_path} changed since the dataset was started; "
                           f"choose a new --out.")
    env_id = run.config["env_id"]
    env = _make_env(env_id, dict(run.config.get("env_kwargs") or {}), cfg.poses_from)
    u = env.unwrapped
    dt = u.world.timestep
    open_loop = isinstance(u, ReachSignalEnv)
    every = max(1, round(1.0 / (POSE_RATE * dt)))
    q_rows, qd_rows, episodes, times = [], [], [], []
    rolled_out = 0

    def record(ep: int, t: float) -> bool:
        nonlocal rolled_out
        q, qd = u.arm.joint_state()
        if not (np.isfinite(q).all() and np.isfinite(qd).all()):
            return False  # a physics blow-up ends the episode's poses
        rolled_out += 1
        if _clear_of_table(u.arm.body, u.world.id):
            q_rows.append(q)
            qd_rows.append(qd)
            episodes.append(ep)
            times.append(t)
        return True

    seeds = np.random.SeedSequence([cfg.seed, POSE_STREAM]).generate_state(cfg.pose_episodes)
    try:
        with rl._torch_threads(1):
            for ep, seed in enumerate(seeds.tolist()):
                obs, _ = env.reset(seed=int(seed))
                if open_loop:  # the one action is the whole signal: play it in chunks of `every` steps
                    x = np.clip(np.asarray(run.predict(obs), dtype=np.float64).reshape(-1), -1.0, 1.0)
                    rows, per = u.task.commands(x)
                    t, ok = 0, True
                    for row in rows:
                        left = per
                        while left and ok:
                            k = min(left, every - t % every)
                            u.arm.run((row,), k)
                            t, left = t + k, left - k
                            if t % every == 0 or t == u.task.n_steps:
                                ok = record(ep, t * dt)
                        if not ok:
                            break
                else:
                    done, k = False, 0
                    while not done:
                        obs, _, terminated, truncated, info = env.step(run.predict(obs))
                        k += 1
                        done = terminated or truncated
                        if "physics_error" in info or not record(ep, k * u.substeps * dt):
                            break
    finally:
        env.close()
    if not q_rows:
        raise DatasetError(f"--poses-from: none of the {rolled_out} poses along {cfg.pose_episodes} rollouts of "
                           f"{cfg.poses_from} keeps the arm above the dataset's table; use another run.")
    n = len(q_rows[0])
    return {
        "joint_positions": np.array(q_rows, dtype=np.float64).reshape(-1, n),
        "joint_velocities": np.array(qd_rows, dtype=np.float64).reshape(-1, n),
        "episode": np.array(episodes, dtype=np.int32), "time": np.array(times, dtype=np.float64),
        "rolled_out": np.array(rolled_out, dtype=np.int64), "model_sha256": np.array(cfg.poses_model_sha256),
        "env_id": np.array(env_id), "algo": np.array(run.config["algo"]),
        "seed": np.array(cfg.seed, dtype=np.int64), "episodes": np.array(cfg.pose_episodes, dtype=np.int64),
    }


def pose_bank_bytes(bank: dict[str, np.ndarray]) -> bytes:
    """The bank as an ``.npz`` with fixed member order and timestamps: the same bank, the same bytes."""
    import io
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as archive:
        for name in sorted(bank):
            member = io.BytesIO()
            np.lib.format.write_array(member, np.asarray(bank[name]), allow_pickle=False)
            archive.writestr(zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0)), member.getvalue())
    return buf.getvalue()


def load_pose_bank(path: str | Path) -> dict[str, np.ndarray]:
    """Read a pose bank file (``poses.npz``; nothing is unpickled)."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            bank = {k: z[k] for k in z.files}
    except FileNotFoundError:
        raise DatasetError(f"the pose bank {path} is missing; rerun generate with the same --poses-from.") from None
    except Exception as exc:  # zip or .npy damage
        raise DatasetError(f"the pose bank {path} is corrupt ({type(exc).__name__}); delete it and rerun.") from None
    if not {"joint_positions", "joint_velocities", "model_sha256", "seed", "episodes"} <= set(bank):
        raise DatasetError(f"{path} is not an armlab pose bank.")
    return bank


def _ensure_pose_bank(out: Path, cfg: DatasetConfig) -> dict[str, np.ndarray]:
    """The bank stored in ``out`` (a resumed run, or one put there for shards on several machines),
    checked against ``cfg``; else a new one, built and written atomically before any frame."""
    path = out / POSES_FILE
    if path.exists():
        bank = load_pose_bank(path)
        made = (str(bank["model_sha256"]), int(bank["seed"]), int(bank["episodes"]))
        if made != (cfg.poses_model_sha256, cfg.seed, cfg.pose_episodes):
            raise DatasetError(f"{path} was made from another model, seed or --pose-episodes; delete it or choose "
                               f"a new --out.")
        return bank
    bank = build_pose_bank(cfg)
    _atomic_write(path, pose_bank_bytes(bank))
    return bank


# -- generation: workers, shards, resume ----------------------------------------------------------
_WORKER: dict = {}


def _worker_init(cfg_dict: dict, out: str) -> None:
    from robot_env._quiet import quiet_c_output

    cfg = DatasetConfig(**cfg_dict)
    poses = load_pose_bank(Path(out) / POSES_FILE) if cfg.poses_from is not None else None  # the stored bank
    with quiet_c_output():
        _WORKER["scene"] = Scene(cfg, poses)
    _WORKER["out"] = Path(out)


def _worker_frames(indices: list[int]) -> dict[int, dict]:
    scene, out = _WORKER["scene"], _WORKER["out"]
    return {i: write_frame(out, scene.frame(i)) for i in indices}


def shard_range(n: int, shard: tuple[int, int] | None) -> range:
    """The frame indices of shard ``i`` of ``N``: contiguous, disjoint, covering ``range(n)``."""
    if shard is None:
        return range(n)
    i, N = shard
    if not (N >= 1 and 0 <= i < N):
        raise DatasetError(f"--shard must be i/N with 0 <= i < N, got {i}/{N}.")
    return range(i * n // N, (i + 1) * n // N)


def parse_shard(text: str | None) -> tuple[int, int] | None:
    if not text:
        return None
    try:
        i, N = (int(t) for t in text.split("/"))
    except ValueError:
        raise DatasetError(f"--shard must look like i/N (for example 0/4), got {text!r}.") from None
    shard_range(1, (i, N))  # validates
    return i, N


def _done(out: Path, i: int) -> bool:
    return (out / "labels" / f"{i:06d}.json").exists()


def _settings_file(out: Path) -> Path:
    return out / ".armlab-settings.json"


def generate(out: str | Path, cfg: DatasetConfig, workers: int = 1, shard: tuple[int, int] | None = None,
             progress: bool = True, chunk: int = 8, finalize: bool = True, only: list[int] | None = None) -> dict:
    """Write frames ``shard_range(cfg.n, shard)`` of the dataset into ``out`` and (with
    ``finalize``) its COCO file and manifest. Returns the manifest.

    Restarting with the same arguments after a kill regenerates only the missing frames;
    restarting with *different* settings into the same folder is refused (no mixing).
    With ``cfg.poses_from`` the pose bank is built first (`build_pose_bank`) and stored as
    ``poses.npz`` in ``out``, where every worker reads it (a resumed run reuses it).
    """
    cfg = resolve_poses(cfg.validate())
    out = Path(out)
    if int(workers) < 1:
        raise DatasetError(f"--workers must be at least 1, got {workers}.")
    indices = list(shard_range(cfg.n, shard))
    for sub in ("rgb", "depth", "seg", "labels"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    settings = {"settings": cfg.settings(), "shard": list(shard) if shard else None}
    sfile = _settings_file(out)
    if sfile.exists():
        previous = json.loads(sfile.read_text())
        if previous != settings:
            raise DatasetError(
                f"{out} already holds a dataset made with other settings; choose a new --out or delete that folder."
            )
    if cfg.poses_from is not None:  # before the settings are recorded: a run that fails here binds nothing
        _ensure_pose_bank(out, cfg)
    if not sfile.exists():
        _atomic_write(sfile, json.dumps(settings, sort_keys=True).encode())
    for sub in ("rgb", "depth", "seg", "labels"):  # partial writes of a killed run
        for stale in (out / sub).glob(".*.tmp"):
            stale.unlink(missing_ok=True)
    todo = [i for i in indices if not _done(out, i)] if only is None else list(only)
    from tqdm.auto import tqdm

    bar = tqdm(total=len(indices), initial=len(indices) - len(todo), desc=f"dataset {cfg.style}", unit="frame",
               disable=not progress)
    t0 = time.perf_counter()
    records: dict[int, dict] = {}
    if todo:
        chunks = [todo[k:k + chunk] for k in range(0, len(todo), chunk)]
        if workers == 1:
            _worker_init(asdict(cfg), str(out))
            try:
                for ch in chunks:
                    records.update(_worker_frames(ch))
                    bar.update(len(ch))
            finally:
                _WORKER.pop("scene").close()
        else:
            import multiprocessing as mp

            # fork is cheap and safe here (workers create their own PyBullet clients and use no
            # threads of the parent); spawn where fork does not exist
            ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
            with ctx.Pool(int(workers), initializer=_worker_init,
                          initargs=(asdict(cfg), str(out))) as pool:
                for done in pool.imap_unordered(_worker_frames, chunks):
                    records.update(done)
                    bar.update(len(done))
    bar.close()
    render_s = time.perf_counter() - t0
    manifest = finalize_dataset(out, cfg, indices, shard=shard, records=records) if finalize else {}
    manifest_timing = {"frames_rendered": len(todo), "render_seconds": render_s}
    return {**manifest, "_timing": manifest_timing}


def generate_ray(out: str | Path, cfg: DatasetConfig, workers: int = 2, shard: tuple[int, int] | None = None,
                 chunk: int = 32, address: str | None = None) -> dict:
    """`generate` on a Ray cluster: one Ray actor per worker renders chunks of frames into
    ``out`` (a folder every node can write: a shared filesystem). Frames depend only on
    ``(seed, i)``, so the files are identical to a local run. ``address`` is passed to
    ``ray.init`` (``None``: start or join a local cluster; ``"auto"``: the running cluster)."""
    try:
        import ray
    except ImportError:
        raise DatasetError("the Ray backend needs Ray: pip install 'armlab[distributed]'.") from None
    cfg = resolve_poses(cfg.validate())
    out = Path(out)
    # the folder, settings check, pose bank and resume bookkeeping are the local path's, with no frames to render
    pending = [i for i in shard_range(cfg.n, shard) if not _done(out, i)]
    generate(out, cfg, workers=1, shard=shard, progress=False, finalize=False, only=[])
    started = not ray.is_initialized()
    if started:
        ray.init(address=address, num_cpus=None if address else workers, include_dashboard=False,
                 log_to_driver=False, configure_logging=False)
    try:
        @ray.remote(num_cpus=1)
        class Renderer:
            def __init__(self, cfg_dict, out_dir):
                _worker_init(cfg_dict, out_dir)

            def render(self, indices):
                return _worker_frames(indices)

        actors = [Renderer.remote(asdict(cfg), str(out.resolve())) for _ in range(max(1, int(workers)))]
        chunks = [pending[k:k + chunk] for k in range(0, len(pending), chunk)]
        t0 = time.perf_counter()
        records: dict[int, dict] = {}
        for done in ray.get([actors[k % len(actors)].render.remote(ch) for k, ch in enumerate(chunks)]):
            records.update(done)
        render_s = time.perf_counter() - t0
    finally:
        if started:
            ray.shutdown()
    manifest = finalize_dataset(out, cfg, list(shard_range(cfg.n, shard)), shard=shard, records=records)
    return {**manifest, "_timing": {"frames_rendered": len(pending), "render_seconds": render_s}}


# -- COCO, manifest, merge, verify ------------------------------------------------------------------
def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _read_png(path: Path, flags=cv2.IMREAD_UNCHANGED) -> np.ndarray:
    img = cv2.imread(str(path), flags)
    if img is None:
        raise DatasetError(f"cannot read image {path}: missing or corrupt.")
    return img


def _coco(images: list[dict], annotations: list[dict]) -> dict:
    return {"info": {"description": "armlab synthetic camera dataset", "version": str(FORMAT_VERSION)},
            "images": images,
            "annotations": [{"id": k + 1, **a} for k, a in enumerate(annotations)],
            "categories": [{"id": k + 1, "name": n, "supercategory": "object" if k else "robot"}
                           for k, n in enumerate(CATEGORIES)]}


def _version() -> str:
    from robot_env import __version__

    return __version__


def finalize_dataset(out: Path, cfg: DatasetConfig, indices, shard=None, records: dict | None = None) -> dict:
    """Write ``instances.json`` and ``manifest.json`` for the frames ``indices`` in ``out``.

    ``records`` (frame -> `write_frame`'s return) saves reading back frames written in this
    process; frames not in it are read from disk."""
    out = Path(out)
    indices = list(indices)
    missing = [i for i in indices if not _done(out, i)]
    if missing:
        raise DatasetError(f"{out} is missing {len(missing)} frames (first: {missing[0]}); rerun generate to finish.")
    records = records or {}
    files, images, annotations, labels = {}, [], [], []
    for i in indices:
        rec = records[i] if i in records else _frame_record(out, i)
        files.update(rec["files"])
        lab = rec["label"]
        labels.append(lab)
        images.append({"id": i, "file_name": lab["rgb"], "width": lab["width"], "height": lab["height"]})
        annotations.extend(rec["annotations"])
    coco = json.dumps(_coco(images, annotations), separators=(",", ":")).encode()
    _atomic_write(out / "instances.json", coco)
    files["instances.json"] = hashlib.sha256(coco).hexdigest()
    poses = None
    if cfg.poses_from is not None:
        bank = load_pose_bank(out / POSES_FILE)
        files[POSES_FILE] = _sha256(out / POSES_FILE)
        poses = {"file": POSES_FILE, "count": int(len(bank["joint_positions"])),
                 "rolled_out": int(bank["rolled_out"]), "episodes": int(bank["episodes"]),
                 "env_id": str(bank["env_id"]), "algo": str(bank["algo"]), "run": cfg.poses_from}
    manifest = {
        "format": "armlab-dataset", "format_version": FORMAT_VERSION,
        "generator": "armlab.robot_env.dataset", "version": _version(),
        "seed": cfg.seed, "style": cfg.style, "size": cfg.size, "n": cfg.n,
        "frames": [int(indices[0]), int(indices[-1]) + 1] if len(indices) else [0, 0],
        "shard": list(shard) if shard else None,
        "settings": cfg.settings(),
        "classes": list(CLASSES),
        "categories": [{"id": k + 1, "name": n} for k, n in enumerate(CATEGORIES)],
        "counts": {"frames": len(indices), "files": len(files),
                   "annotations": sum(1 for lab in labels for o in lab["objects"] if o["area"] > 0)},
        "files": files,
    }
    if poses is not None:  # absent from random-configuration datasets
        manifest["poses"] = poses
    _atomic_write(out / "manifest.json", (json.dumps(manifest, indent=1, sort_keys=True) + "\n").encode())
    return manifest


def load_manifest(root: str | Path) -> dict:
    root = Path(root)
    path = root / "manifest.json"
    if not root.is_dir():
        raise DatasetError(f"no dataset folder at {root}.")
    if not path.exists():
        raise DatasetError(
            f"{root} is not a finished armlab dataset: no manifest.json (run `armlab dataset generate`)."
        )
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise DatasetError(f"{path} is not valid JSON ({e.msg} at line {e.lineno}).") from None
    if manifest.get("format") != "armlab-dataset":
        raise DatasetError(f"{path} is not an armlab dataset manifest.")
    return manifest


def merge(shards: list[str | Path], out: str | Path, progress: bool = True) -> dict:
    """Join shard folders written with ``--shard i/N`` into one dataset at ``out``.

    The shards must share every setting, and together cover all frames exactly once.
    Files are hard-linked when possible (copied otherwise); the shards are left intact.
    """
    out = Path(out)
    manifests = [load_manifest(s) for s in shards]
    first = manifests[0]
    for s, m in zip(shards, manifests):
        if m["settings"] != first["settings"]:
            raise DatasetError(f"shard {s} was generated with other settings than {shards[0]}.")
    covered = sorted((m["frames"][0], m["frames"][1], s) for m, s in zip(manifests, shards))
    pos = 0
    for lo, hi, s in covered:
        if lo != pos:
            what = "overlaps" if lo < pos else "leaves a gap before"
            raise DatasetError(f"shard {s} {what} frame {min(lo, pos)}; shards must cover 0..{first['n'] - 1} once.")
        pos = hi
    if pos != first["n"]:
        raise DatasetError(f"the shards cover frames 0..{pos - 1} of {first['n']}; some shards are missing.")
    for s, m in zip(shards, manifests):
        if m["files"].get(POSES_FILE) != first["files"].get(POSES_FILE):
            raise DatasetError(f"shard {s} has another pose bank ({POSES_FILE}) than {shards[0]}; generate the shards "
                               f"with one bank (copy it into each shard folder first).")
    for sub in ("rgb", "depth", "seg", "labels"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    from tqdm.auto import tqdm

    for s, m in zip(shards, manifests):
        for rel in tqdm([r for r in m["files"] if r != "instances.json"], desc=f"merge {Path(s).name}",
                        disable=not progress):
            src, dst = Path(s) / rel, out / rel
            if dst.exists():
                continue
            tmp = dst.with_name(f".{dst.name}.tmp")
            try:
                os.link(src, tmp)
            except OSError:
                shutil.copyfile(src, tmp)
            os.replace(tmp, dst)
    cfg = DatasetConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in first["settings"].items()})
    settings = {"settings": cfg.settings(), "shard": None}
    _atomic_write(_settings_file(out), json.dumps(settings, sort_keys=True).encode())
    return finalize_dataset(out, cfg, range(first["n"]))


def verify(root: str | Path) -> list[str]:
    """Check a dataset folder: every manifest file present with its checksum, no frame
    missing, labels consistent with the images (sizes, boxes from the segmentation, the
    target's class and visibility). Returns a list of problems, empty when all is well."""
    root = Path(root)
    manifest = load_manifest(root)
    problems: list[str] = []
    for rel, digest in manifest["files"].items():
        path = root / rel
        if not path.exists():
            problems.append(f"{rel} is missing")
        elif _sha256(path) != digest:
            problems.append(f"{rel} does not match its checksum")
    lo, hi = manifest.get("frames", [0, manifest["n"]])
    if manifest["counts"]["frames"] != hi - lo:
        problems.append(f"manifest counts {manifest['counts']['frames']} frames for the range {lo}..{hi - 1}")
    size = manifest["size"]
    bank_rows = None
    if (manifest.get("settings") or {}).get("poses_from") is not None and (root / POSES_FILE).exists():
        try:
            bank_rows = {tuple(row) for row in load_pose_bank(root / POSES_FILE)["joint_positions"].tolist()}
        except DatasetError as exc:
            problems.append(str(exc).rstrip("."))
    for i in range(lo, hi):
        rel = f"labels/{i:06d}.json"
        if rel not in manifest["files"]:
            problems.append(f"frame {i} is not in the manifest")
            continue
        if not (root / rel).exists():
            continue
        try:
            lab = json.loads((root / rel).read_text())
        except json.JSONDecodeError:
            problems.append(f"{rel} is not valid JSON")
            continue
        if lab.get("frame") != i or lab.get("width") != size or lab.get("height") != size:
            problems.append(f"{rel}: frame number or size disagrees with the manifest")
        if lab.get("class_name") != CLASSES[lab.get("class_id", 0)]:
            problems.append(f"{rel}: class_id and class_name disagree")
        if bank_rows is not None and tuple(lab.get("joint_positions") or ()) not in bank_rows:
            problems.append(f"{rel}: the joint positions are not a pose of {POSES_FILE}")
        rgb = cv2.imread(str(root / lab["rgb"]), cv2.IMREAD_UNCHANGED)
        seg = cv2.imread(str(root / lab["seg"]), cv2.IMREAD_UNCHANGED)
        depth = cv2.imread(str(root / lab["depth"]), cv2.IMREAD_UNCHANGED)
        if rgb is None or seg is None or depth is None:
            problems.append(f"frame {i}: an image cannot be read")
            continue
        if rgb.shape != (size, size, 3) or seg.shape != (size, size) or depth.shape != (size, size):
            problems.append(f"frame {i}: image shapes {rgb.shape}, {seg.shape}, {depth.shape} are not {size}x{size}")
        if seg.dtype != np.uint16 or depth.dtype != np.uint16:
            problems.append(f"frame {i}: depth and segmentation must be uint16 PNGs")
        for o in lab["objects"]:
            ys, xs = np.nonzero(seg == o["id"])
            box = [0, 0, 0, 0] if len(xs) == 0 else [int(xs.min()), int(ys.min()), int(np.ptp(xs) + 1),
                                                      int(np.ptp(ys) + 1)]
            if box != o["bbox"] or len(xs) != o["area"]:
                problems.append(f"frame {i}: the box or area of {o['name']} disagrees with the segmentation")
    coco = root / "instances.json"
    if coco.exists():
        try:
            data = json.loads(coco.read_text())
            if len(data["images"]) != hi - lo:
                problems.append(f"instances.json lists {len(data['images'])} images, expected {hi - lo}")
        except (json.JSONDecodeError, KeyError):
            problems.append("instances.json is not a valid COCO file")
    return problems
