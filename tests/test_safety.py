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
    from robot_env.io.errors import DataError

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
        with pytest.raises(DataError, match="the dataset manifest's joint_limits " + needle) as info:
            manifest_joint_limits({"joint_limits": bad}, 2)
        assert "\n" not in str(info.value) and str(info.value).endswith("fix its manifest.")


# -- resumed RL runs: a seed stream apart from the evaluation and held-out seeds ------------------------------------
def test_resumed_runs_draw_seeds_apart_from_the_evaluation_and_held_out_seeds():
    import inspect

    from controllers import evaluation, rl

    held_out_n = inspect.signature(evaluation.held_out_contexts).parameters["n"].default
    low, high = rl.RESUME_SEEDS
    n_envs = 64  # more envs than any run uses: env i is seeded resume_seed + i
    # every seed the evaluation protocol and the periodic evaluation use lies below the resume space
    assert max(rl.EVAL_SEED, evaluation.HELD_OUT_SEED + 1000 * held_out_n) < low and high + n_envs <= 2**32
    eval_seeds = {rl.EVAL_SEED, *range(evaluation.HELD_OUT_SEED, evaluation.HELD_OUT_SEED + 1000 * held_out_n)}
    # the old rule seed + steps hit them: a run of seed 0 resumed at 500,000 steps trained on the evaluation contexts
    cases = [(0, rl.EVAL_SEED), (0, evaluation.HELD_OUT_SEED), (10, evaluation.HELD_OUT_SEED + 5), (1, 1), (-3, 7)]
    cases += [(seed, steps) for seed in (0, 1, 2, 123, 2**31 - 1) for steps in range(0, 200_000, 997)]
    seen = {}
    for seed, steps in cases:
        s = rl.resume_seed(seed, steps)
        assert s == rl.resume_seed(seed, steps) and low <= s < high  # deterministic, in its own space
        assert not eval_seeds & set(range(s, s + n_envs)), (seed, steps)
        seen.setdefault(seed, set()).add(s)
    assert all(len(v) > 0.99 * len([c for c in cases if c[0] == k]) for k, v in seen.items())  # one stream per resume


def test_a_resumed_run_seeds_its_envs_and_model_from_the_resume_stream_and_a_fresh_run_from_its_seed(
        tmp_path, monkeypatch):
    from controllers import rl
    from controllers.rl import training

    seeds = []
    vec_env = training._vec_env

    def recording(env_id, env_kwargs, n_envs, seed, kind):
        seeds.append(seed)
        return vec_env(env_id, env_kwargs, n_envs, seed, kind)

    monkeypatch.setattr(training, "_vec_env", recording)
    small = {"learning_starts": 100, "batch_size": 32, "policy_kwargs": {"net_arch": [8]}}
    kw = dict(folder=tmp_path, eval_freq=0, save_freq=0)
    first = rl.train("sac", "armlab/ReachSignalFixed-v0", 10, hyperparams=small, seed=3, **kw)
    assert seeds == [3] and first.model.seed == 3  # a fresh run: its own seed, as before
    second = rl.train("sac", "armlab/ReachSignalFixed-v0", 20, resume=True, **kw)
    expect = rl.resume_seed(3, 10)
    assert seeds == [3, expect] and second.model.seed == expect != 3 + 10
    assert rl.read_config(first.run_dir)["resumes"][0]["seed"] == expect


# -- the demo starts its dataset over only when an earlier demo made it with other settings --------------------------
def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_the_demo_regenerates_its_dataset_only_on_other_settings(tmp_path):
    from armlab_scripts.demo import demo_dataset
    from robot_env.dataset import DatasetConfig
    from robot_env.dataset.manifest import SETTINGS_FILE
    from robot_env.io.dataset_format import DatasetError

    root = tmp_path / "data" / "sim"
    cfg = DatasetConfig(n=2, size=16, seed=0)
    assert demo_dataset(root, cfg, 1, False)["counts"]["frames"] == 2
    (root / "kept.txt").write_text("the same settings resume in place")
    demo_dataset(root, cfg, 1, False)
    assert (root / "kept.txt").is_file()
    before = _tree(root)
    # any other dataset problem surfaces, and the folder is left as it was
    with pytest.raises(DatasetError, match="workers must be at least 1"):
        demo_dataset(root, cfg, 0, False)
    assert _tree(root) == before
    good = (root / SETTINGS_FILE).read_bytes()
    (root / SETTINGS_FILE).write_bytes(good[: len(good) // 2])
    with pytest.raises(DatasetError, match=f"{root / SETTINGS_FILE} cannot be read .*delete the folder"):
        demo_dataset(root, cfg, 1, False)
    assert (root / "kept.txt").is_file()
    (root / SETTINGS_FILE).write_bytes(good)
    # other settings (an earlier demo's): deleted and made anew
    other = DatasetConfig(n=3, size=16, seed=1)
    assert demo_dataset(root, other, 1, False)["counts"]["frames"] == 3
    assert not (root / "kept.txt").exists()
