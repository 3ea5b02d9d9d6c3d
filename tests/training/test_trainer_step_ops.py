"""Trainer step bookkeeping of issue 21 (CPU): the one-_foreach_norm clipping and method.logs_wanted."""
import copy
import json

import torch

from agm.methods.agm import AGM, PotentialWeighting
from agm.nets import TimeMLP, build_potential
from agm.paths import BrownianBridge
from agm.training.checkpoint import RUN_FORMAT
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


def _run(tr, steps):
    for _ in range(steps):
        tr.train_step()
    return [p.detach().clone() for net in tr.nets.values() for p in net.parameters()]


def test_cpu_foreach_adamw_is_bit_identical_to_the_for_loop():
    """The Trainer's CPU AdamW (foreach=True) gives the same bits as PyTorch's CPU default, the per-tensor for-loop,
    with weight decay, a learning-rate schedule, clipping and two parameter groups (drift, potential)."""
    cfg = TrainConfig(steps=12, batch_size=64, weight_decay=0.1, warmup_steps=3, schedule="cosine", grad_clip=0.05,
                      progress=False, device="cpu")
    data = torch.randn(500, 2, generator=torch.Generator().manual_seed(3))
    tr = Trainer(_method(), data, cfg, seed=1)
    assert all(g["foreach"] is True and not g["fused"] for g in tr.optimizer.param_groups)
    ref = Trainer(_method(), data, cfg, seed=1)
    for g in ref.optimizer.param_groups:
        g["foreach"] = False  # the for-loop implementation
    a, b = _run(tr, 12), _run(ref, 12)
    assert len(a) == 16 and all(torch.equal(x, y) for x, y in zip(a, b))
    init = [p.detach() for n in _method().networks().values() for p in n.parameters()]
    assert max(float((x - p).abs().max()) for x, p in zip(a, init)) > 1e-3  # it trained
    fused = Trainer(_method(), data, TrainConfig(**{**cfg.__dict__, "fused_optimizer": True}), seed=1)
    assert all(g["fused"] is True for g in fused.optimizer.param_groups)


def test_resume_of_a_for_loop_checkpoint_runs_foreach_and_stays_exact(tmp_path):
    cfg = TrainConfig(steps=6, batch_size=32, ckpt_every=3, log_every=3, progress=False, tensorboard=False, device="cpu")
    data = torch.randn(300, 2, generator=torch.Generator().manual_seed(4))
    full = Trainer(_method(), data, cfg, seed=2)
    full.fit()
    (tmp_path / "run.json").write_text(json.dumps({"format": RUN_FORMAT, "version": 1}))
    part = Trainer(_method(), data, cfg, out_dir=tmp_path, seed=2)
    for g in part.optimizer.param_groups:
        g["foreach"] = None  # as a checkpoint written before the foreach default records it
    part.fit(3)
    resumed = Trainer(_method(), data, cfg, out_dir=tmp_path, seed=2)
    assert resumed.resume() == 3
    assert all(g["foreach"] is True for g in resumed.optimizer.param_groups)
    resumed.fit()
    for net, ref in zip(resumed.nets.values(), full.nets.values()):
        for p, q in zip(net.parameters(), ref.parameters()):
            assert torch.equal(p, q)


def test_train_mode_is_restored_only_when_a_flag_differs():
    """A submodule put in eval mode between steps (an evaluation callback) is back in train mode for the next step;
    when every flag is already right, Module.train is not called (its cost is the point of the check)."""
    m = _method()
    tr = Trainer(m, torch.randn(200, 2), TrainConfig(steps=3, batch_size=16, progress=False, device="cpu"))
    tr.train_step()
    calls = []
    orig = torch.nn.Module.train
    try:
        torch.nn.Module.train = lambda self, mode=True: (calls.append(type(self).__name__), orig(self, mode))[1]
        tr.train_step()
        assert calls == []
        m.potential.net.net.net[1].eval()
        tr.train_step()
        assert calls and all(x.training for x in m.modules())
    finally:
        torch.nn.Module.train = orig
