"""The geodesic path's regression target dI_t/dt (docs/flowmaps.md (F2)) against finite differences of the geodesic in
t, on the sphere, the flat torus and the hyperbolic plane, for both ways of computing it ('jvp', 'closed_form').

The finite differences use the manifold's own exp/log (checked against closed forms and peers in test_geometry.py),
not the path's code: (log_{I_t} I_{t+h} - log_{I_t} I_{t-h}) / (2h) with I_t = exp_{x0}(t log_{x0} x1) is the
velocity at I_t up to O(h^2). In float64 with h = 1e-4 the truncation error is ~|v|^3 h^2 (~1e-7 for |v| <= pi) and
round-off ~1e-16 / h = 1e-12, so a tolerance of 1e-6 separates a correct target from a wrong sign or factor (which
changes the vector by ~|v| ~ 1).
"""
import pytest
import torch

from agm.manifolds import FlatTorus, Lorentz, Sphere
from agm.paths.geodesic import GeodesicPath

F64 = torch.float64
MANIFOLDS = [Sphere(2), FlatTorus(2), Lorentz(2)]
IDS = ["sphere", "torus", "hyperbolic"]


def pairs_away_from_the_cut_locus(m, n=200, seed=0):
    g = torch.Generator().manual_seed(seed)
    x0 = m.random_base(n, generator=g, dtype=F64)
    x1 = m.random_base(n, generator=g, dtype=F64)
    if m.name == "sphere":
        keep = (x0 * x1).sum(-1) > -0.9
    elif m.name == "torus":
        keep = (m.logmap(x0, x1).abs() < 3.0).all(-1)
    else:
        keep = torch.ones(n, dtype=torch.bool)
    return x0[keep], x1[keep]


def geodesic(m, x0, x1, t):
    return m.expmap(x0, t.reshape(-1, 1) * m.logmap(x0, x1))


@pytest.mark.parametrize("target", GeodesicPath.TARGETS)
@pytest.mark.parametrize("m", MANIFOLDS, ids=IDS)
def test_target_is_the_time_derivative_of_the_geodesic(m, target):
    x0, x1 = pairs_away_from_the_cut_locus(m)
    t = torch.rand(x0.shape[0], generator=torch.Generator().manual_seed(1), dtype=F64) * 0.9 + 0.05
    path = GeodesicPath(m, target=target)
    ps = path.sample(x0, x1, t)
    xt = geodesic(m, x0, x1, t)
    assert (m.dist(ps.xt, xt) < 1e-9).all()  # the point the target belongs to
    h = 1e-4
    fd = (m.logmap(xt, geodesic(m, x0, x1, t + h)) - m.logmap(xt, geodesic(m, x0, x1, t - h))) / (2 * h)
    err = (ps.target - fd).norm(dim=-1).max()
    assert err < 1e-6, (m.name, target, float(err))
    # the speed of a constant-speed geodesic is d(x0, x1)
    assert torch.allclose(m.norm(xt, ps.target), m.dist(x0, x1), atol=1e-6)


@pytest.mark.parametrize("target", GeodesicPath.TARGETS)
@pytest.mark.parametrize("m", [Sphere(2), Lorentz(2)], ids=["sphere", "hyperbolic"])
def test_target_is_tangent_at_the_point(m, target):
    """<I_t, v> = 0 on the sphere and <I_t, v>_L = 0 on the hyperboloid: the target lies in T_{I_t} M."""
    x0, x1 = pairs_away_from_the_cut_locus(m, seed=2)
    t = torch.rand(x0.shape[0], generator=torch.Generator().manual_seed(3), dtype=F64)
    ps = GeodesicPath(m, target=target).sample(x0, x1, t)
    assert (ps.target - m.proju(ps.xt, ps.target)).norm(dim=-1).max() < 1e-9


def test_both_targets_agree_and_vanish_for_equal_endpoints():
    m = Sphere(2)
    x0, x1 = pairs_away_from_the_cut_locus(m, seed=4)
    t = torch.full((x0.shape[0],), 0.3, dtype=F64)
    a = GeodesicPath(m, "jvp").sample(x0, x1, t).target
    b = GeodesicPath(m, "closed_form").sample(x0, x1, t).target
    assert (a - b).norm(dim=-1).max() < 1e-9
    assert GeodesicPath(m, "closed_form").sample(x0, x0, t).target.abs().max() < 1e-12
