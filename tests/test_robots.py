"""URDF assets: inertias as written in the file, forward kinematics against analytic formulas."""

import xml.etree.ElementTree as ET

import numpy as np
import pytest

from robot_env import ROBOTS, Arm, World
from robot_env.robots import get_spec


def _file_inertials(path):
    root = ET.parse(path).getroot()
    out = {}
    for link in root.findall("link"):
        inertial = link.find("inertial")
        if inertial is None:
            continue
        mass = float(inertial.find("mass").get("value"))
        i = inertial.find("inertia")
        out[link.get("name")] = (mass, [float(i.get(k)) for k in ("ixx", "iyy", "izz")])
    return out


@pytest.fixture
def world():
    w = World()
    yield w
    w.close()


@pytest.mark.parametrize("robot", ["arm2", "arm3"])
def test_simulator_masses_and_inertias_equal_the_file(world, robot):
    arm = Arm(world, robot)
    expected = _file_inertials(arm.spec.path)
    checked = 0
    for link_name, link in arm.links.items():
        mass, inertia = expected[link_name]
        info = world.client.getDynamicsInfo(arm.body, link)
        assert info[0] == pytest.approx(mass, rel=1e-9)
        assert np.allclose(info[2], inertia, rtol=1e-9), f"{link_name}: {info[2]} != {inertia}"
        checked += 1
    assert checked == len(expected) - 1  # every moving link (the fixed base reports mass 0)


def test_inertia_flag_matters(world):
    """Without URDF_USE_INERTIA_FROM_FILE PyBullet would compute other inertias: make sure ours differ."""
    import pybullet as pb

    body = world.client.loadURDF(str(get_spec("arm2").path), useFixedBase=True)
    arm = Arm(world, "arm2")
    link = arm.links["upper_arm"]
    from_shapes = world.client.getDynamicsInfo(body, link)[2]
    from_file = world.client.getDynamicsInfo(arm.body, link)[2]
    assert not np.allclose(from_shapes, from_file)
    assert pb.URDF_USE_INERTIA_FROM_FILE


def _fk_arm2(q):
    a, b = q
    x = 0.30 * np.cos(a) + 0.25 * np.cos(a + b)
    y = 0.30 * np.sin(a) + 0.25 * np.sin(a + b)
    return np.array([x, y, 0.16])


def _fk_arm3(q):
    yaw, s, e = q
    r = 0.30 * np.cos(s) + 0.25 * np.cos(s + e)
    z = 0.6 - 0.30 * np.sin(s) - 0.25 * np.sin(s + e)
    return np.array([r * np.cos(yaw), r * np.sin(yaw), z])


@pytest.mark.parametrize("robot,fk", [("arm2", _fk_arm2), ("arm3", _fk_arm3)])
def test_forward_kinematics_matches_analytic(world, robot, fk):
    arm = Arm(world, robot)
    rng = np.random.default_rng(0)
    for _ in range(20):
        q = rng.uniform(arm.lower, arm.upper)
        arm.reset_joints(q)
        assert np.allclose(arm.ee_position(), fk(q), atol=1e-9)


def test_unknown_robot_lists_available(world):
    with pytest.raises(ValueError, match="available robots: arm2, arm3, panda, kuka"):
        Arm(world, "ur5")


def test_missing_urdf_lists_available(world, tmp_path):
    from dataclasses import replace

    spec = replace(ROBOTS["arm2"], urdf="missing.urdf")
    with pytest.raises(FileNotFoundError, match="available robots"):
        Arm(world, spec)


@pytest.mark.parametrize("robot,n", [("panda", 7), ("kuka", 7)])
def test_pybullet_data_robots_load(world, robot, n):
    arm = Arm(world, robot)
    assert arm.n == n
    assert np.all(arm.upper > arm.lower)
    assert np.all(np.isfinite(arm.ee_position()))


def test_joint_damping_from_the_file_slows_the_arm(world):
    arm = Arm(world, "arm2")
    arm.reset_joints([0.0, 0.0], [2.0, 0.0])
    world.step(240)
    _, qd = arm.joint_state()
    assert 0.0 < qd[0] < 1.9  # damping 0.1 N m s/rad decays the spin, nothing reverses it


def test_worlds_are_independent():
    with World() as a, World() as b:
        arm_a, arm_b = Arm(a, "arm2"), Arm(b, "arm2")
        arm_a.reset_joints([1.0, 0.5])
        a.step(10)
        assert np.allclose(arm_b.joint_state()[0], [0.0, 0.0])
    assert not a.connected and not b.connected


@pytest.mark.parametrize("robot,tol", [("arm2", 1e-9), ("arm3", 1e-5)])
def test_held_torque_equals_torque_resent_every_step(world, robot, tol):
    """The fast path (a saturated velocity motor holding the torque) follows the same trajectory."""
    import pybullet as pb

    arm = Arm(world, robot)
    rng = np.random.default_rng(0)
    for _ in range(10):
        tau = rng.uniform(-1, 1, arm.n) * arm.max_torque
        q0, v0 = rng.uniform(0.5 * arm.lower, 0.5 * arm.upper), rng.uniform(-1, 1, arm.n)
        arm.reset_joints(q0, v0)
        arm.run([tau.tolist()], 120)
        held = arm.ee_position()
        arm.release()
        arm.reset_joints(q0, v0)
        for _ in range(120):
            pb.setJointMotorControlArray(arm.body, arm.joints, pb.TORQUE_CONTROL, forces=tau.tolist(),
                                         physicsClientId=world.id)
            world.step()
        assert np.linalg.norm(held - arm.ee_position()) < tol
        assert np.linalg.norm(held - arm.ee_position()) < 1e-3 * np.linalg.norm(held - arm.ee_position() + 1)


def test_friction_takes_the_resend_path_and_brakes(world):
    arm = Arm(world, "arm2")
    arm.reset_joints([0.0, 0.0], [1.0, 0.0])
    arm.run([[0.0, 0.0]], 60)
    free = arm.joint_state()[0][0]
    arm.set_dynamics(friction=[0.5, 0.5])
    arm.reset_joints([0.0, 0.0], [1.0, 0.0])
    arm.run([[0.0, 0.0]], 60)
    assert arm.joint_state()[0][0] < free
