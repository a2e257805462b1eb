"""A real `armlab gan train` process killed with SIGKILL mid-run resumes, by the same command, to exactly the result
of an uninterrupted run of the same seed: the final checkpoint's tensors, its step, the log and the sample grid."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch

STEPS, EVERY = 120, 10


def _command(data: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "armlab_scripts.cli", "gan", "train", "--data", str(data), "--out", str(out),
            "--size", "16", "--steps", str(STEPS), "--batch-size", "8", "--base", "8", "--seed", "3",
            "--device", "cpu", "--threads", "1", "--checkpoint-every", str(EVERY), "--sample-every", str(EVERY),
            "--log-every", "5", "--no-progress"]


def _tensors(obj, prefix: str = "") -> dict[str, torch.Tensor]:
    """Every tensor in a checkpoint's nested dicts and lists, by its path."""
    if isinstance(obj, torch.Tensor):
        return {prefix: obj}
    items = obj.items() if isinstance(obj, dict) else enumerate(obj) if isinstance(obj, (list, tuple)) else ()
    found = {}
    for k, v in items:
        found.update(_tensors(v, f"{prefix}/{k}"))
    return found


def _result(out: Path) -> tuple[int, dict[str, torch.Tensor], list[dict], bytes]:
    ckpt = torch.load(out / "checkpoint.pt", map_location="cpu", weights_only=True)
    with (out / "log.csv").open() as f:  # every column but the measured speed
        log = [{k: v for k, v in row.items() if k != "images_per_s"} for row in csv.DictReader(f)]
    grid = sorted((out / "samples").glob("*.png"))[-1]
    return ckpt["step"], _tensors({k: ckpt[k] for k in ("modules", "optimizers", "ema", "rng")}), log, grid.read_bytes()


def test_a_gan_training_killed_with_sigkill_resumes_to_the_uninterrupted_result(tiny_dataset, tmp_path):
    data = tiny_dataset(n=24, size=16, seed=0)
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    uninterrupted = subprocess.Popen(_command(data, straight), env=env, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, text=True)  # beside the killed run: the same result
    try:
        proc = subprocess.Popen(_command(data, killed), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        ckpt, deadline = killed / "checkpoint.pt", time.monotonic() + 120
        try:
            while not ckpt.exists() and proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.01)
            assert ckpt.exists(), proc.stderr.read().decode() if proc.poll() is not None else "no checkpoint in 120 s"
            proc.send_signal(signal.SIGKILL)
        finally:
            proc.kill()
            proc.wait()
        assert proc.returncode == -signal.SIGKILL
        at_kill = torch.load(ckpt, map_location="cpu", weights_only=True)["step"]
        assert EVERY <= at_kill < STEPS  # killed mid-run, after its first checkpoint

        resumed = subprocess.run(_command(data, killed), env=env, capture_output=True, text=True, timeout=300)
        assert resumed.returncode == 0, resumed.stderr
        assert f"({STEPS - at_kill} run now from {at_kill}," in resumed.stdout  # resumed, not started over
        assert uninterrupted.wait(timeout=300) == 0, uninterrupted.stderr.read()
    finally:
        if uninterrupted.poll() is None:
            uninterrupted.kill()
            uninterrupted.wait()
    (step_a, tensors_a, log_a, grid_a), (step_b, tensors_b, log_b, grid_b) = _result(killed), _result(straight)
    assert step_a == step_b == STEPS and tensors_a.keys() == tensors_b.keys() and len(tensors_a) > 20
    for name, t in tensors_a.items():
        assert torch.equal(t, tensors_b[name]), name
    assert len(log_a) == STEPS // 5 and log_a == log_b  # the rows after the kill's checkpoint redone, not doubled
    assert grid_a == grid_b
