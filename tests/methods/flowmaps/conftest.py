"""Setup shared by the flow-map loss tests (test_losses.py, test_meanflow.py): the exact single-point oracle,
its data and the (s, t) draws, as fixtures."""
import pytest
import torch
from torch import nn

from agm.manifolds import SO3, Sphere

F64 = torch.float64


class SinglePointNet(nn.Module):
    """Exact v_{s,t}(x) = log_x(x1) / (1 - s) for data = delta_{x1} (docs/flowmaps.md); ``scale`` != 1 perturbs it."""

    def __init__(self, m, x1, scale=1.0):
        super().__init__()
        self.m, self.x1, self.scale = m, x1, scale

    def forward(self, s, t, x):
        return self.scale * self.m.logmap(x, self.x1.expand_as(x)) / (1 - s).reshape(-1, 1)


def _times(n, seed):
    g = torch.Generator().manual_seed(seed)
    t = 0.05 + 0.85 * torch.rand(n, generator=g, dtype=F64)
    s = t * torch.rand(n, generator=g, dtype=F64)
    return s, t


def _single_point_case(m, seed=0, n=64):
    g = torch.Generator().manual_seed(seed)
    x1 = m.random_base(1, generator=g, dtype=F64)
    x0 = m.random_base(n, generator=g, dtype=F64)
    if isinstance(m, Sphere):  # avoid the antipode of x1 (cut locus)
        x0 = x0[(x0 @ x1.T).squeeze(-1) > -0.9]
    if isinstance(m, SO3):  # and rotations near the cut locus (angle pi)
        x0 = x0[m.dist(x0, x1.expand_as(x0)) < 2.8]
    return x0, x1


@pytest.fixture
def times():
    """times(n, seed) -> (s, t): n float64 pairs 0 <= s <= t, t uniform on [0.05, 0.9]."""
    return _times


@pytest.fixture
def single_point_case():
    """single_point_case(m, seed=0, n=64) -> (x0, x1): x1 (1, D) one data point, x0 (<= n, D) prior draws away from
    its cut locus, float64."""
    return _single_point_case


@pytest.fixture
def single_point_net():
    """single_point_net(m, x1, scale=1.0): the exact velocity of the flow map to delta_{x1} (``scale`` != 1: wrong)."""
    return SinglePointNet
