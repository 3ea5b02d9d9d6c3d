"""Geometry of Sphere, FlatTorus, Lorentz (hyperbolic) and Euclidean: exp/log inverse, distances, projections,
geodesic endpoints, priors on the manifold, bad input (exp/log round trips; docs/flowmaps.md)."""
import math

import pytest
import torch

from agm.errors import ConfigError, DataError
from agm.manifolds import Euclidean, FlatTorus, Lorentz, Sphere, make_manifold, minkowski

F64 = torch.float64
MANIFOLDS = [Sphere(2), Sphere(4), FlatTorus(2), FlatTorus(7), Lorentz(2), Lorentz(3), Euclidean(3)]
IDS = [repr(m) for m in MANIFOLDS]


def pts(m, n, seed):
    return m.random_base(n, generator=torch.Generator().manual_seed(seed), dtype=F64)


def tangent(m, x, seed, scale=1.0):
    g = torch.Generator().manual_seed(seed)
    return scale * m.proju(x, torch.randn(x.shape, generator=g, dtype=F64))


@pytest.mark.parametrize("m", MANIFOLDS, ids=IDS)
def test_exp_log_round_trips(m):
    x, y = pts(m, 500, 1), pts(m, 500, 2)
    if isinstance(m, Sphere):  # stay away from the cut locus (antipode)
        keep = (x * y).sum(-1) > -0.99
        x, y = x[keep], y[keep]
    y2 = m.expmap(x, m.logmap(x, y))
    # docs/flowmaps.md: err ~1e-15 on S^2; the hyperboloid's round-off grows like eps * x_0^2 (x_0 up to ~40 here)
    tol = 1e-7 if isinstance(m, Lorentz) else 1e-9
    assert m.dist(y, y2).max() < tol
    # log_x(exp_x u) = u inside the injectivity radius (|u| < pi on S^d; |u_i| < pi on T^d)
    u = tangent(m, x, 3)
    if isinstance(m, Sphere):
        u = u * (2.5 / m.norm(x, u).clamp_min(2.5))[:, None]
    if isinstance(m, FlatTorus):
        u = u.clamp(-3.0, 3.0)
    assert (m.logmap(x, m.expmap(x, u)) - u).abs().max() < tol
    # d(x, exp_x u) = ||u||_g
    assert (m.dist(x, m.expmap(x, u)) - m.norm(x, u)).abs().max() < tol


@pytest.mark.parametrize("m", MANIFOLDS, ids=IDS)
def test_points_and_tangents(m):
    x = pts(m, 300, 4)
    assert m.belongs(x, atol=1e-12).all()
    u = torch.randn(x.shape, generator=torch.Generator().manual_seed(5), dtype=F64)
    pu = m.proju(x, u)
    scale = 1 + x.abs().max() ** 2  # float64 round-off of Minkowski products grows like x_0^2 on H^d
    assert (m.proju(x, pu) - pu).abs().max() < 1e-13 * scale * (1 + pu.abs().max())  # idempotent
    if isinstance(m, Sphere):
        assert (x * pu).sum(-1).abs().max() < 1e-12
    if isinstance(m, Lorentz):
        assert minkowski(x, pu).abs().max() < 1e-13 * scale * (1 + pu.abs().max())
        assert (m.sqnorm(x, pu) >= 0).all()  # the metric is positive definite on T_x H^d
    assert m.belongs(m.expmap(x, tangent(m, x, 6, 2.0)), atol=1e-10).all()
    assert m.belongs(m.projx(x + 1e-3 * u), atol=1e-12).all()


@pytest.mark.parametrize("m", MANIFOLDS, ids=IDS)
def test_geodesic_endpoints_and_constant_speed(m):
    x0, x1 = pts(m, 200, 7), pts(m, 200, 8)
    if isinstance(m, Sphere):
        keep = (x0 * x1).sum(-1) > -0.99
        x0, x1 = x0[keep], x1[keep]
    n = x0.shape[0]
    assert m.dist(m.geodesic(x0, x1, torch.zeros(n, dtype=F64)), x0).max() < 1e-9
    assert m.dist(m.geodesic(x0, x1, torch.ones(n, dtype=F64)), x1).max() < 1e-9
    t = torch.rand(n, generator=torch.Generator().manual_seed(9), dtype=F64)
    xt = m.geodesic(x0, x1, t)
    d = m.dist(x0, x1)
    assert (m.dist(x0, xt) - t * d).abs().max() < 1e-9  # a minimising geodesic at constant speed
    assert (m.dist(xt, x1) - (1 - t) * d).abs().max() < 1e-9


