"""One training loop for both distributional agents (CleanRL-style DQN loop: epsilon-greedy,
replay, train every ``train_frequency`` steps after ``learning_starts``, hard target sync)."""
from __future__ import annotations

import random
import time
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from agm.errors import check_choice, check_positive
from agm.methods.bellman.rl.bellman_diffusion import BDConfig, BellmanDiffusionAgent
from agm.methods.bellman.rl.c51 import C51Agent, C51Config
from agm.methods.bellman.rl.envs import check_reward, linear_schedule, make_env
from agm.methods.bellman.rl.replay import ReplayBuffer

AGENTS = ("c51", "bd")


@dataclass
class LoopConfig:
    """Loop settings shared by both agents (same for C51 and BD in every comparison)."""

    total_steps: int = 50_000
    buffer_size: int = 10_000
    batch_size: int = 128
    learning_starts: int = 1_000
    train_frequency: int = 4
    target_frequency: int = 500
    start_e: float = 1.0
    end_e: float = 0.05
    exploration_fraction: float = 0.5
    eval_every: int = 0
    eval_episodes: int = 0

    def __post_init__(self) -> None:
        for k in ("total_steps", "buffer_size", "batch_size", "learning_starts", "train_frequency", "target_frequency"):
            check_positive(f"loop.{k}", getattr(self, k), integer=True)
        check_positive("loop.exploration_fraction", self.exploration_fraction)


def build_agent(name: str, obs_dim: int, n_actions: int, agent_cfg: dict | None = None):
    """'c51' -> C51Agent, 'bd' -> BellmanDiffusionAgent, with keyword settings from ``agent_cfg``."""
    check_choice("agent", name, AGENTS)
    agent_cfg = dict(agent_cfg or {})
    if "hidden" in agent_cfg:
        agent_cfg["hidden"] = tuple(agent_cfg["hidden"])
    if name == "c51":
        return C51Agent(obs_dim, n_actions, C51Config(**agent_cfg))
    return BellmanDiffusionAgent(obs_dim, n_actions, BDConfig(**agent_cfg))


@torch.no_grad()
def evaluate(agent, env_id: str, episodes: int, seed: int, env_kwargs: dict | None = None) -> float:
    """Mean undiscounted return of the greedy policy over ``episodes`` episodes."""
    env, enc, _ = make_env(env_id, seed, **(env_kwargs or {}))
    total = 0.0
    for ep in range(episodes):
        obs, _ = env.reset(seed=seed + 10_000 + ep)
        done = False
        while not done:
            obs, r, term, trunc, _ = env.step(agent.act(torch.from_numpy(enc(obs))))
            total += float(r)
            done = term or trunc
    env.close()
    return total / episodes


def train_agent(name: str, env_id: str, seed: int, loop: LoopConfig, agent_cfg: dict | None = None, env_kwargs: dict | None = None, log=None):
    """Train one agent; returns (agent, record) with per-episode (step, return) and optional greedy evaluations."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    env, enc, n_actions = make_env(env_id, seed, **(env_kwargs or {}))
    agent = build_agent(name, enc.dim, n_actions, agent_cfg)
    rb = ReplayBuffer(loop.buffer_size, enc.dim, seed)
    rng = np.random.default_rng(seed)
    obs, _ = env.reset(seed=seed)
    o = enc(obs)
    ep_ret, episodes, evals, losses = 0.0, [], [], []
    t0 = time.time()
    for step in range(loop.total_steps):
        eps = linear_schedule(loop.start_e, loop.end_e, loop.exploration_fraction * loop.total_steps, step)
        a = int(rng.integers(n_actions)) if rng.random() < eps else agent.act(torch.from_numpy(o))
        nobs, r, term, trunc, _ = env.step(a)
        r = check_reward(r)
        no = enc(nobs)
        rb.add(o, a, r, no, term)
        ep_ret += r
        o = no
        if term or trunc:
            episodes.append((step + 1, ep_ret))
            if log is not None:
                log(f"{name} seed={seed} step={step + 1} episodic_return={ep_ret:.2f}")
            ep_ret = 0.0
            obs, _ = env.reset()
            o = enc(obs)
        if step >= loop.learning_starts:
            if step % loop.train_frequency == 0:
                losses.append(agent.update(rb.sample(loop.batch_size)))
            if step % loop.target_frequency == 0:
                agent.sync_target()
        if loop.eval_every and loop.eval_episodes and (step + 1) % loop.eval_every == 0:
            evals.append((step + 1, evaluate(agent, env_id, loop.eval_episodes, seed, env_kwargs)))
    env.close()
    record = {
        "agent": name,
        "env_id": env_id,
        "seed": seed,
        "episodes": episodes,
        "evals": evals,
        "final_loss": float(np.mean(losses[-100:])) if losses else None,
        "wall_s": time.time() - t0,
        "loop": asdict(loop),
        "agent_cfg": agent_cfg or {},
    }
    return agent, record
