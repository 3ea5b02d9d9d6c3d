"""The tabular path of Bellman Diffusion (docs/bellman.md, "Making the tabular path correct"): the eps rule, the
kernel-smoothed density of a Gaussian (closed form), the minimiser g* against finite differences, eps-conditioned
fields and the annealed sampler (exact fields keep p), the sampler's start, and the config keys end to end."""
import math

import numpy as np
import pytest
import torch
from scipy import stats

from agm.errors import ConfigError
from agm.methods.bellman.dynamics import BellmanDynamics
from agm.methods.bellman.fields import (FieldMatching, FieldMethod, ScalarField, field_scale, gaussian_field_minimisers, kernel_weights,
                                        silverman_eps, train_fields)


def mvn_pdf(x, mu, cov):
    d = mu.numel()
    z = x - mu
    prec = torch.linalg.inv(cov)
    return torch.exp(-0.5 * ((z @ prec) * z).sum(-1)) / torch.sqrt((2 * math.pi) ** d * torch.det(cov))


def test_silverman_eps_formula():
    # 1-D: the square of Silverman's 1.06 n^(-1/5) up to the rounding of (4/3)^(1/5) = 1.0592
    assert silverman_eps(511, 1) == pytest.approx((1.0592 * 511 ** -0.2) ** 2, rel=1e-3)
    # d-dim: (4/(d+2))^(2/(d+4)) n^(-2/(d+4)), scaled by the variance; grows with d at fixed n
    assert silverman_eps(255, 10, var=2.0) == pytest.approx(2.0 * (4 / 12) ** (2 / 14) * 255 ** (-2 / 14), rel=1e-12)
    assert silverman_eps(255, 2) < silverman_eps(255, 10) < silverman_eps(255, 30) < 1.0
    with pytest.raises(ConfigError):
        silverman_eps(0, 2)


def test_full_kernel_weights_are_the_smoothed_gaussian_density():
    # oracle: E_y N(x - y; 0, eps I) = N(x; mu, Sigma + eps I) for y ~ N(mu, Sigma) (anisotropic, d = 3)
    gen = torch.Generator().manual_seed(0)
    d, eps, n = 3, 0.3, 3000
    a = torch.randn(d, d, generator=gen, dtype=torch.float64)
    cov = a @ a.T / d + 0.5 * torch.eye(d, dtype=torch.float64)
    mu = torch.tensor([0.5, -0.2, 0.1], dtype=torch.float64)
    y = mu + torch.randn(n, d, generator=gen, dtype=torch.float64) @ torch.linalg.cholesky(cov).T
    q = mu + 0.7 * torch.randn(5, d, generator=gen, dtype=torch.float64)
    k = kernel_weights(torch.cat([q, y]), eps, kernel="full")[:5]
    truth = mvn_pdf(q, mu, cov + eps * torch.eye(d, dtype=torch.float64))
    # per-query standard error of a mean of n kernel values
    kv = torch.exp(-0.5 * torch.cdist(q, y).pow(2) / eps) / (2 * math.pi * eps) ** (d / 2)
    se = kv.std(1) / math.sqrt(n)
    assert ((k - truth).abs() < 5 * se).all(), (k, truth, se)
    # and the test can fail: the unsmoothed p is far outside that band at these points
    assert ((k - mvn_pdf(q, mu, cov)).abs() > 5 * se).any()


def test_sliced_kernel_weights_are_the_sliced_density():
    # oracle: E_{y,w} N(w^T(x - y); 0, eps) = E_w N(w^T(x - mu); 0, w^T Sigma w + eps) -- a sliced density, not p
    gen = torch.Generator().manual_seed(1)
    d, eps, n = 5, 0.1, 1000
    cov = torch.diag(torch.linspace(0.5, 1.5, d, dtype=torch.float64))
    q = torch.zeros(1, d, dtype=torch.float64)
    vals = []
    for _ in range(100):  # independent batches: the query's weight is an unbiased estimate of h(0)
        y = torch.randn(n, d, generator=gen, dtype=torch.float64) * cov.diagonal().sqrt()
        vals.append(float(kernel_weights(torch.cat([q, y]), eps, kernel="sliced", generator=gen)[0]))
    w = torch.randn(200000, d, generator=gen, dtype=torch.float64)
    w = w / w.norm(dim=1, keepdim=True)
    var = (w * w * cov.diagonal()).sum(1) + eps
    truth = float((1 / torch.sqrt(2 * math.pi * var)).mean())
    se = np.std(vals, ddof=1) / math.sqrt(len(vals))
    assert abs(np.mean(vals) - truth) < 5 * se + 1e-4
    assert truth > 20 * float(mvn_pdf(q, torch.zeros(d, dtype=torch.float64), cov))  # not on p's scale (0.38 vs 0.012)


