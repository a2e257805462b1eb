"""Explicit safety (issue 23, item 5): files are read as tensors only, never unpickled into running code."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pytest
import torch


class _Planted:
    """A pickled object whose unpickling would create ``marker``: code from the file, run on load."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return Path.touch, (self.marker,)


def _planted_bytes(marker: Path) -> bytes:
    buf = io.BytesIO()
    torch.save({"weight": torch.zeros(2), "payload": _Planted(marker)}, buf)
    return buf.getvalue()


def test_a_model_zip_with_a_pickled_object_is_refused_and_not_executed(tmp_path):
    from controllers import rl

    small = {"learning_starts": 100, "batch_size": 32, "policy_kwargs": {"net_arch": [8]}}
    run = rl.train("sac", "armlab/ReachSignalFixed-v0", 10, folder=tmp_path / "runs", hyperparams=small,
                   eval_freq=0, save_freq=0).run_dir
    model = run / "model.zip"
    marker = tmp_path / "executed"
    with zipfile.ZipFile(model) as z:
        members = {name: z.read(name) for name in z.namelist()}
    assert "policy.pth" in members
    members["policy.pth"] = _planted_bytes(marker)
    with zipfile.ZipFile(model, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)
    with pytest.raises(ValueError, match=f"model file {model} is truncated or corrupt"):
        rl.load_run(run)
    assert not marker.exists()


def test_a_training_checkpoint_with_a_pickled_object_is_refused_and_not_executed(tmp_path):
    from generative.training.checkpoint import load_checkpoint

    path, marker = tmp_path / "checkpoint.pt", tmp_path / "executed"
    path.write_bytes(_planted_bytes(marker))
    with pytest.raises(ValueError, match=f"checkpoint {path} is corrupt or not loadable with weights_only=True"):
        load_checkpoint(path)
    assert not marker.exists()
    # the same bytes, unpickled without weights_only, do run the planted code: the test plants a real payload
    torch.load(path, weights_only=False)
    assert marker.exists()


# -- joint limits: a malformed manifest fails loudly; an old one without the key gives None -------------------------
def test_manifest_joint_limits_fail_loudly_on_a_malformed_manifest():
    from generative.diffusion.data import manifest_joint_limits

    good = [[-1.0, 1.0], [-0.5, 2.0]]
    assert manifest_joint_limits({"joint_limits": good}, 2) == good
    for old in (None, {}, {"joint_limits": None}):  # datasets written before the key existed
        assert manifest_joint_limits(old, 2) is None
    for bad, needle in ((["x", "y"], "must be a list of \\[lower, upper\\] number pairs"),
                        (3, "must be a list of \\[lower, upper\\] number pairs"),
                        ([[-1, 1, 2], [0, 1]], "must be a list of \\[lower, upper\\] number pairs"),
                        ([], "has 0 pairs, but the labels have 2 joints"),
                        (good[:1], "has 1 pairs, but the labels have 2 joints"),
                        ([[-1, 1], [2, 1]], "for joint 1 is \\[2.0, 1.0\\], not finite with lower < upper"),
                        ([[-1, float("nan")], [0, 1]], "for joint 0 is")):
        with pytest.raises(ValueError, match="the dataset manifest's joint_limits " + needle) as info:
            manifest_joint_limits({"joint_limits": bad}, 2)
        assert "\n" not in str(info.value) and str(info.value).endswith("fix its manifest.")
