"""Camera geometry pinned against what PyBullet renders: K, extrinsics, depth, segmentation, mounts, EGL."""

import numpy as np
import pybullet as pb
import pytest

import robot_env  # noqa: F401  (silences PyBullet's banner before pybullet is used)
from robot_env import camera as camera_mod
from robot_env.camera import (
    CAMERA_NAMES,
    Camera,
    decode_segmentation,
    depth_to_points,
    enable_egl,
    look_at_rotation,
    named_camera,
)
from robot_env.robots import Arm
from robot_env.sim import World

RADIUS = 0.05
CENTRE = np.array([0.3, -0.1, 0.4])


def _add_sphere(world: World, centre=CENTRE, radius=RADIUS) -> int:
    c = world.client
    col = c.createCollisionShape(pb.GEOM_SPHERE, radius=radius)
    vis = c.createVisualShape(pb.GEOM_SPHERE, radius=radius, rgbaColor=[0.9, 0.1, 0.1, 1])
    return c.createMultiBody(baseMass=0.0, baseCollisionShapeIndex=col, baseVisualShapeIndex=vis,
                             basePosition=list(centre))


def _face_camera(world: World, body: int, cam: Camera, centre=CENTRE) -> None:
    """Turn the sphere's pole (a vertex of PyBullet's coarse sphere mesh, whose facet centres
    lie up to ~4 mm inside a 5 cm sphere) towards the camera, so the depth checks measure
    the camera model rather than the tessellation."""
    R = look_at_rotation(centre, cam.position, up=(0.31, 0.2, 0.9))  # local z -> towards the camera
    world.client.resetBasePositionAndOrientation(body, list(centre), list(camera_mod._quaternion(R)))


def _ray_sphere_depth(cam: Camera, u: float, v: float, centre=CENTRE, radius=RADIUS) -> float:
    """Camera-frame z where the ray through pixel (u, v) first meets the sphere."""
    d = np.array([(u - cam.cx) / cam.fx, (v - cam.cy) / cam.fy, 1.0])
    c = cam.to_camera(centre)[0]
    a, b, cc = d @ d, -2.0 * d @ c, c @ c - radius**2
    return float((-b - np.sqrt(b * b - 4 * a * cc)) / (2 * a))


@pytest.fixture
def world():
    w = World()
    yield w
    w.close()


# -- intrinsics and extrinsics ------------------------------------------------------------------
def test_fov_camera_intrinsics_follow_the_pixel_centre_convention():
    cam = Camera.from_fov(60.0, 160, 96)
    f = 48.0 / np.tan(np.radians(30.0))
    assert np.allclose(cam.K, [[f, 0, 79.5], [0, f, 47.5], [0, 0, 1]])
    small = cam.resized(80, 48)  # same field of view and principal point, half the pixels
    assert np.allclose(small.K, [[f / 2, 0, 39.5], [0, f / 2, 23.5], [0, 0, 1]])


def test_look_at_extrinsics_are_in_the_opencv_frame():
    eye, target = np.array([1.0, 0.5, 0.8]), np.array([0.0, 0.0, 0.3])
    cam = Camera.from_fov(45, 64, 48).look_at(eye, target)
    T = cam.T_cam_world
    assert np.allclose(T @ cam.T_world_cam, np.eye(4))
    assert np.allclose(T[:3, :3] @ T[:3, :3].T, np.eye(3)) and np.isclose(np.linalg.det(T[:3, :3]), 1.0)
    assert np.allclose(cam.to_camera(eye), 0.0)
    assert np.allclose(cam.to_camera(target)[0], [0, 0, np.linalg.norm(target - eye)])  # z forward
    above = cam.to_camera(target + [0, 0, 0.1])[0]
    assert above[1] < 0  # world up is image up: OpenCV's y points down
    assert np.allclose(cam.project(target)[0], [cam.cx, cam.cy])
    # a pose given as position + quaternion of the OpenCV frame gives the same extrinsics
    q = camera_mod._quaternion(cam.T_world_cam[:3, :3])
    assert np.allclose(Camera.from_fov(45, 64, 48).set_pose(eye, q).T_cam_world, T)


def test_matrices_agree_with_pybullets_own_for_a_centred_camera():
    eye, target, up = [1.0, -0.6, 0.9], [0.1, 0.2, 0.3], [0, 0, 1]
    cam = Camera.from_fov(50.0, 160, 96, near=0.02, far=6.0).look_at(eye, target, up)
    assert np.allclose(cam.view_matrix, pb.computeViewMatrix(eye, target, up), atol=1e-6)
    assert np.allclose(cam.projection_matrix, pb.computeProjectionMatrixFOV(50.0, 160 / 96, 0.02, 6.0), atol=1e-6)


def test_project_puts_points_behind_the_camera_at_nan():
    cam = Camera.from_fov(45, 64, 48).look_at([1, 0, 0.5], [0, 0, 0.5])
    uv = cam.project([[0, 0, 0.5], [2, 0, 0.5]])
    assert np.all(np.isfinite(uv[0])) and np.all(np.isnan(uv[1]))


