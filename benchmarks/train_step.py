"""CPU training-step speed (issue 21, CPU part): AGM vs drift-only, and agm vs torchcfm with the same MLP.

Every variant is one full training step, timed in interleaved rounds (the order rotated each round); the
JSON keeps every round, the median steps/s and the ratios, both as the ratio of medians and as the median of
the per-round ratios (robust to the load of a shared machine drifting between rounds), and each variant's fastest
round with the ratios of those (other work on the machine only adds time; on the shared 2-core machine a few rounds
can take twice as long).

1. AGM / drift-only: the toy config (``--config toy``: TimeMLP 256 x 3, batch 256, sigma 0.5, V_phi at 1.4%),
   each arm through the library's Trainer (EMA, gradient clipping, NaN guard: the step a user runs).
     drift_only                the drift-only baseline (method=baseline)
     agm                       AGM, defaults (V_phi's loss and gradients by hand: AGM.fused_potential)
     agm_autograd_potential    AGM with V_phi through autograd (AGM.fused_potential = False; the old path)
     agm_every4                AGM with V_phi trained on every 4th batch (AGM(potential_every=4); an option)
     drift_only_forloop, agm_forloop   drift_only and agm with AdamW's per-tensor for-loop (PyTorch's CPU default,
                               the Trainer's CPU default before session 7; bit-identical to the foreach default)
     drift_only_fused, agm_fused, agm_every4_fused   the same with train.fused_optimizer=true (AdamW fused=True
                               on the CPU: one operator per parameter group; the default is foreach=True on the
                               CPU, bit-identical to PyTorch's per-tensor for-loop, whose foreach operators still
                               loop over the tensors there)
     drift_only_compiled, agm_compiled   drift_only and agm with train.compile=true (each network compiled:
                               train.compile_scope=modules, the default)
     drift_only_compiled_loss, agm_compiled_loss   the same with train.compile_scope=loss (the method's whole loss
                               function compiled: networks' forwards, weights and loss in one graph, one backward)
2. flow matching (sigma = 0, t ~ U[0, 1]), the same TimeMLP 256 x 3 and the same initial weights:
     agm_fm                    the Trainer's step, defaults (method=baseline path.sigma=0 path.t_max=1)
     agm_fm_fused              the same with train.fused_optimizer=true (AdamW fused=True, on the CPU too)
     agm_fm_forloop            the same with AdamW's per-tensor for-loop (the CPU default before session 7)
     torchcfm                  ConditionalFlowMatcher(sigma=0) in the loop of its README (zero_grad, loss,
                               backward, step) with AdamW(lr=1e-3), no EMA and no clipping
     torchcfm_fused_adamw      the same loop with AdamW(fused=True): what the optimiser alone is worth
     agm_fm_compiled           agm_fm with train.compile=true (inductor's CPU code for the networks)
     agm_fm_compiled_max_autotune   the same with train.compile_mode=max-autotune-no-cudagraphs
3. the floor: the arithmetic every flow-matching step of this MLP has to do, with nothing else around it
     floor_fwd_bwd             the bare TimeMLP forward, a mean squared error and the backward on fixed tensors
                               (no sampling, no optimiser, no EMA, no clipping): the network's eager cost
     floor_fwd_bwd_no_mkldnn   the same with torch.backends.mkldnn off (float32 Linear layers run MKL's sgemm)
     floor_mm                  only the torch.mm calls of that forward and backward (the same shapes and
                               transposes: 5 forward, 5 weight-gradient and 4 input-gradient products; no bias,
                               SiLU, embedding or loss): the matmul arithmetic alone
     floor_potential           V_phi's own training arithmetic in AGM's step on fixed tensors: its forward, loss
                               and gradients by hand (agm.methods.agm.model.potential_mlp_loss), the importance
                               weights and the backward that hands the gradients on (no optimiser, no clipping)
   A step that is 1.2x faster than torchcfm's needs torchcfm's ms / 1.2; the JSON's "floor" block compares that
   with the two floors, and its "agm_extra" block AGM's extra time over drift-only with floor_potential and with the
   10% that AGM / drift-only <= 1.10 allows.

``--quality`` instead trains AGM and AGM with potential_every=k (``--every``) on toy sets with the training and
evaluation of experiments/agm/toy.py and writes the paired W2/MMD/energy per seed:

    PYTHONPATH=src python benchmarks/train_step.py --quality --every 4 --datasets moons 8gaussians --seeds 3 \\
        --quality-steps 2000 --out benchmarks/results/train_step_every4_quality.json

torchcfm is installed as in ../shared/peers.md (``pip install --no-deps torchcfm``); without it the peer rows
are left out. ``--profile`` adds per-variant ATen operator counts per step (``op_count.count_ops``, the one
operation counter of benchmarks/) and the top self-CPU operators per step (torch.profiler).

    PYTHONPATH=src python benchmarks/train_step.py --threads 1 --rounds 9 --steps 60 --profile \\
        --out benchmarks/results/train_step_cpu_s7.json
"""
from __future__ import annotations

