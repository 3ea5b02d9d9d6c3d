"""The CPU speed paths of AGM's step (docs/performance.md, CPU) give the reference numbers.

Correctness only (no timing): V_phi's loss and gradients by hand (AGM.fused_potential, on by default), the
softmax fast path of the clipped batch weights, the few-op logs, and the option potential_every.
"""
import pytest
import torch

from agm.methods.agm import AGM, PotentialWeighting, clipped_normalise, effective_sample_size, importance_weights
from agm.methods.agm.model import potential_mlp_loss
from agm.methods.agm.weighting import potential_loss, weight_logs
from agm.nets import TimeMLP, build_potential
from agm.objectives import bridge_matching_loss
from agm.paths import BrownianBridge


def _agm(objective="nll", warmup=0, every=1, seed=0, temperature=1.0):
    torch.manual_seed(seed)
    drift = TimeMLP(2, hidden=32, depth=2)
    pot, _ = build_potential(drift, (2,), budget=0.2)
    return AGM(drift, BrownianBridge(0.5, t_max=0.98), pot,
               PotentialWeighting(objective=objective, warmup_steps=warmup, temperature=temperature), potential_every=every)


def _grads(m, loss):
    params = [p for n in m.networks().values() for p in n.parameters()]
    return torch.autograd.grad(loss, params, allow_unused=True)


@pytest.mark.parametrize("objective", ["nll", "regress", "kinetic"])
def test_fused_potential_equals_autograd(objective):
    m = _agm(objective)
    g = torch.Generator().manual_seed(1)
    xt, t = torch.randn(96, 2, generator=g), torch.rand(96, generator=g)
    ell, target = torch.rand(96, generator=g) * 3, torch.randn(96, 2, generator=g)
    v_ref = m.potential(xt, t)
    loss_ref = potential_loss(v_ref, ell, target, objective).mean()
    g_ref = torch.autograd.grad(loss_ref, list(m.potential.parameters()))
    v, loss = potential_mlp_loss(m.potential, xt, t, ell, target, objective)
    torch.testing.assert_close(v, v_ref.detach())
    torch.testing.assert_close(loss, loss_ref.detach())
    g_fast = torch.autograd.grad(2.5 * loss, list(m.potential.parameters()))  # grad_output is applied
    assert len(g_fast) == len(g_ref) == 8
    for a, b in zip(g_fast, g_ref):
        torch.testing.assert_close(a, 2.5 * b)
    assert max(float(b.abs().max()) for b in g_ref) > 1e-3  # gradients that can fail the check


