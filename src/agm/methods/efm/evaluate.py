"""Policy evaluation: batched rollouts over several gymnasium environments and D4RL-normalised scores."""
from __future__ import annotations

from typing import Callable

import gymnasium as gym
import numpy as np

from agm.errors import DataError, check_positive
from agm.methods.efm.behaviour import normalized_score

ActFn = Callable[[np.ndarray], np.ndarray]


def evaluate_policy(act: ActFn, env_id: str, episodes: int = 10, seed: int = 0) -> list[float]:
    """Undiscounted returns of ``episodes`` episodes run side by side (one batched ``act`` call per step);
    env e is reset with seed ``seed + e``. ``act`` maps observations (B, obs_dim) to actions (B, act_dim)."""
    check_positive("episodes", episodes, integer=True)
    envs = [gym.make(env_id) for _ in range(episodes)]
    obs = np.stack([e.reset(seed=seed + i)[0] for i, e in enumerate(envs)])
    act_shape = envs[0].action_space.shape
    returns = np.zeros(episodes)
    alive = np.ones(episodes, dtype=bool)
    while alive.any():
        ids = np.nonzero(alive)[0]
        a = np.asarray(act(obs[ids]), dtype=np.float32)
        if a.shape != (len(ids), *act_shape):
            raise DataError(f"policy returned actions of shape {a.shape}; accepted: ({len(ids)}, {', '.join(map(str, act_shape))})")
        for k, i in enumerate(ids):
            o, r, term, trunc, _ = envs[i].step(a[k])
            returns[i] += float(r)
            obs[i] = o
            if term or trunc:
                alive[i] = False
    for e in envs:
        e.close()
    return returns.tolist()


def score_summary(returns: list[float], ref_random: float, ref_expert: float) -> dict:
    """Mean/std of returns and of normalised scores 100 (R - R_random) / (R_expert - R_random)."""
    r = np.asarray(returns, dtype=np.float64)
    s = normalized_score(r, ref_random, ref_expert)
    return {"return_mean": float(r.mean()), "return_std": float(r.std()), "score_mean": float(s.mean()), "score_std": float(s.std())}
