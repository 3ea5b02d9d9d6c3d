"""The Riemannian ODE samplers evaluate a time-dependent field at the right times (docs/flowmaps.md (F8)).

Field: rotation about the z axis with angular speed w(t) = a + b t, v(x, t) = w(t) e_z x x on S^2. Its flow turns x
by theta(t) = a t + b t^2 / 2 about z. On the equator (x_3 = 0) the field at x is tangent to the equator, a great
circle, so one Euler step x <- exp_x(h v(x, t_i)) turns x by exactly h w(t_i): n Euler steps (h = 1/n) turn it by
sum_i h w(t_i) = a + b (1 - h) / 2.
On the flat torus the translation field v(x, t) = w(t) c has the flow x + (a t + b t^2 / 2) c mod 2 pi, and the
midpoint rule (field at t_i + h/2) is exact for a field linear in t: sum_i h w(t_i + h/2) = a + b / 2.
A sampler that evaluates the field at another time (t_i for the midpoint, t_i + h, a time ignoring the grid)
misses these by >= b h / 2 (here >= 0.1), far above float64 round-off (1e-9 tolerance).
"""
import math

import pytest
import torch

from agm.manifolds import FlatTorus, Sphere
from agm.methods.flowmaps.sampler import RiemannianODESampler

A, B = 0.5, 2.0


def field(x, t):
    w = (A + B * t).reshape(-1, 1)
    return w * torch.stack([-x[:, 1], x[:, 0], torch.zeros_like(x[:, 0])], -1)


def equator_points(n=16):
    phi = torch.linspace(0, 2 * math.pi, n + 1, dtype=torch.float64)[:-1]
    return torch.stack([torch.cos(phi), torch.sin(phi), torch.zeros_like(phi)], -1)


def turned(x, angle):
    c, s = math.cos(angle), math.sin(angle)
    return torch.stack([c * x[:, 0] - s * x[:, 1], s * x[:, 0] + c * x[:, 1], x[:, 2]], -1)


@pytest.mark.parametrize("steps", [1, 3, 10])
def test_midpoint_is_exact_for_a_linear_in_time_translation_on_the_torus(steps):
    m = FlatTorus(2)
    c = torch.tensor([1.0, -0.7], dtype=torch.float64)
    x0 = m.random_base(20, generator=torch.Generator().manual_seed(0), dtype=torch.float64)

    def translation(x, t):
        return (A + B * t).reshape(-1, 1) * c

    for method, shift in (("midpoint", A + B / 2), ("euler", A + B * (1 - 1 / steps) / 2)):
        out = RiemannianODESampler(m, steps, method).sample(translation, x0)
        assert m.dist(out, m.projx(x0 + shift * c)).max() < 1e-9, method


@pytest.mark.parametrize("steps", [1, 3, 10])
def test_euler_uses_the_left_end_time(steps):
    m, x0 = Sphere(2), equator_points()
    h = 1.0 / steps
    out = RiemannianODESampler(m, steps, "euler").sample(field, x0)
    assert m.dist(out, turned(x0, A + B * (1 - h) / 2)).max() < 1e-9


def test_midpoint_is_second_order_off_the_equator_with_time_dependence():
    """Off the equator exp steps leave the latitude circle; the error must still fall like h^2 (ratio 4 +- 25%)."""
    m = Sphere(2)
    x0 = m.random_base(50, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    exact = turned(x0, A + B / 2)
    e = [float(m.dist(RiemannianODESampler(m, n, "midpoint").sample(field, x0), exact).max()) for n in (20, 40)]
    assert 3.0 < e[0] / e[1] < 5.0, e
