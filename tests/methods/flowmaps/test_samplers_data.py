"""Flow-map and Riemannian ODE samplers, manifold data sets, geometry-respecting distances and the ``agm flowmaps``
CLI (GFM, arXiv 2510.21608; docs/flowmaps.md). Ground truths: the exact single-point flow map
X_{s,t}(x) = exp_x((t-s)/(1-s) log_x x1), the exact rotation flow on S^2, vMF moments, and brute-force optimal
transport over all permutations."""
import itertools
import math

import numpy as np
import pytest
import torch
from torch import nn

from agm.data.manifold import (
    hyperbolic_mixture,
    latlon_to_sphere,
    load_earth_events,
    load_torsion_angles,
    sample_vmf,
    sphere_to_latlon,
    sphere_vmf_mixture,
    torus_wrapped_mixture,
)
from agm.errors import ConfigError, DataError
from agm.manifolds import Euclidean, FlatTorus, Lorentz, Sphere
from agm.metrics.geodesic import geodesic_mmd2, geodesic_w2
from agm.methods.flowmaps.nets import FlowMap, FlowMapMLP
from agm.methods.flowmaps.config import load_config
from agm.methods.flowmaps.train import sample_flow_map
from agm.methods.flowmaps.sampler import FlowMapSampler, RiemannianODESampler

F64 = torch.float64
MANIFOLDS = [Sphere(2), FlatTorus(2), Lorentz(2)]
# exact (oracle) nets output tangent vectors; head='project' keeps them (proj_x u = u), the default 'transport' would not
EXACT = [Sphere(2), FlatTorus(2), Lorentz(2, head="project")]
IDS = ["sphere", "torus", "hyperbolic"]


def target_point(m):
    return {"sphere": torch.tensor([[0.0, 0.6, 0.8]], dtype=F64), "torus": torch.tensor([[0.3, 5.9]], dtype=F64),
            "hyperbolic": Lorentz(2).from_poincare(torch.tensor([[0.3, -0.4]], dtype=F64))}[m.name]


class SinglePointNet(nn.Module):
    """Exact v_{s,t}(x) = log_x(x1) / (1 - s) for data = delta_{x1} (docs/flowmaps.md)."""

    def __init__(self, m, x1):
        super().__init__()
        self.m, self.x1 = m, x1

    def forward(self, s, t, x):
        return self.m.logmap(x, self.x1.expand_as(x)) / (1 - s).reshape(-1, 1)


def prior_away_from_cut_locus(m, n, seed):
    x0 = m.random_base(n, generator=torch.Generator().manual_seed(seed), dtype=F64)
    x1 = target_point(m)
    if m.name == "sphere":
        x0 = x0[(x0 @ x1.T).squeeze(-1) > -0.9]
    if m.name == "torus":
        x0 = x0[(m.logmap(x0, x1.expand_as(x0)).abs() < 3.0).all(-1)]
    return x0


@pytest.mark.parametrize("m", EXACT, ids=IDS)
@pytest.mark.parametrize("steps", [1, 2, 4])
def test_exact_map_sampling_composes(m, steps):
    """N-step sampling with the exact map equals 1-step sampling and lands on x1 (docs/flowmaps.md 'composition')."""
    x1 = target_point(m)
    fm = FlowMap(m, SinglePointNet(m, x1))
    x0 = prior_away_from_cut_locus(m, 200, 1)
    out = FlowMapSampler(steps).sample(fm, x0)
    assert m.dist(out, x1.expand_as(out)).max() < 1e-6
    assert m.constraint_error(out).max() < 1e-10


@pytest.mark.parametrize("m", EXACT, ids=IDS)
def test_euler_is_exact_for_the_single_point_field(m):
    """For v_t(x) = log_x(x1)/(1-t), an exp-map Euler step moves along the geodesic to x1 by the exact fraction
    h/(1-t), so any number of Euler steps ends exactly at x1 (docs/flowmaps.md)."""
    x1 = target_point(m)
    fm = FlowMap(m, SinglePointNet(m, x1))
    x0 = prior_away_from_cut_locus(m, 200, 2)
    for steps in (1, 3, 7):
        out = RiemannianODESampler(m, steps, "euler").sample(fm.field, x0)
        assert m.dist(out, x1.expand_as(out)).max() < 1e-6