import argparse
import copy
import importlib
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch

from agm.methods.agm import build_method
from agm.methods.agm.config import load_config
from agm.nets import TimeMLP
from agm.training.results import machine_info, write_result
from agm.training.trainer import Trainer

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from op_count import count_ops  # noqa: E402  (benchmarks/op_count.py: the one operation counter)

FM_OVERRIDES = ["method=baseline", "path.sigma=0", "path.t_min=0", "path.t_max=1"]


def torchcfm_version() -> str | None:
    try:
        importlib.import_module("torchcfm.conditional_flow_matching")
    except ImportError as e:
        print("torchcfm not available (pip install --no-deps torchcfm, see ../shared/peers.md):", e)
        return None
    import importlib.metadata as md

    return md.version("torchcfm")


def trainer_step(config: str, overrides: list[str], data: torch.Tensor, *, every: int = 1, fused_potential: bool = True,
                 init: dict | None = None):
    cfg = load_config(config, overrides + ["train.progress=false", "train.tensorboard=false", "train.threads=0"])
    m, _ = build_method(cfg, tuple(data.shape[1:]))
    if every > 1:
        if not hasattr(m, "potential_every"):
            return None  # an older agm without the option
        m.potential_every = every
    if hasattr(m, "fused_potential"):  # an older agm has only the autograd path
        m.fused_potential = fused_potential
    if init is not None:
        m.drift.load_state_dict(init)
    tr = Trainer(m, data, cfg.train, seed=0)
    if hasattr(tr, "_fit_total"):  # a Trainer that tells the method which steps it logs (as inside fit())
        tr._fit_total = 10**9
    tr.step = 1000  # past V_phi's warm-up: learned weights
    if "train.compile_scope=loss" in overrides:
        # a compiled loss compiles a variant for the first step (TorchDynamo specialises the int step), for the later
        # ones (step dynamic) and for a log step (the weight statistics: log steps fall in the timed rounds too); all
        # three here, before any timing, so that no recompile lands in a timed round
        for i in range(3):
            tr._fit_total = tr.step + 1 if i == 2 else 10**9
            tr.train_step()
        tr._fit_total = 10**9
    return tr.train_step


def forloop(step):
    """A Trainer's step with AdamW's per-tensor for-loop implementation (foreach=False in every group)."""
    if step is not None:
        for group in step.__self__.optimizer.param_groups:
            group["foreach"] = False
    return step


def peer_step(net: TimeMLP, data: torch.Tensor, batch: int, fused: bool):
    from torchcfm.conditional_flow_matching import ConditionalFlowMatcher

    cfm = ConditionalFlowMatcher(sigma=0.0)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3, **({"fused": True} if fused else {}))
    g = torch.Generator().manual_seed(0)

    def step():
        x1 = data[torch.randint(len(data), (batch,), generator=g)]
        x0 = torch.randn_like(x1)
        opt.zero_grad()
        t, xt, ut = cfm.sample_location_and_conditional_flow(x0, x1)
        loss = torch.mean((net(xt, t) - ut) ** 2)
        loss.backward()
        opt.step()

    return step


def floor_fwd_bwd(net: TimeMLP, batch: int):
    """The bare forward + mean squared error + backward of ``net`` on fixed tensors (gradients set to None first,
    as zero_grad does): the network's eager arithmetic and autograd, nothing else."""
    g = torch.Generator().manual_seed(2)
    xt, t = torch.randn(batch, net.dim, generator=g), torch.rand(batch, generator=g)
    ut = torch.randn(batch, net.dim, generator=g)
    params = list(net.parameters())

    def step():
        for p in params:
            p.grad = None
        torch.mean((net(xt, t) - ut) ** 2).backward()

    return step