@pytest.mark.parametrize("step", [3, 50])  # before and after the warm-up
def test_default_loss_and_gradients_equal_the_reference(step):
    """AGM.loss (fused potential, fast weights and logs) = the docstring's formula computed with autograd."""
    m = _agm(warmup=10, temperature=0.1)
    x1 = torch.randn(128, 2, generator=torch.Generator().manual_seed(2))
    loss, logs = m.loss(x1, step, torch.Generator().manual_seed(5))
    g_fast = _grads(m, loss)
    # reference: the same draws, every term spelled out (weights: the exact clipped solve)
    g = torch.Generator().manual_seed(5)
    x0 = torch.randn(x1.shape, generator=g)
    ell, s = bridge_matching_loss(m.drift, m.path, x0, x1, generator=g)
    v = m.potential(s.xt.detach(), s.t)
    if step < 10:
        w = torch.ones(128)
    else:
        w = clipped_normalise(-v.detach() / 0.1, 0.1, 10.0).float()
        assert float(w.max() / w.min()) > 3  # the weights matter here
    ref = (w * ell).mean() + (ell.detach() * torch.exp(-v) + v).mean()
    torch.testing.assert_close(loss.detach(), ref.detach())
    for a, b in zip(g_fast, _grads(m, ref)):
        torch.testing.assert_close(a, b)
    assert float(logs["ess"]) == pytest.approx(float(effective_sample_size(w, normalised=True)), rel=1e-6)
    assert float(logs["potential_loss"]) == pytest.approx(float((ell * torch.exp(-v) + v).mean().detach()), rel=1e-6)
    # and the autograd path of the class itself gives the same
    m.fused_potential = False
    loss2, logs2 = m.loss(x1, step, torch.Generator().manual_seed(5))
    torch.testing.assert_close(loss2, loss)
    for a, b in zip(_grads(m, loss2), g_fast):
        torch.testing.assert_close(a, b)
    for k in logs:
        torch.testing.assert_close(logs2[k].double(), logs[k].double(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("scale,binds", [(0.3, False), (4.0, True)])
def test_fast_batch_weights_equal_the_exact_clipped_solve(scale, binds):
    v = scale * torch.randn(512, generator=torch.Generator().manual_seed(3))
    w = importance_weights(v, clip=(0.1, 10.0))
    ref = clipped_normalise(-v, 0.1, 10.0).float().clamp(0.1, 10.0)
    torch.testing.assert_close(w, ref)
    assert bool(((w == 0.1) | (w == 10.0)).any()) == binds
    assert float(w.double().mean()) == pytest.approx(1.0, abs=1e-6)
    # no clip: B a_i / sum_j a_j
    a = torch.exp(-v.double())
    torch.testing.assert_close(importance_weights(v, clip=None), (512 * a / a.sum()).float())


def test_weight_logs_equal_their_definitions():
    g = torch.Generator().manual_seed(4)
    w, v, t = torch.rand(200, generator=g) + 0.1, torch.randn(200, generator=g), torch.rand(200, generator=g)
    v = v + 2 * t  # correlated
    logs = weight_logs(w, v, t)
    vc, tc = v - v.mean(), t - t.mean()
    torch.testing.assert_close(logs["v_t_corr"], (vc * tc).sum() / (vc.norm() * tc.norm()))
    assert float(logs["v_t_corr"]) > 0.5
    assert float(logs["w_max"]) == float(w.max()) and float(logs["w_min"]) == float(w.min())
    torch.testing.assert_close(logs["ess"], effective_sample_size(w, normalised=True))


def test_potential_every_trains_v_on_every_kth_batch_only():
    m, ref = _agm(every=3), _agm(every=1)
    x1 = torch.randn(64, 2, generator=torch.Generator().manual_seed(6))
    for step in (6, 7):
        loss, logs = m.loss(x1, step, torch.Generator().manual_seed(step))
        loss_r, logs_r = ref.loss(x1, step, torch.Generator().manual_seed(step))
        gm, gr = _grads(m, loss), _grads(ref, loss_r)
        nd = len(list(m.drift.parameters()))
        gd, gp, gd_r, gp_r = gm[:nd], gm[nd:], gr[:nd], gr[nd:]
        assert len(gp) == 8
        for a, b in zip(gd, gd_r):  # the drift's gradient is the same on every step
            torch.testing.assert_close(a, b)
        if step % 3 == 0:  # V_phi trained on this batch, as with k = 1
            torch.testing.assert_close(loss, loss_r)
            for a, b in zip(gp, gp_r):
                torch.testing.assert_close(a, b)
        else:  # no gradient reaches V_phi; its loss is still logged
            assert all(a is None for a in gp)
            torch.testing.assert_close(logs["potential_loss"], logs_r["potential_loss"])
            torch.testing.assert_close(loss, logs_r["drift_loss"])
    with pytest.raises(ValueError):
        _agm(every=0)


def test_toy_config_takes_the_fused_path_and_the_others_fall_back():
    """The default toy AGM uses the hand-computed V_phi step; a TimeLogVariance potential (time_weight) uses autograd."""
    from agm.methods.agm import TimeLogVariance, build_method, load_config

    m, _ = build_method(load_config("toy", ["method=agm"]), (2,))
    loss, _ = m.loss(torch.randn(32, 2), 500, torch.Generator().manual_seed(0))
    names = {type(f).__name__ for f, _ in loss.grad_fn.next_functions if f is not None}
    assert "_AttachGradientsBackward" in names
    assert potential_mlp_loss(TimeLogVariance(4), torch.randn(4, 2), torch.rand(4), torch.rand(4), None) is None
    m.fused_potential = False
    loss, _ = m.loss(torch.randn(32, 2), 500, torch.Generator().manual_seed(0))
    assert "_AttachGradientsBackward" not in {type(f).__name__ for f, _ in loss.grad_fn.next_functions if f is not None}


def test_logs_wanted_false_gives_the_same_loss_with_only_the_loss_logged():
    m = _agm(temperature=0.3)
    x1 = torch.randn(64, 2, generator=torch.Generator().manual_seed(8))
    loss, logs = m.loss(x1, 40, torch.Generator().manual_seed(3))
    m.logs_wanted = False
    loss2, logs2 = m.loss(x1, 40, torch.Generator().manual_seed(3))
    assert torch.equal(loss, loss2) and set(logs2) == {"loss"} and {"ess", "w_max", "potential_loss"} <= set(logs)
    for a, b in zip(_grads(m, loss), _grads(m, loss2)):
        assert torch.equal(a, b)


def test_hand_path_follows_layer_replacement_and_hooks():
    """The hand path reads V_phi's structure on every call: a layer replaced afterwards is used (gradients still
    equal autograd's), and a hook added afterwards sends V_phi back to autograd."""
    m = _agm()
    g = torch.Generator().manual_seed(9)
    xt, t, ell = torch.randn(64, 2, generator=g), torch.rand(64, generator=g), torch.rand(64, generator=g)
    assert potential_mlp_loss(m.potential, xt, t, ell, None) is not None
    seq = m.potential.net.net.net
    seq[2] = torch.nn.Linear(seq[2].in_features, seq[2].out_features)
    v, loss = potential_mlp_loss(m.potential, xt, t, ell, None)
    v_ref = m.potential(xt, t)
    torch.testing.assert_close(v, v_ref.detach())
    loss_ref = potential_loss(v_ref, ell, None, "nll").mean()
    for a, b in zip(torch.autograd.grad(loss, list(m.potential.parameters())),
                    torch.autograd.grad(loss_ref, list(m.potential.parameters()))):
        torch.testing.assert_close(a, b)
    seq[1].register_forward_hook(lambda *a: None)
    assert potential_mlp_loss(m.potential, xt, t, ell, None) is None