@pytest.mark.parametrize("m", MANIFOLDS, ids=IDS)
def test_pairwise_matches_dist(m):
    x, y = pts(m, 30, 10), pts(m, 40, 11)
    d = m.pairwise_dist(x, y)
    ref = torch.stack([m.dist(x[i].expand(40, -1), y) for i in range(30)])
    assert (d - ref).abs().max() < 1e-6


def test_sphere_distance_is_the_angle():
    s = Sphere(2)
    x, y = pts(s, 100, 12), pts(s, 100, 13)
    assert (s.dist(x, y) - torch.arccos((x * y).sum(-1).clamp(-1, 1))).abs().max() < 1e-7


def test_torus_wraps_across_the_seam():
    t = FlatTorus(1)
    x, y = torch.tensor([[0.1]], dtype=F64), torch.tensor([[2 * math.pi - 0.2]], dtype=F64)
    assert torch.allclose(t.logmap(x, y), torch.tensor([[-0.3]], dtype=F64))
    assert torch.allclose(t.expmap(x, torch.tensor([[-0.3]], dtype=F64)), y)


def test_lorentz_matches_poincare_ball_formulas():
    """Independent check: the Poincare-ball distance 2 artanh|(-p) (+) q| (docs/flowmaps.md, Mobius addition)
    equals the Lorentz distance after the isometry ball(x) = x_{1:}/(1 + x_0)."""
    h = Lorentz(2)
    x, y = pts(h, 200, 14), pts(h, 200, 15)
    p, q = h.to_poincare(x), h.to_poincare(y)

    def mobius(a, b):
        ab, a2, b2 = (a * b).sum(-1, keepdim=True), (a * a).sum(-1, keepdim=True), (b * b).sum(-1, keepdim=True)
        return ((1 + 2 * ab + b2) * a + (1 - a2) * b) / (1 + 2 * ab + a2 * b2)

    d_ball = 2 * torch.atanh(mobius(-p, q).norm(dim=-1))
    assert (d_ball - h.dist(x, y)).abs().max() < 1e-8
    assert (h.from_poincare(p) - x).abs().max() < 1e-9


@pytest.mark.parametrize("m", [Sphere(2), Lorentz(2)], ids=["sphere", "lorentz"])
def test_wrapped_normal_tangent_covariance(m):
    """log_mu of wrapped-normal draws has covariance std^2 I in an orthonormal tangent basis.
    n = 20000: the sample variance of a N(0, s^2) coordinate has sd s^2 sqrt(2/n) = 0.01 s^2; 6 sd = 0.06 s^2."""
    mu = pts(m, 1, 16)[0]
    std = 0.4
    x = m.wrapped_normal(mu, std, 20000, generator=torch.Generator().manual_seed(17))
    assert m.belongs(x, atol=1e-9).all()
    z = m.logmap(mu.expand(x.shape[0], -1), x) @ m.tangent_basis(mu).T  # coordinates in the basis (Euclidean dot
    if isinstance(m, Lorentz):  # is the metric on the sphere; for Lorentz use the Minkowski product)
        basis = m.tangent_basis(mu)
        z = torch.stack([minkowski(m.logmap(mu.expand(x.shape[0], -1), x), b.expand(x.shape[0], -1)) for b in basis], -1)
    cov = z.T @ z / z.shape[0]
    assert (cov - std**2 * torch.eye(m.dim, dtype=F64)).abs().max() < 0.06 * std**2