# -- what is rendered ------------------------------------------------------------------------------
VIEWS = [
    pytest.param(dict(width=160, height=96), id="non-square-centred"),
    pytest.param(dict(width=160, height=96, cx=60.3, cy=38.7), id="non-square-off-centre"),
    pytest.param(dict(width=96, height=128, cx=55.0, cy=70.5, fy_scale=1.2), id="portrait-off-centre-fx-ne-fy"),
]


def _camera(width, height, cx=None, cy=None, fy_scale=1.0, renderer="tiny") -> Camera:
    base = Camera.from_fov(40.0, width, height)
    return Camera(base.fx, base.fy * fy_scale, base.cx if cx is None else cx, base.cy if cy is None else cy,
                  width, height, renderer=renderer)


@pytest.mark.parametrize("view", VIEWS)
def test_sphere_centre_projects_onto_its_mask_and_depth_is_the_surface(world, view):
    body = _add_sphere(world)
    rng = np.random.default_rng(7)
    for _ in range(3):  # three seeded viewpoints around the sphere
        d = rng.normal(size=3)
        d[2] = abs(d[2])
        d /= np.linalg.norm(d)
        cam = _camera(**view).look_at(CENTRE + 0.8 * d, CENTRE + rng.normal(0, 0.03, 3))
        _face_camera(world, body, cam)
        img = cam.render(world)
        vs, us = np.nonzero(img.body == body)
        assert len(us) > 100
        uv = cam.project(CENTRE)[0]
        assert np.hypot(us.mean() - uv[0], vs.mean() - uv[1]) < 0.4  # well inside 1 px: pins the half-pixel convention
        u, v = np.round(uv).astype(int)
        assert abs(img.depth[v, u] - _ray_sphere_depth(cam, u, v)) < 0.002
        assert img.rgb.shape == (cam.height, cam.width, 3) and img.rgb.dtype == np.uint8
        assert img.depth.dtype == np.float32 and img.depth.shape == (cam.height, cam.width)


def test_depth_on_the_optical_axis_is_centre_z_minus_radius_and_deprojects_to_the_surface(world):
    body = _add_sphere(world)
    cam = Camera(120.0, 120.0, 80.0, 48.0, 160, 96)  # principal point on a pixel centre, off the image centre
    cam.look_at(CENTRE + [0.6, 0.4, 0.5], CENTRE)
    _face_camera(world, body, cam)
    img = cam.render(world)
    z_centre = cam.to_camera(CENTRE)[0, 2]
    assert abs(img.depth[48, 80] - (z_centre - RADIUS)) < 0.002
    mask = np.zeros(img.depth.shape, bool)
    mask[48, 80] = True
    front = CENTRE + RADIUS * (cam.position - CENTRE) / np.linalg.norm(cam.position - CENTRE)
    assert np.linalg.norm(cam.deproject(img.depth, mask)[0] - front) < 0.002
    # the whole mask deprojects onto the sphere (within the mesh's facet error)
    pts = cam.deproject(img.depth, img.body == body)
    assert len(pts) > 100 and np.abs(np.linalg.norm(pts - CENTRE, axis=1) - RADIUS).max() < 0.006


def test_depth_to_points_inverts_projection():
    cam = _camera(160, 96, cx=60.3, cy=38.7)
    depth = np.full((96, 160), 2.0, np.float32)
    depth[10, 20] = 1.25
    mask = np.zeros_like(depth, bool)
    mask[10, 20] = mask[90, 150] = True
    pts = depth_to_points(depth, cam.K, mask)
    assert pts.shape == (2, 3)
    uv = pts[:, :2] / pts[:, 2:] * [cam.fx, cam.fy] + [cam.cx, cam.cy]
    assert np.allclose(uv, [[20, 10], [150, 90]]) and np.allclose(pts[:, 2], [1.25, 2.0])


def test_background_is_minus_one_and_reads_far():
    w = World(floor=False)
    try:
        img = Camera.from_fov(45, 32, 24, far=7.5).look_at([0, 0, 1], [1, 0, 1]).render(w)
    finally:
        w.close()
    assert img.body.dtype == np.int32 and img.link.dtype == np.int32
    assert (img.body == -1).all() and (img.link == -1).all()
    assert np.allclose(img.depth, 7.5, rtol=1e-4)


def test_segmentation_decoding_keeps_large_ids():
    seg = np.array([[-1, 5, 5 + (1 << 24)], [7 + (3 << 24), 300_000 + (12 << 24), 0]], dtype=np.int32)
    body, link = decode_segmentation(seg)
    assert body.dtype == link.dtype == np.int32
    assert body.tolist() == [[-1, 5, 5], [7, 300_000, 0]]
    assert link.tolist() == [[-1, -1, 0], [2, 11, -1]]


