"""Riemannian MeanFlow (G-MF; docs/flowmaps.md (F9); MeanFlow arXiv 2505.13447, our Riemannian form) in the style of
test_losses.py, with its fixtures (conftest.py: the exact single-point oracle, its data, the (s, t) draws): the exact
single-point flow map has zero loss on S^2 / T^2 / H^2 / SO(3) (and a perturbed one a positive loss), the Euclidean
reduction equals MeanFlow's own loss and gradient (u regressed on sg[v + (t - s) du/ds]), the loss value is the
squared norm of the total derivative, the objective wires it in, and a short run on one point converges."""
import pytest
import torch

from agm.errors import ConfigError
from agm.manifolds import Euclidean, FlatTorus, Lorentz, SO3, Sphere
from agm.manifolds.base import jvp
from agm.methods.flowmaps.losses import FlowMapObjective, meanflow_loss
from agm.methods.flowmaps.nets import FlowMap, FlowMapMLP
from agm.paths.geodesic import GeodesicPath

F64 = torch.float64
CASES = [Sphere(2), FlatTorus(2), Lorentz(2, head="project"), SO3()]


@pytest.mark.parametrize("m", CASES, ids=lambda m: m.name)
def test_exact_single_point_map_has_zero_meanflow_loss(m, single_point_case, single_point_net, times):
    x0, x1 = single_point_case(m)
    s, t = times(x0.shape[0], 1)
    path = GeodesicPath(m)
    exact = meanflow_loss(FlowMap(m, single_point_net(m, x1)), path, x0, x1.expand_as(x0), s, t)
    bad = meanflow_loss(FlowMap(m, single_point_net(m, x1, 1.2)), path, x0, x1.expand_as(x0), s, t)
    assert exact.abs().max() < (1e-8 if not isinstance(m, Lorentz) else 1e-6)
    assert bad.mean() > 1e-3


def test_euclidean_reduction_is_meanflow(times):
    """In R^d: loss and gradient equal MeanFlow's ||u - sg[v + (t - s)(J_x u v + d_s u)]||^2, v = x1 - x0."""
    m = Euclidean(2)
    torch.manual_seed(0)
    fm = FlowMap(m, FlowMapMLP(m, 32, 2, 2)).double()
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(64, 2, dtype=F64, generator=g)
    x1 = torch.randn(64, 2, dtype=F64, generator=g) + 3
    s, t = times(64, 2)
    ours = meanflow_loss(fm, GeodesicPath(m), x0, x1, s, t)
    grad_ours = torch.autograd.grad(ours.mean(), list(fm.parameters()))
    zs = (1 - s[:, None]) * x0 + s[:, None] * x1
    v = x1 - x0
    u = fm.velocity(s, t, zs)
    with torch.no_grad():
        _, du = jvp(lambda zz, ss: fm.velocity(ss, t, zz), (zs, s), (v, torch.ones_like(s)))
        target = v + (t - s)[:, None] * du
    ref = ((u - target) ** 2).sum(-1)
    grad_ref = torch.autograd.grad(ref.mean(), list(fm.parameters()))
    assert torch.allclose(ours, ref, atol=1e-10)
    assert max(float((a - b).abs().max()) for a, b in zip(grad_ours, grad_ref)) < 1e-10


def test_value_is_the_squared_norm_of_the_total_derivative_on_the_sphere(single_point_case, times):
    m = Sphere(2)
    torch.manual_seed(1)
    fm = FlowMap(m, FlowMapMLP(m, 16, 2)).double()
    x0, x1 = single_point_case(m, 3)
    x1 = x1.expand_as(x0)
    s, t = times(x0.shape[0], 4)
    path = GeodesicPath(m)
    xst, d = jvp(lambda ss: fm(ss, t, path.point(x0, x1, ss)), (s,), (torch.ones_like(s),))
    ref = m.sqnorm(xst, m.proju(xst, d))
    ok = ((t - s) * ref.sqrt() < 3.0)  # inside the injectivity radius, where d(X, exp_X(h D)) = h |D|
    assert torch.allclose(meanflow_loss(fm, path, x0, x1, s, t)[ok], ref[ok], rtol=1e-6, atol=1e-10)


def test_gradient_flows_only_through_the_map(single_point_case, times):
    """The stop-gradient: the loss's gradient equals that of d(X, fixed target)^2 / (t - s)^2."""
    m = Sphere(2)
    torch.manual_seed(2)
    fm = FlowMap(m, FlowMapMLP(m, 16, 2)).double()
    x0, x1 = single_point_case(m, 5, 16)
    x1 = x1.expand_as(x0)
    s, t = times(x0.shape[0], 6)
    path = GeodesicPath(m)
    g1 = torch.autograd.grad(meanflow_loss(fm, path, x0, x1, s, t).sum(), list(fm.parameters()))
    with torch.no_grad():
        xst, d = jvp(lambda ss: fm(ss, t, path.point(x0, x1, ss)), (s,), (torch.ones_like(s),))
        target = m.expmap(xst, (t - s)[:, None] * m.proju(xst, d))
    x = fm(s, t, path.point(x0, x1, s))
    g2 = torch.autograd.grad((m.sqdist(x, target) / (t - s) ** 2).sum(), list(fm.parameters()))
    assert max(float((a - b).abs().max()) for a, b in zip(g1, g2)) < 1e-10


def test_adaptive_weight_and_objective(single_point_case, times):
    m = Sphere(2)
    fm = FlowMap(m, FlowMapMLP(m, 16, 2))
    obj = FlowMapObjective(GeodesicPath(m), "meanflow", diag_fraction=0.75)
    out = obj(fm, m.random_base(40), m.random_base(40), generator=torch.Generator().manual_seed(0))
    assert out["diag"].shape == (30,) and out["sd"].shape == (10,)
    assert torch.allclose(out["loss"], out["diag"].mean() + out["sd"].mean())
    x0, x1 = single_point_case(m, 7)
    x1 = x1.expand_as(x0)
    s, t = times(x0.shape[0], 8)
    fm64 = fm.double()
    plain = meanflow_loss(fm64, GeodesicPath(m), x0, x1, s, t)
    weighted = meanflow_loss(fm64, GeodesicPath(m), x0, x1, s, t, norm_p=1.0, norm_c=1e-3)
    assert torch.allclose(weighted, plain / (plain + 1e-3))
    with pytest.raises(ConfigError, match="mf_norm_p"):
        FlowMapObjective(GeodesicPath(m), "meanflow", mf_norm_p=-1.0)


@pytest.mark.parametrize("data,method", [("so3_mixture", "meanflow"), ("earth_volcano", "rfm")])
def test_new_sets_and_method_run_through_the_recipe(tmp_path, data, method):
    """data.name=so3_mixture / earth_* and method=meanflow through train, sample and eval (run folder, checks on M)."""
    from agm.methods.flowmaps.run import evaluate_run, load_config, sample_run, train

    cfg = load_config(None, [f"data.name={data}", f"method={method}", "train.steps=3", "train.batch_size=16", "model.hidden=16",
                             "data.n_train=64", "data.n_test=32", "eval.n_samples=32", "train.progress=false",
                             "train.tensorboard=false", "train.device=cpu"])
    train(cfg, tmp_path / "run")
    x = sample_run(tmp_path / "run", 20, steps=2, mode="map")
    m = SO3() if data == "so3_mixture" else Sphere(2)
    assert x.shape == (20, m.ambient_dim) and m.belongs(x).all()
    out = evaluate_run(tmp_path / "run", steps=1)
    assert out["on_manifold"] and out["n_samples"] == 32
