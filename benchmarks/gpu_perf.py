"""GPU performance study for issue 21: where the training step's time goes, what the NaN guard's per-step sync
costs, the eager memory-format default, and the sampler's FLOP rate (MFU) against training's.

One process, one GPU, 64x64 images, the 63.1 M-parameter DDPM++ U-Net (as benchmarks/images_gpu.py):
  * bf16 matmul rate measured in the run (the MFU denominator);
  * training step (drift-only and AGM), compiled bf16 + fused AdamW: NaN guard every step (host sync) vs a
    device-side flag read every 50 steps (train.nan_check_every), interleaved rounds, CUDA events;
  * eager bf16 step with and without channels_last (chooses the eager default by measurement);
  * a torch.profiler trace of the compiled drift-only step: CUDA kernel time by category;
  * sampling (100 Euler-Maruyama steps, bf16 autocast, batch --sample-batch): eager, CUDA graph, compiled drift,
    compiled drift + CUDA graph; FLOPs per image from FlopCounterMode on the eager forward; MFU = FLOP rate / bf16 rate.

    PYTHONPATH=src python3 benchmarks/gpu_perf.py --out benchmarks/results/gpu_perf.json
"""
from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
_spec = importlib.util.spec_from_file_location("images_gpu", ROOT / "benchmarks" / "images_gpu.py")
ig = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(ig)

from agm.methods.agm import build_method  # noqa: E402
from agm.samplers import EulerMaruyama  # noqa: E402
from agm.samplers.cuda_graph import GraphEulerMaruyama  # noqa: E402
from agm.training.results import write_result  # noqa: E402

MODEL = {"channels": 128, "channel_mult": [1, 2, 2, 2], "num_res_blocks": 4, "attn_resolutions": [16], "dropout": 0.0}

CATEGORIES = [
    ("attention", ("flash", "fmha", "attention", "sdpa", "efficient")),
    ("gemm/conv", ("gemm", "conv", "cutlass", "sm90", "sm80", "wgmma", "cudnn", "implicit", "xmma", "nchw", "nhwc")),
    ("optimizer/ema", ("adam", "multi_tensor", "foreach", "lerp")),
    ("norm", ("norm", "welford")),
    ("triton fused", ("triton",)),
    ("copy/cast", ("copy", "cast", "memcpy", "memset", "to_copy")),
]


def categorise(name: str) -> str:
    low = name.lower()
    for cat, keys in CATEGORIES:
        if any(k in low for k in keys):
            return cat
    return "elementwise/other"


def timed_steps(tr, steps: int) -> float:
    return ig.sync_time(lambda: [tr.train_step() for _ in range(steps)], 1) / steps


