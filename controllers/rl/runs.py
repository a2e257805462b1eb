"""Names, run folders and their files: ``{folder}/{algo}/{env_name}_{N}/`` with ``config.yml`` and ``checkpoints/``."""

from __future__ import annotations

import fnmatch
import re
from pathlib import Path

import numpy as np
import yaml
from stable_baselines3 import PPO, SAC, TD3
from stable_baselines3.common.base_class import BaseAlgorithm

import robot_env
from robot_env.io.errors import ConfigError, DataError, MissingPathError, ParamError, unwritable

ALGOS: dict[str, type[BaseAlgorithm]] = {"ppo": PPO, "sac": SAC, "td3": TD3}
try:
    from sb3_contrib import TQC, CrossQ

    ALGOS["tqc"] = TQC
    ALGOS["crossq"] = CrossQ  # batch-normalised critics, no target network (Bhatt et al. 2024)
except ImportError:  # pragma: no cover - sb3-contrib is a dependency; keep the other algos usable without it
    TQC = None
OFF_POLICY = ("sac", "td3", "tqc", "crossq")
EVAL_SEED = 500_000  #: the periodic evaluation's contexts (apart from training and held-out seeds)
RESUME_SEEDS = (2**31, 2**31 + 2**30)  #: [low, high): where a resumed run's seed is drawn, above every evaluation seed
CONFIG = "config.yml"
CHECKPOINTS = "checkpoints"
_CKPT_MODEL = re.compile(r"^rl_model_(\d+)_steps\.zip$")

# -- names, folders, files ------------------------------------------------------------------------
def env_id_of(name: str) -> str:
    """The armlab id for ``name`` (with or without the ``armlab/`` prefix)."""
    if name in robot_env.ENV_IDS:
        return name
    if f"armlab/{name}" in robot_env.ENV_IDS:
        return f"armlab/{name}"
    raise ConfigError(f"unknown env id {name!r}; armlab ids: {', '.join(robot_env.ENV_IDS)}.")


def algo_of(name: str) -> str:
    """The lower-case algorithm name, checked against `ALGOS`."""
    algo = str(name).lower()
    if algo not in ALGOS:
        raise ConfigError(f"unknown algo {name!r}; choose one of {', '.join(ALGOS)}.")
    return algo


def env_name_of(env_id: str) -> str:
    """The id without its ``armlab/`` prefix: the run folders' name."""
    return env_id.split("/", 1)[-1]


def _runs(folder: Path, algo: str, env_id: str) -> dict[int, Path]:
    base = Path(folder) / algo
    pattern = re.compile(rf"^{re.escape(env_name_of(env_id))}_(\d+)$")
    if not base.is_dir():
        return {}
    return {int(m.group(1)): p for p in base.iterdir() if p.is_dir() and (m := pattern.match(p.name))}


def find_run(folder: str | Path, algo: str, env_id: str, exp_id: int | None = None) -> Path:
    """The run folder ``{folder}/{algo}/{env_name}_{exp_id}`` (the latest one when ``exp_id`` is None)."""
    algo, env_id = algo_of(algo), env_id_of(env_id)
    runs = _runs(Path(folder), algo, env_id)
    where = Path(folder) / algo / f"{env_name_of(env_id)}_N"
    if not runs:
        raise MissingPathError(f"no {algo} run of {env_id} in {folder} (looked for {where}).")
    if exp_id is None:
        return runs[max(runs)]
    if exp_id not in runs:
        raise MissingPathError(f"no run {exp_id} of {algo} on {env_id} in {folder}; runs there: "
                                f"{', '.join(str(n) for n in sorted(runs))}.")
    return runs[exp_id]


