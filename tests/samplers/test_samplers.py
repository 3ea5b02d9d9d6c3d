import math

import pytest
import torch

from agm.errors import ConfigError
from agm.samplers import EulerMaruyama, ODESampler


def test_em_ou_process_matches_closed_form():
    # dX = -X dt + sqrt(2) dW from X_0 = 3: X_1 ~ N(3 e^{-1}, 1 - e^{-2})
    n = 100_000
    g = torch.Generator().manual_seed(0)
    x = EulerMaruyama(steps=500, noise_last_step=True).sample(lambda x, t: -x, torch.full((n, 1), 3.0), math.sqrt(2), generator=g)
    mean, var = 3 * math.exp(-1), 1 - math.exp(-2)
    assert abs(float(x.mean()) - mean) < 5 * math.sqrt(var / n) + 3 * 3 / 500  # CLT + O(dt) bias
    assert abs(float(x.var()) - var) < 5 * var * math.sqrt(2 / n) + 0.01


def test_callable_diffusion_and_trajectory():
    traj = EulerMaruyama(steps=10).sample(lambda x, t: torch.zeros_like(x), torch.zeros(4, 2), lambda x, t: 0 * x + 0.0, return_trajectory=True)
    assert traj.shape == (11, 4, 2) and torch.all(traj == 0)


def test_heun_is_second_order():
    # dx/dt = x from x(0)=1: x(1) = e. Error ratio when halving h: ~2 for Euler, ~4 for Heun.
    x0 = torch.ones(1, 1)
    errs = {}
    for method in ("euler", "heun"):
        e = [abs(float(ODESampler(n, method).sample(lambda x, t: x, x0)) - math.e) for n in (20, 40)]
        errs[method] = e[0] / e[1]
    assert errs["euler"] == pytest.approx(2.0, rel=0.1)
    assert errs["heun"] == pytest.approx(4.0, rel=0.1)


def test_bad_steps():
    for bad in (0, -3, 2.5):
        with pytest.raises(ConfigError, match="steps"):
            EulerMaruyama(steps=bad)
    with pytest.raises(ConfigError, match="sample.method"):
        ODESampler(10, method="rk45")


def test_integrate_orders_of_every_method():
    # dx/dt = x + t from x(0) = 1: x(1) = 2e - 2. Halving h divides the error by ~2^p, p the method's order.
    from agm.samplers.ode import METHODS, integrate

    x0 = torch.ones(1, 1, dtype=torch.float64)
    exact = 2 * math.e - 2
    order = {"euler": 1, "midpoint": 2, "heun": 2, "rk4": 4}
    assert set(order) == set(METHODS)
    for method, p in order.items():
        e = [abs(float(integrate(lambda x, t: x + t[:, None], x0, torch.linspace(0, 1, n + 1, dtype=torch.float64), method=method)) - exact)
             for n in (16, 32)]
        assert 0.8 * 2**p < e[0] / e[1] < 1.25 * 2**p, (method, e)


def test_integrate_backward_and_integrand_quadrature():
    # Backward over a decreasing grid: dx/dt = -x from x(1) = 1 gives x(0) = e. The integrand g = 4 t^3 is
    # integrated by the method's quadrature: Simpson (rk4) is exact for cubics, int_1^0 4 t^3 dt = -1.
    # RK4 global error at h = 0.1: about h^4 e / 120 = 2.3e-6.
    from agm.samplers.ode import integrate

    x1 = torch.ones(3, 1, dtype=torch.float64)
    ts = torch.linspace(1, 0, 11, dtype=torch.float64)
    calls = {"field": 0, "integrand": 0}

    def field(x, t):
        calls["field"] += 1
        return -x

    def integrand(x, t):
        calls["integrand"] += 1
        assert t.shape == (3,)
        return -x, 4 * t**3

    x, acc = integrate(field, x1, ts, method="rk4", integrand=integrand)
    assert abs(float(x[0]) - math.e) < 5e-6 and torch.allclose(acc, torch.full((3,), -1.0, dtype=torch.float64), atol=1e-12)
    assert calls == {"field": 0, "integrand": 40}
    calls.update(field=0, integrand=0)
    x, acc = integrate(field, x1, ts, method="midpoint", integrand=integrand)  # the first stage needs no g
    assert calls == {"field": 10, "integrand": 10}
    mid_rule = sum(4 * (t - 0.05) ** 3 * 0.1 for t in torch.linspace(1, 0.1, 10, dtype=torch.float64).tolist())
    assert torch.allclose(acc, torch.full((3,), -mid_rule, dtype=torch.float64), atol=1e-12)
    traj = integrate(field, x1, ts, method="euler", return_trajectory=True)
    assert traj.shape == (11, 3, 1) and torch.equal(traj[0], x1)
    with pytest.raises(ConfigError):
        integrate(field, x1, ts, method="rk5")
