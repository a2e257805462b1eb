"""URDF assets shipped with armlab (installed as the ``armlab_urdf`` package).

``URDF_DIR`` is the folder holding the robot descriptions; it resolves the same
way in an editable install and in a plain ``pip install .``.
"""

from pathlib import Path

URDF_DIR = Path(__file__).resolve().parent

__all__ = ["URDF_DIR"]
