"""Pose banks: arm poses along a trained policy's rollouts, for datasets made with ``--poses-from``.

The dataset writer (`robot_env.dataset`) never runs a policy: it reads the bank stored as
``poses.npz`` in the dataset folder. This module builds that bank from a run folder of
``armlab train`` and writes it there (`prepare_pose_bank`), once, before any frame; the file format
is `robot_env.io.dataset_format`'s (`pose_bank_bytes`, `load_pose_bank`), and
``docs/dataset-format.md`` describes the rollouts.

    cfg = prepare_pose_bank(out, DatasetConfig(poses_from="runs/ppo/ReachSignalState-v0_1"))
    robot_env.dataset.generate(out, cfg)
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pybullet as pb

from robot_env.dataset import (
    POSE_RATE,
    POSE_STREAM,
    POSES_FILE,
    TABLE_TOP,
    DatasetConfig,
    DatasetParamError,
    check_pose_bank,
    pose_bank_bytes,
    start_folder,
)
from robot_env.io.atomic import atomic_write_bytes
from robot_env.io.hashing import sha256_file
from robot_env.io.threads import torch_threads

__all__ = ["build_pose_bank", "ensure_pose_bank", "prepare_pose_bank", "resolve_poses"]


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()).rstrip(".") or type(exc).__name__


def _refuse(message: str) -> DatasetParamError:
    """A bad ``poses_from``: the command line shows ``--poses-from: ...``."""
    return DatasetParamError("poses_from", "{name}: " + message)


def _rl():
    """``controllers.rl``, imported only for ``poses_from`` (it brings torch and stable-baselines3)."""
    try:
        from controllers import rl
    except ImportError as exc:
        raise DatasetParamError("poses_from", f"{{name}} needs controllers.rl, which could not be imported "
                                              f"({_one_line(exc)}).") from None
    return rl


def _make_env(env_id: str, env_kwargs: dict, run_dir: str):
    import robot_env
    from robot_env._quiet import quiet_c_output

    try:
        with quiet_c_output():
            return robot_env.make(env_id, **env_kwargs)
    except (TypeError, ValueError, FileNotFoundError) as exc:
        raise _refuse(f"the env {env_id} of run {run_dir} cannot be built ({_one_line(exc)}).") from None


def resolve_poses(cfg: DatasetConfig) -> DatasetConfig:
    """``cfg`` with ``poses_from`` made absolute and ``poses_model_sha256`` set to the hash of the
    run's model file (its final model, else its newest checkpoint), after checking that the folder
    is a training run of ``cfg.robot``. Without ``poses_from``, ``cfg`` itself."""
    if cfg.poses_from is None:
        return cfg
    rl = _rl()
    run_dir = Path(cfg.poses_from).expanduser().resolve()
    if not run_dir.is_dir():
        raise DatasetParamError("poses_from", f"{{name}} {cfg.poses_from} is not a folder (give a run folder of "
                                              f"`armlab train`).")
    try:
        config = rl.read_config(run_dir)
        env_id = rl.env_id_of(config["env_id"])
        model_path, _ = rl.model_file(run_dir, False, None)
    except (FileNotFoundError, ValueError) as exc:
        raise _refuse(f"{_one_line(exc)}.") from None
    env_kwargs = dict(config.get("env_kwargs") or {})
    env = _make_env(env_id, env_kwargs, str(run_dir))
    try:
        robot = env.unwrapped.arm.spec.name
    finally:
        env.close()
    if robot != cfg.robot:
        raise _refuse(f"run {run_dir} was trained on {robot}, but the dataset's robot is {cfg.robot}; use a run "
                      f"trained with robot {cfg.robot!r} in its env_kwargs.")
    return replace(cfg, poses_from=str(run_dir), poses_model_sha256=sha256_file(model_path))


def _clear_of_table(body: int, cid: int) -> bool:
    """Every link above the dataset's table top (the test the dataset scene's random arm poses pass)."""
    n = pb.getNumJoints(body, physicsClientId=cid)
    return min(pb.getLinkState(body, j, computeForwardKinematics=1, physicsClientId=cid)[4][2]
               for j in range(1, n)) > TABLE_TOP + 0.04


def build_pose_bank(cfg: DatasetConfig) -> dict[str, np.ndarray]:
    """Roll the deterministic policy of ``cfg.poses_from`` out for ``cfg.pose_episodes`` episodes
    of its own env (its env kwargs; episode seeds from ``SeedSequence([cfg.seed, POSE_STREAM])``)
    and record the arm's joint positions and velocities along the way: after every step of a
    closed-loop env, and every 1/`POSE_RATE` simulated seconds while an open-loop env's single
    action plays its signal (and at its end). Poses with a link below the dataset's table top
    (+4 cm; the reach envs have no table) are dropped, like the random configurations' misses.

    Returns the bank's arrays: ``joint_positions`` and ``joint_velocities`` (N x n),
    ``episode`` and ``time`` (N, seconds since the episode's start) and the provenance
    (``rolled_out``: poses recorded before the table test, ``model_sha256``, ``env_id``,
    ``algo``, ``seed``, ``episodes``)."""
    cfg = resolve_poses(cfg.validate()) if cfg.poses_model_sha256 is None else cfg
    rl = _rl()
    from robot_env._quiet import quiet_c_output
    from robot_env.envs import ReachSignalEnv

    try:
        with quiet_c_output():
            run = rl.load_run(cfg.poses_from)
    except (FileNotFoundError, ValueError) as exc:
        raise _refuse(f"{_one_line(exc)}.") from None
    if sha256_file(run.model_path) != cfg.poses_model_sha256:
        raise _refuse(f"the model file {run.model_path} changed since the dataset was started; choose a new "
                      f"output folder.")
    env_id = run.config["env_id"]
    env = _make_env(env_id, dict(run.config.get("env_kwargs") or {}), cfg.poses_from)
    u = env.unwrapped
    dt = u.world.timestep
    open_loop = isinstance(u, ReachSignalEnv)
    every = max(1, round(1.0 / (POSE_RATE * dt)))
    q_rows, qd_rows, episodes, times = [], [], [], []
    rolled_out = 0

    def record(ep: int, t: float) -> bool:
        nonlocal rolled_out
        q, qd = u.arm.joint_state()
        if not (np.isfinite(q).all() and np.isfinite(qd).all()):
            return False  # a physics blow-up ends the episode's poses
        rolled_out += 1
        if _clear_of_table(u.arm.body, u.world.id):
            q_rows.append(q)
            qd_rows.append(qd)
            episodes.append(ep)
            times.append(t)
        return True

    seeds = np.random.SeedSequence([cfg.seed, POSE_STREAM]).generate_state(cfg.pose_episodes)
    try:
        with torch_threads(1):
            for ep, seed in enumerate(seeds.tolist()):
                obs, _ = env.reset(seed=int(seed))
                if open_loop:  # the one action is the whole signal: play it in chunks of `every` steps
                    x = np.clip(np.asarray(run.predict(obs), dtype=np.float64).reshape(-1), -1.0, 1.0)
                    rows, per = u.task.commands(x)
                    t, ok = 0, True
                    for row in rows:
                        left = per
                        while left and ok:
                            k = min(left, every - t % every)
                            u.arm.run((row,), k)
                            t, left = t + k, left - k
                            if t % every == 0 or t == u.task.n_steps:
                                ok = record(ep, t * dt)
                        if not ok:
                            break
                else:
                    done, k = False, 0
                    while not done:
                        obs, _, terminated, truncated, info = env.step(run.predict(obs))
                        k += 1
                        done = terminated or truncated
                        if "physics_error" in info or not record(ep, k * u.substeps * dt):
                            break
    finally:
        env.close()
    if not q_rows:
        raise _refuse(f"none of the {rolled_out} poses along {cfg.pose_episodes} rollouts of {cfg.poses_from} "
                      f"keeps the arm above the dataset's table; use another run.")
    n = len(q_rows[0])
    return {
        "joint_positions": np.array(q_rows, dtype=np.float64).reshape(-1, n),
        "joint_velocities": np.array(qd_rows, dtype=np.float64).reshape(-1, n),
        "episode": np.array(episodes, dtype=np.int32), "time": np.array(times, dtype=np.float64),
        "rolled_out": np.array(rolled_out, dtype=np.int64), "model_sha256": np.array(cfg.poses_model_sha256),
        "env_id": np.array(env_id), "algo": np.array(run.config["algo"]),
        "seed": np.array(cfg.seed, dtype=np.int64), "episodes": np.array(cfg.pose_episodes, dtype=np.int64),
    }


def ensure_pose_bank(out: str | Path, cfg: DatasetConfig) -> dict[str, np.ndarray]:
    """The bank stored in ``out`` (a resumed run, or one put there for shards on several machines),
    checked against ``cfg`` (resolved: `resolve_poses`); else a new one, built and written atomically
    (and durably) as ``out/poses.npz``."""
    if (Path(out) / POSES_FILE).exists():
        return check_pose_bank(out, cfg)
    bank = build_pose_bank(cfg)
    atomic_write_bytes(Path(out) / POSES_FILE, pose_bank_bytes(bank), durable=True)
    return bank


def prepare_pose_bank(out: str | Path, cfg: DatasetConfig, workers: int = 1,
                      shard: tuple[int, int] | None = None) -> DatasetConfig:
    """Get ``out`` ready for ``robot_env.dataset.generate(out, cfg, workers=workers, shard=shard)`` with
    ``cfg.poses_from``: resolve the run (`resolve_poses`), make the checks ``generate`` makes (a folder
    started with other settings is refused before any rollout), and store the pose bank
    (`ensure_pose_bank`). Returns the resolved config to generate with; without ``poses_from``, ``cfg``."""
    cfg = cfg.validate()
    if cfg.poses_from is None:
        return cfg
    cfg = resolve_poses(cfg)
    start_folder(out, cfg, workers, shard)
    ensure_pose_bank(out, cfg)
    return cfg
