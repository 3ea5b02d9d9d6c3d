"""DDP on CPU with the gloo backend: one 2-process DDP step equals the single-process step on the same
global batch (agm.training.distributed: g = (1/W) sum_r grad L_r = grad of the global mean loss), and
a rank-0 checkpoint restores every rank's generator exactly."""
from __future__ import annotations

import os

import pytest
import torch
import torch.multiprocessing as mp

from agm.methods.agm.config import TrainConfig
from agm.errors import ConfigError
from agm.methods.agm import AGM
from agm.nets import TimeMLP, build_potential
from agm.methods.agm import PotentialWeighting
from agm.objectives.bridge_matching import per_sample_mse
from agm.training import Trainer
from agm.training.distributed import DistContext, local_batch_size, rank_seed

GLOBAL_B = 16
STEPS = 2


class FixedNoiseAGM(AGM):
    """AGM whose bridge noise comes from the batch (columns x1 | x0 | eps | t), so the loss is a fixed
    function of the rows and the single-process and DDP runs see identical per-sample terms."""

    def loss(self, batch, step, generator=None):
        x1, x0, eps, t = batch[:, 0:2], batch[:, 2:4], batch[:, 4:6], batch[:, 6]
        s = self.path.sample(x0, x1, t, eps=eps)
        ell = per_sample_mse(self.drift(s.xt, s.t), s.target)
        v = self.potential(s.xt.detach(), s.t)
        drift_loss, pot_loss, logs = self.weighting.losses(v, ell, s.t, s.target, step)
        total = drift_loss + pot_loss
        logs["loss"] = float(total.detach())
        return total, logs


def _make():
    from agm.paths import BrownianBridge

    torch.manual_seed(0)
    drift = TimeMLP(2, hidden=16, depth=2)
    pot, _ = build_potential(drift, (2,), budget=0.2)
    return FixedNoiseAGM(drift, BrownianBridge(0.5, t_max=0.9), pot, PotentialWeighting(warmup_steps=100))


def _global_batches():
    g = torch.Generator().manual_seed(7)
    out = []
    for _ in range(STEPS):
        b = torch.randn(GLOBAL_B, 6, generator=g)
        t = torch.rand(GLOBAL_B, 1, generator=g) * 0.9
        out.append(torch.cat([b, t], dim=1))
    return out


def _cfg():
    return TrainConfig(steps=STEPS, batch_size=GLOBAL_B, lr=1e-2, grad_clip=0.5, ema_decay=0.5, log_every=1,
                       ckpt_every=STEPS, progress=False)


def _worker(rank: int, world: int, init_file: str, out_dir: str, result_dir: str) -> None:
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        batches = _global_batches()
        half = GLOBAL_B // world

        def data(step, generator):
            return batches[step][rank * half : (rank + 1) * half]

        ctx = DistContext(rank, world, rank, "cpu")
        tr = Trainer(_make(), data, _cfg(), out_dir=out_dir, seed=3, dist_ctx=ctx)
        tr.fit()
        gen_state = tr.generator.get_state().clone()
        # a fresh trainer resumes from rank 0's checkpoint: its own rank's generator comes back
        tr2 = Trainer(_make(), data, _cfg(), out_dir=out_dir, seed=99, dist_ctx=ctx)
        step = tr2.resume()
        torch.save(
            {
                "params": {n: {k: v.detach().clone() for k, v in net.state_dict().items()} for n, net in tr.nets.items()},
                "ema": {k: v.clone() for k, v in tr.ema["drift"].state_dict().items()},
                "resumed_step": step,
                "gen_equal": bool(torch.equal(tr2.generator.get_state(), gen_state)),
                "resumed_params_equal": all(
                    torch.equal(a, b) for n in tr.nets for a, b in zip(tr.nets[n].state_dict().values(), tr2.nets[n].state_dict().values())
                ),
            },
            os.path.join(result_dir, f"rank{rank}.pt"),
        )
    finally:
        dist.destroy_process_group()