def floor_mm_flops(net: TimeMLP, batch: int) -> int:
    """Floating-point operations of :func:`floor_mm`'s products (2 per multiply-add)."""
    w_t = net.time_embed[1].weight
    ws = [m.weight for m in net.net.net if isinstance(m, torch.nn.Linear)]
    fwd = 2 * batch * (w_t.numel() + sum(w.numel() for w in ws))
    return 2 * fwd + (fwd - 2 * batch * w_t.numel())  # forward, weight gradients, input gradients


def sgemm_gflops(n: int = 1024, reps: int = 5) -> float:
    """This core's float32 matmul rate on a large square product (n x n @ n x n), best of ``reps``."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a.mm(b)
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        a.mm(b)
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best / 1e9


def floor_fwd_bwd_no_mkldnn(net: TimeMLP, batch: int):
    """:func:`floor_fwd_bwd` with oneDNN (mkldnn) switched off: float32 Linear layers use MKL's sgemm either way."""
    step = floor_fwd_bwd(net, batch)

    def run():
        with torch.backends.mkldnn.flags(enabled=False):
            step()

    return run


def floor_mm(net: TimeMLP, batch: int):
    """Only the matrix products of ``net``'s forward and backward, with the shapes and transposes autograd uses
    (F.linear: x W^T; backward: dW = g^T x, dx = g W), for the time-embedding Linear and every Linear of the MLP:
    the input gradient of the MLP's first layer (for the time embedding) is computed, not the embedding's own."""
    g = torch.Generator().manual_seed(2)
    w_t = net.time_embed[1].weight.detach()
    ws = [m.weight.detach() for m in net.net.net if isinstance(m, torch.nn.Linear)]
    e = torch.randn(batch, w_t.shape[1], generator=g)
    h0 = torch.randn(batch, ws[0].shape[1], generator=g)

    def step():
        hs = [h0]
        e.mm(w_t.t())
        for w in ws:
            hs.append(hs[-1].mm(w.t()))
        gr = hs[-1]
        for i in range(len(ws) - 1, -1, -1):
            gr.t().mm(hs[i])
            gr = gr.mm(ws[i])
        gr[:, -w_t.shape[0]:].t().mm(e)

    return step


def floor_potential(method, batch: int):
    """V_phi's part of AGM's step on fixed tensors: potential_mlp_loss (forward, loss, gradients by hand), the
    importance weights from V and the backward of the attached loss (gradients set to None first)."""
    from agm.methods.agm.model import potential_mlp_loss

    g = torch.Generator().manual_seed(2)
    xt, t = torch.randn(batch, 2, generator=g), torch.rand(batch, generator=g)
    ell = torch.rand(batch, generator=g).requires_grad_()
    pot, weighting = method.potential, method.weighting
    params = list(pot.parameters())
    if potential_mlp_loss(pot, xt, t, ell, None, weighting.objective) is None:
        return None

    def step():
        for p in params:
            p.grad = None
        v, loss = potential_mlp_loss(pot, xt, t, ell, None, weighting.objective)
        weighting.weights(v, t, 1000)
        loss.backward()

    return step


