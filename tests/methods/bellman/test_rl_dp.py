"""The exact-DP oracle of the fixed-policy evaluation (agm.methods.bellman.rl.dp): closed-form return laws of
2-state Markov reward processes, the mean against a linear policy-evaluation solve on FrozenLake, and W1."""
import gymnasium as gym
import numpy as np
import pytest

from agm.errors import ConfigError
from agm.methods.bellman.rl.dp import (
    cdf_of_atoms,
    cdf_of_density,
    exact_return_distribution,
    mrp_from_gym,
    w1_from_cdfs,
)


@pytest.mark.parametrize("p, gamma", [(0.3, 0.9), (0.7, 0.5)])
def test_two_state_ping_pong_is_geometric(p, gamma):
    # state 0: w.p. p terminal with r = 1, else to state 1 (r = 0); state 1 -> state 0 (r = 0).
    # Z(0) = gamma^(2K), Z(1) = gamma^(2K+1), K ~ Geometric(p) on {0, 1, ...}: P(K = k) = p (1 - p)^k.
    mrp = [[(p, 1.0, -1), (1 - p, 0.0, 1)], [(1.0, 0.0, 0)]]
    for start, offset in ((0, 0), (1, 1)):
        atoms, probs, residual = exact_return_distribution(mrp, gamma, start, tol=1e-13)
        k = np.arange(200)
        pk = p * (1 - p) ** k
        keep = (pk > 1e-12) & (gamma ** (2 * k + offset) > 1e-9)  # atoms are merged at 12 decimals
        want = dict(zip(np.round(gamma ** (2 * k[keep] + offset), 12), pk[keep]))
        got = dict(zip(np.round(atoms, 12), probs))
        for a, w in want.items():
            assert abs(got.get(a, 0.0) - w) < 1e-12, (start, a, got.get(a), w)
        assert abs(probs.sum() - 1.0) < 1e-12
        assert residual < 1e-12


def test_self_loop_with_rewards_accumulates_a_geometric_sum():
    # state 0: r = 1 every step; w.p. q the step is terminal, else back to state 0.
    # Z = sum_{t=0}^{K} gamma^t = (1 - gamma^(K+1)) / (1 - gamma), K ~ Geometric(q).
    q, gamma = 0.5, 0.8
    atoms, probs, _ = exact_return_distribution([[(q, 1.0, -1), (1 - q, 1.0, 0)]], gamma, 0, tol=1e-14)
    for k in range(10):
        z = (1 - gamma ** (k + 1)) / (1 - gamma)
        i = np.argmin(np.abs(atoms - z))
        assert abs(atoms[i] - z) < 1e-10
        assert abs(probs[i] - q * (1 - q) ** k) < 1e-12


def test_frozenlake_mean_matches_linear_policy_evaluation():
    # E[Z(s)] under a fixed policy must equal V = (I - gamma P_pi)^-1 R_pi (an independent linear solve)
    env = gym.make("FrozenLake-v1")
    P = env.unwrapped.P
    nS = len(P)
    rng = np.random.default_rng(0)
    policy = rng.integers(0, 4, size=nS)
    gamma = 0.9
    mrp = mrp_from_gym(P, policy)
    Pm, R = np.zeros((nS, nS)), np.zeros(nS)
    for s in range(nS):
        for p, s2, r, done in P[s][int(policy[s])]:
            R[s] += p * r
            if not done:
                Pm[s, s2] += p
    V = np.linalg.solve(np.eye(nS) - gamma * Pm, R)
    for s in range(nS):
        atoms, probs, residual = exact_return_distribution(mrp, gamma, s, tol=1e-13)
        assert abs(float(atoms @ probs) - V[s]) < 1e-9 + residual, (s, float(atoms @ probs), V[s])
    env.close()


def test_w1_closed_forms():
    x = np.linspace(-1.0, 2.0, 30001)
    # two point masses 1 apart: W1 = 1
    assert abs(w1_from_cdfs(cdf_of_atoms(np.array([0.0]), np.array([1.0]), x), cdf_of_atoms(np.array([1.0]), np.array([1.0]), x), x) - 1.0) < 1e-3
    # uniform on [0, 1] (a density on a grid) vs a point mass at 1/2: W1 = E|U - 1/2| = 1/4
    grid = np.linspace(0.0, 1.0, 1001)
    F, mass = cdf_of_density(grid, np.ones_like(grid), x)
    assert abs(mass - 1.0) < 1e-12
    assert abs(w1_from_cdfs(F, cdf_of_atoms(np.array([0.5]), np.array([1.0]), x), x) - 0.25) < 1e-3
    # mixtures: 0.3 delta_0 + 0.7 delta_1 vs delta_1: W1 = 0.3
    F1 = cdf_of_atoms(np.array([0.0, 1.0]), np.array([0.3, 0.7]), x)
    assert abs(w1_from_cdfs(F1, cdf_of_atoms(np.array([1.0]), np.array([1.0]), x), x) - 0.3) < 1e-3


def test_bad_mrp():
    with pytest.raises(ConfigError, match="sum to 1"):
        exact_return_distribution([[(0.5, 1.0, -1)]], 0.9, 0)
    with pytest.raises(ConfigError, match="next states"):
        exact_return_distribution([[(1.0, 1.0, 3)]], 0.9, 0)
    with pytest.raises(ConfigError, match="gamma"):
        exact_return_distribution([[(1.0, 1.0, -1)]], 0.0, 0)


def test_discounts_of_terminal_steps():
    # ping-pong: the terminal step of atom gamma^(2k) is t = 2k, so its discount equals the atom itself
    mrp = [[(0.4, 1.0, -1), (0.6, 0.0, 1)], [(1.0, 0.0, 0)]]
    atoms, probs, disc, _ = exact_return_distribution(mrp, 0.9, 0, tol=1e-13, with_discounts=True)
    big = atoms > 1e-6
    np.testing.assert_allclose(disc[big], atoms[big], rtol=1e-9)
    a2, p2, _ = exact_return_distribution(mrp, 0.9, 0, tol=1e-13)
    np.testing.assert_allclose(a2[a2 > 1e-6], atoms[big])
