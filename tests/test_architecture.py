"""The house's rules, checked: generative and the shared plumbing never load the simulator, rooms stay small."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {"robot_env": "robot_env", "controllers": "controllers", "generative": "generative",
            "armlab_scripts": "scripts"}
SIMULATOR = ("pybullet", "gymnasium", "stable_baselines3", "sb3_contrib")
MAX_LINES = 520  #: a room that passes ~500 lines holds more than one concern


def _modules(package: str) -> list[str]:
    folder = ROOT / PACKAGES[package]
    out = []
    for path in sorted(folder.rglob("*.py")):
        rel = path.relative_to(folder).with_suffix("")
        parts = [p for p in rel.parts if p != "__init__"]
        out.append(".".join([package, *parts]))
    return out


def _loaded_after_import(modules: list[str]) -> list[str]:
    code = (
        "import importlib, sys\n"
        f"for m in {modules!r}: importlib.import_module(m)\n"
        f"print(' '.join(sorted(m for m in {SIMULATOR!r} if m in sys.modules)))\n"
    )
    env = dict(os.environ, MPLBACKEND="Agg")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=300, check=True)
    return out.stdout.split()


def test_generative_and_the_shared_plumbing_import_without_the_simulator():
    """Every generative module (package __init__ files included) and robot_env.io load no PyBullet, Gymnasium
    or SB3: training a GAN or translating a video does not start the physics."""
    modules = _modules("generative") + [m for m in _modules("robot_env") if m.startswith("robot_env.io")]
    assert "robot_env.io.atomic" in modules and len(modules) > 8
    assert _loaded_after_import(modules) == []


def test_importing_robot_env_registers_the_envs_once_gymnasium_loads():
    code = (
        "import sys, robot_env\n"
        "assert 'pybullet' not in sys.modules and 'gymnasium' not in sys.modules\n"
        "import gymnasium as gym\n"
        "assert all(i in gym.registry for i in robot_env.ENV_IDS)\n"
        "env = gym.make('armlab/ReachSignalFixed-v0'); env.reset(seed=0); env.close()\n"
        "print(robot_env.World.__module__)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "robot_env.sim"
    assert "pybullet build time" not in out.stdout + out.stderr  # the banner stays quiet


@pytest.mark.parametrize("package", sorted(PACKAGES))
def test_no_module_is_a_house_of_its_own(package):
    big = {}
    for path in (ROOT / PACKAGES[package]).rglob("*.py"):
        n = len(path.read_text().splitlines())
        if n > MAX_LINES:
            big[str(path.relative_to(ROOT))] = n
    assert not big, f"modules over {MAX_LINES} lines: {big}"


def test_every_package_folder_is_installed():
    """A plain (non-editable) install carries every subpackage: pyproject lists each folder with an __init__.py."""
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    folders = {name: Path(folder) for name, folder in config["package-dir"].items()}
    found = set()
    for name, folder in folders.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / folder)
            found.add(".".join([name, *rel.parts]))
    assert found - listed == set(), "add these to [tool.setuptools] packages"
    assert listed - found == set(), "listed but not on disk"
