"""Frozen networks and frozen submodules stay in eval mode while the rest trains (Trainer.train_step)."""
import torch
from torch import nn

from agm.training.config import TrainConfig
from agm.training.trainer import Trainer


class _Method:
    """A trainable head on a frozen encoder, plus a wholly frozen network with dropout (a pretrained base)."""

    ema_names = ()

    def __init__(self):
        self.model = nn.Sequential(nn.Linear(2, 8), nn.Dropout(0.5), nn.Linear(8, 2))
        for p in self.model[0].parameters():
            p.requires_grad_(False)
        self.base = nn.Sequential(nn.Linear(2, 2), nn.Dropout(0.5))
        for p in self.base.parameters():
            p.requires_grad_(False)

    def networks(self):
        return {"model": self.model, "base": self.base}

    def loss(self, batch, step, generator):
        with torch.no_grad():
            b1 = self.base(batch)
            b2 = self.base(batch)
        self.base_outputs_equal = bool(torch.equal(b1, b2))  # dropout active would make them differ
        return (self.model(batch) - b1).square().mean(), {}


def test_frozen_parts_stay_in_eval_mode():
    m = _Method()
    cfg = TrainConfig(steps=2, batch_size=16, lr=1e-2, device="cpu", log_every=1, ckpt_every=100, progress=False)
    tr = Trainer(m, torch.randn(64, 2), cfg, seed=0)
    w0 = m.model[0].weight.clone()
    tr.train_step()
    assert m.base_outputs_equal
    assert not m.base.training and not m.base[1].training
    assert not m.model[0].training  # the frozen encoder layer
    assert m.model.training and m.model[1].training and m.model[2].training  # the trained part trains (dropout on)
    assert torch.equal(m.model[0].weight, w0)


def test_compile_mode_is_checked():
    import pytest

    from agm.errors import ConfigError

    cfg = TrainConfig(steps=1, batch_size=4, device="cpu", compile_mode="fast", progress=False)
    with pytest.raises(ConfigError, match="train.compile_mode"):
        Trainer(_Method(), torch.randn(8, 2), cfg, seed=0)
