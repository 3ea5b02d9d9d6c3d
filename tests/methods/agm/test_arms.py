"""Issue 17's arms: learned time-only weighting, fixed lambda(t), path-level coupling (docs/agm.md)."""
import math

import pytest
import torch

from agm.errors import ConfigError
from agm.methods.agm import AGM, FixedTimeWeighting, PairCoupling, PotentialWeighting, TimeLogVariance, build_method, load_config
from agm.methods.agm.weighting import potential_loss
from agm.nets import TimeMLP
from agm.paths import BrownianBridge


def _drift():
    torch.manual_seed(0)
    return TimeMLP(2, hidden=32, depth=2)


def _grads(loss, net):
    return [g.clone() for g in torch.autograd.grad(loss, list(net.parameters()), retain_graph=True)]


@pytest.mark.parametrize("arm", ["agm_constant", "time_weight", "fixed_power0"])
def test_constant_weight_equals_drift_only_exactly(arm):
    drift = _drift()
    path = BrownianBridge(0.5, t_max=0.98)
    if arm == "agm_constant":  # V_phi with every weight zero and a constant bias
        from agm.nets import build_potential

        pot, _ = build_potential(drift, (2,), budget=0.1)
        with torch.no_grad():
            for p in pot.parameters():
                p.zero_()
            pot.net.net.net[-1].bias.fill_(-1.3)
        m = AGM(drift, path, pot, PotentialWeighting(warmup_steps=0))
    elif arm == "time_weight":  # u(t) starts at zero
        m = AGM(drift, path, TimeLogVariance(8), PotentialWeighting(warmup_steps=0))
    else:  # lambda(t) = (1 - t)^0 = 1
        m = AGM(drift, path, None, FixedTimeWeighting(schedule="power", power=0.0))
    base = AGM(drift, path)
    x1 = torch.randn(256, 2, generator=torch.Generator().manual_seed(4))
    _, logs = m.loss(x1, step=50, generator=torch.Generator().manual_seed(5))
    loss_b, logs_b = base.loss(x1, step=50, generator=torch.Generator().manual_seed(5))
    assert logs["drift_loss"] == logs_b["drift_loss"]
    # the drift's gradient too (the potential's own loss never reaches theta)
    loss_m, _ = m.loss(x1, step=50, generator=torch.Generator().manual_seed(5))
    for a, b in zip(_grads(loss_m, drift), _grads(loss_b, drift)):
        assert torch.equal(a, b)


