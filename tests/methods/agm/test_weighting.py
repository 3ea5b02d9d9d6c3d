"""AGM weighting invariants (docs/agm.md) and the mutation tests of issue 14."""
import math

import pytest
import torch

from agm.errors import ConfigError
from agm.methods.agm import AGM
from agm.nets import TimeMLP, build_potential
from agm.methods.agm import PotentialWeighting, importance_weights, potential_loss
from agm.objectives import bridge_matching_loss
from agm.paths import BrownianBridge


def _method(weighting=None):
    drift = TimeMLP(2, hidden=32, depth=2)
    pot = None
    if weighting is not None:
        pot, _ = build_potential(drift, (2,), budget=0.1)
    return AGM(drift, BrownianBridge(0.5, t_max=0.98), pot, weighting)


@pytest.mark.parametrize("objective", ["nll", "regress", "kinetic"])
def test_stop_gradients_both_ways(objective):
    m = _method(PotentialWeighting(objective=objective, warmup_steps=0))
    g = torch.Generator().manual_seed(0)
    x1 = torch.randn(128, 2, generator=g)
    x0 = torch.randn(128, 2, generator=g)
    ell, s = bridge_matching_loss(m.drift, m.path, x0, x1, generator=g)
    v = m.potential(s.xt, s.t)
    drift_loss, pot_loss, _ = m.weighting.losses(v, ell, s.t, s.target, step=10)
    # no gradient of the weighted drift loss reaches phi
    gphi = torch.autograd.grad(drift_loss, list(m.potential.parameters()), allow_unused=True, retain_graph=True)
    assert all(gr is None or torch.count_nonzero(gr) == 0 for gr in gphi)
    # none of V_phi's loss reaches theta
    gtheta = torch.autograd.grad(pot_loss, list(m.drift.parameters()), allow_unused=True, retain_graph=True)
    assert all(gr is None or torch.count_nonzero(gr) == 0 for gr in gtheta)
    # ... while each loss does reach its own network
    assert any(gr is not None and gr.abs().sum() > 0 for gr in torch.autograd.grad(drift_loss, list(m.drift.parameters()), retain_graph=True))
    assert any(gr is not None and gr.abs().sum() > 0 for gr in torch.autograd.grad(pot_loss, list(m.potential.parameters())))


@pytest.mark.parametrize("normalise", ["batch", "time_bins"])
@pytest.mark.parametrize("clip", [None, (0.1, 10.0), (0.5, 2.0)])
def test_weights_have_mean_one(normalise, clip):
    g = torch.Generator().manual_seed(1)
    v = 3 * torch.randn(512, generator=g)
    t = torch.rand(512, generator=g)
    w = importance_weights(v, t, normalise=normalise, clip=clip, time_bins=4)
    assert torch.all(w > 0)
    if normalise == "batch":
        assert float(w.mean()) == pytest.approx(1.0, abs=1e-5)
    else:
        bins = torch.clamp((t * 4).long(), 0, 3)
        for b in range(4):
            assert float(w[bins == b].mean()) == pytest.approx(1.0, abs=1e-5)


def test_weights_formula_and_sign():
    v = torch.tensor([0.0, 1.0, 2.0, -1.0])
    a = torch.exp(-v)
    torch.testing.assert_close(importance_weights(v, clip=None), 4 * a / a.sum())
    a_up = torch.exp(v / 2.0)
    torch.testing.assert_close(importance_weights(v, clip=None, sign="up", temperature=2.0), 4 * a_up / a_up.sum())


def test_weights_do_not_overflow():
    v = torch.tensor([-1e4, 0.0, 1e4])
    w = importance_weights(v, clip=None)
    assert torch.isfinite(w).all() and float(w.mean()) == pytest.approx(1.0)


