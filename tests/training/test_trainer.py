"""Trainer: exact resume, NaN handling, atomic and verified checkpoints, EMA."""
import json
import os

import pytest
import torch

from agm.methods.agm.config import TrainConfig
from agm.errors import CheckpointError, NonFiniteLossError
from agm.methods.agm import AGM
from agm.nets import TimeMLP, build_potential
from agm.methods.agm import PotentialWeighting
from agm.paths import BrownianBridge
from agm.training import EMA, Trainer
from agm.training.checkpoint import RUN_FORMAT, check_run_dir, latest_checkpoint, load_checkpoint


def _agm(seed=0):
    torch.manual_seed(seed)
    drift = TimeMLP(2, hidden=32, depth=2)
    pot, _ = build_potential(drift, (2,), budget=0.05)
    return AGM(drift, BrownianBridge(0.5, t_max=0.98), pot, PotentialWeighting(warmup_steps=3))


def _cfg(**kw):
    base = dict(steps=12, batch_size=32, lr=1e-3, log_every=1, ckpt_every=5, progress=False, ema_decay=0.9)
    base.update(kw)
    return TrainConfig(**base)


def _mark(run):
    run.mkdir(parents=True, exist_ok=True)
    (run / "run.json").write_text(json.dumps({"format": RUN_FORMAT, "version": 1}))


def _losses(run):
    return [json.loads(l)["loss"] for l in (run / "metrics.jsonl").read_text().splitlines()]


def test_resume_reproduces_uninterrupted_loss_sequence(tmp_path):
    data = torch.randn(500, 2, generator=torch.Generator().manual_seed(9))
    full, part = tmp_path / "full", tmp_path / "part"
    for d in (full, part):
        _mark(d)
    Trainer(_agm(), data, _cfg(), out_dir=full, seed=3).fit()
    # interrupted run: stop at step 7 (last checkpoint at 5), then resume in a fresh process-like state
    t = Trainer(_agm(), data, _cfg(), out_dir=part, seed=3)

    def crash(step, rec):
        if step == 7:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        t.fit(callback=crash)
    torch.manual_seed(12345)  # disturb global RNG: resume must restore it
    t2 = Trainer(_agm(seed=99), data, _cfg(), out_dir=part, seed=3)
    assert t2.resume() == 5
    t2.fit()
    assert _losses(part) == _losses(full)
    assert len(_losses(full)) == 12
    # final EMA weights are identical too
    a = load_checkpoint(latest_checkpoint(full), ("ema",))[1]["ema"]
    b = load_checkpoint(latest_checkpoint(part), ("ema",))[1]["ema"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


class _NaNAfter(AGM):
    def __init__(self, base, bad_step):
        super().__init__(base.drift, base.path, base.potential, base.weighting)
        self.bad_step = bad_step

    def loss(self, x1, step, generator=None):
        loss, logs = super().loss(x1, step, generator)
        return (loss * float("nan") if step >= self.bad_step else loss), logs


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path):
    _mark(tmp_path)
    data = torch.randn(200, 2)
    t = Trainer(_NaNAfter(_agm(), bad_step=8), data, _cfg(), out_dir=tmp_path, seed=0)
    with pytest.raises(NonFiniteLossError, match=r"step 8.*step-000000005"):
        t.fit()
    ckpt = latest_checkpoint(tmp_path)
    assert ckpt.name == "step-000000005"
    state, files = load_checkpoint(ckpt)
    assert state["step"] == 5 and all(torch.isfinite(v).all() for v in files["networks"].values())


def test_corrupt_checkpoint_is_reported(tmp_path):
    _mark(tmp_path)
    Trainer(_agm(), torch.randn(100, 2), _cfg(steps=5), out_dir=tmp_path).fit()
    ckpt = latest_checkpoint(tmp_path)
    f = ckpt / "networks.safetensors"
    raw = bytearray(f.read_bytes())
    raw[-10] ^= 0xFF
    f.write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match="corrupt"):
        Trainer(_agm(), torch.randn(100, 2), _cfg(), out_dir=tmp_path).resume()
    f.write_bytes(b"not a safetensors file")
    with pytest.raises(CheckpointError, match="corrupt"):
        load_checkpoint(ckpt)
    (ckpt / "state.json").write_text("{broken")
    with pytest.raises(CheckpointError, match="state.json"):
        load_checkpoint(ckpt)


