"""U-Net presets, the conv potential budget, the CUDA-graph EM sampler's CPU path, and the trainer's speed options
on the CPU (bf16 autocast, channels_last): ground truths are exact equalities or finite differences."""
from __future__ import annotations

import pytest
import torch

from agm.methods.agm.config import load_config
from agm.errors import ConfigError
from agm.methods.agm import build_method
from agm.nets import UNet, build_potential, count_params
from agm.nets.unet import UNET_PRESETS
from agm.samplers import EulerMaruyama
from agm.samplers.cuda_graph import GraphEulerMaruyama
from agm.training import Trainer


def _perturb(net, scale=0.05, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g))
    return net


@pytest.mark.parametrize("resample,skip", [("conv", False), ("resblock", True)])
def test_unet_shape_and_time_dependence(resample, skip):
    torch.manual_seed(0)
    net = _perturb(UNet(3, channels=16, channel_mult=(1, 2), num_res_blocks=1, attn_resolutions=(8,), image_size=16,
                        head_channels=8, resample=resample, skip_rescale=skip))
    x = torch.randn(2, 3, 16, 16)
    y0, y1 = net(x, torch.zeros(2)), net(x, torch.ones(2))
    assert y0.shape == x.shape and not torch.allclose(y0, y1)
    # per-sample independence (no batch mixing, GroupNorm is per sample): output of row 0 alone == in the batch
    assert torch.allclose(net(x[:1], torch.zeros(1)), y0[:1], atol=1e-5)


def test_unet_zero_init_output_and_presets():
    net = UNet(1, channels=16, channel_mult=(1, 2), image_size=8)
    assert torch.equal(net(torch.randn(2, 1, 8, 8), torch.rand(2)), torch.zeros(2, 1, 8, 8))
    tiny = UNet.from_preset("tiny", in_channels=1, image_size=8)
    assert count_params(tiny) > 0
    assert set(UNET_PRESETS) >= {"ddpmpp-64", "adm-64"}
    with pytest.raises(ConfigError, match="model.preset"):
        UNet.from_preset("huge")
    with pytest.raises(ConfigError, match="model.resample='bilinear'"):
        UNet(resample="bilinear")
    with pytest.raises(ConfigError, match="model.channels=15"):
        UNet(channels=15)


def test_conv_potential_budget_and_ratio():
    drift = UNet(3, channels=32, channel_mult=(1, 2, 2), num_res_blocks=2, attn_resolutions=(8,), image_size=32)
    pot, ratio = build_potential(drift, (3, 32, 32), budget=0.014)
    # the reported ratio is the exact parameter ratio, within the budget, and the budget is nearly used
    assert ratio == count_params(pot) / count_params(drift)
    assert 0.010 < ratio <= 0.014
    assert pot(torch.randn(4, 3, 32, 32), torch.rand(4)).shape == (4,)


def test_graph_sampler_cpu_path_equals_euler_maruyama():
    torch.manual_seed(0)
    net = _perturb(UNet(1, channels=8, channel_mult=(1, 2), image_size=8)).eval()
    x0 = torch.randn(3, 1, 8, 8)
    a = EulerMaruyama(7).sample(net, x0, 0.4, generator=torch.Generator().manual_seed(5))
    b = GraphEulerMaruyama(7, cuda_graph=True).sample(net, x0, 0.4, generator=torch.Generator().manual_seed(5))
    # same update x + f dt + g sqrt(dt) xi with the same noise draws; only the summation order differs
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    # linear drift f = -x, no noise: EM has the closed form x0 (1 - dt)^steps
    c = GraphEulerMaruyama(10).sample(lambda x, t: -x, x0, 0.0)
    torch.testing.assert_close(c, x0 * 0.9**10, rtol=1e-5, atol=1e-6)
    with pytest.raises(ConfigError, match="amp='fp8'"):
        GraphEulerMaruyama(5, amp="fp8")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (the graph is CUDA-only)")
def test_graph_sampler_reused_across_calls_matches_eager():
    """A second call with a new x0 replays the captured graph on the refilled static buffer.

    Regression: the buffer was rebound on reuse, so the graph kept writing the old buffer and every call
    after the first returned its x0 unchanged (pure noise).
    """
    torch.manual_seed(0)
    net = _perturb(UNet(1, channels=8, channel_mult=(1, 2), image_size=8)).cuda().eval()
    sampler = GraphEulerMaruyama(7, cuda_graph=True)
    for seed in (1, 2, 3):
        x0 = torch.randn(3, 1, 8, 8, device="cuda", generator=torch.Generator("cuda").manual_seed(seed))
        a = EulerMaruyama(7).sample(net, x0, 0.4, generator=torch.Generator("cuda").manual_seed(seed))
        b = sampler.sample(net, x0, 0.4, generator=torch.Generator("cuda").manual_seed(seed))
        assert sampler._graph is not None
        torch.testing.assert_close(b, a, rtol=1e-3, atol=1e-3)


def _image_cfg(method, **train):
    cfg = load_config("images_digits", [f"method={method}", "model.channels=8", "data.image_size=8",
                                         "potential.warmup_steps=0"])
    for k, v in train.items():
        setattr(cfg.train, k, v)
    cfg.train.device, cfg.train.progress = "cpu", False
    return cfg


def test_agm_image_method_builds_with_budget():
    method, ratio = build_method(_image_cfg("agm"), (1, 8, 8))
    assert ratio is not None and ratio <= 0.014 + 1e-12
    loss, logs = method.loss(torch.rand(4, 1, 8, 8) * 2 - 1, 10, torch.Generator().manual_seed(0))
    assert loss.ndim == 0 and torch.isfinite(loss)


def test_channels_last_same_function_and_gradients():
    torch.manual_seed(0)
    net = _perturb(UNet(1, channels=8, channel_mult=(1, 2), attn_resolutions=(4,), image_size=8))
    x, t = torch.randn(4, 1, 8, 8), torch.rand(4)
    y = net(x, t)
    y.square().mean().backward()
    g = {k: p.grad.clone() for k, p in net.named_parameters()}
    net.zero_grad()
    net.to(memory_format=torch.channels_last)
    y_cl = net(x.contiguous(memory_format=torch.channels_last), t)
    y_cl.square().mean().backward()
    # memory layout only: the same function and gradients up to float reassociation
    torch.testing.assert_close(y_cl, y, rtol=1e-4, atol=1e-5)
    for k, p in net.named_parameters():
        torch.testing.assert_close(p.grad, g[k], rtol=1e-3, atol=1e-6, msg=k)


def test_channels_last_and_bf16_trainer_steps_on_cpu():
    x = torch.rand(64, 1, 8, 8) * 2 - 1
    torch.manual_seed(0)
    m_cl, _ = build_method(_image_cfg("agm"), (1, 8, 8))
    cl = Trainer(m_cl, x, _image_cfg("agm", steps=2, batch_size=8, channels_last=True, amp="bf16").train, seed=1)
    rec = cl.fit()
    assert all(torch.isfinite(torch.tensor(r["loss"])) for r in rec)
    assert cl.nets["drift"].inp.weight.is_contiguous(memory_format=torch.channels_last)
    # parameters and EMA stay float32 under bf16 autocast
    assert all(p.dtype == torch.float32 for p in cl.nets["drift"].parameters())
    assert all(v.dtype == torch.float32 for v in cl.ema["drift"].state_dict().values() if v.is_floating_point())
