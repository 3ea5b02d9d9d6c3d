"""Built-in manifold sets of agm.data.manifold added for the converged comparison (docs/flowmaps.md): the earth-like
vMF mixtures on S^2 (on the sphere, seeded, a normalised true density that is higher on the data than on uniform
points) and the wrapped-normal mixture on SO(3); the vMF mixture density against a closed form."""
import math

import pytest
import torch

from agm.data.manifold import EARTH_SETS, earth_like, earth_like_log_density, make_manifold_data, vmf_mixture_log_density
from agm.manifolds import SO3, Sphere


@pytest.mark.parametrize("name", sorted(EARTH_SETS))
def test_earth_like_sets(name):
    m, x = make_manifold_data(f"earth_{name}", 2000, seed=0)
    assert isinstance(m, Sphere) and x.shape == (2000, 3) and m.belongs(x).all()
    assert torch.equal(x, earth_like(name, 2000, seed=0))
    assert not torch.equal(x, earth_like(name, 2000, seed=1))
    # the true density is normalised (Monte Carlo over uniform points: sd of the estimate ~ 2% at 100k draws here)
    u = m.random_base(100_000, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    mass = float(earth_like_log_density(name, u).exp().mean() * 4 * math.pi)
    assert abs(mass - 1) < 0.06
    # and concentrated: the data are far more likely than uniform points (log 4 pi = 2.53 nats is the uniform NLL)
    assert float(-earth_like_log_density(name, x).mean()) < math.log(4 * math.pi) - 1.0


def test_vmf_density_closed_form():
    mu, kappa = torch.tensor([[0.0, 0.0, 1.0]], dtype=torch.float64), torch.tensor([5.0], dtype=torch.float64)
    x = torch.tensor([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0]], dtype=torch.float64)
    ref = torch.log(5 / (4 * math.pi * math.sinh(5)) * torch.exp(5 * x[:, 2]))
    assert torch.allclose(vmf_mixture_log_density(x, mu, kappa, torch.ones(1, dtype=torch.float64)), ref, atol=1e-12)


def test_so3_mixture():
    m, x = make_manifold_data("so3_mixture", 1000, seed=0)
    assert isinstance(m, SO3) and x.shape == (1000, 9) and m.belongs(x).all()
    # concentrated: the mean distance to the nearest of the 6 centres is ~ E|z| = 0.25 * 1.596 (chi with 3 dof)
    centres = m.random_base(6, generator=torch.Generator().manual_seed(4321), dtype=torch.float64)
    d = m.pairwise_dist(x.double(), centres).min(1).values
    assert abs(float(d.mean()) - 0.25 * 1.596) < 0.03
