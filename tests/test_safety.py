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