def find_runs(folder: str | Path, algo: str, env_id: str, spec: str) -> list[Path]:
    """The run folders that ``spec`` names: run numbers and shell globs over them, comma-separated (``1,2,3``,
    ``*``, ``1?``), each folder once, in run order."""
    algo, env_id = algo_of(algo), env_id_of(env_id)
    tokens = [t.strip() for t in str(spec).split(",") if t.strip()]
    if not tokens:
        raise ParamError("exp_id", f"{{name}} needs run numbers or globs such as 1,2,3 or '*', got {spec!r}.")
    runs = _runs(Path(folder), algo, env_id)
    picked: dict[int, Path] = {}
    for token in tokens:
        if token.isdigit():
            n = int(token)
            picked[n] = find_run(folder, algo, env_id, n)
            continue
        if not set(token) & set("*?["):
            raise ParamError("exp_id", f"{{name}} takes run numbers and globs such as 1,2,3 or '*', got {token!r}.")
        hits = {n: p for n, p in runs.items() if fnmatch.fnmatchcase(str(n), token)}
        if not hits:
            raise MissingPathError(f"no run of {algo} on {env_id} in {folder} matches {token!r}; runs there: "
                                   f"{', '.join(str(n) for n in sorted(runs)) or 'none'}.")
        picked.update(hits)
    return [picked[n] for n in sorted(picked)]


def resume_seed(seed: int, steps: int) -> int:
    """The seed of a run resumed after ``steps`` env steps (its envs get this + 0, 1, ..., n_envs - 1; the model
    this). Drawn by numpy's ``SeedSequence`` from ``(seed, steps)`` into `RESUME_SEEDS`, [2**31, 2**31 + 2**30):
    disjoint from the periodic evaluation's `EVAL_SEED` and the held-out contexts' ``HELD_OUT_SEED + i``
    (`controllers.evaluation`, all below 2**31), unlike ``seed + steps``, and still a 32-bit seed with the env index
    added. Each resume of a run (another ``steps``) gets its own stream. A fresh run uses ``seed`` itself."""
    low, high = RESUME_SEEDS
    draw = int(np.random.SeedSequence([int(seed) & (2**64 - 1), int(steps)]).generate_state(1, np.uint64)[0])
    return low + draw % (high - low)


def _new_run_dir(folder: Path, algo: str, env_id: str) -> Path:
    n = max(_runs(folder, algo, env_id), default=0) + 1
    while True:
        path = folder / algo / f"{env_name_of(env_id)}_{n}"
        try:
            path.mkdir(parents=True)
            return path
        except FileExistsError:  # another process took it
            n += 1
        except OSError as exc:  # a file in the way, no permission, a read-only file system
            raise unwritable(path, exc) from None


def read_config(run_dir: str | Path) -> dict:
    """The ``config.yml`` of a run folder."""
    path = Path(run_dir) / CONFIG
    if not path.is_file():
        raise MissingPathError(f"{run_dir} is not a training run: it has no {CONFIG}.")
    try:
        config = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise DataError(f"{path} is not valid YAML ({type(exc).__name__}).") from exc
    if not isinstance(config, dict) or not {"algo", "env_id", "hyperparams"} <= set(config):
        raise DataError(f"{path} lacks algo, env_id or hyperparams: not an armlab training config.")
    return config


def checkpoint_steps(run_dir: str | Path) -> list[int]:
    """Steps of the run's saved checkpoints, oldest first."""
    ckpt = Path(run_dir) / CHECKPOINTS
    if not ckpt.is_dir():
        return []
    return sorted(int(m.group(1)) for p in ckpt.iterdir() if (m := _CKPT_MODEL.match(p.name)))


def _ckpt_paths(run_dir: Path, steps: int) -> dict[str, Path]:
    ckpt = Path(run_dir) / CHECKPOINTS
    return {"model": ckpt / f"rl_model_{steps}_steps.zip",
            "vecnormalize": ckpt / f"rl_model_vecnormalize_{steps}_steps.npz",
            "replay_buffer": ckpt / f"rl_model_replay_buffer_{steps}_steps.npz"}



def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text[:300].rstrip(".")