def test_foreign_and_missing_run_dirs(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        check_run_dir(tmp_path / "nope")
    with pytest.raises(CheckpointError, match="not an agm run directory"):
        check_run_dir(tmp_path)
    (tmp_path / "run.json").write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(CheckpointError, match="not an agm run directory"):
        check_run_dir(tmp_path)
    _mark(tmp_path)
    with pytest.raises(CheckpointError, match="no checkpoint"):
        latest_checkpoint(tmp_path)


def test_checkpoint_write_is_atomic(tmp_path, monkeypatch):
    # a crash while writing a new checkpoint leaves the previous one intact and pointed to
    _mark(tmp_path)
    t = Trainer(_agm(), torch.randn(100, 2), _cfg(steps=5), out_dir=tmp_path)
    t.fit()
    import agm.training.checkpoint as ck

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(ck, "save_file", boom)
    t.step = 6
    with pytest.raises(OSError):
        t.save()
    assert latest_checkpoint(tmp_path).name == "step-000000005"
    leftovers = [p for p in os.listdir(tmp_path / "checkpoints") if p.startswith(".tmp")]
    assert leftovers == []
    load_checkpoint(latest_checkpoint(tmp_path))  # still loads and verifies


def test_ema_update_equation():
    net = torch.nn.Linear(3, 2)
    ema = EMA(net, decay=0.9)
    before = [p.detach().clone() for p in ema.model.parameters()]
    with torch.no_grad():
        for p in net.parameters():
            p.add_(1.0)
    ema.update()
    for b, e, p in zip(before, ema.model.parameters(), net.parameters()):
        torch.testing.assert_close(e, 0.9 * b + 0.1 * p)


def test_same_seed_gives_same_numbers_in_fresh_processes(tmp_path):
    """Same config and seed => identical losses in two fresh processes (torch's own start seed varies by process,
    so the network initialisation must come from the run's seed)."""
    import subprocess
    import sys

    code = (
        "import json, sys, torch; torch.set_num_threads(1)\n"
        "from agm.methods.agm.config import load_config; from agm.methods.agm.run import train\n"
        "cfg = load_config('toy', ['train.steps=20', 'train.log_every=5', 'train.progress=false', 'data.n_train=512'])\n"
        "train(cfg, sys.argv[1])\n"
        "print(json.dumps([json.loads(l)['loss'] for l in open(sys.argv[1] + '/metrics.jsonl')]))\n"
    )
    outs = [subprocess.run([sys.executable, "-c", code, str(tmp_path / f"r{i}")], capture_output=True, text=True, check=True).stdout
            for i in range(2)]
    assert json.loads(outs[0].splitlines()[-1]) == json.loads(outs[1].splitlines()[-1])


def test_snapshot_and_restore_branch_exactly():
    """Two continuations from one snapshot are identical to each other (networks, EMA, optimiser, generator, step)."""
    import torch

    from agm.methods.agm import AGM, PotentialWeighting
    from agm.nets import TimeMLP, build_potential
    from agm.paths import BrownianBridge
    from agm.training.config import TrainConfig
    from agm.training.trainer import Trainer

    torch.manual_seed(0)
    drift = TimeMLP(2, hidden=16, depth=2)
    pot, _ = build_potential(drift, (2,), budget=0.3)
    m = AGM(drift, BrownianBridge(0.5, t_max=0.98), pot, PotentialWeighting(warmup_steps=0))
    tr = Trainer(m, torch.randn(300, 2), TrainConfig(steps=20, batch_size=32, progress=False))
    for _ in range(3):
        tr.train_step()
    snap = tr.snapshot()
    for _ in range(4):
        tr.train_step()
    first = {k: v.clone() for k, v in tr.nets["drift"].state_dict().items()}
    tr.restore(snap)
    assert tr.step == 3
    for _ in range(4):
        tr.train_step()
    assert all(torch.equal(first[k], v) for k, v in tr.nets["drift"].state_dict().items())
    assert not all(torch.equal(snap["nets"]["drift"][k], v) for k, v in tr.nets["drift"].state_dict().items())