def test_time_weight_minimiser_is_log_of_per_t_mean_loss():
    """u(t) trained by sg(l) e^{-u(t)} + u(t) on a synthetic l whose mean depends on t reaches log mean(l | t)."""
    g = torch.Generator().manual_seed(0)
    times = torch.tensor([0.1, 0.35, 0.6, 0.85])
    means = torch.tensor([0.2, 1.0, 3.0, 0.5])
    n = 400
    t = times.repeat_interleave(n)
    ell = -means.repeat_interleave(n) * torch.log(torch.rand(4 * n, generator=g))  # exponential with those means
    net = TimeLogVariance(features=4).double()
    opt = torch.optim.LBFGS(net.parameters(), max_iter=500, tolerance_grad=1e-12, tolerance_change=1e-14, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = potential_loss(net(torch.zeros(4 * n, 1), t.double()), ell.double(), objective="nll").mean()
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        u = net(torch.zeros(4, 1), times.double())
    sample_means = ell.reshape(4, n).mean(1).double()
    torch.testing.assert_close(u, torch.log(sample_means), atol=1e-4, rtol=0)
    # and the sample means estimate the true ones (exponential: sd of the mean = mean / sqrt(n); 4 sd)
    assert torch.all((sample_means - means.double()).abs() < 4 * means.double() / math.sqrt(n))


def test_time_weight_has_the_stop_gradients():
    drift = _drift()
    m = AGM(drift, BrownianBridge(0.5, t_max=0.98), TimeLogVariance(8), PotentialWeighting(warmup_steps=0))
    with torch.no_grad():
        m.potential.head.weight.normal_()
    loss, _ = m.loss(torch.randn(128, 2), step=3, generator=torch.Generator().manual_seed(1))
    x1 = torch.randn(128, 2)
    g = torch.Generator().manual_seed(2)
    from agm.objectives import bridge_matching_loss

    ell, s = bridge_matching_loss(drift, m.path, torch.randn(128, 2, generator=g), x1, generator=g)
    u = m.potential(s.xt, s.t)
    drift_loss, pot_loss, logs = m.weighting.losses(u, ell, s.t, s.target, step=3)
    gu = torch.autograd.grad(drift_loss, list(m.potential.parameters()), allow_unused=True, retain_graph=True)
    assert all(x is None or torch.count_nonzero(x) == 0 for x in gu)
    gt = torch.autograd.grad(pot_loss, list(drift.parameters()), allow_unused=True, retain_graph=True)
    assert all(x is None or torch.count_nonzero(x) == 0 for x in gt)
    assert set(logs) == {"ess", "w_max", "w_min", "v_t_corr"}


def test_fixed_weight_is_the_normalised_inverse_variance():
    fw = FixedTimeWeighting(schedule="inverse_variance", sigma=0.5, offset=1.0, clip=None)
    t = torch.tensor([0.1, 0.5, 0.9, 0.3])
    lam = 1 / (1.0 + 0.25 * t / (1 - t))
    torch.testing.assert_close(fw.weights(None, t, step=0), 4 * lam / lam.sum())
    fp = FixedTimeWeighting(schedule="power", power=2.0, clip=None)
    lam = (1 - t) ** 2
    torch.testing.assert_close(fp.weights(None, t, step=0), 4 * lam / lam.sum())
    with pytest.raises(ConfigError, match="fixed_weight.schedule"):
        FixedTimeWeighting(schedule="cosine")


def test_pair_coupling_is_doubly_stochastic():
    g = torch.Generator().manual_seed(0)
    x0, x1 = torch.randn(128, 2, generator=g), 1 + 0.5 * torch.randn(128, 2, generator=g)
    p = torch.exp(PairCoupling(temperature=0.5, iters=200).log_plan(x0, x1))
    torch.testing.assert_close(p.sum(1), torch.full((128,), 1 / 128), atol=1e-6, rtol=0)
    torch.testing.assert_close(p.sum(0), torch.full((128,), 1 / 128), atol=1e-5, rtol=0)
    # temperature -> inf: the independent coupling (uniform P)
    p_inf = torch.exp(PairCoupling(temperature=1e6, iters=5).log_plan(x0, x1))
    torch.testing.assert_close(p_inf, torch.full((128, 128), 1 / 128**2), atol=1e-8, rtol=1e-3)


def test_pair_coupling_preserves_gaussian_marginals():
    """x0 ~ N(0, I), x1 ~ N(m, s^2 I): the resampled x1 keep mean m and variance s^2 (tolerance from the sample size)
    while the coupling does change (x0 and its partner become correlated)."""
    g = torch.Generator().manual_seed(1)
    B, d, R = 256, 2, 100
    m, s = torch.tensor([1.0, -0.5]), 0.7
    coupling = PairCoupling(temperature=0.5**2 / d, iters=20)  # the Schrodinger-bridge default for sigma = 0.5
    ys, x0s = [], []
    for _ in range(R):
        x0, x1 = torch.randn(B, d, generator=g), m + s * torch.randn(B, d, generator=g)
        y, logs = coupling.resample(x0, x1, g)
        assert all(bool((x1 == row).all(1).any()) for row in y[:8])  # partners come from the batch
        ys.append(y)
        x0s.append(x0)
    y, x0 = torch.cat(ys), torch.cat(x0s)
    n = y.shape[0]
    # resampling within a batch at most doubles the variance of the estimates: 5 standard errors of that
    assert torch.all((y.mean(0) - m).abs() < 5 * s * math.sqrt(2 / n))
    assert torch.all((y.var(0) - s**2).abs() < 5 * s**2 * math.sqrt(2 * 2 / n))
    corr = ((x0 - x0.mean(0)) * (y - y.mean(0))).mean(0) / (x0.std(0) * y.std(0))
    assert torch.all(corr > 10 / math.sqrt(n))  # independent pairs would give |corr| ~ 1 / sqrt(n)
    assert float(logs["pair_cost"]) < float(logs["pair_cost_independent"])


@pytest.mark.parametrize("method", ["baseline", "agm", "time_weight", "fixed_weight", "agm_path"])
def test_every_arm_builds_and_steps(method):
    cfg = load_config("toy", [f"method={method}", "model.hidden=16", "model.depth=2", "potential.warmup_steps=0"])
    m, ratio = build_method(cfg, (2,))
    assert ("potential" in m.networks()) == (method in ("agm", "time_weight", "agm_path"))
    assert (ratio is None) == (method in ("baseline", "fixed_weight"))
    loss, logs = m.loss(torch.randn(64, 2), step=0, generator=torch.Generator().manual_seed(0))
    loss.backward()
    assert torch.isfinite(loss)
    if method != "baseline":
        assert {"ess", "w_max", "w_min", "drift_loss", "unweighted_drift_loss"} <= set(logs)
    if method == "agm_path":
        assert {"pair_cost", "pair_cost_independent", "pair_col_err"} <= set(logs)
        assert m.coupling.temperature == pytest.approx(0.5**2 / 2)


def test_arm_config_errors():
    with pytest.raises(ConfigError, match="method"):
        load_config("toy", ["method=agm_state"])
    with pytest.raises(ConfigError, match="coupling.temperature"):
        load_config("toy", ["method=agm_path", "path.sigma=0"])
    load_config("toy", ["method=agm_path", "path.sigma=0", "coupling.temperature=0.1"])
    with pytest.raises(ConfigError, match="fixed_weight.offset"):
        load_config("toy", ["fixed_weight.offset=0"])
    with pytest.raises(ConfigError, match="coupling.iters"):
        load_config("toy", ["coupling.iters=0"])


def test_new_arms_train_and_sample_without_their_weight_network(tmp_path):
    """The recipe trains each new arm and samples from the EMA drift alone (u(t) / V_phi never needed)."""
    from agm.methods.agm.run import sample_run, train

    for method in ("time_weight", "fixed_weight", "agm_path"):
        cfg = load_config("toy", [f"method={method}", "train.steps=20", "train.ckpt_every=20", "train.log_every=10",
                                  "train.batch_size=32", "model.hidden=16", "model.depth=2", "data.n_train=128",
                                  "data.n_test=64", "train.progress=false", "potential.warmup_steps=5"])
        train(cfg, tmp_path / method)
        x = sample_run(tmp_path / method, 16, steps=5)
        assert x.shape == (16, 2) and torch.isfinite(x).all()