def test_constant_potential_reproduces_drift_only_loss_exactly():
    torch.manual_seed(0)
    weighting = PotentialWeighting(warmup_steps=0)
    m = _method(weighting)
    with torch.no_grad():  # make V_phi constant: zero every weight, constant bias in the last layer
        for p in m.potential.parameters():
            p.zero_()
        m.potential.net.net.net[-1].bias.fill_(0.37)
    base = AGM(m.drift, m.path)
    x1 = torch.randn(256, 2)
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    _, logs_agm = m.loss(x1, step=50, generator=g1)
    _, logs_base = base.loss(x1, step=50, generator=g2)
    assert logs_agm["drift_loss"] == logs_base["drift_loss"]


def test_warmup_gives_uniform_weights():
    w = PotentialWeighting(warmup_steps=10).weights(torch.randn(32), torch.rand(32), step=9)
    assert torch.equal(w, torch.ones(32))


def test_nll_potential_minimiser_is_log_mean_residual():
    # L_V(v) = mean(l e^{-v} + v) is minimised at v* = log mean(l)
    ell = torch.rand(1000, generator=torch.Generator().manual_seed(2)) * 3
    v = torch.zeros(1, requires_grad=True)
    opt = torch.optim.LBFGS([v], max_iter=100)

    def closure():
        opt.zero_grad()
        loss = potential_loss(v.expand(1000), ell, objective="nll").mean()
        loss.backward()
        return loss

    opt.step(closure)
    assert float(v.detach()) == pytest.approx(math.log(float(ell.mean())), abs=1e-4)


def test_bad_weighting_options():
    with pytest.raises(ConfigError, match="potential.objective"):
        PotentialWeighting(objective="nope")
    with pytest.raises(ConfigError, match="potential.sign"):
        PotentialWeighting(sign="sideways")
    with pytest.raises(ConfigError, match="temperature"):
        PotentialWeighting(temperature=0)
    with pytest.raises(ConfigError, match="clip"):
        importance_weights(torch.randn(4), clip=(2.0, 3.0))


# ---- issue 14: the clip bound is the bound the user gets, with mean exactly 1 --------------------------------
def _adversarial_v(case: str) -> torch.Tensor:
    g = torch.Generator().manual_seed(7)
    if case == "degenerate":  # one sample far below the rest: the old clip-then-renormalise gave w_max = 72
        v = torch.zeros(256)
        v[0] = -100.0
        return v
    if case == "gaussian3":
        return 3 * torch.randn(256, generator=g)
    if case == "huge_batch":
        return 3 * torch.randn(2048, generator=g)
    if case == "outlier_high":  # one sample far above: everything else must carry the mass
        v = torch.randn(256, generator=g)
        v[5] = 1e4
        return v
    if case == "spread_1e4":
        return torch.tensor([-1e4, 0.0, 1e4])
    raise ValueError(case)


@pytest.mark.parametrize("case", ["degenerate", "gaussian3", "huge_batch", "outlier_high", "spread_1e4"])
@pytest.mark.parametrize("clip", [(0.1, 10.0), (0.5, 2.0), (0.0, 3.0)])
@pytest.mark.parametrize("normalise", ["batch", "time_bins"])
def test_clipped_weights_keep_bound_and_mean_exactly(case, clip, normalise):
    v = _adversarial_v(case)
    t = torch.rand(v.shape[0], generator=torch.Generator().manual_seed(3))
    lo, hi = clip
    w = importance_weights(v, t, clip=clip, normalise=normalise, time_bins=4)
    assert w.dtype == torch.float32 and torch.isfinite(w).all()
    assert float(w.min()) >= lo and float(w.max()) <= hi  # the bound, exactly
    groups = torch.zeros_like(t, dtype=torch.long) if normalise == "batch" else torch.clamp((t * 4).long(), 0, 3)
    for gidx in groups.unique():
        sel = groups == gidx
        n = int(sel.sum())
        if n * lo > n or n * hi < n:
            continue
        # the mean, exactly up to float32 rounding of each weight
        assert float(w[sel].double().mean()) == pytest.approx(1.0, abs=1e-6)
        # and the weights are min(max(c a_i, lo), hi): log w_i - log a_i is one constant over the unclipped samples
        free = sel & (w > lo * (1 + 1e-5)) & (w < hi * (1 - 1e-5))
        if int(free.sum()) > 1:
            log_c = torch.log(w[free].double()) + v[free].double()
            assert float(log_c.max() - log_c.min()) < 1e-5
        # samples clipped low have the smallest a_i, those clipped high the largest (order is kept)
        order = torch.argsort(v[sel].double())  # increasing V = decreasing a_i
        assert torch.all(torch.diff(w[sel][order].double()) <= 1e-6)