def train_section(data, peak, batch, rounds, steps):
    out = {}
    # compiled bf16: NaN guard every step vs every 50 steps, drift-only and AGM
    trs = {}
    for m in ("baseline", "agm"):
        cfg = ig.make_cfg(m, 64, batch, MODEL, amp="bf16", cl=False, fused=True, comp=True)
        tr, _ = ig.build_trainer(cfg, data)
        twin, _ = ig.build_trainer(ig.make_cfg(m, 64, batch, MODEL, amp="bf16", cl=False, fused=True, comp=False), data)
        flops = ig.step_flops(twin)
        del twin
        for _ in range(3):
            tr.train_step()
        torch.cuda.synchronize()
        trs[m] = (tr, flops)
    res = {f"{m}_{g}": [] for m in trs for g in ("sync1", "flag50")}
    for _ in range(rounds):
        for m, (tr, _) in trs.items():
            for g, every in (("sync1", 1), ("flag50", 50)):
                tr.nan_check_every = every
                res[f"{m}_{g}"].append(timed_steps(tr, steps))
    comp = {}
    for key, vals in res.items():
        m = key.split("_")[0]
        ms = statistics.median(vals)
        comp[key] = {"step_ms": vals, "step_ms_median": ms, "images_per_s": batch / (ms / 1e3),
                     "mfu": trs[m][1] / (ms / 1e3) / peak, "flops_per_step": trs[m][1]}
    comp["agm_over_drift_flag50"] = comp["agm_flag50"]["step_ms_median"] / comp["baseline_flag50"]["step_ms_median"]
    comp["agm_over_drift_sync1"] = comp["agm_sync1"]["step_ms_median"] / comp["baseline_sync1"]["step_ms_median"]
    comp["peak_mem_gib"] = torch.cuda.max_memory_allocated() / 2**30
    out["compiled_bf16_fused"] = comp
    print("[train compiled]", {k: (round(v["images_per_s"]), round(100 * v["mfu"], 1)) for k, v in comp.items() if isinstance(v, dict)},
          "ratio", round(comp["agm_over_drift_flag50"], 4), flush=True)

    # profile of the compiled drift-only step
    tr = trs["baseline"][0]
    tr.nan_check_every = 50
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CUDA, ProfilerActivity.CPU]) as prof:
        for _ in range(5):
            tr.train_step()
        torch.cuda.synchronize()
    cats: dict[str, float] = {}
    top = []
    for evt in prof.key_averages():
        cuda_us = getattr(evt, "device_time_total", None)
        if cuda_us is None:
            cuda_us = getattr(evt, "cuda_time_total", 0.0)
        if cuda_us <= 0 or evt.device_type != torch.autograd.DeviceType.CUDA:
            continue
        cats[categorise(evt.key)] = cats.get(categorise(evt.key), 0.0) + cuda_us
        top.append((cuda_us, evt.key[:120]))
    total = sum(cats.values())
    out["profile_compiled_drift_5_steps"] = {
        "kernel_ms_total": total / 1e3,
        "share_by_category": {k: v / total for k, v in sorted(cats.items(), key=lambda kv: -kv[1])},
        "top_kernels_ms": [(k, us / 1e3) for us, k in sorted(top, reverse=True)[:15]],
        "wall_ms_per_step": comp["baseline_flag50"]["step_ms_median"],
    }
    print("[profile]", {k: round(v, 3) for k, v in out["profile_compiled_drift_5_steps"]["share_by_category"].items()}, flush=True)
    del trs, tr
    torch.cuda.empty_cache()

    # eager bf16: channels_last or not
    eager = {}
    trs = {}
    for cl in (True, False):
        cfg = ig.make_cfg("baseline", 64, batch, MODEL, amp="bf16", cl=cl, fused=True, comp=False)
        tr, _ = ig.build_trainer(cfg, data)
        flops = ig.step_flops(tr)
        for _ in range(3):
            tr.train_step()
        trs[cl] = (tr, flops)
    vals = {cl: [] for cl in trs}
    for _ in range(rounds):
        for cl, (tr, _) in trs.items():
            tr.nan_check_every = 50
            vals[cl].append(timed_steps(tr, steps))
    for cl, v in vals.items():
        ms = statistics.median(v)
        eager["channels_last" if cl else "contiguous"] = {"step_ms": v, "images_per_s": batch / (ms / 1e3), "mfu": trs[cl][1] / (ms / 1e3) / peak}
    out["eager_bf16_fused_drift"] = eager
    print("[train eager]", {k: (round(v["images_per_s"]), round(100 * v["mfu"], 1)) for k, v in eager.items()}, flush=True)
    del trs
    torch.cuda.empty_cache()
    return out


