"""SB3 agents on the armlab envs: PPO, SAC, TD3 (stable-baselines3), TQC and CrossQ (sb3-contrib), HER.

`train` runs one of them on any registered id, rl-zoo3 style, into
``{folder}/{algo}/{env_name}_{N}/`` (``env_name`` is the id without ``armlab/``)::

    config.yml                  everything used: algo, env id and kwargs, merged hyperparameters,
                                seed, timesteps, eval and checkpoint settings, package versions
    model.zip                   the final model (SB3's zip format), vecnormalize.npz next to it
    best_model.zip              the best model of the periodic evaluation (+ best_vecnormalize.npz)
    evaluations.npz             the periodic evaluation results
    checkpoints/                rl_model_{steps}_steps.zip (all kept) with
                                rl_model_vecnormalize_{steps}_steps.npz and, off-policy, the
                                latest rl_model_replay_buffer_{steps}_steps.npz
    tb/                         TensorBoard logs, when tensorboard is installed

Every file is written to a temporary name and moved into place with ``os.replace``, the
model zip of a checkpoint last, so a killed run never leaves a half-written file and its
newest checkpoint is always complete: ``train(..., resume=True)`` continues from it (model,
optimizers, entropy coefficient, replay buffer, VecNormalize statistics, step counter).

Loading is safe by construction. SB3's ``load`` unpickles parts of the zip (spaces,
schedules, the policy class) with cloudpickle, which runs code from the file. Here the
model is rebuilt from ``config.yml`` (YAML, ``safe_load``) and only its tensors are read
from the zip, with ``torch.load(weights_only=True)`` passed explicitly (what SB3's
``load_from_zip_file`` does with ``load_data=False``); the zip's JSON part is parsed as plain JSON for the step counters
and the recorded space shapes (checked against the env), and the VecNormalize statistics
are an ``.npz`` read with ``allow_pickle=False``. A truncated or corrupt zip, or one
trained with another algorithm, env, robot or network, raises a one-sentence
``ValueError``. The replay buffer is an ``.npz`` too (its numeric arrays, cut to the
filled rows), so nothing in a run folder is unpickled. SB3 itself can still ``load``
these zips (rl-zoo3, enjoy scripts).

The package's rooms: `runs` (names, run folders, config, checkpoint names), `hyperparams`
(``hyperparams.yml``, checked overrides, schedules), `normalize` (env probing, vec envs,
VecNormalize files), `policies` (the asymmetric actor-critic, constructor arguments), `models`
(build and safe restore), `checkpoints` (replay buffers, atomic checkpoints, callbacks),
`training` (`train`) and `loading` (`load_run`, `policy_controller`). Everything public is
re-exported here: ``from controllers import rl; rl.train(...)``.
"""

from __future__ import annotations

from controllers.rl.checkpoints import StopAfterSeconds, load_replay_buffer, save_checkpoint, save_replay_buffer
from controllers.rl.hyperparams import (
    HYPERPARAMS_FILE,
    LinearDecay,
    default_env_kwargs,
    load_hyperparams,
    parse_schedule,
    valid_hyperparams,
)
from controllers.rl.loading import LoadedRun, load_run, model_file, policy_controller
from controllers.rl.normalize import EnvInfo, ObsNormalizer, load_vecnormalize_stats, probe_env, save_vecnormalize
from controllers.rl.policies import LeadingFeatures, asymmetric_policy
from controllers.rl.runs import (
    ALGOS,
    EVAL_SEED,
    OFF_POLICY,
    RESUME_SEEDS,
    algo_of,
    checkpoint_steps,
    env_id_of,
    env_name_of,
    find_run,
    find_runs,
    read_config,
    resume_seed,
)
from controllers.rl.training import TrainResult, train

__all__ = [
    "ALGOS", "EVAL_SEED", "HYPERPARAMS_FILE", "OFF_POLICY", "EnvInfo", "LeadingFeatures", "LinearDecay", "LoadedRun",
    "ObsNormalizer", "RESUME_SEEDS", "StopAfterSeconds", "TrainResult", "algo_of", "asymmetric_policy",
    "checkpoint_steps", "default_env_kwargs", "env_id_of", "env_name_of", "find_run", "find_runs", "load_hyperparams",
    "load_run", "load_replay_buffer", "load_vecnormalize_stats", "model_file", "parse_schedule", "policy_controller",
    "probe_env", "read_config", "resume_seed", "save_checkpoint", "save_replay_buffer", "save_vecnormalize", "train",
    "valid_hyperparams",
]
