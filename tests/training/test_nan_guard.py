"""The NaN/inf guard: checked every step, or through a device-side flag every N steps (no per-step host sync),
and in both cases before every log line and checkpoint, so no checkpoint ever holds post-NaN weights."""
import json

import pytest
import torch
from torch import nn

from agm.errors import NonFiniteLossError
from agm.training import Trainer
from agm.training.checkpoint import RUN_FORMAT
from agm.training.config import TrainConfig


class _Blowup(nn.Module):
    """A linear regression whose loss turns NaN from step ``bad`` on."""

    ema_names = ("net",)

    def __init__(self, bad: int) -> None:
        super().__init__()
        self.net = nn.Linear(2, 1)
        self.bad = bad

    def networks(self):
        return {"net": self.net}

    def loss(self, x, step, generator):
        loss = self.net(x).pow(2).mean()
        if step >= self.bad:
            loss = loss * float("nan")
        return loss, {"loss": loss.detach()}


def _run(tmp_path, every, bad, ckpt_every=4, log_every=100):
    (tmp_path / "run.json").write_text(json.dumps({"format": RUN_FORMAT, "version": 1}))
    cfg = TrainConfig(steps=40, batch_size=8, log_every=log_every, ckpt_every=ckpt_every, progress=False, device="cpu",
                      nan_check_every=every, tensorboard=False)
    tr = Trainer(_Blowup(bad), torch.randn(64, 2), cfg, out_dir=tmp_path)
    with pytest.raises(NonFiniteLossError) as err:
        tr.fit()
    return tr, str(err.value)


@pytest.mark.parametrize("every", [1, 7])
def test_guard_names_the_first_bad_step_and_writes_no_bad_checkpoint(tmp_path, every):
    tr, msg = _run(tmp_path, every, bad=10)
    assert "at step 10" in msg
    assert "step-000000008" in msg  # the last checkpoint before the NaN (ckpt_every=4)
    saved = sorted(p.name for p in (tmp_path / "checkpoints").glob("step-*"))
    assert saved[-1] == "step-000000008", saved
    # deferred: training went on at most `every` - 1 steps past the NaN, never past a checkpoint boundary
    assert 10 <= tr.step <= 10 + every
    assert tr.step <= 12  # the checkpoint at step 12 triggers a check first


def test_deferred_guard_stops_within_n_steps_without_checkpoints(tmp_path):
    tr, msg = _run(tmp_path, every=5, bad=3, ckpt_every=1000)
    assert "at step 3" in msg and tr.step == 4  # read at the 5th step, before it completes
