"""Learning-rate schedules of the one Trainer: closed-form factors, and exact resume across them."""
import json
import math

import pytest
import torch
from torch import nn

from agm.errors import ConfigError
from agm.training import Trainer
from agm.training.checkpoint import RUN_FORMAT
from agm.training.config import TrainConfig


class _Reg(nn.Module):
    ema_names = ("net",)

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Linear(3, 1)

    def networks(self):
        return {"net": self.net}

    def loss(self, x, step, generator):
        loss = (self.net(x) - x.sum(1, keepdim=True)).pow(2).mean()
        return loss, {"loss": loss.detach()}


def _cfg(**kw):
    base = dict(steps=20, batch_size=8, lr=0.1, log_every=5, ckpt_every=10, progress=False, device="cpu", tensorboard=False)
    base.update(kw)
    return TrainConfig(**base)


def test_factors():
    tr = Trainer(_Reg(), torch.randn(32, 3), _cfg(schedule="cosine", warmup_steps=4))
    assert [tr.lr_factor(s) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert tr.lr_factor(4) == 1.0 and tr.lr_factor(12) == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.5)))
    assert tr.lr_factor(20) == pytest.approx(0.0, abs=1e-12)
    lin = Trainer(_Reg(), torch.randn(32, 3), _cfg(schedule="linear"))
    assert lin.lr_factor(10) == 0.5
    lin.train_step()
    assert lin.optimizer.param_groups[0]["lr"] == pytest.approx(0.1)  # step 0 used factor 1
    with pytest.raises(ConfigError, match="train.schedule"):
        Trainer(_Reg(), torch.randn(32, 3), _cfg(schedule="cosin"))


def test_resume_exact_with_schedule(tmp_path):
    data = torch.randn(64, 3)
    cfg = _cfg(schedule="cosine", warmup_steps=3)
    for d in ("a", "b"):
        (tmp_path / d).mkdir()
        (tmp_path / d / "run.json").write_text(json.dumps({"format": RUN_FORMAT, "version": 1}))
    full = Trainer(_Reg(), data, cfg, out_dir=tmp_path / "a", seed=1)
    full.fit()
    part = Trainer(_Reg(), data, cfg, out_dir=tmp_path / "b", seed=1)
    part.fit(steps=10)
    again = Trainer(_Reg(), data, cfg, out_dir=tmp_path / "b", seed=1)
    assert again.resume() == 10
    again.fit()
    assert torch.equal(full.nets["net"].weight, again.nets["net"].weight)