def test_uniform_sphere_prior_moments():
    """Uniform on S^2: E[x] = 0, E[x x^T] = I/3. n = 20000: sd of a mean coord = sqrt(1/3/n) = 0.004 (6 sd = 0.025);
    sd of a mean of x_i^2 = sqrt(Var)/sqrt(n), Var(x_i^2) = 1/5 - 1/9 = 0.089 -> 0.0021 (6 sd = 0.013)."""
    x = pts(Sphere(2), 20000, 18)
    assert x.mean(0).abs().max() < 0.025
    assert ((x.T @ x / x.shape[0]) - torch.eye(3, dtype=F64) / 3).abs().max() < 0.013


# ------------------------------------------------------------------------------------------ bad input
@pytest.mark.parametrize("m", [Sphere(2), FlatTorus(2), Lorentz(2)], ids=["sphere", "torus", "lorentz"])
def test_points_off_the_manifold_are_rejected(m):
    bad = torch.full((3, m.ambient_dim), 7.0)
    with pytest.raises(DataError, match="is not on"):
        m.check_point(bad, "x0")


@pytest.mark.parametrize("m", [Sphere(2), FlatTorus(2), Lorentz(2)], ids=["sphere", "torus", "lorentz"])
def test_wrong_dimension_is_rejected(m):
    with pytest.raises(DataError, match=r"accepts points of shape \(B, "):
        m.check_point(torch.zeros(4, m.ambient_dim + 1), "x0")
    with pytest.raises(DataError, match="non-finite"):
        m.check_shape(torch.full((2, m.ambient_dim), float("nan")))


@pytest.mark.parametrize("dim", [0, -1, 1.5])
def test_unsupported_manifold_dimension(dim):
    for cls in (Sphere, FlatTorus, Lorentz, Euclidean):
        with pytest.raises(ConfigError, match="manifold.dim"):
            cls(dim)


def test_make_manifold_names():
    assert isinstance(make_manifold("hyperbolic", 2), Lorentz)
    with pytest.raises(ConfigError, match="did you mean 'sphere'"):
        make_manifold("spere")
    with pytest.raises(ConfigError, match="prior_std"):
        Lorentz(2, prior_std=0.0)
    with pytest.raises(DataError, match="norm < 1"):
        Lorentz(2).from_poincare(torch.tensor([[1.0, 0.0]]))


def test_lorentz_transport_head_is_tangent_and_isometric():
    """head='transport': v = PT_{o->x}(0, f_{1:}) is tangent at x (<x, v>_L = 0) and |v|_L = |f_{1:}| (parallel
    transport is an isometry); at x = o it is f with f_0 dropped. head='project' is proj_x f (docs/flowmaps.md)."""
    h = Lorentz(3)
    x = pts(h, 300, 21)
    f = torch.randn(300, 4, generator=torch.Generator().manual_seed(22), dtype=F64)
    v = h.to_tangent(x, f)
    assert minkowski(x, v).abs().max() < 1e-9 * (1 + x[:, 0] ** 2).max()
    assert (torch.sqrt(minkowski(v, v)) - f[:, 1:].norm(dim=-1)).abs().max() < 1e-9
    o = h.origin(F64).expand(300, -1)
    assert torch.allclose(h.to_tangent(o, f)[:, 1:], f[:, 1:]) and (h.to_tangent(o, f)[:, 0] == 0).all()
    hp = Lorentz(3, head="project")
    assert torch.allclose(hp.to_tangent(x, f), hp.proju(x, f))
    with pytest.raises(ConfigError, match="manifold.head='parallel' is not accepted"):
        Lorentz(2, head="parallel")


@pytest.mark.parametrize("dtype, radius", [(torch.float32, 17.7), (torch.float64, 141.9)])
def test_lorentz_float_safety_radius(dtype, radius):
    """Points are kept within R = 0.2 log(finfo.max) of the origin (our float-safety choice): a huge step stays
    finite and on H^2, at distance ~R from the origin."""
    h = Lorentz(2)
    o = h.origin(dtype)[None]
    x = h.expmap(o, torch.tensor([[0.0, 1e6, -3e5]], dtype=dtype))
    assert torch.isfinite(x).all() and h.belongs(x)
    assert abs(float(h.dist(o.double(), x.double())) - radius) < 0.1
