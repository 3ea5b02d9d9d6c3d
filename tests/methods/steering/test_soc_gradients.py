"""Gradients and formulas of the SOC loss family (issue 14): a finite-difference check of the gradient of every loss,
and tests that fail on single wrong formulas (the mutation each one kills is named in its docstring).

Fixture: 1-D Gaussian data N(MU, SD^2); the base is its exact linear-FM velocity (GaussianFlowVelocity), so the
tilted optimum of a linear reward, p* = N(MU + LAM SD^2, SD^2), and its log-normaliser are known in closed form.
"""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from agm.methods.steering import GaussianFlowVelocity, LinearReward
from agm.methods.steering.soc import SOC_LOSSES, MemorylessSchedule, SOCProblem

MU, SD, LAM = 0.5, 0.8, 1.0


class TinyControl(nn.Module):
    """v_ft(x, t) = v_base(x, t) + MLP(x, t): the base is evaluated WITH its x-derivative (no no_grad), so the
    pathwise gradient through the rollout is complete."""

    def __init__(self, base: nn.Module, seed: int = 0) -> None:
        super().__init__()
        self.base, self.dim = base, 1
        g = torch.Generator().manual_seed(seed)
        self.l1 = nn.Linear(2, 3)
        self.l2 = nn.Linear(3, 1)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(0.4 * torch.randn(p.shape, generator=g, dtype=p.dtype))
        for p in self.base.parameters():
            p.requires_grad_(False)

    def forward(self, x, t):
        t = t.expand(x.shape[0]) if t.dim() == 0 else t
        return self.base(x, t) + self.l2(torch.tanh(self.l1(torch.cat([x, t[:, None]], 1))))


@pytest.fixture
def float64():
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


