"""Loading a trained run: `load_run` rebuilds the model safely, `policy_controller` makes it a controller."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from stable_baselines3.common.base_class import BaseAlgorithm

from controllers.evaluation import Controller
from controllers.rl.models import _build_model, _restore_model
from controllers.rl.normalize import ObsNormalizer, _vec_env, probe_env
from controllers.rl.runs import (
    _ckpt_paths,
    algo_of,
    checkpoint_steps,
    env_id_of,
    read_config,
)
from robot_env.io.errors import ConfigError, MissingPathError


# -- loading runs ----------------------------------------------------------------------------------
@dataclass
class LoadedRun:
    """A trained model rebuilt from its run folder."""

    run_dir: Path
    config: dict
    model: BaseAlgorithm
    model_path: Path
    normalizer: ObsNormalizer | None
    steps_per_episode: int

    @property
    def num_timesteps(self) -> int:
        return int(self.model.num_timesteps)

    @property
    def training_episodes(self) -> float:
        """Simulated episodes spent in training: timesteps over steps per episode."""
        return self.num_timesteps / max(self.steps_per_episode, 1)

    def predict(self, obs) -> np.ndarray:
        """The deterministic action for one observation (normalized as in training)."""
        if self.normalizer is not None:
            obs = self.normalizer(obs)
        return self.model.predict(obs, deterministic=True)[0]


def model_file(run_dir: Path, best: bool, steps: int | None) -> tuple[Path, Path]:
    """(model zip, its VecNormalize file) for the final, best or a given checkpoint's model."""
    if best and steps is not None:
        raise ConfigError("choose either the best model or a checkpoint, not both.")
    if best:
        path = run_dir / "best_model.zip"
        if not path.is_file():
            raise MissingPathError(f"{run_dir} has no best model (its periodic evaluation was off or never ran).")
        return path, run_dir / "best_vecnormalize.npz"
    if steps is not None:
        paths = _ckpt_paths(run_dir, int(steps))
        if not paths["model"].is_file():
            have = checkpoint_steps(run_dir)
            raise MissingPathError(f"{run_dir} has no checkpoint at {steps} steps; checkpoints: "
                                    f"{', '.join(map(str, have)) or 'none'}.")
        return paths["model"], paths["vecnormalize"]
    if (run_dir / "model.zip").is_file():
        return run_dir / "model.zip", run_dir / "vecnormalize.npz"
    have = checkpoint_steps(run_dir)
    if not have:  # a run killed before its first checkpoint
        raise MissingPathError(f"{run_dir} has neither model.zip nor a checkpoint.")
    return model_file(run_dir, False, have[-1])


def load_run(run_dir: str | Path, best: bool = False, checkpoint_steps: int | None = None,
             device: str = "cpu") -> LoadedRun:
    """Rebuild the model of ``run_dir`` (final, ``best`` or the checkpoint at ``checkpoint_steps``), safely."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise MissingPathError(f"run folder {run_dir} does not exist.")
    config = read_config(run_dir)
    config["algo"], config["env_id"] = algo_of(config["algo"]), env_id_of(config["env_id"])
    model_path, vn_path = model_file(run_dir, best, checkpoint_steps)
    env_kwargs = dict(config.get("env_kwargs") or {})
    info = probe_env(config["env_id"], env_kwargs)
    env = _vec_env(config["env_id"], env_kwargs, 1, int(config.get("seed", 0)), "dummy")
    try:
        model = _build_model(config, env, info, int(config.get("seed", 0)), device)
        _restore_model(model, model_path, config, info, device)
    finally:
        env.close()
    normalizer = None
    if config.get("normalize"):
        if not vn_path.is_file():
            raise MissingPathError(f"{model_path} was trained with VecNormalize, but {vn_path.name} is missing.")
        normalizer = ObsNormalizer.from_file(vn_path)
    return LoadedRun(run_dir=run_dir, config=config, model=model, model_path=model_path, normalizer=normalizer,
                     steps_per_episode=int(config.get("steps_per_episode") or info.steps_per_episode))


def policy_controller(run_dir: str | Path, best: bool = False, checkpoint_steps: int | None = None,
                      device: str = "cpu") -> Controller:
    """The run's deterministic policy as a `controllers.evaluation.Controller`."""
    run = load_run(run_dir, best=best, checkpoint_steps=checkpoint_steps, device=device)
    which = "best" if best else (f"@{checkpoint_steps}" if checkpoint_steps is not None else "final")
    name = f"{run.config['algo'].upper()} {run.run_dir.name} ({which})"
    return Controller(name, lambda env, obs: run.predict(obs), training_episodes=run.training_episodes,
                      info={"run_dir": str(run.run_dir), "model": str(run.model_path),
                            "num_timesteps": run.num_timesteps, "run": run})