def test_minimiser_g_star_matches_finite_differences_and_differs_from_grad_f():
    # g* = grad(p h) / (2 p) (docs/bellman.md): check the closed form against central differences of p h, and that
    # g* = grad f* only in the limit eps -> 0 (the reason for two networks)
    mu = torch.zeros(2, dtype=torch.float64)
    x = torch.tensor([[0.3, -0.8], [1.2, 0.4], [-0.5, -0.1]], dtype=torch.float64)
    p = lambda u: mvn_pdf(u, mu, torch.eye(2, dtype=torch.float64))
    for eps in (0.5, 1e-4):
        f_star, g_star = gaussian_field_minimisers(mu, 1.0, eps)
        h = 1e-5
        fd_ph = torch.stack([(p(x + h * e) * f_star(x + h * e) - p(x - h * e) * f_star(x - h * e)) / (2 * h)
                             for e in torch.eye(2, dtype=torch.float64)], 1)
        assert torch.allclose(g_star(x), fd_ph / (2 * p(x))[:, None], rtol=1e-6, atol=1e-9)
        fd_f = torch.stack([(f_star(x + h * e) - f_star(x - h * e)) / (2 * h) for e in torch.eye(2, dtype=torch.float64)], 1)
        gap = float((g_star(x) - fd_f).abs().max())
        if eps > 0.1:
            assert gap > 1e-2
        else:
            assert gap < 1e-4


def _exact_levels(levels_noise):
    """Exact eps-conditioned fields for p = N(0, 1) in 1-D: at level e the target is p_e = N(0, 1 + n_e) (n_e the level's
    data noise), f = p_e * N_e, g = grad(p_e f) / (2 p_e)."""
    def fields(e):
        v = 1.0 + levels_noise[e]
        f_s, g_s = gaussian_field_minimisers(torch.zeros(1, dtype=torch.float64), v, e)
        return f_s, g_s

    return (lambda x, e: fields(e)[0](x)), (lambda x, e: fields(e)[1](x))


