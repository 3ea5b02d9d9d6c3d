"""AGM weighting invariants (agm-digest.md sections 3-4)."""
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
