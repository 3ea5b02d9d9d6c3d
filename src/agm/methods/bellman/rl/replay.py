"""A uniform replay buffer of (obs, action, reward, next_obs, terminated) for the distributional agents."""
from __future__ import annotations

import numpy as np
import torch

from agm.errors import check_positive
from agm.methods.bellman.rl.envs import check_reward


class ReplayBuffer:
    """Ring buffer of transitions. ``terminated`` (not time-limit truncation) stops bootstrapping."""

    def __init__(self, capacity: int, obs_dim: int, seed: int = 0) -> None:
        check_positive("replay.capacity", capacity, integer=True)
        self.capacity = capacity
        self.obs = np.zeros((capacity, obs_dim), dtype=np.float32)
        self.next_obs = np.zeros((capacity, obs_dim), dtype=np.float32)
        self.actions = np.zeros(capacity, dtype=np.int64)
        self.rewards = np.zeros(capacity, dtype=np.float32)
        self.terminated = np.zeros(capacity, dtype=np.float32)
        self.pos, self.size = 0, 0
        self.rng = np.random.default_rng(seed)

    def add(self, obs: np.ndarray, action: int, reward: float, next_obs: np.ndarray, terminated: bool) -> None:
        """Store one transition (reward checked finite)."""
        i = self.pos
        self.obs[i], self.actions[i], self.rewards[i] = obs, action, check_reward(reward)
        self.next_obs[i], self.terminated[i] = next_obs, float(terminated)
        self.pos = (self.pos + 1) % self.capacity
        self.size = min(self.size + 1, self.capacity)

    def __len__(self) -> int:
        return self.size

    def sample(self, batch_size: int) -> dict[str, torch.Tensor]:
        """Uniform sample with replacement: dict of tensors obs, actions, rewards, next_obs, terminated."""
        idx = self.rng.integers(0, self.size, size=batch_size)
        return {
            "obs": torch.from_numpy(self.obs[idx]),
            "actions": torch.from_numpy(self.actions[idx]),
            "rewards": torch.from_numpy(self.rewards[idx]),
            "next_obs": torch.from_numpy(self.next_obs[idx]),
            "terminated": torch.from_numpy(self.terminated[idx]),
        }
