"""Trainer step bookkeeping of issue 21 (CPU): the one-_foreach_norm clipping and method.logs_wanted."""
import copy

import torch

from agm.methods.agm import AGM, PotentialWeighting
from agm.nets import TimeMLP, build_potential
from agm.paths import BrownianBridge
from agm.training.config import TrainConfig
from agm.training.trainer import Trainer


def _method():
    torch.manual_seed(0)
    drift = TimeMLP(2, hidden=32, depth=2)
    pot, _ = build_potential(drift, (2,), budget=0.2)
    return AGM(drift, BrownianBridge(0.5, t_max=0.98), pot, PotentialWeighting(warmup_steps=0))


def test_clipping_is_bit_identical_to_clip_grad_norm_per_network():
    m = _method()
    tr = Trainer(m, torch.randn(500, 2), TrainConfig(steps=1, batch_size=64, grad_clip=0.01, progress=False))
    loss, _ = m.loss(torch.randn(64, 2), 0, torch.Generator().manual_seed(1))
    loss.backward()
    ref = {n: copy.deepcopy(net) for n, net in tr.nets.items()}
    for n, net in tr.nets.items():
        for p, q in zip(net.parameters(), ref[n].parameters()):
            q.grad = p.grad.clone()
    norms_ref = {n: torch.nn.utils.clip_grad_norm_(net.parameters(), 0.01) for n, net in ref.items()}
    out = tr._clip_gradients()
    for n, net in tr.nets.items():
        assert torch.equal(out[f"grad_norm_{n}"], norms_ref[n]) and float(norms_ref[n]) > 0.01  # the clip binds
        for p, q in zip(net.parameters(), ref[n].parameters()):
            assert torch.equal(p.grad, q.grad)


def test_logs_wanted_only_on_logged_steps_and_records_unchanged():
    m = _method()
    tr = Trainer(m, torch.randn(500, 2), TrainConfig(steps=7, batch_size=32, log_every=3, progress=False))
    seen = []
    loss_fn = m.loss
    m.loss = lambda *a: (seen.append(m.logs_wanted), loss_fn(*a))[1]
    records = tr.fit()
    assert seen == [False, False, True, False, False, True, True]  # steps 3, 6 and the last, 7
    assert all("ess" in r and "w_max" in r for r in records)
