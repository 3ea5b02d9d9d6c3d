"""train.compile_scope=loss: the method's whole loss compiled as one torch.compile graph (issues 17 and 21).

The toy setting: a TimeMLP drift (width 32, depth 2) on 2-D data, batch 64, for drift-only and AGM (V_phi a
PotentialMLP, the default clipped batch weights). Compiling costs seconds per graph on the CPU; inductor's cache
makes the later tests of this file cheap.

Tolerance of the eager/compiled comparison (test_compiled_loss_steps_equal_eager_steps): both run in float64, where
compiled and eager code differ only in the order of roundings (fused kernels, reductions split differently), each
of relative size u = 2^-53 = 1.1e-16. The test asks that they agree as float32 numbers: every parameter within
2^-24 = 6.0e-8 relative (float32's unit roundoff) of eager's, with the same absolute floor 6.0e-8 for entries near
zero; that leaves a margin of 2^29 = 5e8 for rounding-order differences amplified by AdamW and the steps (measured
when this test was written: the largest difference was 8e-16, 1.3e-8 of the tolerance). A difference in what is
computed is not hidden by it: the steps move the parameters by about lr = 1e-3 each (checked below), and the eager
AGM run with the weights' temperature 1.01 instead of 1 ends 59 times the tolerance away from the run with 1.
"""
import pytest
import torch

from agm.errors import ConfigError
from agm.methods.agm import AGM, PotentialWeighting
from agm.nets import TimeMLP, build_potential
from agm.paths import BrownianBridge
from agm.training.config import TrainConfig
from agm.training.trainer import Trainer

pytestmark = pytest.mark.skipif(not hasattr(torch, "compile"), reason="torch.compile is not available")

U32 = 2.0 ** -24  # float32's unit roundoff: the tolerance of the float64 comparison (module docstring)


def _method(kind: str, clip=(0.1, 10.0), seed: int = 0) -> AGM:
    torch.manual_seed(seed)
    drift = TimeMLP(2, hidden=32, depth=2)
    if kind == "baseline":
        return AGM(drift, BrownianBridge(0.5, t_max=0.98))
    pot, _ = build_potential(drift, (2,), budget=0.2)
    # warm-up of 1 step: the first step runs the uniform weights, the later ones V_phi's weights (a recompile)
    return AGM(drift, BrownianBridge(0.5, t_max=0.98), pot, PotentialWeighting(warmup_steps=1, clip=clip))


def _cfg(**kw) -> TrainConfig:
    base = dict(steps=4, batch_size=64, log_every=2, ckpt_every=2, progress=False, tensorboard=False, device="cpu")
    return TrainConfig(**(base | kw))


def _params(tr: Trainer) -> dict[str, torch.Tensor]:
    out = {f"{n}.{k}": v.detach().clone() for n, net in tr.nets.items() for k, v in net.state_dict().items()}
    out.update({f"ema.{n}.{k}": v.clone() for n, e in tr.ema.items() for k, v in e.state_dict().items()})
    return out


def test_bad_compile_scope_names_the_field():
    with pytest.raises(ConfigError, match=r"train\.compile_scope='graph'.*\['modules', 'loss'\]"):
        TrainConfig(compile_scope="graph").validate()
    with pytest.raises(ConfigError, match=r"train\.compile_scope"):
        Trainer(_method("baseline"), torch.randn(100, 2), _cfg(compile=True, compile_scope="all"))
    from agm.methods.agm.config import load_config

    with pytest.raises(ConfigError, match=r"train\.compile_scope"):
        load_config("toy", ["train.compile_scope=net"])
    assert load_config("toy", ["train.compile_scope=loss"]).train.compile_scope == "loss"