def test_midpoint_is_second_order_on_the_rotation_flow():
    """dx/dt = w e_z x x on S^2 has the exact solution R_z(w t) x. Euler error ~ h, midpoint error ~ h^2:
    halving h halves Euler's error and quarters midpoint's (ratios checked within +-25%)."""
    m, w = Sphere(2), 2.0
    x0 = m.random_base(50, generator=torch.Generator().manual_seed(3), dtype=F64)

    def field(x, t):
        return w * torch.stack([-x[:, 1], x[:, 0], torch.zeros_like(x[:, 0])], -1)

    c, s = math.cos(w), math.sin(w)
    exact = torch.stack([c * x0[:, 0] - s * x0[:, 1], s * x0[:, 0] + c * x0[:, 1], x0[:, 2]], -1)
    for method, order in (("euler", 1), ("midpoint", 2)):
        e = [float(m.dist(RiemannianODESampler(m, n, method).sample(field, x0), exact).max()) for n in (20, 40)]
        assert 0.75 * 2**order < e[0] / e[1] < 1.25 * 2**order, (method, e)
        assert m.constraint_error(RiemannianODESampler(m, 20, method).sample(field, x0)).max() < 1e-12


@pytest.mark.parametrize("dtype", [torch.float32, F64])
@pytest.mark.parametrize("method", RiemannianODESampler.METHODS)
def test_riemannian_ode_on_euclidean_space_is_integrate_exactly(method, dtype):
    """On R^n (exp_x u = x + u, identity projections) the Riemannian sampler is agm.samplers.integrate's own
    Euler / midpoint rule, bit for bit, over the whole trajectory (one stepping loop for both)."""
    from agm.samplers import integrate, time_grid

    m = Euclidean(3)
    x0 = torch.randn(40, 3, generator=torch.Generator().manual_seed(0), dtype=dtype)
    w = torch.randn(3, 3, generator=torch.Generator().manual_seed(1), dtype=dtype)

    def field(x, t):
        return torch.sin(x @ w) * (1 + t[:, None]) + x.cos()

    got = RiemannianODESampler(m, 7, method).sample(field, x0, return_trajectory=True)
    want = integrate(field, x0, time_grid(7, dtype=dtype), method=method, return_trajectory=True)
    assert got.shape == (8, 40, 3) and torch.equal(got, want)


@pytest.mark.parametrize("method", RiemannianODESampler.METHODS)
def test_riemannian_ode_is_the_exp_map_rule_bit_for_bit(method):
    """On S^2 (float32) the sampler is exactly the rule of its docstring: euler x <- projx(exp_x(h proj_x v(x, t)));
    midpoint m = exp_x(h/2 proj_x v(x, t)) (m not projected), x <- projx(exp_x(h proj_x v(m, t + h/2)))."""
    from agm.samplers import time_grid

    m = Sphere(2)
    x0 = m.random_base(40, generator=torch.Generator().manual_seed(0))
    w = torch.randn(3, 3, generator=torch.Generator().manual_seed(1))

    def field(x, t):
        return torch.sin(x @ w) * (1 + t[:, None]) + x.cos()

    ts, x, want = time_grid(7), x0, [x0]
    for i in range(7):
        t, h = ts[i].expand(40), ts[i + 1] - ts[i]
        v = m.proju(x, field(x, t))
        if method == "midpoint":
            v = m.proju(x, field(m.expmap(x, 0.5 * h * v), t + 0.5 * h))
        x = m.projx(m.expmap(x, h * v))
        want.append(x)
    assert torch.equal(RiemannianODESampler(m, 7, method).sample(field, x0, return_trajectory=True), torch.stack(want))


