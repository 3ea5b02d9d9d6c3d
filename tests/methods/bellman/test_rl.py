"""Distributional RL pieces of Bellman Diffusion: C51 projection on hand-computed cases, the field Bellman
targets against closed forms (a test oracle in tests/methods/bellman), and bad input (non-finite returns, unsupported spaces)."""
import math

import gymnasium as gym
import numpy as np
import pytest
import torch

from agm.errors import ConfigError, DataError
from agm.methods.bellman.rl import (
    BDConfig,
    BellmanDiffusionAgent,
    C51Config,
    ObsEncoder,
    ReplayBuffer,
    bellman_field_targets,
    categorical_projection,
    check_action_space,
    make_env,
)
from agm.methods.bellman.rl.train import LoopConfig, build_agent


SUPPORT = torch.linspace(0.0, 4.0, 5)  # atoms 0, 1, 2, 3, 4 (dz = 1)


def _delta(j: int) -> torch.Tensor:
    p = torch.zeros(1, 5)
    p[0, j] = 1.0
    return p


@pytest.mark.parametrize(
    "pmf, r, done, gamma, expected",
    [
        # Z' = 1, r = 0.5, gamma = 1: Tz = 1.5 -> half on atoms 1 and 2
        (_delta(1), 0.5, 0.0, 1.0, [0, 0.5, 0.5, 0, 0]),
        # terminal, r = 2.3: every atom maps to 2.3 -> 0.7 on atom 2, 0.3 on atom 3
        (torch.full((1, 5), 0.2), 2.3, 1.0, 0.9, [0, 0, 0.7, 0.3, 0]),
        # uniform Z', r = 1, gamma = 0.5: Tz = 1, 1.5, 2, 2.5, 3 ->
        # atom1 = .2 + .1, atom2 = .1 + .2 + .1, atom3 = .1 + .2
        (torch.full((1, 5), 0.2), 1.0, 0.0, 0.5, [0, 0.3, 0.4, 0.3, 0]),
        # clipping above V_max: Tz = 10 + z -> 4, l = u = 4 (all mass kept on the last atom)
        (torch.full((1, 5), 0.2), 10.0, 0.0, 1.0, [0, 0, 0, 0, 1.0]),
        # clipping below V_min and an exact atom (l = u): Tz = -3 + z -> atoms 0 (z<=3) and 1 (z=4)
        (torch.full((1, 5), 0.2), -3.0, 0.0, 1.0, [0.8, 0.2, 0, 0, 0]),
        # integer shift, no split: Z' on atom 2, r = 1, gamma = 1 -> atom 3
        (_delta(2), 1.0, 0.0, 1.0, [0, 0, 0, 1.0, 0]),
    ],
)
def test_c51_projection_hand_cases(pmf, r, done, gamma, expected):
    m = categorical_projection(pmf, torch.tensor([r]), torch.tensor([done]), gamma, SUPPORT)
    torch.testing.assert_close(m[0], torch.tensor(expected, dtype=torch.float32), atol=1e-6, rtol=0)


def test_c51_projection_conserves_mass_and_mean():
    # linear interpolation onto the grid preserves total mass and, when nothing is clipped, the mean
    # E[r + gamma Z'] exactly (a two-point split with weights (u - b, b - l) has mean b); float32 rounding only.
    g = torch.Generator().manual_seed(0)
    pmf = torch.softmax(torch.randn(64, 5, generator=g), -1)
    r = 0.5 * torch.rand(64, generator=g)
    gamma = 0.8  # r + gamma z <= 0.5 + 3.2 = 3.7 < 4: no clipping
    m = categorical_projection(pmf, r, torch.zeros(64), gamma, SUPPORT)
    torch.testing.assert_close(m.sum(-1), torch.ones(64), atol=1e-5, rtol=0)
    torch.testing.assert_close((m * SUPPORT).sum(-1), r + gamma * (pmf * SUPPORT).sum(-1), atol=1e-5, rtol=0)