@pytest.mark.parametrize("kind", ["baseline", "agm"])
def test_compiled_loss_steps_equal_eager_steps(kind):
    """Four Trainer steps (a warm-up step, log and non-log steps) in float64: compile_scope=loss equals eager within
    float32's unit roundoff (module docstring), and the loss function was compiled, not the modules."""
    from torch._dynamo.utils import counters

    data = torch.randn(500, 2, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    runs = {}
    for name, kw in (("eager", {}), ("loss", dict(compile=True, compile_scope="loss"))):
        m = _method(kind).double()
        init = {f"{n}.{k}": v.clone() for n, net in m.networks().items() for k, v in net.state_dict().items()}
        graphs = counters["stats"]["unique_graphs"]
        tr = Trainer(m, data, _cfg(**kw), seed=1)
        tr.fit()
        if name == "loss":
            assert counters["stats"]["unique_graphs"] > graphs  # TorchDynamo captured graphs of the loss
            assert all(not hasattr(net, "_compiled_call_impl") or net._compiled_call_impl is None
                       for net in tr.nets.values())  # the modules themselves are not compiled
        runs[name] = _params(tr)
    eager, comp = runs["eager"], runs["loss"]
    assert list(eager) == list(comp) and not any("_orig_mod" in k for k in comp)
    for k in eager:
        assert comp[k].dtype == torch.float64
        torch.testing.assert_close(comp[k], eager[k], rtol=U32, atol=U32, msg=lambda s, k=k: f"{k}: {s}")
    moved = max((eager[k] - v).abs().max().item() for k, v in init.items())
    assert moved > 1e-3  # the steps move the parameters by about lr: the tolerance can tell a different loss apart


def test_resume_with_compiled_loss_is_exact(tmp_path):
    """AGM: a run checkpointed at step 2, resumed by a new Trainer (other initial weights, a disturbed global RNG) and
    continued to step 4 ends with the same bits (networks, EMA, optimiser moments, logged losses, final checkpoint)
    as the uninterrupted run, both with compile_scope=loss. In float64 like the test above, so that its compiled
    graphs are reused (inductor's cache): exactness does not depend on the dtype."""
    import json

    from agm.training.checkpoint import RUN_FORMAT, latest_checkpoint, load_checkpoint

    data = torch.randn(500, 2, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    cfg = _cfg(compile=True, compile_scope="loss")
    runs = {name: tmp_path / name for name in ("full", "cut")}
    for run in runs.values():
        run.mkdir()
        (run / "run.json").write_text(json.dumps({"format": RUN_FORMAT, "version": 1}))
    full = Trainer(_method("agm").double(), data, cfg, out_dir=runs["full"], seed=1)
    full.fit()
    Trainer(_method("agm").double(), data, cfg, out_dir=runs["cut"], seed=1).fit(2)
    torch.manual_seed(12345)  # disturb the global RNG: resume restores it
    resumed = Trainer(_method("agm", seed=99).double(), data, cfg, out_dir=runs["cut"], seed=1)
    assert resumed.resume() == 2
    resumed.fit()
    a, b = _params(full), _params(resumed)
    assert list(a) == list(b) and not any("_orig_mod" in k for k in a)
    for k in a:
        assert torch.equal(a[k], b[k]), k
    sa, sb = full.optimizer.state_dict()["state"], resumed.optimizer.state_dict()["state"]
    for i in sa:
        for key in ("exp_avg", "exp_avg_sq"):
            assert torch.equal(sa[i][key], sb[i][key]), (i, key)
    losses = {n: [json.loads(line)["loss"] for line in (r / "metrics.jsonl").read_text().splitlines()]
              for n, r in runs.items()}
    assert len(losses["full"]) == 2 and losses["full"] == losses["cut"]
    ca, cb = (load_checkpoint(latest_checkpoint(r), ("networks", "ema"))[1] for r in runs.values())
    for part in ("networks", "ema"):
        assert ca[part].keys() == cb[part].keys() and all(torch.equal(ca[part][k], cb[part][k]) for k in ca[part])


def test_agm_loss_after_the_draws_is_one_graph():
    """With no CPU-only host check in the weights (clip=None; on CUDA the clipped weights have none either), AGM's
    loss is captured as the draws from the generator (run eagerly) and ONE graph holding every Linear of the drift
    and of V_phi, the weights and the loss: TorchDynamo's own account of the compiled function."""
    m = _method("agm", clip=None)
    m.logs_wanted = False
    linears = sum(isinstance(q, torch.nn.Linear) for net in (m.drift, m.potential) for q in net.modules())
    out = torch._dynamo.explain(m.loss)(torch.randn(64, 2), 5, torch.Generator().manual_seed(0))
    per_graph = [sum(n.op == "call_function" and n.target is torch._C._nn.linear for n in g.graph.nodes)
                 for g in out.graphs]
    assert sorted(per_graph)[-1] == linears == 8 and sum(per_graph) == linears
    big = [g for g, n in zip(out.graphs, per_graph) if n]
    ops = [str(n.target) for n in big[0].graph.nodes if n.op in ("call_function", "call_method")]
    assert any("exp" in o for o in ops) and any("mean" in o for o in ops)  # the weights and the loss are in it


@pytest.mark.parametrize("logs", [False, True])
def test_agm_loss_is_one_graph_on_the_branches_cuda_takes(logs):
    """The default clipped weights on a device other than the CPU (the meta device: the branches CUDA takes, no
    host check): AGM's whole loss is ONE graph with no break, on log steps too. Without a generator the draws are
    traced as well; with the Trainer's generator they run eagerly before that graph (previous test)."""
    m = _method("agm").to("meta")
    m.logs_wanted = logs
    out = torch._dynamo.explain(m.loss)(torch.randn(64, 2, device="meta"), 5, None)
    assert out.graph_count == 1 and out.graph_break_count == 0
    nodes = list(out.graphs[0].graph.nodes)
    assert sum(n.op == "call_function" and n.target is torch._C._nn.linear for n in nodes) == 8


class _GradPenalty(torch.nn.Module):
    """A loss that differentiates inside itself (create_graph=True, as Bellman's fields): a double backward."""

    ema_names = ()

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.net = torch.nn.Sequential(torch.nn.Linear(2, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))

    def networks(self):
        return {"net": self.net}

    def loss(self, batch, step, generator):
        x = batch.clone().requires_grad_(True)
        (g,) = torch.autograd.grad(self.net(x).sum(), x, create_graph=True)
        loss = (g.pow(2).sum(1) - 1).pow(2).mean()
        return loss, {"loss": loss.detach()}


def test_a_loss_that_cannot_be_compiled_whole_raises_config_error():
    """compile_scope=loss on a loss with a double backward: ConfigError naming train.compile_scope and the way out
    (modules), raised at the first step; eager, the same method trains."""
    data = torch.randn(100, 2)
    Trainer(_GradPenalty(), data, _cfg(steps=1)).fit()
    tr = Trainer(_GradPenalty(), data, _cfg(steps=1, compile=True, compile_scope="loss"))
    with pytest.raises(ConfigError, match=r"train\.compile_scope='loss'.*compile_scope=modules"):
        tr.fit()