def test_segmentation_names_the_arm_links(world):
    arm = Arm(world, "arm2")
    arm.reset_joints([0.3, 1.0])
    cam = named_camera("top", arm, 160, 160)
    img = cam.render(world)
    c = world.client
    for name, centre_offset in (("upper_arm", 0.15), ("forearm", 0.125)):
        link = arm.links[name]
        pos, orn = c.getLinkState(arm.body, link, computeForwardKinematics=1)[4:6]
        R = np.array(c.getMatrixFromQuaternion(orn)).reshape(3, 3)
        u, v = np.round(cam.project(np.array(pos) + R[:, 0] * centre_offset)[0]).astype(int)
        assert (img.body[v, u], img.link[v, u]) == (arm.body, link), name
    assert set(np.unique(img.body)) <= {-1, world.body("floor"), arm.body}
    assert {arm.links["upper_arm"], arm.links["forearm"], -1} <= set(np.unique(img.link[img.body == arm.body]))
    assert (img.link[img.body == world.body("floor")] == -1).all()


def test_wrist_camera_follows_its_link(world):
    arm = Arm(world, "arm2")
    cam = named_camera("wrist", arm, 64, 48)
    assert cam.mounted
    arm.reset_joints([0.0, 0.0])
    first = cam.render(world)
    pose_a = cam.T_world_cam
    arm.reset_joints([1.2, -0.8])
    second = cam.render(world)
    pose_b = cam.T_world_cam
    assert not np.allclose(pose_a, pose_b) and not np.array_equal(first.rgb, second.rgb)
    # the pose is the link frame times the fixed offset
    pos, orn = world.client.getLinkState(arm.body, arm.ee, computeForwardKinematics=1)[4:6]
    T_world_link = camera_mod._transform(pos, orn)
    offset = np.linalg.inv(T_world_link) @ pose_b
    arm.reset_joints([-0.5, 0.4])
    cam.update(world)
    pos, orn = world.client.getLinkState(arm.body, arm.ee, computeForwardKinematics=1)[4:6]
    assert np.allclose(cam.T_world_cam, camera_mod._transform(pos, orn) @ offset)


def test_a_camera_mounted_on_a_base_uses_its_urdf_frame(world):
    arm = Arm(world, "arm2", base_position=(0.2, 0.1, 0.0))  # the base's inertial frame sits 5 cm higher
    cam = Camera.from_fov(45, 32, 32).mount(arm.body, -1, position=(0.0, 0.0, 1.0))
    cam.update(world)
    assert np.allclose(cam.position, [0.2, 0.1, 1.0]) and np.allclose(cam.T_world_cam[:3, :3], np.eye(3))


def test_every_named_camera_sees_the_arm(world):
    arm = Arm(world, "arm3")
    arm.reset_joints([0.3, -0.3, 1.0])
    for name in CAMERA_NAMES:
        img = named_camera(name, arm, 64, 64).render(world)
        assert (img.body == arm.body).sum() > 20, name
    with pytest.raises(ValueError, match="unknown camera"):
        named_camera("back", arm)


def test_bad_camera_arguments_raise():
    with pytest.raises(ValueError, match="near < far"):
        Camera(100, 100, 31.5, 31.5, 64, 64, near=1.0, far=0.5)
    with pytest.raises(ValueError, match="renderer"):
        Camera(100, 100, 31.5, 31.5, 64, 64, renderer="vulkan")
    with pytest.raises(ValueError, match="up vector"):
        Camera.from_fov(45, 64, 64).look_at([0, 0, 1], [0, 0, 0], up=[0, 0, 1])


# -- EGL ------------------------------------------------------------------------------------------
def test_egl_renders_the_same_geometry():
    w = World(floor=False)
    try:
        try:
            enable_egl(w)
        except RuntimeError as exc:
            assert "EGL is not available" in str(exc)  # the clear error; tested on its own below
            pytest.skip(f"EGL is not available on this machine: {exc}")
        body = _add_sphere(w)
        cam = _camera(160, 96, cx=60.3, cy=38.7, renderer="egl").look_at(CENTRE + [0.5, 0.4, 0.45], CENTRE)
        _face_camera(w, body, cam)
        img = cam.render(w)
        vs, us = np.nonzero(img.body == body)
        uv = cam.project(CENTRE)[0]
        assert len(us) > 100 and np.hypot(us.mean() - uv[0], vs.mean() - uv[1]) < 1.0
        u, v = np.round(uv).astype(int)
        assert abs(img.depth[v, u] - _ray_sphere_depth(cam, u, v)) < 0.002
    finally:
        w.close()


def test_egl_without_the_plugin_raises_a_clear_error(world, monkeypatch):
    monkeypatch.setattr(camera_mod, "_egl_plugin_path", lambda: None)
    cam = Camera.from_fov(45, 32, 32, renderer="egl").look_at([1, 0, 1], [0, 0, 0])
    with pytest.raises(RuntimeError, match="EGL is not available"):
        cam.render(world)


def test_egl_after_bodies_were_added_says_what_to_do(world, monkeypatch):
    monkeypatch.setattr(camera_mod, "_egl_plugin_path", lambda: "eglRenderer.so")  # never loaded: checked first
    with pytest.raises(RuntimeError, match="enable_egl"):
        Camera.from_fov(45, 32, 32, renderer="egl").look_at([1, 0, 1], [0, 0, 0]).render(world)