def build_variants(args, data: torch.Tensor, cfm_version: str | None) -> dict:
    v = {
        "drift_only": trainer_step(args.config, ["method=baseline"], data),
        "agm": trainer_step(args.config, ["method=agm"], data),
        "agm_autograd_potential": trainer_step(args.config, ["method=agm"], data, fused_potential=False),
        "agm_every4": trainer_step(args.config, ["method=agm"], data, every=4),
    }
    v["drift_only_forloop"] = forloop(trainer_step(args.config, ["method=baseline"], data))
    v["agm_forloop"] = forloop(trainer_step(args.config, ["method=agm"], data))
    fused = ["train.fused_optimizer=true"]
    v["drift_only_fused"] = trainer_step(args.config, ["method=baseline"] + fused, data)
    v["agm_fused"] = trainer_step(args.config, ["method=agm"] + fused, data)
    v["agm_every4_fused"] = trainer_step(args.config, ["method=agm"] + fused, data, every=4)
    for scope in ("modules", "loss"):
        suffix = "_compiled" if scope == "modules" else "_compiled_loss"
        comp = ["train.compile=true", f"train.compile_scope={scope}"]
        v["drift_only" + suffix] = trainer_step(args.config, ["method=baseline"] + comp, data)
        v["agm" + suffix] = trainer_step(args.config, ["method=agm"] + comp, data)
    torch.manual_seed(1)
    net = TimeMLP(2, hidden=256, depth=3)
    init = {k: x.clone() for k, x in net.state_dict().items()}
    v["agm_fm"] = trainer_step(args.config, FM_OVERRIDES, data, init=init)
    v["agm_fm_fused"] = trainer_step(args.config, FM_OVERRIDES + fused, data, init=init)
    v["agm_fm_forloop"] = forloop(trainer_step(args.config, FM_OVERRIDES, data, init=init))
    v["agm_fm_compiled"] = trainer_step(args.config, FM_OVERRIDES + ["train.compile=true"], data, init=init)
    v["agm_fm_compiled_max_autotune"] = trainer_step(
        args.config, FM_OVERRIDES + ["train.compile=true", "train.compile_mode=max-autotune-no-cudagraphs"], data, init=init)
    if cfm_version:
        for name, fused in (("torchcfm", False), ("torchcfm_fused_adamw", True)):
            peer = TimeMLP(2, hidden=256, depth=3)
            peer.load_state_dict(init)
            v[name] = peer_step(peer, data, args.batch, fused)
    for name, make in (("floor_fwd_bwd", floor_fwd_bwd), ("floor_fwd_bwd_no_mkldnn", floor_fwd_bwd_no_mkldnn),
                       ("floor_mm", floor_mm)):
        bare = TimeMLP(2, hidden=256, depth=3)
        bare.load_state_dict(init)
        v[name] = make(bare, args.batch)
    agm = copy.deepcopy(v["agm"].__self__.method)  # its own copy of the toy AGM's V_phi and weighting
    v["floor_potential"] = floor_potential(agm, args.batch) if getattr(agm, "potential", None) is not None else None
    return {k: f for k, f in v.items() if f is not None}


def rate(fn, steps: int) -> float:
    t0 = time.perf_counter()
    for _ in range(steps):
        fn()
    return steps / (time.perf_counter() - t0)


RATIOS = {  # name: (numerator variant, denominator variant) of steps/s; step-time ratios are their inverses
    "agm_over_drift_only_step_time": ("drift_only", "agm"),
    "agm_autograd_potential_over_drift_only_step_time": ("drift_only", "agm_autograd_potential"),
    "agm_every4_over_drift_only_step_time": ("drift_only", "agm_every4"),
    "agm_forloop_over_drift_only_forloop_step_time": ("drift_only_forloop", "agm_forloop"),
    "agm_fused_over_drift_only_fused_step_time": ("drift_only_fused", "agm_fused"),
    "agm_compiled_over_drift_only_compiled_step_time": ("drift_only_compiled", "agm_compiled"),
    "agm_compiled_loss_over_drift_only_compiled_loss_step_time": ("drift_only_compiled_loss", "agm_compiled_loss"),
    "drift_only_compiled_over_drift_only_steps_per_s": ("drift_only_compiled", "drift_only"),
    "drift_only_compiled_loss_over_drift_only_steps_per_s": ("drift_only_compiled_loss", "drift_only"),
    "drift_only_compiled_loss_over_drift_only_compiled_steps_per_s": ("drift_only_compiled_loss", "drift_only_compiled"),
    "agm_compiled_over_agm_steps_per_s": ("agm_compiled", "agm"),
    "agm_compiled_loss_over_agm_steps_per_s": ("agm_compiled_loss", "agm"),
    "agm_compiled_loss_over_agm_compiled_steps_per_s": ("agm_compiled_loss", "agm_compiled"),
    "drift_only_over_drift_only_forloop_steps_per_s": ("drift_only", "drift_only_forloop"),
    "agm_over_agm_forloop_steps_per_s": ("agm", "agm_forloop"),
    "agm_fm_over_agm_fm_forloop_steps_per_s": ("agm_fm", "agm_fm_forloop"),
    "agm_fm_forloop_over_torchcfm_steps_per_s": ("agm_fm_forloop", "torchcfm"),
    "agm_every4_fused_over_drift_only_fused_step_time": ("drift_only_fused", "agm_every4_fused"),
    "agm_fm_over_torchcfm_steps_per_s": ("agm_fm", "torchcfm"),
    "agm_fm_fused_over_torchcfm_steps_per_s": ("agm_fm_fused", "torchcfm"),
    "agm_fm_fused_over_torchcfm_fused_adamw_steps_per_s": ("agm_fm_fused", "torchcfm_fused_adamw"),
    "agm_fm_compiled_over_torchcfm_steps_per_s": ("agm_fm_compiled", "torchcfm"),
    "agm_fm_compiled_over_agm_fm_steps_per_s": ("agm_fm_compiled", "agm_fm"),
    "agm_fm_compiled_max_autotune_over_agm_fm_steps_per_s": ("agm_fm_compiled_max_autotune", "agm_fm"),
    "floor_fwd_bwd_no_mkldnn_over_floor_fwd_bwd_step_time": ("floor_fwd_bwd", "floor_fwd_bwd_no_mkldnn"),
    "torchcfm_over_floor_fwd_bwd_step_time": ("floor_fwd_bwd", "torchcfm"),
    "torchcfm_over_floor_mm_step_time": ("floor_mm", "torchcfm"),
    "agm_fm_over_floor_fwd_bwd_step_time": ("floor_fwd_bwd", "agm_fm"),
    "agm_fm_fused_over_floor_fwd_bwd_step_time": ("floor_fwd_bwd", "agm_fm_fused"),
}


