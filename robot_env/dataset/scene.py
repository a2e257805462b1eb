"""The dataset scene: the arm on a table with a target object and distractors, rendered by PyBullet.

One `Scene` per process renders every frame it is given: bodies are created once, then moved and
recoloured per frame. Frame ``i`` draws everything from ``numpy.random.default_rng([seed, i, stream])``
(stream 0 the scene, 1 the ``real`` style's camera effects, `POSE_STREAM` the pick from a pose bank),
so it depends only on ``(seed, i, settings)``.

The ``real`` and ``photo`` styles stand in for a physical camera, so sim-to-real can be shown and tested
without photographs: textured table and floor, shadows, then the camera effects of `robot_env.dataset.look`
(``photo`` also lights the scene with a warm lamp from the side).
"""

from __future__ import annotations

import math
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import pybullet as pb

from robot_env.camera import Camera
from robot_env.dataset.config import (
    PALETTE,
    POSE_STREAM,
    TABLE_CENTER,
    TABLE_HALF,
    TABLE_TOP,
    TARGET_RGB,
    DatasetConfig,
)
from robot_env.dataset.look import PHOTO_LIGHT, distortion_maps, photo_camera, real_camera
from robot_env.dataset.writer import instance_masks
from robot_env.io.dataset_format import CAMERA_STYLES, CLASSES, SEG_BACKGROUND, SEG_ROBOT, SEG_TABLE, DatasetError
from robot_env.robots import Arm
from robot_env.sim import World


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

    ``poses`` is the pose bank of a ``poses_from`` config (read with `load_pose_bank`; built by
    `controllers.poses`): each frame then shows one of its poses instead of a random one."""

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
        if "textures" in cfg.randomize or cfg.style in CAMERA_STYLES:
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
            if cfg.style in CAMERA_STYLES or "textures" in rand:
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
            if cfg.style == "photo":  # the photo look's tungsten lamp
                light_dir, light_rgb = PHOTO_LIGHT["lightDirection"], PHOTO_LIGHT["lightColor"]
        az = math.radians(_uniform(rng, -12, 12) if "camera" in rand else 0.0)
        el = math.radians(cfg.camera_elevation + (_uniform(rng, -6, 6) if "camera" in rand else 0.0))
        dist = cfg.camera_distance * (_uniform(rng, 0.93, 1.07) if "camera" in rand else 1.0)
        look = self.look + (_uniform(rng, -0.03, 0.03, 3) if "camera" in rand else 0.0)
        eye = look + dist * np.array([math.cos(el) * math.cos(az), math.cos(el) * math.sin(az), math.sin(el)])
        self.camera.look_at(eye, look)
        # render
        real = cfg.style in CAMERA_STYLES
        coeffs = {"lightAmbientCoeff": 0.55, "lightDiffuseCoeff": 0.5, "lightSpecularCoeff": 0.08}
        if cfg.style == "photo":
            coeffs = {k: PHOTO_LIGHT[k] for k in coeffs}
        W = H = cfg.size
        self.render_args = dict(
            width=W, height=H, viewMatrix=self.camera.view_matrix,
            projectionMatrix=self.camera._tiny_projection_list, renderer=pb.ER_TINY_RENDERER,
            flags=0, lightDirection=light_dir, lightColor=light_rgb,
            shadow=1 if real else 0, **coeffs, physicsClientId=self.cid,
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
            rgb, depth_mm, inst = self._camera_look(rgb, depth_mm, inst, np.random.default_rng([cfg.seed, index, 1]))
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
            if self.cfg.style in CAMERA_STYLES:
                inst = np.zeros((H, W), np.uint16)
                rgb = self._camera_look(rgb, np.zeros((H, W), np.uint16), inst,
                                        np.random.default_rng([self.cfg.seed, index, 1]))[0]
            frames.append(rgb)
        return frames

    # -- the camera styles' looks
    def _maps(self):
        if self._distortion_maps is None:
            self._distortion_maps = distortion_maps(self.camera.K, self.cfg.dist_coeffs, self.cfg.size, self.cfg.size)
        return self._distortion_maps

    def _camera_look(self, rgb, depth_mm, inst, rng):
        if self.cfg.style == "photo":
            return photo_camera(rgb, depth_mm, inst, rng, self._maps())
        return real_camera(rgb, depth_mm, inst, rng, self._maps(), self.cfg.jpeg_quality)

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
