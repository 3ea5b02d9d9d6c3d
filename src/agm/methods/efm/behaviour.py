"""Built-in offline data sets: documented behaviour policies of mixed quality on gymnasium tasks that run offline.

Scripted experts (our design; no trained weights, nothing downloaded):

* Pendulum-v1 (dynamics theta'' = 3g/(2l) sin(theta) + 3/(m l^2) u, g = 10, m = l = 1, |u| <= 2):
  energy pumping + PD stabilisation. With H = 1/2 theta'^2 + 15 (cos theta - 1) (H = 0 upright at rest,
  dH/dt = 3 u theta'), the expert plays u = clip(-(k_p theta + k_d theta'), -2, 2) when cos(theta) > 0.85 and
  |theta'| < 4 ("catch"), else u = 2 sign(theta') if H < 0 (pump energy in) and u = -0.5 theta' otherwise.
* MountainCarContinuous-v0: push along the velocity, u = sign(v) (u = 1 while v = 0).
* InvertedPendulum-v5 (MuJoCo; needs the ``mujoco`` package, 4.0.0 here): linear state feedback
  u = clip(1 x + 10 theta + 1 x' + 1 theta', -3, 3) on obs = (x, theta, x', theta'); returns 1000/1000 on the
  reference episodes (gains found by a small hand search, our design).
* Any other Box-action task (e.g. Hopper-v5 when mujoco is installed): uniform random only.

Behaviour mixture ("mixed"): each episode draws one policy from
  expert + N(0, (0.1 half-range)^2) noise, expert + N(0, (1.0 half-range)^2) noise, epsilon-expert (each step a
  uniform random action with prob. 0.5), uniform random,
with probabilities given by ``mixture`` (default equal). Noise scales are fractions of the half action range.
Reference returns for normalised scores (D4RL convention, 100 (R - R_random) / (R_expert - R_random)) are
measured with the clean expert and the uniform-random policy and stored in the data set's metadata.
"""
from __future__ import annotations

import math
from typing import Callable

import gymnasium as gym
import numpy as np

from agm.errors import ConfigError, check_choice, check_positive
from agm.data.offline import OfflineDataset

Policy = Callable[[np.ndarray, np.random.Generator], np.ndarray]
BUILTIN_ENVS = ("Pendulum-v1", "MountainCarContinuous-v0", "InvertedPendulum-v5")
BEHAVIOURS = ("expert_low_noise", "expert_high_noise", "epsilon_expert", "random")