@pytest.mark.parametrize("noise", ["none", "data"])
def test_annealed_sampler_with_exact_fields_ends_at_p(noise):
    levels = [2.0, 0.5, 0.1] if noise == "none" else [2.0, 0.5, 1e-3]  # with data noise the last level targets N(0, 1 + 1e-3)
    lv_noise = {e: (e if noise == "data" else 0.0) for e in levels}
    f, g = _exact_levels(lv_noise)
    n = 4000
    x0 = 1.5 + 0.3 * torch.randn(n, 1, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    bd = BellmanDynamics(steps=3000, rel_step=0.05)
    xs = bd.sample_annealed(g, x0, f, levels, generator=torch.Generator().manual_seed(1))
    assert [s["eps"] for s in bd.last_stats["levels"]] == levels
    d = stats.kstest(xs[:, 0].numpy(), "norm").statistic
    assert d < 1.95 / math.sqrt(n), d  # p ~ 0.001 under H0
    # the test can fail: the same particles before annealing (x0) are far from N(0, 1)
    assert stats.kstest(x0[:, 0].numpy(), "norm").statistic > 0.5


def test_eps_levels_and_level_noise_in_the_training_loss():
    seen = []

    class Spy(FieldMatching):
        def losses(self, f_net, g_net, x, *, generator=None, eps=None):
            seen.append((x.clone(), eps))
            return super().losses(f_net, g_net, x, generator=generator, eps=eps)

    x = torch.zeros(2000, 2)
    m = FieldMethod(2, Spy(eps=0.05, kernel="full"), hidden=8, depth=1, eps_levels=(0.1, 0.5), level_noise="data")
    gen = torch.Generator().manual_seed(0)
    for step in range(20):
        m.loss(x, step, gen)
    eps_seen = {e for _, e in seen}
    assert eps_seen == {0.1, 0.5}
    for xb, e in seen:  # the batch is x + N(0, e I), fresh noise each step
        var = float(xb.var())
        assert abs(var - e) < 5 * e * math.sqrt(2 / xb.numel()), (var, e)
    assert not torch.equal(seen[0][0], seen[1][0])
    # without level_noise the rows are used as they are (the paper's losses)
    seen.clear()
    FieldMethod(2, Spy(eps=0.05, kernel="full"), hidden=8, depth=1).loss(x, 0, gen)
    assert float(seen[0][0].abs().max()) == 0.0 and seen[0][1] is None
    # the networks see log eps: different levels give different outputs for the same x
    with torch.no_grad():
        assert not torch.allclose(m.f(x[:4] + 1, 0.1), m.f(x[:4] + 1, 0.5))


def test_default_fields_are_the_plain_networks():
    # the old behaviour: no conditioning, no scale, same state-dict keys and input width
    m = FieldMethod(3, FieldMatching(eps=0.05))
    assert not m.f.conditional and m.f.scale == "none" and m.f.eps == 0.05
    first = next(p for p in m.f.parameters() if p.dim() == 2)
    assert first.shape[1] == 3  # input width d, no log-eps feature
    assert set(m.f.state_dict()) == set(ScalarField(3).state_dict())
    # scale='kernel' multiplies by the smoothed standard Gaussian's peak; full kernel d = 10: ~1e-4
    assert field_scale(0.3, 10) == pytest.approx((2 * math.pi * 1.3) ** -5)
    torch.manual_seed(0)
    a = ScalarField(3, 8, 1, eps=0.3, kdim=3)
    torch.manual_seed(0)
    b = ScalarField(3, 8, 1, eps=0.3, kdim=3, scale="kernel")
    x = torch.randn(5, 3)
    assert torch.allclose(b(x), a(x) * field_scale(0.3, 3))


def test_trained_conditional_fields_reach_the_minimisers_at_each_level():
    # one network for two kernel variances: f(., e) -> N(0, 1 + e) for e in {0.1, 0.4} (1-D, full kernel)
    x = torch.randn(20000, 1, generator=torch.Generator().manual_seed(0))
    f_net, g_net, _ = train_fields(x, FieldMatching(eps=0.1, kernel="full", trace="exact"), steps=500, batch_size=256, lr=3e-3,
                                   hidden=32, depth=2, eps_levels=(0.1, 0.4))
    grid = torch.linspace(-1.5, 1.5, 61)[:, None]
    for e in (0.1, 0.4):
        f_star, g_star = gaussian_field_minimisers(torch.zeros(1), 1.0, e)
        with torch.no_grad():
            ef = (f_net(grid, e) - f_star(grid)).abs().max().item()
            eg = (g_net(grid, e) - g_star(grid)).abs().max().item()
        # same bands as the single-eps test (peaks 0.38 / 0.34; Monte-Carlo noise of a few 1e-2), half the steps per level
        assert ef < 0.05, (e, ef)
        assert eg < 0.07, (e, eg)
    # the two levels are told apart: the peaks differ by N(0;0,1.1) - N(0;0,1.4) = 0.043
    with torch.no_grad():
        assert float(f_net(torch.zeros(1, 1), 0.1) - f_net(torch.zeros(1, 1), 0.4)) > 0.02


def test_config_keys_resolve_and_validate():
    from agm.methods.bellman.run import base_eps, eps_levels, initial_points, load_config, row_moments, sample_levels

    meta = {"data_shape": [10], "n_train": 300}
    assert base_eps(load_config()) == 0.05  # default: the fixed eps (old behaviour)
    cfg = load_config(None, ["field.kernel=full", "field.eps_rule=silverman", "train.batch_size=512", "field.eps_levels=[1,4,16]"])
    e = base_eps(cfg, meta)
    assert e == pytest.approx(silverman_eps(299, 10))  # batch capped at the 300 rows: 299 partners
    assert eps_levels(cfg, meta) == pytest.approx([e, 4 * e, 16 * e])
    assert sample_levels(cfg, meta) == pytest.approx([16 * e, 4 * e, e])  # largest first
    sliced = load_config(None, ["field.eps_rule=silverman", "train.batch_size=257"])
    assert base_eps(sliced, meta) == pytest.approx(silverman_eps(256, 1))
    with pytest.raises(ConfigError, match="eps_levels"):
        load_config(None, ["sample.eps_schedule=[4,1]"])
    with pytest.raises(ConfigError, match="not among"):
        load_config(None, ["field.eps_levels=[1,4]", "sample.eps_schedule=[8]"])
    with pytest.raises(ConfigError, match="eps_rule"):
        load_config(None, ["field.eps_rule=scott"])
    # data_gaussian start: the covariance of the training rows
    gen = torch.Generator().manual_seed(0)
    rows = torch.randn(5000, 2, generator=gen) @ torch.tensor([[1.0, 0.9], [0.0, 0.3]])
    m = {"data_shape": [2], **row_moments(rows)}
    x0 = initial_points(load_config(None, ["sample.init=data_gaussian"]), m, 20000, generator=gen)
    c0, c = torch.cov(x0.T), torch.tensor(m["train_cov"], dtype=torch.float32)
    assert torch.allclose(c0, c, atol=0.05), (c0, c)
    assert abs(float(torch.cov(initial_points(load_config(), m, 20000, generator=gen).T)[0, 1])) < 0.05


def test_annealed_run_trains_and_samples_through_the_cli(tmp_path):
    from agm.cli import main
    from agm.methods.bellman.run import sample_run

    run = tmp_path / "r"
    assert main(["bellman", "train", "--out", str(run), "data.name=moons", "data.n_train=300", "data.n_test=100", "train.steps=20",
                 "train.batch_size=64", "field.hidden=16", "field.depth=2", "field.kernel=full", "field.eps_rule=silverman",
                 "field.scale=kernel", "field.eps_levels=[1,4]", "field.level_noise=data", "sample.init=data_gaussian",
                 "sample.steps=40"]) == 0
    s = sample_run(run, 50, device="cpu")
    assert s.shape == (50, 2) and torch.isfinite(s).all()
