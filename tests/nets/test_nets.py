import pytest
import torch

from agm.errors import ConfigError
from agm.nets import TimeMLP, UNet, build_potential, count_params


@pytest.mark.parametrize("hidden,dim", [(256, 2), (128, 8), (512, 2)])
def test_potential_budget_vector(hidden, dim):
    drift = TimeMLP(dim, hidden=hidden, depth=3)
    pot, ratio = build_potential(drift, (dim,), budget=0.014)
    assert ratio == pytest.approx(count_params(pot) / count_params(drift))
    assert ratio <= 0.014
    assert ratio > 0.010  # the width is the largest that fits, so the ratio is close to the budget
    assert pot(torch.randn(5, dim), torch.rand(5)).shape == (5,)


def test_potential_budget_image_and_unet_shapes():
    unet = UNet(3, channels=16, channel_mult=(1, 2), num_res_blocks=1, attn_resolutions=(8,), image_size=16)
    x = torch.randn(2, 3, 16, 16)
    assert unet(x, torch.rand(2)).shape == x.shape
    pot, ratio = build_potential(unet, (3, 16, 16), budget=0.014)
    assert 0.005 < ratio <= 0.014
    assert pot(x, torch.rand(2)).shape == (2,)


def test_bad_shapes_and_budget():
    drift = TimeMLP(2)
    with pytest.raises(ConfigError, match="budget"):
        build_potential(drift, (2,), budget=0)
    with pytest.raises(ConfigError, match="shape"):
        build_potential(drift, (2, 3), budget=0.01)
    with pytest.raises(ConfigError, match="image_size"):
        UNet(3, channel_mult=(1, 2, 2), image_size=18)