def sample_section(peak, n, steps, reps):
    from torch.utils.flop_counter import FlopCounterMode

    cfg = ig.make_cfg("baseline", 64, 128, MODEL, amp="bf16", cl=False, fused=True, comp=False)
    torch.manual_seed(0)
    m, _ = build_method(cfg, (3, 64, 64))
    drift = m.drift.cuda().eval()
    with torch.no_grad():
        g = torch.Generator("cuda").manual_seed(0)
        for p_ in drift.parameters():
            p_.add_(0.02 * torch.randn(p_.shape, generator=g, device=p_.device))
    x0 = torch.randn(n, 3, 64, 64, device="cuda")
    t = torch.rand(n, device="cuda")
    fc = FlopCounterMode(display=False)
    with fc, torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
        drift(x0[:8], t[:8])
    flops_img = fc.get_total_flops() / 8
    res = {"batch": n, "steps": steps, "forward_gflop_per_image": flops_img / 1e9}

    def rate(ms):
        ips = n / (ms / 1e3)
        return {"ms": ms, "images_per_s": ips, "mfu": flops_img * steps * ips / peak}

    em = EulerMaruyama(steps)

    def eager():
        with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
            em.sample(drift, x0, 0.5, generator=torch.Generator("cuda").manual_seed(0))

    eager()
    res["eager_bf16"] = rate(ig.sync_time(eager, reps))
    gs = GraphEulerMaruyama(steps, cuda_graph=True, amp="bf16")
    gs.sample(drift, x0, 0.5, generator=torch.Generator("cuda").manual_seed(0))
    res["graph_bf16"] = rate(ig.sync_time(lambda: gs.sample(drift, x0, 0.5, generator=torch.Generator("cuda").manual_seed(0)), reps))
    print("[sample eager/graph]", res["eager_bf16"], res["graph_bf16"], flush=True)
    comp = torch.compile(drift, dynamic=False)  # default mode: max-autotune spent > 9 min autotuning on the H200
    t0 = time.perf_counter()

    def compiled():
        with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
            em.sample(comp, x0, 0.5, generator=torch.Generator("cuda").manual_seed(0))

    compiled()
    res["compile_s"] = time.perf_counter() - t0
    res["compiled_bf16"] = rate(ig.sync_time(compiled, reps))
    try:
        gc = GraphEulerMaruyama(steps, cuda_graph=True, amp="bf16")
        gc.sample(comp, x0, 0.5, generator=torch.Generator("cuda").manual_seed(0))
        res["compiled_graph_bf16"] = rate(ig.sync_time(lambda: gc.sample(comp, x0, 0.5, generator=torch.Generator("cuda").manual_seed(0)), reps))
        a = gs.sample(drift, x0[:n], 0.5, generator=torch.Generator("cuda").manual_seed(3)).float()
        b = gc.sample(comp, x0[:n], 0.5, generator=torch.Generator("cuda").manual_seed(3)).float()
        res["compiled_graph_vs_graph_rel"] = float((a - b).norm() / a.norm())
    except Exception as e:  # noqa: BLE001 - record why the combination failed
        res["compiled_graph_bf16"] = {"error": repr(e)[:300]}
    print("[sample compiled]", res["compiled_bf16"], res.get("compiled_graph_bf16"), flush=True)
    return res


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default=str(ROOT / "benchmarks/results/gpu_perf.json"))
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--sample-batch", type=int, default=512)
    p.add_argument("--sample-steps", type=int, default=100)
    p.add_argument("--sample-reps", type=int, default=2)
    p.add_argument("--skip-train", action="store_true")
    args = p.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    torch.backends.cudnn.benchmark = True
    t0 = time.perf_counter()
    peak = ig.matmul_rate()
    print(f"[device] {torch.cuda.get_device_name()} bf16 {peak / 1e12:.0f} TFLOP/s", flush=True)
    rec = {"command": " ".join(["python3"] + sys.argv), "device": torch.cuda.get_device_name(), "cuda": torch.version.cuda,
           "measured_bf16_matmul_tflops": peak / 1e12, "model": MODEL, "image_size": 64}
    rec["sampling"] = sample_section(peak, args.sample_batch, args.sample_steps, args.sample_reps)
    write_result(args.out, rec)
    if not args.skip_train:
        data = torch.rand(4096, 3, 64, 64, device="cuda") * 2 - 1
        rec["training"] = train_section(data, peak, args.batch, args.rounds, args.steps)
    rec["wall_s"] = time.perf_counter() - t0
    write_result(args.out, rec)
    print("wrote", args.out)


if __name__ == "__main__":
    main()
