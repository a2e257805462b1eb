"""A plain (non-editable) install finds its URDFs from any folder."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_plain_install_finds_urdfs_from_another_folder(tmp_path):
    src, site = tmp_path / "src", tmp_path / "site"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):  # a copy, so the build leaves nothing in the checkout
        shutil.copy(ROOT / name, src / name)
    for name in ("robot_env", "controllers", "generative", "scripts", "urdf"):
        shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
         "--target", str(site), str(src)],
        check=True, capture_output=True, timeout=300,
    )
    assert (site / "armlab_urdf" / "arm2.urdf").is_file()
    code = (
        "import armlab_urdf, robot_env, gymnasium as gym\n"
        "from robot_env import World, Arm\n"
        "print(armlab_urdf.URDF_DIR)\n"
        "w = World(); Arm(w, 'arm2'); w.close()\n"
        "env = gym.make('armlab/ReachSignalFixed-v0', robot='arm3'); env.reset(seed=0)\n"
        "print(robot_env.__file__)\n"
    )
    env = dict(os.environ, PYTHONPATH=str(site))
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, check=True, capture_output=True,
                         text=True, timeout=120).stdout.splitlines()
    urdf_dir, module = [line for line in out if line.startswith("/")][-2:]
    assert urdf_dir.startswith(str(site)) and module.startswith(str(site))