@pytest.mark.parametrize("m", MANIFOLDS + [Lorentz(2, head="project")], ids=IDS + ["hyperbolic-project"])
def test_untrained_network_samples_stay_on_the_manifold_float32(m):
    """Every sample (any weights, float32, 1/2/4 flow-map steps and a 50-step ODE) is on M to float tolerance:
    sphere | |x| - 1 | and hyperbolic |<x,x>_L + 1| / (1 + x0^2) below 1e-5 (~100 float32 ulps); torus in [0, 2 pi]."""
    torch.manual_seed(0)
    fm = FlowMap(m, FlowMapMLP(m, 32, 2))
    with torch.no_grad():  # make the field large so that steps are long
        last = [mod for mod in fm.modules() if isinstance(mod, nn.Linear)][-1]
        last.weight.mul_(20)
        last.bias.mul_(20)
    for nfe in (1, 2, 4):
        x = sample_flow_map(fm, 500, nfe, mode="map", seed=nfe)
        assert x.dtype == torch.float32 and m.constraint_error(x).max() < 1e-5
    x = sample_flow_map(fm, 500, 50, mode="ode", seed=9)
    assert m.constraint_error(x).max() < 1e-5


# ------------------------------------------------------------------------------------------ bad input
def test_zero_or_bad_steps_are_rejected():
    m = Sphere(2)
    fm = FlowMap(m, FlowMapMLP(m, 8, 1))
    for bad in (0, -2, 1.5):
        with pytest.raises(ConfigError, match="steps"):
            FlowMapSampler(bad)
        with pytest.raises(ConfigError, match="steps"):
            RiemannianODESampler(m, bad)
        with pytest.raises(ConfigError, match="nfe"):
            sample_flow_map(fm, 10, bad, mode="map")
    with pytest.raises(ConfigError, match="nfe=3 is not accepted for ode_method='midpoint'"):
        sample_flow_map(fm, 10, 3, mode="ode", ode_method="midpoint")
    with pytest.raises(ConfigError, match="mode='flow'"):
        sample_flow_map(fm, 10, 1, mode="flow")
    with pytest.raises(ConfigError, match="sample.method"):
        RiemannianODESampler(m, 4, "rk4")


@pytest.mark.parametrize("m", MANIFOLDS, ids=IDS)
def test_samplers_reject_points_off_the_manifold(m):
    fm = FlowMap(m, FlowMapMLP(m, 8, 1))
    off = torch.full((4, m.ambient_dim), 7.0)
    off[:, 0] = -7.0  # also off the upper sheet of the hyperboloid
    with pytest.raises(DataError, match="x0\\[0\\]=.* is not on"):
        FlowMapSampler(2).sample(fm, off)
    with pytest.raises(DataError, match="is not on"):
        RiemannianODESampler(m, 2).sample(fm.field, off)
    with pytest.raises(DataError, match="accepts points of shape"):
        FlowMapSampler(1).sample(fm, torch.zeros(3, m.ambient_dim + 2))


def test_training_rejects_bad_config_and_off_manifold_data():
    from agm.methods.flowmaps.train import train_flow_map

    m = Sphere(2)
    with pytest.raises(ConfigError, match="train.steps"):
        load_config(None, ["train.steps=0"])
    with pytest.raises(ConfigError, match="did you mean 'progressive'"):
        load_config(None, ["method=progresive"])
    one = load_config(None, ["train.steps=1", "train.progress=false"])
    with pytest.raises(DataError, match="data\\[0\\]"):
        train_flow_map(m, 2 * m.random_base(10), one)
    with pytest.raises(DataError, match="accepts points of shape \\(B, 3\\)"):
        train_flow_map(m, torch.rand(10, 2), one)


# ------------------------------------------------------------------------------------------ data
def test_vmf_mean_resultant_length():
    """On S^2, E<mu, X> = coth(kappa) - 1/kappa for vMF(mu, kappa). n = 20000; <mu, X> lies in [-1, 1] with
    variance < 0.1 for kappa >= 5, so the sd of the mean is < sqrt(0.1/20000) = 0.0022; tolerance 5 sd = 0.011."""
    mu = torch.tensor([1.0, 2.0, 2.0]) / 3
    for kappa in (5.0, 30.0):
        x = sample_vmf(mu, kappa, 20000, generator=torch.Generator().manual_seed(4))
        assert Sphere(2).belongs(x, atol=1e-6).all()
        expected = 1 / math.tanh(kappa) - 1 / kappa
        assert abs(float((x.double() @ mu.double()).mean()) - expected) < 0.011