def _npdf(x, mu, var):
    return torch.exp(-0.5 * (x - mu) ** 2 / var) / math.sqrt(2 * math.pi * var)


def test_field_targets_of_a_gaussian_are_the_pushed_gaussian():
    # a test oracle in tests/methods/bellman: Z' ~ N(m, s^2) -> r + gamma Z' ~ N(r + gamma m, gamma^2 s^2), and the g-target is its derivative
    m, s, r, gamma = 2.0, 0.5, 1.0, 0.9
    z = torch.linspace(0.0, 5.0, 201, dtype=torch.float64)[None]
    u = (z - r) / gamma
    f_next = _npdf(u, m, s**2)
    g_next = -(u - m) / s**2 * f_next
    y_f, y_g = bellman_field_targets(f_next, g_next, z, torch.tensor([r], dtype=torch.float64), torch.zeros(1, dtype=torch.float64), gamma, 0.01)
    mu2, var2 = r + gamma * m, (gamma * s) ** 2
    torch.testing.assert_close(y_f, _npdf(z, mu2, var2), atol=1e-12, rtol=0)
    torch.testing.assert_close(y_g, -(z - mu2) / var2 * _npdf(z, mu2, var2), atol=1e-12, rtol=0)
    # the target integrates to 1 (trapezoid, grid step 0.025 on a smooth density: error << 1e-6)
    assert abs(torch.trapezoid(y_f[0], z[0]).item() - 1.0) < 1e-6


def test_field_targets_terminal_and_linear():
    z = torch.linspace(-1.0, 1.0, 11)[None].repeat(2, 1)
    r = torch.tensor([0.2, -0.1])
    term = torch.tensor([1.0, 1.0])
    y_f, y_g = bellman_field_targets(torch.zeros_like(z), torch.zeros_like(z), z, r, term, 0.9, 0.04)
    torch.testing.assert_close(y_f, _npdf(z, r[:, None], 0.04))
    torch.testing.assert_close(y_g, -(z - r[:, None]) / 0.04 * _npdf(z, r[:, None], 0.04))
    # linearity (a test oracle in tests/methods/bellman): the non-terminal target of a f1 + b f2 is a T(f1) + b T(f2)
    g = torch.Generator().manual_seed(1)
    f1, f2, g1, g2 = (torch.rand(2, 11, generator=g) for _ in range(4))
    nt = torch.zeros(2)
    t1 = bellman_field_targets(f1, g1, z, r, nt, 0.9, 0.04)
    t2 = bellman_field_targets(f2, g2, z, r, nt, 0.9, 0.04)
    t12 = bellman_field_targets(0.3 * f1 + 0.7 * f2, 0.3 * g1 + 0.7 * g2, z, r, nt, 0.9, 0.04)
    for a, b, c in zip(t1, t2, t12):
        torch.testing.assert_close(c, 0.3 * a + 0.7 * b)


