"""train.ema_warmup: the EMA decay at update k is min(ema_decay, (1 + k) / (10 + k)); off by default."""
import torch
from torch import nn

from agm.training.config import TrainConfig
from agm.training.trainer import Trainer


class _Lin:
    ema_names = ("net",)

    def __init__(self):
        torch.manual_seed(0)
        self.net = nn.Linear(2, 1)

    def networks(self):
        return {"net": self.net}

    def loss(self, batch, step, generator):
        return self.net(batch).square().mean(), {}


def _run(warmup: bool, steps: int):
    m = _Lin()
    cfg = TrainConfig(steps=steps, batch_size=8, lr=0.1, ema_decay=0.999, ema_warmup=warmup, device="cpu",
                      progress=False, grad_clip=0.0)
    tr = Trainer(m, torch.randn(32, 2), cfg, seed=0)
    ema = [p.detach().clone() for p in m.net.parameters()]
    for k in range(steps):
        tr.train_step()
        d = min(0.999, (1 + k) / (10 + k)) if warmup else 0.999
        ema = [d * e + (1 - d) * p.detach() for e, p in zip(ema, m.net.parameters())]
    return tr, m, ema


def test_ema_warmup_follows_the_schedule():
    tr, m, expect = _run(True, 5)
    for got, want in zip(tr.ema["net"].model.parameters(), expect):
        torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-7)
    # after 5 steps the warmed EMA is close to the live weights, the plain one is still at the initial weights
    tr0, m0, expect0 = _run(False, 5)
    for got, want in zip(tr0.ema["net"].model.parameters(), expect0):
        torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-7)
    live = torch.cat([p.detach().flatten() for p in m.net.parameters()])
    warm = torch.cat([p.flatten() for p in tr.ema["net"].model.parameters()])
    plain = torch.cat([p.flatten() for p in tr0.ema["net"].model.parameters()])
    assert (warm - live).norm() < (plain - live).norm()