def agm_extra(ms: dict[str, float], goal: float = 1.10) -> dict | None:
    """AGM's extra ms per step over drift-only (defaults and fused AdamW) next to V_phi's own floor and the goal."""
    if "agm" not in ms or "drift_only" not in ms:
        return None
    out = {"goal_agm_over_drift_only": goal, "agm_minus_drift_only_ms": ms["agm"] - ms["drift_only"],
           "allowed_extra_ms": (goal - 1) * ms["drift_only"], "floor_potential_ms": ms.get("floor_potential")}
    if "agm_fused" in ms and "drift_only_fused" in ms:
        out["agm_fused_minus_drift_only_fused_ms"] = ms["agm_fused"] - ms["drift_only_fused"]
        out["allowed_extra_fused_ms"] = (goal - 1) * ms["drift_only_fused"]
    return out


def floor_summary(ms: dict[str, float], batch: int, goal: float = 1.2) -> dict | None:
    """What ``goal`` x torchcfm's steps/s asks of our step, next to the floors (``ms``: ms per step, the medians or
    the best rounds), and the rate of floor_mm's products against this core's rate on a large product."""
    if "torchcfm" not in ms or "floor_fwd_bwd" not in ms:
        return None
    need = ms["torchcfm"] / goal
    flops = floor_mm_flops(TimeMLP(2, hidden=256, depth=3), batch)
    return {"floor_mm_mflop_per_step": flops / 1e6,
            "floor_mm_gflops": flops / ms["floor_mm"] / 1e6 if "floor_mm" in ms else None,
            "sgemm_1024_gflops": sgemm_gflops(),
            "goal_agm_over_torchcfm_steps_per_s": goal, "torchcfm_ms": ms["torchcfm"],
            "agm_step_needed_ms": need, "floor_fwd_bwd_ms": ms["floor_fwd_bwd"], "floor_mm_ms": ms.get("floor_mm"),
            "needed_over_floor_fwd_bwd": need / ms["floor_fwd_bwd"],
            "room_above_floor_fwd_bwd_ms": need - ms["floor_fwd_bwd"],
            "torchcfm_above_floor_fwd_bwd_ms": ms["torchcfm"] - ms["floor_fwd_bwd"]}