def _problem(steps=8, **kw):
    base = GaussianFlowVelocity([MU], SD).double()
    ft = TinyControl(base).double()
    pool = MU + SD * torch.randn(500, 1, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    return SOCProblem(base=base, ft=ft, reward=LinearReward([1.0]), dim=1, reward_multiplier=LAM, steps=steps,
                      schedule=MemorylessSchedule(1.0 / steps), base_pool=pool, **kw)


def _params(prob):
    return [p for p in prob.ft.parameters() if p.requires_grad]


def _fd_vs_autograd(prob, name, batch=16, eps=1e-6):
    """Central differences of L(theta) = mean per-sample loss, every coordinate of the control's parameters, against
    autograd. The losses that regress on detached on-policy paths (adjoint matching, log-variance, cross-entropy)
    are evaluated on one fixed trajectory (its generating control ū fixed with it), the relative entropy re-rolls
    with the same noise (pathwise), RWR redraws the same base samples."""
    detached = name in ("adjoint_matching", "log_variance", "cross_entropy")
    traj = prob.rollout(batch, generator=torch.Generator().manual_seed(1)) if detached else None

    def value():
        per, _ = prob.loss(name, batch, generator=torch.Generator().manual_seed(2), trajectory=traj)
        return per.mean()

    params = _params(prob)
    grads = torch.autograd.grad(value(), params)
    auto = torch.cat([g.reshape(-1) for g in grads])
    fd = []
    with torch.no_grad():
        for p in params:
            flat = p.view(-1)
            for i in range(flat.numel()):
                old = float(flat[i])
                flat[i] = old + eps
                up = float(value())
                flat[i] = old - eps
                down = float(value())
                flat[i] = old
                fd.append((up - down) / (2 * eps))
    return auto, torch.tensor(fd)


@pytest.mark.parametrize("name", SOC_LOSSES)
@pytest.mark.parametrize("last_step", ["noiseless_base", "noisy"])
def test_every_soc_loss_gradient_matches_finite_differences(float64, name, last_step):
    """Autograd gradient = central differences (float64, step 1e-6) for every SOC loss, both last-step variants.
    Tolerance: the central-difference error is O(eps^2) truncation + O(1e-16 / eps) round-off, i.e. ~1e-10 relative;
    we allow 1e-6 of the gradient's norm. The no_grad base drift of issue 14 gave ~1e-3 relative error in the
    relative-entropy gradient and fails here."""
    torch.manual_seed(0)
    prob = _problem(last_step=last_step)
    auto, fd = _fd_vs_autograd(prob, name)
    assert auto.norm() > 1e-3, "degenerate fixture: zero gradient"
    err = float((auto - fd).norm() / auto.norm())
    assert err < 1e-6, (name, err, auto, fd)


def test_adjoint_matching_gradient_with_clipping_and_time_subsampling_matches_fd(float64):
    """The same check with loss_clip active on part of the residuals and AM's time subsampling."""
    prob = _problem(steps=8, loss_clip=0.5, time_subsampling="am")
    per, _ = prob.loss("adjoint_matching", 16, generator=torch.Generator().manual_seed(2),
                       trajectory=prob.rollout(16, generator=torch.Generator().manual_seed(1)))
    auto, fd = _fd_vs_autograd(prob, "adjoint_matching")
    assert float((auto - fd).norm() / auto.norm()) < 1e-6


# ---- formulas (each kills a mutation of issue 14) -------------------------------------------------------------
def _gauss_problem(ft_mean, steps=40, **kw):
    base = GaussianFlowVelocity([MU], SD)
    ft = GaussianFlowVelocity([ft_mean], SD)
    return SOCProblem(base=base, ft=ft, reward=LinearReward([1.0]), dim=1, reward_multiplier=LAM, steps=steps,
                      schedule=MemorylessSchedule(1.0 / steps), **kw)


def test_relative_entropy_at_optimum_equals_minus_log_normaliser():
    """Kills 'relative-entropy running cost doubled'. At the exact optimum E[sum_k (h/2)|u_k|^2 - lam r(X_1)] = -log Z,
    log Z = log E_base e^{lam x} = lam MU + lam^2 SD^2 / 2 = 0.82 (the value of the SOC problem). The per-path cost
    has std 0.83 (it lacks the martingale term of Y), so with 20000 paths the s.e. is 0.006; the O(1/K) bias at
    K = 40 was measured as -0.034 (seeds 0-2: -0.854, -0.850, -0.858; at K = 160: -0.824 to -0.830). Tolerance
    0.065 = 5 s.e. + that bias. A doubled running cost adds E sum (h/2)|u|^2 = KL(P* || P^base) ~ 0.32."""
    prob = _gauss_problem(MU + LAM * SD**2)
    with torch.no_grad():
        cost, _ = prob.loss("relative_entropy", 20000, generator=torch.Generator().manual_seed(0))
    log_z = LAM * MU + LAM**2 * SD**2 / 2
    assert float(cost.mean()) == pytest.approx(-log_z, abs=0.065)
    # and at the base (u = 0) it is -lam E r(X_1) = -lam MU (no running cost)
    with torch.no_grad():
        cost0, _ = _gauss_problem(MU).loss("relative_entropy", 4000, generator=torch.Generator().manual_seed(0))
    assert float(cost0.mean()) == pytest.approx(-LAM * MU, abs=5 * LAM * SD / math.sqrt(4000))


def test_cross_entropy_is_lower_at_the_optimum_than_at_the_base():
    """Kills 'cross-entropy negated'. On paths of the base (ū = 0, so the weights are softmax(lam r)), the
    cross-entropy loss E_w[Y(u)] = KL(P* || P^u) + const is minimised by the optimum: its value at v* must be lower
    than at the base by ~KL(P* || P^base) = lam^2 SD^2 / 2 = 0.32 (measured 0.327 at K = 40, 4000 paths); a negated
    loss gives -0.33. Tolerance 0.1 (discretisation and the self-normalised weights' O(1/B) bias)."""
    base_prob = _gauss_problem(MU)
    traj = base_prob.rollout(4000, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        at_base, _ = base_prob.loss("cross_entropy", 4000, trajectory=traj)
        at_opt, _ = _gauss_problem(MU + LAM * SD**2).loss("cross_entropy", 4000, trajectory=traj)
    gap = float(at_base.mean() - at_opt.mean())
    assert gap == pytest.approx(LAM**2 * SD**2 / 2, abs=0.1), gap


def test_loss_clipping_bounds_every_adjoint_matching_term():
    """Kills 'loss clipping ignored': with LCT = 1e-3 every selected residual |u_k + sigma_k ã_k|^2 (>= 2.7 at the base
    with lam = 1, measured) is clipped, so each per-sample loss equals |S| LCT exactly (|S| = K - 1 noisy steps)."""
    K = 10
    prob = _gauss_problem(MU, steps=K, loss_clip=1e-3)
    per, _ = prob.loss("adjoint_matching", 64, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(per, torch.full_like(per, (K - 1) * 1e-3))
    unclipped, _ = _gauss_problem(MU, steps=K).loss("adjoint_matching", 64, generator=torch.Generator().manual_seed(0))
    assert float(unclipped.min()) > (K - 1) * 1e-3


@pytest.mark.parametrize("last_step, n_last", [("noisy", 10), ("noiseless_base", 9)])
def test_adjoint_matching_time_subsampling_recipe(last_step, n_last):
    """Kills 'time subsampling changed'. AM's recipe at K = 40 (arXiv 2409.08861, App. on the fine-tuning set-up):
    all of the last 10 steps + 10 distinct random steps of the first 30 (a noiseless last step carries no control
    and is left out). Over 200 draws every early step is picked; the loss sums exactly the selected steps."""
    prob = _gauss_problem(MU, steps=40, time_subsampling="am", last_step=last_step)
    g = torch.Generator().manual_seed(0)
    seen = set()
    for _ in range(200):
        ks = prob._selected_steps(g)
        late = [k for k in ks if k >= 30]
        early = [k for k in ks if k < 30]
        assert late == list(range(30, 30 + n_last)), ks
        assert len(early) == 10 and len(set(early)) == 10, ks
        seen |= set(early)
    assert seen == set(range(30))
    clipped = _gauss_problem(MU, steps=40, time_subsampling="am", last_step=last_step, loss_clip=1e-6)
    per, _ = clipped.loss("adjoint_matching", 8, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(per, torch.full_like(per, (n_last + 10) * 1e-6))
