"""Fixtures shared by the test modules: envs that close, one torch thread, tiny rendered datasets."""

import os

import gymnasium as gym
import pytest

os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture
def make():
    """``gym.make`` whose envs are closed after the test."""
    envs = []

    def _make(env_id, **kw):
        env = gym.make(env_id, **kw)
        envs.append(env)
        return env

    yield _make
    for e in envs:
        e.close()


@pytest.fixture
def one_thread():
    """One torch thread for the test: tiny models run fastest on one (and much faster than on two on a busy
    2-core machine, or beside another pytest-xdist worker)."""
    from robot_env.io.threads import torch_threads

    with torch_threads(1):
        yield


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory):
    """``tiny_dataset(n=..., size=..., seed=..., style=...)``: the folder of a rendered armlab dataset with those
    settings, rendered once per test session (per xdist worker) and shared; treat it as read-only."""
    from robot_env.dataset import DatasetConfig, generate

    cache = {}

    def _dataset(n: int = 24, size: int = 16, seed: int = 0, style: str = "sim", **kw):
        key = (n, size, seed, style, tuple(sorted(kw.items())))
        if key not in cache:
            name = f"{style}-n{n}-s{size}-seed{seed}" + "".join(f"-{k}{v}" for k, v in sorted(kw.items()))
            out = tmp_path_factory.mktemp("datasets") / name
            generate(out, DatasetConfig(n=n, size=size, seed=seed, style=style, **kw), workers=1, progress=False)
            cache[key] = out
        return cache[key]

    return _dataset


@pytest.fixture(scope="session")
def cast_folder():
    """``cast_folder(images, out, gains)``: write uint8 ``(N, 3, H, W)`` images as PNGs ``000.png ...`` into the new
    folder ``out`` as a camera with the RGB ``gains`` would see them (a colour cast: a toy "real" domain); returns
    ``out``."""
    import cv2
    import numpy as np

    def _write(images, out, gains):
        out.mkdir(parents=True)
        for i, img in enumerate(images.permute(0, 2, 3, 1).numpy()):
            cast = np.clip(img * np.asarray(gains), 0, 255).round().astype(np.uint8)
            cv2.imwrite(str(out / f"{i:03d}.png"), np.ascontiguousarray(cast[:, :, ::-1]))
        return out

    return _write
