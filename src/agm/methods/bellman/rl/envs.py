"""Environment utilities shared by the distributional agents (C51 and Bellman Diffusion).

Only discrete action spaces are supported (both agents output one value per action); observations
may be ``Discrete(n)`` (one-hot encoded) or a 1-D ``Box`` (used as float32). Anything else raises
``ConfigError`` naming the space.
"""
from __future__ import annotations

import math

import gymnasium as gym
import numpy as np

from agm.errors import ConfigError, DataError


class ObsEncoder:
    """Map a gymnasium observation to a float32 feature vector: one-hot for Discrete(n), identity for 1-D Box."""

    def __init__(self, space: gym.Space) -> None:
        if isinstance(space, gym.spaces.Discrete):
            self.kind, self.dim = "onehot", int(space.n)
        elif isinstance(space, gym.spaces.Box) and len(space.shape) == 1:
            self.kind, self.dim = "box", int(space.shape[0])
        else:
            raise ConfigError(
                f"env.observation_space={space!r} is not supported; accepted: Discrete(n) or a 1-D Box"
            )

    def __call__(self, obs) -> np.ndarray:
        if self.kind == "onehot":
            out = np.zeros(self.dim, dtype=np.float32)
            out[int(obs)] = 1.0
            return out
        return np.asarray(obs, dtype=np.float32)


def check_action_space(space: gym.Space) -> int:
    """Return the number of actions; raise ConfigError unless the space is Discrete."""
    if not isinstance(space, gym.spaces.Discrete):
        raise ConfigError(f"env.action_space={space!r} is not supported; accepted: Discrete(n) (both agents output one value per action)")
    return int(space.n)


def check_reward(reward: float) -> float:
    """Raise DataError for a non-finite reward (a NaN/inf return cannot be projected or regressed)."""
    r = float(reward)
    if not math.isfinite(r):
        raise DataError(f"reward={reward!r} is not finite; distributional targets need finite returns")
    return r


def check_returns(values: np.ndarray, field: str = "returns") -> np.ndarray:
    """Raise DataError if any return/reward in ``values`` is NaN or inf."""
    arr = np.asarray(values, dtype=np.float64)
    if not np.isfinite(arr).all():
        bad = arr[~np.isfinite(arr)][:3].tolist()
        raise DataError(f"{field} contains non-finite values {bad}; distributional targets need finite returns")
    return arr


def make_env(env_id: str, seed: int, **kwargs) -> tuple[gym.Env, ObsEncoder, int]:
    """gymnasium.make(env_id) seeded, its observation encoder and its number of actions (validated)."""
    env = gym.make(env_id, **kwargs)
    enc = ObsEncoder(env.observation_space)
    n_actions = check_action_space(env.action_space)
    env.action_space.seed(seed)
    return env, enc, n_actions


def linear_schedule(start: float, end: float, duration: float, t: int) -> float:
    """Epsilon-greedy schedule: linear from ``start`` to ``end`` over ``duration`` steps, then ``end`` (CleanRL's)."""
    slope = (end - start) / max(duration, 1.0)
    return max(slope * t + start, end) if end <= start else min(slope * t + start, end)