def test_clip_matches_unclipped_when_the_bound_does_not_bind():
    v = 0.2 * torch.randn(300, generator=torch.Generator().manual_seed(4))
    torch.testing.assert_close(importance_weights(v, clip=(0.1, 10.0)), importance_weights(v, clip=None))


# ---- issue 14: mutations that must fail a test ---------------------------------------------------------------
def test_agm_loss_gradient_is_the_weighted_one():
    """Kills 'AGM.loss ignores the importance weights': d loss / d theta must equal d mean(w l) / d theta."""
    torch.manual_seed(0)
    m = _method(PotentialWeighting(warmup_steps=0, temperature=0.05))  # a sharp weighting: far from uniform
    x1 = torch.randn(256, 2, generator=torch.Generator().manual_seed(9))
    loss, logs = m.loss(x1, step=5, generator=torch.Generator().manual_seed(11))
    g_loss = torch.autograd.grad(loss, list(m.drift.parameters()))
    # the same batch by hand
    g = torch.Generator().manual_seed(11)
    x0 = torch.randn(x1.shape, generator=g)
    ell, s = bridge_matching_loss(m.drift, m.path, x0, x1, generator=g)
    w = importance_weights(m.potential(s.xt, s.t), s.t, temperature=0.05)
    assert float(w.max() / w.min()) > 2  # the weights matter here
    g_weighted = torch.autograd.grad((w * ell).mean(), list(m.drift.parameters()), retain_graph=True)
    g_plain = torch.autograd.grad(ell.mean(), list(m.drift.parameters()))
    for a, b in zip(g_loss, g_weighted):
        torch.testing.assert_close(a, b)
    gap = sum(float((a - b).abs().sum()) for a, b in zip(g_loss, g_plain))
    assert gap > 1e-3 * sum(float(a.abs().sum()) for a in g_loss)
    assert float(logs["drift_loss"]) == pytest.approx(float((w * ell.detach()).mean()), rel=1e-6)


def test_kinetic_objective_is_half_the_squared_target():
    """Kills 'the kinetic objective without its 1/2': L_V is zero exactly at V = (1/2)||u||^2 / d."""
    u = torch.randn(64, 3, generator=torch.Generator().manual_seed(1))
    half = 0.5 * u.pow(2).mean(dim=1)
    ell = torch.rand(64)
    assert float(potential_loss(half, ell, u, objective="kinetic").abs().max()) == 0.0
    assert float(potential_loss(2 * half, ell, u, objective="kinetic").mean()) > 0.1


def test_warmup_boundary_is_exact():
    """Kills an off-by-one warm-up: uniform weights up to step warmup_steps - 1, learned ones from warmup_steps."""
    wt = PotentialWeighting(warmup_steps=10)
    v, t = 3 * torch.randn(32, generator=torch.Generator().manual_seed(2)), torch.rand(32)
    assert torch.equal(wt.weights(v, t, step=9), torch.ones(32))
    w10 = wt.weights(v, t, step=10)
    assert float(w10.max() - w10.min()) > 0.5
    assert not torch.equal(PotentialWeighting(warmup_steps=0).weights(v, t, step=0), torch.ones(32))
