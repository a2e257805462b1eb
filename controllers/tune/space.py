"""The search spaces: what a trial samples for each algorithm, as armlab hyperparameters (`controllers/rl`).

Ranges bracket ``controllers/hyperparams.yml``'s defaults for the reach envs: learning rate, batch size, network
width, discount, when learning starts, the update-to-data ratio (gradient steps per env step, the wall-time knob
on 2 cores), the target entropy of the entropy-regularised learners, and each algorithm's own knobs (TQC's dropped
quantiles, CrossQ's policy delay, TD3's action noise, PPO's rollout and clipping).
"""

from __future__ import annotations

NETS = {"small": [64, 64], "medium": [256, 256], "large": [400, 300]}  #: net_arch choices by name


def sample(trial, algo: str) -> dict:
    """Hyperparameters for ``algo`` drawn through Optuna ``trial`` (its parameters keep the names drawn here)."""
    if algo == "ppo":
        return _ppo(trial)
    net = NETS[trial.suggest_categorical("net_arch", list(NETS))]
    updates = trial.suggest_categorical("updates_per_step", [0.25, 0.5, 1.0])  # every 4 steps, 1, 2 or 4 updates
    hp = {"learning_rate": trial.suggest_float("learning_rate", 1e-4, 3e-3, log=True),
          "batch_size": trial.suggest_categorical("batch_size", [64, 128, 256, 512]),
          "gamma": trial.suggest_categorical("gamma", [0.9, 0.95, 0.98, 0.99]),
          "learning_starts": trial.suggest_categorical("learning_starts", [100, 500, 1000]),
          "train_freq": 4, "gradient_steps": int(round(4 * updates)),
          "policy_kwargs": {"net_arch": net}}
    if algo != "crossq":  # CrossQ has no target network to track
        hp["tau"] = trial.suggest_categorical("tau", [0.005, 0.01, 0.02])
    if algo in ("sac", "tqc", "crossq"):
        hp["target_entropy_per_action"] = trial.suggest_categorical("target_entropy_per_action", [1.0, 2.0, 3.0, 5.0])
    if algo == "tqc":
        hp["policy_kwargs"] = {"net_arch": net, "n_critics": 2, "n_quantiles": 25}
        hp["top_quantiles_to_drop_per_net"] = trial.suggest_categorical("top_quantiles_to_drop_per_net", [0, 2, 5])
    elif algo == "crossq":
        hp["policy_kwargs"] = {"net_arch": {"pi": net, "qf": net}}
        hp["policy_delay"] = trial.suggest_categorical("policy_delay", [1, 3])
    elif algo == "td3":
        hp.update(noise_type="normal", noise_std=trial.suggest_float("noise_std", 0.05, 0.3))
    return hp


def _ppo(trial) -> dict:
    n_steps = trial.suggest_categorical("n_steps", [128, 256, 512, 1024])
    return {"learning_rate": trial.suggest_float("learning_rate", 1e-4, 3e-3, log=True),
            "n_steps": n_steps,
            "batch_size": min(n_steps, trial.suggest_categorical("batch_size", [32, 64, 128])),
            "n_epochs": trial.suggest_categorical("n_epochs", [5, 10, 20]),
            "gamma": trial.suggest_categorical("gamma", [0.9, 0.95, 0.98, 0.99]),
            "gae_lambda": trial.suggest_categorical("gae_lambda", [0.9, 0.95, 0.98]),
            "clip_range": trial.suggest_categorical("clip_range", [0.1, 0.2, 0.3]),
            "ent_coef": trial.suggest_float("ent_coef", 1e-8, 1e-2, log=True),
            "policy_kwargs": {"net_arch": NETS[trial.suggest_categorical("net_arch", ["small", "medium"])]}}


__all__ = ["NETS", "sample"]