def test_synthetic_sets_lie_on_their_manifolds_and_are_seeded():
    for fn, m in ((sphere_vmf_mixture, Sphere(2)), (torus_wrapped_mixture, FlatTorus(2)), (hyperbolic_mixture, Lorentz(2))):
        a, b, c = fn(300, seed=1), fn(300, seed=1), fn(300, seed=2)
        assert m.belongs(a).all() and torch.equal(a, b) and not torch.equal(a, c)
    t = torus_wrapped_mixture(4000, seed=0)
    assert ((t < 0.2) | (t > 2 * math.pi - 0.2)).any(-1).float().mean() > 0.05  # one component wraps the seam


def test_earth_loader_round_trip_and_errors(tmp_path):
    ll = torch.tensor([[10.0, 20.0], [-45.0, 170.0], [89.0, -120.0]], dtype=F64)
    p = tmp_path / "volcano.csv"
    p.write_text("latitude,longitude\n" + "\n".join(f"{a},{b}" for a, b in ll.tolist()))
    x = load_earth_events(p)
    assert Sphere(2).belongs(x, atol=1e-6).all()
    assert torch.allclose(sphere_to_latlon(x.double()), ll, atol=1e-4)
    assert torch.allclose(x.double(), latlon_to_sphere(ll), atol=1e-7)
    with pytest.raises(DataError, match="does not exist; .*riemannian-fm"):
        load_earth_events(tmp_path / "missing.csv")
    bad = tmp_path / "bad.csv"
    bad.write_text("lat,lon\n100,0\n0,0\n")
    with pytest.raises(DataError, match="latitude must be in"):
        load_earth_events(bad)


def test_torsion_loader(tmp_path):
    arr = np.array([[-170.0, 60.0, 10.0], [45.0, -90.0, 359.0], [0.0, 180.0, -1.0]])
    p = tmp_path / "rna.npy"
    np.save(p, arr)
    x = load_torsion_angles(p)
    assert x.shape == (3, 3) and FlatTorus(3).belongs(x).all()
    assert torch.allclose(x.double(), torch.from_numpy(np.deg2rad(arr) % (2 * math.pi)), atol=1e-6)
    assert load_torsion_angles(p, columns=[0, 1]).shape == (3, 2)
    with pytest.raises(DataError, match="out-of-range"):
        load_torsion_angles(p, columns=[5])
    with pytest.raises(DataError, match="angles in radians"):
        load_torsion_angles(p, degrees=False)


# ------------------------------------------------------------------------------------------ distances
@pytest.mark.parametrize("m", MANIFOLDS, ids=IDS)
def test_geodesic_w2_matches_brute_force_assignment(m):
    """For equal-size uniform empirical laws the OT plan is a permutation (Birkhoff): W2^2 = min over the 6! = 720
    permutations of mean d_g^2."""
    x = m.random_base(6, generator=torch.Generator().manual_seed(5), dtype=F64)
    y = m.random_base(6, generator=torch.Generator().manual_seed(6), dtype=F64)
    d2 = m.pairwise_dist(x, y) ** 2
    best = min(float(d2[list(range(6)), list(p)].mean()) for p in itertools.permutations(range(6)))
    assert abs(geodesic_w2(m, x, y) - math.sqrt(best)) < 1e-9


def test_geodesic_mmd_separates_laws():
    """Unbiased MMD^2 of two independent draws of one law has mean 0 and sd ~ 1/n (n = 1000: ~1e-3 scale); a
    different law (uniform vs the vMF mixture) is far above: measured gap > 10x the tolerance."""
    m = Sphere(2)
    a, b = sphere_vmf_mixture(1000, seed=1), sphere_vmf_mixture(1000, seed=2)
    same = geodesic_mmd2(m, a, b)
    diff = geodesic_mmd2(m, m.random_base(1000, generator=torch.Generator().manual_seed(3)), b)
    assert abs(same) < 5e-3 and diff > 5e-2
    with pytest.raises(DataError, match="is not on"):
        geodesic_mmd2(m, 3 * a, b)


def test_euclidean_w2_of_a_translate_is_the_shift():
    """In R^d, W2(mu, mu + c) = |c| (the mean gap bounds it below, the translation coupling attains it)."""
    m = Euclidean(2)
    x = torch.randn(50, 2, generator=torch.Generator().manual_seed(7), dtype=F64)
    assert abs(geodesic_w2(m, x, x + torch.tensor([0.3, -0.4], dtype=F64)) - 0.5) < 1e-9