def test_ddp_step_equals_single_process_step(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    import json

    from agm.training.checkpoint import RUN_FORMAT

    (run / "run.json").write_text(json.dumps({"format": RUN_FORMAT, "version": 1}))
    mp.spawn(_worker, args=(2, str(tmp_path / "init"), str(run), str(tmp_path)), nprocs=2, join=True)
    r0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    r1 = torch.load(tmp_path / "rank1.pt", weights_only=True)

    # single process on the same global batches
    batches = _global_batches()
    single = Trainer(_make(), lambda step, g: batches[step], _cfg(), seed=3)
    single.fit()
    for name, net in single.nets.items():
        for k, v in net.state_dict().items():
            # float32 sums over 8 vs 16 rows in a different order: agreement to ~1e-6 relative
            torch.testing.assert_close(r0["params"][name][k], v, rtol=1e-5, atol=1e-6)
            torch.testing.assert_close(r1["params"][name][k], r0["params"][name][k], rtol=0, atol=0)
    for k, v in single.ema["drift"].state_dict().items():
        torch.testing.assert_close(r0["ema"][k], v, rtol=1e-5, atol=1e-6)
    # the weights really moved (the comparison is not trivially between two initial states)
    init = _make().drift.state_dict()
    assert any(not torch.allclose(init[k], single.nets["drift"].state_dict()[k]) for k in init)
    for r in (r0, r1):
        assert r["resumed_step"] == STEPS and r["gen_equal"] and r["resumed_params_equal"]


def test_world_size_must_divide_batch():
    assert local_batch_size(16, 4) == 4
    with pytest.raises(ConfigError, match=r"train.batch_size=10 .*world size 3"):
        local_batch_size(10, 3)
    with pytest.raises(ConfigError, match="train.batch_size=32"):
        Trainer(_make(), torch.randn(50, 7), TrainConfig(batch_size=32, progress=False), dist_ctx=DistContext(0, 3, 0, "cpu"))


def test_rank_seeds_differ_and_rank0_keeps_seed():
    assert rank_seed(5, 0) == 5
    assert len({rank_seed(5, r) for r in range(8)}) == 8


# ---- world size on resume (issue 16, item 8): N processes -> M, both directions, with a warning -------------
def _data_for(rank: int, world: int):
    batches = _global_batches()
    local = GLOBAL_B // world

    def data(step, generator):
        return batches[step % STEPS][rank * local : (rank + 1) * local]

    return data


def _long_cfg(steps):
    import dataclasses

    return dataclasses.replace(_cfg(), steps=steps, ckpt_every=steps)


def _resume_worker(rank: int, world: int, init_file: str, out_dir: str, result_dir: str) -> None:
    import warnings

    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        ctx = DistContext(rank, world, rank, "cpu")
        tr = Trainer(_make(), _data_for(rank, world), _long_cfg(2 * STEPS), out_dir=out_dir, seed=3, dist_ctx=ctx)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            step = tr.resume()
        params = {k: v.clone() for k, v in tr.nets["drift"].state_dict().items()}
        tr.fit()  # continues on 2 processes and writes a checkpoint marked world_size=2
        torch.save({"step": step, "warnings": [str(w.message) for w in caught], "params": params,
                    "final_step": tr.step}, os.path.join(result_dir, f"resume_rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


def test_resume_on_another_world_size_both_ways(tmp_path):
    import json

    from agm.training.checkpoint import RUN_FORMAT

    run = tmp_path / "run"
    run.mkdir()
    (run / "run.json").write_text(json.dumps({"format": RUN_FORMAT, "version": 1}))
    one = Trainer(_make(), _data_for(0, 1), _long_cfg(STEPS), out_dir=run, seed=3)
    one.fit()  # a checkpoint written by 1 process
    written = {k: v.clone() for k, v in one.nets["drift"].state_dict().items()}
    # 1 -> 2: accepted, with the warning; networks exact
    mp.spawn(_resume_worker, args=(2, str(tmp_path / "init"), str(run), str(tmp_path)), nprocs=2, join=True)
    for r in (0, 1):
        res = torch.load(tmp_path / f"resume_rank{r}.pt", weights_only=True)
        assert res["step"] == STEPS and res["final_step"] == 2 * STEPS
        assert any("written by 1 process(es) on 2" in w and "statistically equal" in w for w in res["warnings"]), res["warnings"]
        for k, v in written.items():
            assert torch.equal(res["params"][k], v)
    # 2 -> 1: the 2-process checkpoint resumes on one process, with the same warning; networks exact
    state = json.loads((run / "checkpoints" / (run / "checkpoints" / "latest").read_text().strip() / "state.json").read_text())
    assert state["world_size"] == 2 and state["step"] == 2 * STEPS
    back = Trainer(_make(), _data_for(0, 1), _long_cfg(3 * STEPS), out_dir=run, seed=3)
    with pytest.warns(RuntimeWarning, match=r"written by 2 process\(es\) on 1.*statistically equal"):
        assert back.resume() == 2 * STEPS
    from agm.training.checkpoint import latest_checkpoint, load_checkpoint, unflatten

    _, files = load_checkpoint(latest_checkpoint(run), parts=("networks",))
    for k, v in unflatten(files["networks"], "drift").items():
        assert torch.equal(back.nets["drift"].state_dict()[k], v)
    back.fit()
    assert back.step == 3 * STEPS and all(torch.isfinite(p).all() for p in back.nets["drift"].parameters())
