"""SO(3) against scipy.spatial.transform.Rotation (docs/flowmaps.md): exp/log vs rotation vectors, exp/log round
trips (near 0 and near pi too), the distance as the angle of R^T S, the projection onto rotations, tangent frames,
and the uniform (Haar) prior's angle law (1 - cos th)/pi by a KS test at a fixed seed."""
import math

import numpy as np
import pytest
import torch
from scipy import stats
from scipy.spatial.transform import Rotation

from agm.errors import ConfigError, DataError
from agm.manifolds import SO3, make_manifold
from agm.manifolds.so3 import hat, so3_exp, so3_log, vee

F64 = torch.float64
M = SO3()


def rots(n, seed):
    return M.random_base(n, generator=torch.Generator().manual_seed(seed), dtype=F64)


def as_scipy(x):
    return Rotation.from_matrix(M.mat(x).numpy())


def test_exp_matches_scipy_rotvec_everywhere_in_the_ball():
    g = torch.Generator().manual_seed(0)
    w = torch.randn(2000, 3, generator=g, dtype=F64)
    w = w / w.norm(dim=-1, keepdim=True) * math.pi * torch.rand(2000, 1, generator=g, dtype=F64)
    w[:50] *= 1e-7  # the Taylor branch near 0
    np.testing.assert_allclose(so3_exp(w).numpy(), Rotation.from_rotvec(w.numpy()).as_matrix(), atol=1e-13)


@pytest.mark.parametrize("scale", [1e-7, 1.0, math.pi - 1e-6], ids=["near0", "generic", "near_pi"])
def test_log_inverts_exp_and_matches_scipy(scale):
    g = torch.Generator().manual_seed(1)
    w = torch.randn(1000, 3, generator=g, dtype=F64)
    w = w / w.norm(dim=-1, keepdim=True) * (scale if scale != 1.0 else math.pi * torch.rand(1000, 1, generator=g, dtype=F64))
    r = so3_exp(w)
    back = so3_log(r)
    # the matrix is what is determined (at th = pi, w and -w give the same rotation)
    assert (so3_exp(back) - r).abs().max() < 1e-9
    if scale < 3:
        assert (back - w).abs().max() < 1e-9
        np.testing.assert_allclose(back.numpy(), Rotation.from_matrix(r.numpy()).as_rotvec(), atol=1e-9)


def test_distance_is_the_angle_of_the_relative_rotation():
    x, y = rots(2000, 2), rots(2000, 3)
    ref = (as_scipy(x).inv() * as_scipy(y)).magnitude()
    np.testing.assert_allclose(M.dist(x, y).numpy(), ref, atol=1e-9)
    np.testing.assert_allclose(M.pairwise_dist(x[:50], y[:40]).numpy(),
                               M.dist(x[:50].repeat_interleave(40, 0), y[:40].repeat(50, 1)).reshape(50, 40).numpy(), atol=1e-6)


def test_exp_log_round_trip_and_metric_norm():
    x, y = rots(1000, 4), rots(1000, 5)
    u = M.logmap(x, y)
    assert (M.expmap(x, u) - y).abs().max() < 1e-10
    # tangent at x (R^T U skew) and |log_x y|_g = d(x, y)
    a = M.mat(x).transpose(-1, -2) @ M.mat(u)
    assert (a + a.transpose(-1, -2)).abs().max() < 1e-12
    np.testing.assert_allclose(M.norm(x, u).numpy(), M.dist(x, y).numpy(), atol=1e-10)
    # log_x(exp_x(v)) = v for |v|_g < pi
    v = M.proju(x, torch.randn(x.shape, generator=torch.Generator().manual_seed(6), dtype=F64))
    v = v / M.norm(x, v)[:, None] * 3.0 * torch.rand(1000, 1, generator=torch.Generator().manual_seed(7), dtype=F64)
    assert (M.logmap(x, M.expmap(x, v)) - v).abs().max() < 1e-9


def test_projection_and_frame():
    x = rots(200, 8)
    noisy = x + 0.05 * torch.randn(x.shape, generator=torch.Generator().manual_seed(9), dtype=F64)
    p = M.projx(noisy)
    assert M.constraint_error(p).max() < 1e-12
    # the nearest rotation: no rotation in a sample of rotations is closer in Frobenius norm
    assert ((noisy - p).norm(dim=-1) <= (noisy - x).norm(dim=-1) + 1e-12).all()
    assert (M.projx(x) - x).abs().max() < 1e-12
    u = torch.randn(x.shape, generator=torch.Generator().manual_seed(10), dtype=F64)
    assert (M.proju(x, M.proju(x, u)) - M.proju(x, u)).abs().max() < 1e-12
    frame = M.tangent_frame(x)
    gram = 0.5 * torch.einsum("bin,bjn->bij", frame, frame)
    assert (gram - torch.eye(3, dtype=F64)).abs().max() < 1e-12
    assert (M.proju(x[:, None].expand(-1, 3, -1).reshape(-1, 9), frame.reshape(-1, 9)) - frame.reshape(-1, 9)).abs().max() < 1e-12
    assert (vee(hat(torch.tensor([[1.0, 2.0, 3.0]]))) - torch.tensor([[1.0, 2.0, 3.0]])).abs().max() == 0


def test_uniform_prior_angle_law_and_invariance():
    x = rots(4000, 11)
    assert M.belongs(x).all()
    th = as_scipy(x).magnitude()
    # angle density (1 - cos th)/pi on [0, pi]: cdf (th - sin th)/pi; KS at a fixed seed
    assert stats.kstest(th, lambda a: (a - np.sin(a)) / np.pi).pvalue > 0.01
    # a wrong law (angle uniform on [0, pi]) is rejected by the same test
    assert stats.kstest(th, lambda a: a / np.pi).pvalue < 1e-6
    # Haar: E[R] = 0 entrywise (sd of a mean of 4000 entries with variance 1/3 is 0.009)
    assert M.mat(x).mean(0).abs().max() < 5 * math.sqrt(1 / 3 / 4000)


def test_volume_and_log_prior():
    assert M.log_prior(rots(3, 0)).allclose(torch.full((3,), -math.log(8 * math.pi**2), dtype=F64))


def test_bad_input():
    with pytest.raises(DataError, match="rotation matrices"):
        M.check_point(torch.ones(2, 9, dtype=F64))
    with pytest.raises(DataError, match=r"accepts points of shape \(B, 9\)"):
        M.check_point(torch.zeros(2, 3))
    reflection = torch.diag(torch.tensor([1.0, 1.0, -1.0], dtype=F64)).reshape(1, 9)
    assert not M.belongs(reflection).any()
    with pytest.raises(ConfigError, match="dimension 3"):
        SO3(2)
    assert isinstance(make_manifold("so3"), SO3)