def pendulum_expert(obs: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
    """Energy-pumping swing-up with PD catch for Pendulum-v1 (module docstring); obs = (cos, sin, theta')."""
    c, s, w = float(obs[0]), float(obs[1]), float(obs[2])
    th = math.atan2(s, c)
    if c > 0.85 and abs(w) < 4.0:
        u = -(10.0 * th + 2.0 * w)
    else:
        H = 0.5 * w * w + 15.0 * (c - 1.0)
        u = 2.0 * math.copysign(1.0, w if w != 0 else 1.0) if H < 0 else -0.5 * w
    return np.array([min(2.0, max(-2.0, u))], dtype=np.float32)


def mountaincar_expert(obs: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
    """u = sign(velocity) (1 at rest) for MountainCarContinuous-v0: pumps energy until the car reaches the flag."""
    v = float(obs[1])
    return np.array([1.0 if v >= 0 else -1.0], dtype=np.float32)


def inverted_pendulum_expert(obs: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
    """u = clip(x + 10 theta + x' + theta', -3, 3) for InvertedPendulum-v5 (MuJoCo); obs = (x, theta, x', theta')."""
    u = float(obs[0]) + 10.0 * float(obs[1]) + float(obs[2]) + float(obs[3])
    return np.array([min(3.0, max(-3.0, u))], dtype=np.float32)


EXPERTS: dict[str, Policy] = {
    "Pendulum-v1": pendulum_expert,
    "MountainCarContinuous-v0": mountaincar_expert,
    "InvertedPendulum-v5": inverted_pendulum_expert,
}


def make_behaviour(env: gym.Env, kind: str, expert: Policy | None) -> Policy:
    """One behaviour policy of the mixture (module docstring); ``expert=None`` allows only 'random'."""
    check_choice("behaviour", kind, BEHAVIOURS)
    low, high = env.action_space.low.astype(np.float32), env.action_space.high.astype(np.float32)
    half = (high - low) / 2

    def random_policy(obs, rng):
        return rng.uniform(low, high).astype(np.float32)

    if kind == "random":
        return random_policy
    if expert is None:
        raise ConfigError(f"behaviour={kind!r} needs a scripted expert; environments with one: {list(EXPERTS)}")
    if kind == "epsilon_expert":
        return lambda obs, rng: random_policy(obs, rng) if rng.random() < 0.5 else expert(obs, rng)
    scale = 0.1 if kind == "expert_low_noise" else 1.0
    return lambda obs, rng: np.clip(expert(obs, rng) + scale * half * rng.standard_normal(half.shape), low, high).astype(np.float32)


def rollout_returns(env_id: str, policy: Policy, episodes: int, seed: int) -> list[float]:
    """Undiscounted returns of ``episodes`` episodes of ``policy`` (seeds seed, seed+1, ...)."""
    env = gym.make(env_id)
    rng = np.random.default_rng(seed)
    out = []
    for e in range(episodes):
        obs, _ = env.reset(seed=seed + e)
        done, total = False, 0.0
        while not done:
            obs, r, term, trunc, _ = env.step(policy(obs, rng))
            total += float(r)
            done = term or trunc
        out.append(total)
    env.close()
    return out


def generate_dataset(
    env_id: str = "Pendulum-v1",
    n_transitions: int = 30_000,
    *,
    mixture: dict[str, float] | None = None,
    policy: Policy | None = None,
    seed: int = 0,
    reference_episodes: int = 10,
) -> OfflineDataset:
    """Roll out the behaviour mixture, or the one ``policy(obs, rng) -> action`` given instead of a mixture, until
    ``n_transitions`` are collected (whole episodes, episode e reset with seed ``seed * 100_003 + e``, the last one
    cut and marked as a timeout). One ``np.random.default_rng(seed)`` drives the episodes' behaviour draws (mixture
    only) and the policies. Metadata holds the env id, mixture ({'policy': 1.0} for ``policy``), per-behaviour
    returns and reference returns (uniform random and the scripted expert over ``reference_episodes`` episodes each;
    0: none measured, None)."""
    check_positive("n_transitions", n_transitions, integer=True)
    check_positive("reference_episodes", reference_episodes, integer=True, allow_zero=True)
    try:
        env = gym.make(env_id)
    except Exception as err:  # gymnasium raises several types for unknown / uninstallable envs
        raise ConfigError(f"env={env_id!r} cannot be created here ({type(err).__name__}: {err}); built-in experts exist for {list(BUILTIN_ENVS)}") from err
    expert = EXPERTS.get(env_id)
    if policy is not None:
        if mixture is not None:
            raise ConfigError("generate_dataset takes mixture= or policy=, not both")
        kinds, probs, policies = ["policy"], np.ones(1), {"policy": policy}
    else:
        if mixture is None:
            mixture = {k: 1.0 for k in BEHAVIOURS} if expert is not None else {"random": 1.0}
        for k, p in mixture.items():
            check_choice("mixture key", k, BEHAVIOURS)
            check_positive(f"mixture[{k}]", p, allow_zero=True)
        kinds = [k for k, p in mixture.items() if p > 0]
        if not kinds:
            raise ConfigError(f"mixture={mixture!r} has no positive weight; accepted: weights >= 0 with a positive sum over {list(BEHAVIOURS)}")
        probs = np.array([mixture[k] for k in kinds], dtype=np.float64)
        probs /= probs.sum()
        policies = {k: make_behaviour(env, k, expert) for k in kinds}
    rng = np.random.default_rng(seed)
    cols: dict[str, list] = {k: [] for k in ("observations", "actions", "rewards", "next_observations", "terminals", "timeouts")}
    per_kind: dict[str, list[float]] = {k: [] for k in kinds}
    n, ep = 0, 0
    while n < n_transitions:
        kind = "policy" if policy is not None else kinds[int(rng.choice(len(kinds), p=probs))]
        pol = policies[kind]
        obs, _ = env.reset(seed=seed * 100_003 + ep)
        done, total = False, 0.0
        while not done and n < n_transitions:
            a = pol(obs, rng)
            nxt, r, term, trunc, _ = env.step(a)
            n += 1
            cut = n >= n_transitions and not (term or trunc)
            for k, v in zip(cols, (obs, a, r, nxt, term, trunc or cut)):
                cols[k].append(v)
            total += float(r)
            obs, done = nxt, term or trunc
        if done:
            per_kind[kind].append(total)
        ep += 1
    env.close()
    arrays = {k: np.asarray(v) for k, v in cols.items()}
    ref_random = rollout_returns(env_id, make_behaviour(gym.make(env_id), "random", None), reference_episodes, seed + 10_000) if reference_episodes else None
    ref_expert = rollout_returns(env_id, expert, reference_episodes, seed + 20_000) if expert is not None and reference_episodes else None
    meta = {
        "env_id": env_id,
        "seed": seed,
        "n_transitions": n_transitions,
        "mixture": {k: float(p) for k, p in zip(kinds, probs)},
        "behaviour_returns": {k: (float(np.mean(v)) if v else None) for k, v in per_kind.items()},
        "behaviour_episodes": {k: len(v) for k, v in per_kind.items()},
        "ref_random_return": float(np.mean(ref_random)) if ref_random is not None else None,
        "ref_expert_return": float(np.mean(ref_expert)) if ref_expert is not None else None,
        "policies_doc": "the caller's policy" if policy is not None else "agm.methods.efm.behaviour module docstring",
    }
    return OfflineDataset(**arrays, meta=meta)


def normalized_score(ret: float | np.ndarray, ref_random: float, ref_expert: float) -> float | np.ndarray:
    """D4RL normalised score 100 (R - R_random) / (R_expert - R_random)."""
    if ref_expert == ref_random:
        raise ConfigError(f"ref_expert={ref_expert!r} equals ref_random={ref_random!r}; accepted: different reference returns")
    return 100.0 * (np.asarray(ret) - ref_random) / (ref_expert - ref_random)
