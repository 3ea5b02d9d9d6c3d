"""Exact return distributions of a small tabular Markov reward process (a tabular MDP with a fixed policy),
and the 1-D Wasserstein-1 distance between a learned return law and the exact one (docs/bellman.md,
"fixed-policy evaluation against dynamic programming").

An MRP is a list ``outcomes[s] = [(prob, reward, next_state), ...]`` with ``next_state = -1`` for a terminal
transition. The return Z(s) = sum_t gamma^t r_t is a discrete law; :func:`exact_return_distribution`
enumerates it by forward dynamic programming over (state, accumulated return) pairs, merging equal pairs, until
the mass still in flight is below ``tol`` or the discount left makes any further reward smaller than ``tol``.
The error of the result in W1 is at most ``residual`` (reported), see the function.
"""
from __future__ import annotations

from collections import defaultdict

import numpy as np

from agm.errors import ConfigError

Outcomes = list[list[tuple[float, float, int]]]


def check_mrp(outcomes: Outcomes) -> None:
    """Each state's outcome probabilities are >= 0 and sum to 1; next states are -1 or valid indices."""
    n = len(outcomes)
    for s, outs in enumerate(outcomes):
        if not outs:
            raise ConfigError(f"state {s} has no outcomes; a terminal state is reached through next_state=-1")
        total = sum(p for p, _, _ in outs)
        if any(p < 0 for p, _, _ in outs) or abs(total - 1.0) > 1e-9:
            raise ConfigError(f"state {s}: outcome probabilities must be >= 0 and sum to 1, got {total!r}")
        if any(not (-1 <= s2 < n) for _, _, s2 in outs):
            raise ConfigError(f"state {s}: next states must be -1 (terminal) or in 0..{n - 1}")


def mrp_from_gym(P: dict, policy, terminal_states=()) -> Outcomes:
    """An MRP from a gymnasium toy-text transition table ``env.unwrapped.P`` (P[s][a] = [(prob, s', r, done)])
    and a deterministic policy (array of actions). States in ``terminal_states`` (and transitions with done) end
    the episode; time limits are ignored (infinite-horizon discounted evaluation)."""
    out: Outcomes = []
    term = set(int(t) for t in terminal_states)
    for s in range(len(P)):
        merged: dict = defaultdict(float)
        for p, s2, r, done in P[s][int(policy[s])]:
            merged[(float(r), -1 if (done or s2 in term) else int(s2))] += float(p)
        out.append([(p, r, s2) for (r, s2), p in merged.items() if p > 0])
    return out


def exact_return_distribution(outcomes: Outcomes, gamma: float, start: int, *, tol: float = 1e-12,
                              max_steps: int = 100_000, decimals: int = 12, with_discounts: bool = False):
    """The law of Z(start): (atoms sorted, probabilities, residual); with ``with_discounts`` also the discount
    gamma^t of each atom's terminal transition, (atoms, probs, discounts, residual), atoms then merged only when
    both agree. (A Bellman Diffusion field with terminal kernel N(0, eps_T) has as its exact fixed point the
    law of Z + gamma^t xi, xi ~ N(0, eps_T): the kernel is shrunk by gamma once per step back from the end.)

    Forward DP: keep the in-flight mass over (state, accumulated return G) at step t; each outcome
    (p, r, s') adds gamma^t r to G and either finishes (s' = -1) or stays in flight. Paths still in flight
    when the loop stops are given the atom G they have accumulated; ``residual`` = in-flight mass x
    (|G| range bound) + gamma^t r_max / (1 - gamma) bounds the W1 error of that choice (0 when everything
    finished). Atoms are merged after rounding to ``decimals`` digits."""
    check_mrp(outcomes)
    if not 0.0 < gamma <= 1.0:
        raise ConfigError(f"gamma={gamma!r} must lie in (0, 1]")
    r_max = max(abs(r) for outs in outcomes for _, r, _ in outs)
    flight: dict = {(start, 0.0): 1.0}
    done: dict = defaultdict(float)
    disc = 1.0
    for _ in range(max_steps):
        new: dict = defaultdict(float)
        for (s, g), m in flight.items():
            for p, r, s2 in outcomes[s]:
                g2 = round(g + disc * r, decimals)
                if s2 < 0:
                    done[(g2, round(disc, decimals)) if with_discounts else g2] += m * p
                else:
                    new[(s2, g2)] += m * p
        flight = {k: v for k, v in new.items() if v > 0}
        disc *= gamma
        mass = sum(flight.values())
        tail = disc * r_max / (1.0 - gamma) if gamma < 1 else float("inf")
        if mass < tol or tail < tol:
            break
    residual = 0.0
    for (s, g), m in flight.items():
        done[(g, round(disc, decimals)) if with_discounts else g] += m
    if flight:
        mass = sum(flight.values())
        residual = mass * (disc * r_max / (1.0 - gamma) if gamma < 1 else float("inf"))
    keys = sorted(done)
    probs = np.array([done[k] for k in keys])
    probs = probs / probs.sum()
    if with_discounts:
        return np.array([k[0] for k in keys]), probs, np.array([k[1] for k in keys]), residual
    return np.array(keys), probs, residual


def cdf_of_atoms(atoms: np.ndarray, probs: np.ndarray, x: np.ndarray) -> np.ndarray:
    """F(x) = P(Z <= x) of a discrete law, at the points x."""
    order = np.argsort(atoms)
    c = np.cumsum(np.asarray(probs, dtype=float)[order])
    idx = np.searchsorted(np.asarray(atoms, dtype=float)[order], x, side="right")
    return np.concatenate([[0.0], c])[idx]


def cdf_of_density(grid: np.ndarray, density: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, float]:
    """CDF at x of a density given on a uniform grid: max(density, 0) as a piecewise-linear density, normalised to
    mass 1 (0 below the grid, 1 above). Returns (F(x), mass before normalising)."""
    d = np.clip(np.asarray(density, dtype=float), 0.0, None)
    grid = np.asarray(grid, dtype=float)
    cum = np.concatenate([[0.0], np.cumsum(0.5 * (d[1:] + d[:-1]) * np.diff(grid))])
    mass = float(cum[-1])
    if mass <= 0:
        return np.full_like(x, np.nan, dtype=float), mass
    return np.interp(x, grid, cum / mass, left=0.0, right=1.0), mass


def w1_from_cdfs(F: np.ndarray, G: np.ndarray, x: np.ndarray) -> float:
    """W1 = integral |F - G| dx on the points x (trapezoid); x must cover both laws' supports."""
    return float(np.trapezoid(np.abs(F - G), x))