def profile(variants: dict, steps: int) -> dict:
    """Per variant: ATen operations per step (op_count.count_ops, the total and the 12 most frequent), autograd
    nodes and self CPU ms per step, and the top 8 operators by self time (torch.profiler; times are distorted by
    the profiler and by the machine's load, the counts are not)."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as tprofile

    out = {}
    for name, fn in variants.items():
        # a compiled network runs eagerly under a dispatch mode (dynamo skips the frame): no count for those
        ops = None if "_compiled" in name else count_ops(fn, steps)
        with tprofile(activities=[ProfilerActivity.CPU]) as p:
            for _ in range(steps):
                fn()
        events = p.key_averages()
        top = sorted(events, key=lambda e: -e.self_cpu_time_total)[:8]
        out[name] = {
            "aten_ops_per_step": None if ops is None else round(sum(ops.values()) / steps, 1),
            "top_aten_ops_per_step": None if ops is None else {
                k: round(n / steps, 1) for k, n in sorted(ops.items(), key=lambda kv: -kv[1])[:12]},
            "autograd_nodes_per_step": round(sum(e.count for e in events
                                                 if e.key.startswith("autograd::engine::evaluate_function")) / steps, 1),
            "self_cpu_ms_per_step": round(sum(e.self_cpu_time_total for e in events) / 1e3 / steps, 3),
            "top_self_cpu_ms_per_step": {e.key: round(e.self_cpu_time_total / 1e3 / steps, 3) for e in top},
        }
    return out


def run_threads(args, threads: int, cfm_version: str | None) -> dict:
    torch.set_num_threads(threads)
    data = torch.randn(10_000, 2, generator=torch.Generator().manual_seed(0))
    variants = build_variants(args, data, cfm_version)
    if args.only:
        variants = {k: f for k, f in variants.items() if k in args.only}
    names = list(variants)
    for fn in variants.values():  # warm-up
        rate(fn, 10)
    # the objects alive now (torch, inductor, every variant's modules: gc_frozen_objects in the JSON) are moved out of
    # the garbage collector's reach, so that no full collection walking all of them lands inside one variant's timing
    import gc

    gc.collect()
    gc.freeze()
    frozen = gc.get_freeze_count()
    rates: dict[str, list[float]] = {k: [] for k in names}
    from torch._dynamo.utils import counters

    graphs_before = counters["stats"]["unique_graphs"]
    load = [os.getloadavg()[0]]
    for r in range(args.rounds):
        order = names[r % len(names):] + names[:r % len(names)]
        for k in order:
            rates[k].append(rate(variants[k], args.steps))
        load.append(os.getloadavg()[0])
    graphs_in_rounds = counters["stats"]["unique_graphs"] - graphs_before  # TorchDynamo graphs compiled while timing
    med = {k: statistics.median(v) for k, v in rates.items()}
    best = {k: max(v) for k, v in rates.items()}  # each variant's fastest round: other load only adds time
    ratios, per_round, of_best = {}, {}, {}
    for rname, (a, b) in RATIOS.items():
        if a in med and b in med:
            ratios[rname] = med[a] / med[b]
            per_round[rname] = statistics.median(x / y for x, y in zip(rates[a], rates[b]))
            of_best[rname] = best[a] / best[b]
    ms = {k: 1e3 / v for k, v in med.items()}
    ms_best = {k: 1e3 / v for k, v in best.items()}
    res = {"threads": threads, "steps_per_second_median": med, "ms_per_step_median": ms, "ms_per_step_best": ms_best,
           "ratios_of_medians": ratios, "ratios_median_of_rounds": per_round, "ratios_of_best": of_best,
           "floor": floor_summary(ms, args.batch), "agm_extra": agm_extra(ms),
           "floor_best": floor_summary(ms_best, args.batch), "agm_extra_best": agm_extra(ms_best),
           "gc_frozen_objects": frozen, "graphs_compiled_in_timed_rounds": graphs_in_rounds,
           "steps_per_second_all": rates,
           "load_average_1min_per_round": load}
    if args.profile and threads == args.threads[0]:  # operator counts do not depend on the thread count
        res["profile"] = profile(variants, args.profile_steps)
    gc.unfreeze()
    return res


def quality(args) -> int:
    """AGM vs AGM with V_phi trained on every k-th batch: the same training and evaluation as experiments/agm/toy.py
    (its run_one: train, then W2/MMD/energy on held-out points), paired per dataset and seed."""
    import importlib.util

    import agm.methods.agm.run as agm_run

    spec = importlib.util.spec_from_file_location("agm_toy", ROOT / "experiments/agm/toy.py")
    toy = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(toy)
    build = agm_run.build_method
    every = {"k": 1}

    def build_with_every(cfg, shape):  # potential.every is not a config key yet (docs/performance.md)
        m, ratio = build(cfg, shape)
        m.potential_every = every["k"]
        return m, ratio

    agm_run.build_method = build_with_every
    rows = []
    for ds in args.datasets:
        for seed in range(args.seeds):
            for k in (1, args.every):
                every["k"] = k
                r = toy.run_one((ds, seed, f"agm_every{k}", ["method=agm"], args.quality_steps))
                rows.append(r)
                print(ds, seed, k, {m: round(r["metrics"][m], 4) for m in ("w2", "mmd", "train_seconds")}, flush=True)
    summary = {}
    for ds in args.datasets:
        get = lambda k, key: [next(r["metrics"][key] for r in rows if r["dataset"] == ds and r["seed"] == s  # noqa: E731
                                   and r["label"] == f"agm_every{k}") for s in range(args.seeds)]
        summary[ds] = {key: {"agm": get(1, key), f"agm_every{args.every}": get(args.every, key),
                             "paired_diff_mean": statistics.mean(b - a for a, b in zip(get(1, key), get(args.every, key)))}
                       for key in ("w2", "mmd", "energy", "train_seconds")}
    record = {"command": f"PYTHONPATH={os.environ.get('PYTHONPATH', '')} python " + " ".join(sys.argv),
              "settings": {"config": "toy", "steps": args.quality_steps, "seeds": args.seeds, "datasets": args.datasets,
                           "every": args.every, "evaluation": "experiments/agm/toy.py run_one (eval.n_samples=4000)"},
              "summary": summary, "runs": rows}
    write_result(args.out, record)
    print(json.dumps(summary, indent=1))
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="toy")
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--steps", type=int, default=60, help="steps per variant per round")
    ap.add_argument("--batch", type=int, default=256, help="the peer's batch (ours: the config's train.batch_size)")
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--only", nargs="+", default=None, help="time only these variants (names as in the docstring)")
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--profile-steps", type=int, default=20)
    ap.add_argument("--note", default="", help="free text stored in the JSON (e.g. the machine's load)")
    ap.add_argument("--out", default=None, help="default benchmarks/results/train_step_cpu.json "
                    "(--quality: benchmarks/results/train_step_every<k>_quality.json)")
    ap.add_argument("--quality", action="store_true", help="instead of timing: AGM vs potential_every=k on toy sets")
    ap.add_argument("--every", type=int, default=4)
    ap.add_argument("--datasets", nargs="+", default=["moons", "8gaussians"])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--quality-steps", type=int, default=2000)
    args = ap.parse_args()
    if args.out is None:
        name = f"train_step_every{args.every}_quality.json" if args.quality else "train_step_cpu.json"
        args.out = str(ROOT / "benchmarks/results" / name)
    if args.quality:
        return quality(args)
    cfm_version = torchcfm_version()
    import importlib.metadata as md

    try:
        agm_version = md.version("agm")
    except md.PackageNotFoundError:
        agm_version = None
    results = {str(th): run_threads(args, th, cfm_version) for th in args.threads}
    record = {
        "command": f"PYTHONPATH={os.environ.get('PYTHONPATH', '')} python " + " ".join(sys.argv),
        "machine": machine_info() | {"note": args.note},
        "settings": {"config": args.config, "batch": args.batch, "steps_per_round": args.steps, "rounds": args.rounds,
                     "net": "TimeMLP(2, hidden=256, depth=3) for both libraries; V_phi: PotentialMLP at 1.4%"},
        "versions": {"agm": agm_version, "agm_source": str(Path(sys.modules["agm"].__file__).parent),
                     "torch": torch.__version__, "torchcfm": cfm_version},
        "results_by_threads": results,
    }
    write_result(args.out, record)
    for th, res in results.items():
        print(f"--- {th} thread(s)")
        for k, v in res["steps_per_second_median"].items():
            print(f"{k:<30} {v:8.1f} steps/s  {1e3 / v:6.2f} ms (best round {res['ms_per_step_best'][k]:6.2f} ms)")
        for k, v in res["ratios_median_of_rounds"].items():
            print(f"{k:<55} {v:6.3f} (of medians {res['ratios_of_medians'][k]:.3f}, of best {res['ratios_of_best'][k]:.3f})")
        for block in ("floor", "agm_extra", "floor_best", "agm_extra_best"):
            if res[block]:
                print(f"{block}:", json.dumps({k: round(v, 3) for k, v in res[block].items() if v is not None}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
