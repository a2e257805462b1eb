"""The lecture's "regression, if we had enough examples": learn context -> x from optimized contexts.

The examples are what costs: each is a context solved by CMA-ES (hundreds of simulated
episodes). `collect` pays that cost and counts it; `fit` trains a small MLP (torch) from the
observation ``[j, v, p]`` to the signal x; `Regressor` predicts, saves and loads (weights
only, loaded with ``weights_only=True``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
from torch import nn
from tqdm import tqdm

import robot_env  # noqa: F401  (registers the ids)
from controllers.evaluation import Controller
from controllers.optimization import cmaes
from robot_env.io.atomic import atomic_write
from robot_env.io.errors import DataError


@dataclass
class Examples:
    """Optimized contexts: observations, best signals, their distances, and what they cost."""

    obs: np.ndarray
    x: np.ndarray
    y: np.ndarray
    costs: np.ndarray  #: simulated episodes the optimizer spent on each example

    @property
    def episodes(self) -> int:
        """Simulated episodes spent on all examples."""
        return int(self.costs.sum())


def collect(env_id: str, n: int, budget: int = 300, seed: int = 0, progress: bool = False, consistent: bool = True,
            **env_kwargs) -> Examples:
    """Draw ``n`` contexts (seeds ``seed..seed+n-1``) and solve each with CMA-ES.

    Similar contexts often have several solutions (elbow up or down; the shoulder fighting
    gravity from either side) and an MLP trained on a mix of them learns their average,
    which solves nothing. With ``consistent`` each search starts from the solution of the
    nearest context solved so far, with a small step, so the examples follow one branch
    wherever the budget allows (restarts from random points remain the fallback).
    """
    env = gym.make(env_id, **env_kwargs)
    u = env.unwrapped
    dim = env.action_space.shape[0]
    obs, xs, ys, costs = [], [], [], []
    try:
        for i in tqdm(range(n), desc="optimize examples", disable=not progress):
            o, _ = env.reset(seed=seed + i)
            x0, sigma0 = None, 0.3
            if consistent and obs:
                scale = np.std(obs, axis=0) + 1e-6 if len(obs) > 1 else np.ones_like(o)
                nearest = int(np.argmin(np.sum(((np.array(obs) - o) / scale) ** 2, axis=1)))
                x0, sigma0 = xs[nearest], 0.15
            res = cmaes(u.evaluate, dim, budget=budget, seed=seed + i, target=0.002, x0=x0, sigma0=sigma0)
            obs.append(o)
            xs.append(res.x)
            ys.append(res.y)
            costs.append(res.evaluations)
    finally:
        env.close()
    return Examples(np.array(obs, np.float32), np.array(xs, np.float32), np.array(ys), np.array(costs))


class SignalMLP(nn.Module):
    """Standardized observation -> signal in [-1, 1] (tanh output)."""

    def __init__(self, n_in: int, n_out: int, hidden: int = 128) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(n_in, hidden), nn.SiLU(),
            nn.Linear(hidden, hidden), nn.SiLU(),
            nn.Linear(hidden, n_out), nn.Tanh(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


@dataclass
class Regressor:
    """A fitted context -> x map with its input standardization."""

    model: SignalMLP
    mean: np.ndarray
    std: np.ndarray
    losses: list[float] = field(default_factory=list)

    def predict(self, obs: np.ndarray) -> np.ndarray:
        z = (np.asarray(obs, np.float32) - self.mean) / self.std
        with torch.no_grad():
            return self.model(torch.as_tensor(z, dtype=torch.float32)).numpy().astype(np.float64)

    def save(self, path: str | Path) -> None:
        """Atomic save of weights and standardization (plain tensors, no pickled code)."""
        blob = {
            "state_dict": self.model.state_dict(),
            "mean": torch.as_tensor(self.mean), "std": torch.as_tensor(self.std),
            "shape": torch.tensor([self.model.net[0].in_features, self.model.net[-2].out_features,
                                   self.model.net[0].out_features]),
        }
        atomic_write(path, lambda tmp: torch.save(blob, tmp))

    @classmethod
    def load(cls, path: str | Path) -> Regressor:
        try:
            blob = torch.load(Path(path), map_location="cpu", weights_only=True)
            n_in, n_out, hidden = (int(v) for v in blob["shape"])
            model = SignalMLP(n_in, n_out, hidden)
            model.load_state_dict(blob["state_dict"])
        except FileNotFoundError:
            raise
        except Exception as exc:
            raise DataError(f"{path} is not a readable armlab regression model ({type(exc).__name__}).") from None
        model.eval()
        return cls(model, blob["mean"].numpy(), blob["std"].numpy())


def fit(obs: np.ndarray, x: np.ndarray, epochs: int = 2000, lr: float = 3e-3, hidden: int = 128, seed: int = 0,
        weight_decay: float = 1e-5) -> Regressor:
    """Full-batch Adam on the mean squared error of the signal."""
    torch.manual_seed(seed)
    obs = np.asarray(obs, np.float32)
    mean = obs.mean(axis=0)
    std = obs.std(axis=0)
    std = np.where(std > 1e-6, std, 1.0).astype(np.float32)  # constant inputs (fixed j or p) pass through as 0
    z = torch.as_tensor((obs - mean) / std)
    target = torch.as_tensor(np.asarray(x, np.float32))
    model = SignalMLP(obs.shape[1], target.shape[1], hidden)
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    losses = []
    for _ in range(epochs):
        opt.zero_grad()
        loss = nn.functional.mse_loss(model(z), target)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    model.eval()
    return Regressor(model, mean, std, losses)


def regression_controller(reg: Regressor, training_episodes: int, name: str | None = None) -> Controller:
    """A `Controller` that maps the observation to x in one forward pass (one episode per decision)."""
    return Controller(name or f"regression ({training_episodes:,} ep.)", lambda env, obs: reg.predict(obs),
                      training_episodes=training_episodes)