def test_bd_agent_learns_mixture_and_bootstrap():
    # a test oracle in tests/methods/bellman with returns normalised by c = 0.5, kappa = 1 (v_min=-0.5, v_max=1.5: z~ = z - 0.5,
    # bootstrap reward r~ = r - c (1 - gamma), terminal return z~ = r - c; a centre c != 0 catches a mix-up of the two).
    # state 0: terminal with r = 0 (prob q = 0.3) or r = 1 -> p = q N(0, eps) + (1-q) N(1, eps) in raw units (a mixture,
    #   not a geometric mean); state 1: non-terminal r = 0.6 to state 2; state 2: terminal r = 0.8 ->
    #   p(1) = N(0.6 + gamma 0.8, gamma^2 eps) = N(1.0, eps / 4).
    torch.manual_seed(0)
    cfg = BDConfig(v_min=-0.5, v_max=1.5, gamma=0.5, eps_T=0.15**2, lr=3e-3, n_points=64, margin=0.1)
    agent = BellmanDiffusionAgent(3, 1, cfg)
    rng = np.random.default_rng(0)
    eye = torch.eye(3)
    q = 0.3
    for step in range(400):
        B = 96
        kind = rng.integers(0, 3, size=B)
        r = np.where(kind == 0, np.where(rng.random(B) < q, 0.0, 1.0), np.where(kind == 1, 0.6, 0.8))
        nxt = np.where(kind == 1, 2, 0)
        batch = {"obs": eye[kind], "next_obs": eye[nxt], "actions": torch.zeros(B, dtype=torch.long),
                 "rewards": torch.tensor(r, dtype=torch.float32), "terminated": torch.tensor(kind != 1, dtype=torch.float32)}
        agent.update(batch)
        if step % 50 == 0:
            agent.sync_target()
    grid = agent.grid  # normalised units; raw = 0.5 + grid
    with torch.no_grad():
        f = agent.f.on_grid(eye, grid)[:, :, 0]
    dz = float(grid[1] - grid[0])
    mix = q * _npdf(grid, -0.5, cfg.eps_T) + (1 - q) * _npdf(grid, 0.5, cfg.eps_T)
    boot = _npdf(grid, 0.5, 0.25 * cfg.eps_T)
    # mass in each half of the grid: exact 0.3 / 0.7; tolerance 0.06 (fit error of 400 Adam steps, measured 0.005)
    left = float(f[0, grid < 0].clamp_min(0).sum() * dz)
    right = float(f[0, grid > 0].clamp_min(0).sum() * dz)
    assert abs(left - q) < 0.06 and abs(right - (1 - q)) < 0.06, (left, right)
    # L1 distance to the closed-form densities (total mass 1 each), tolerance 0.2 (measured 0.06 and 0.07 with c = 0)
    assert float((f[0] - mix).abs().sum() * dz) < 0.2
    assert float((f[1] - boot).abs().sum() * dz) < 0.2
    # Q by grid quadrature, raw units: exact 0.7 and 1.0
    qv = agent.q_from_fields(agent.f.on_grid(eye, grid).detach())[:, 0]
    assert abs(float(qv[0]) - 0.7) < 0.05
    assert abs(float(qv[1]) - 1.0) < 0.05


def test_bad_input():
    support = torch.linspace(0, 1, 3)
    with pytest.raises(DataError, match="non-finite"):
        categorical_projection(torch.full((1, 3), 1 / 3), torch.tensor([float("nan")]), torch.zeros(1), 0.9, support)
    with pytest.raises(DataError, match="non-finite"):
        bellman_field_targets(torch.zeros(1, 2), torch.zeros(1, 2), torch.zeros(1, 2), torch.tensor([float("inf")]), torch.ones(1), 0.9, 0.1)
    rb = ReplayBuffer(4, 2)
    with pytest.raises(DataError, match="reward"):
        rb.add(np.zeros(2), 0, float("nan"), np.zeros(2), False)
    with pytest.raises(ConfigError, match="eps_T"):
        BDConfig(eps_T=0.0)
    with pytest.raises(ConfigError, match="eps_T"):
        bellman_field_targets(torch.zeros(1, 2), torch.zeros(1, 2), torch.zeros(1, 2), torch.zeros(1), torch.ones(1), 0.9, -1.0)
    with pytest.raises(ConfigError, match="gamma"):
        BDConfig(gamma=0.0)
    with pytest.raises(ConfigError, match="v_max"):
        C51Config(v_min=1.0, v_max=0.0)
    with pytest.raises(ConfigError, match="n_atoms"):
        C51Config(n_atoms=1)
    with pytest.raises(ConfigError, match="action_space"):
        check_action_space(gym.spaces.Box(-1, 1, (1,)))
    with pytest.raises(ConfigError, match="observation_space"):
        ObsEncoder(gym.spaces.Box(0, 1, (3, 4)))
    with pytest.raises(ConfigError, match="action_space"):
        make_env("Pendulum-v1", 0)  # continuous actions
    with pytest.raises(ConfigError, match="agent"):
        build_agent("c52", 4, 2)
    with pytest.raises(ConfigError, match="total_steps"):
        LoopConfig(total_steps=0)
