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
