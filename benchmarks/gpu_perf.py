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

# agm's U-Net (--agm-model): 'ddpmpp-64' (63.1 M, the default), or 'peer-shape', agm's U-Net with torchcfm's widths
# and depth at 64x64 (channel_mult 1,2,3,4, two blocks per level, attention at 16, 64 channels per head): the
# like-for-like comparison of the two libraries' training steps, architecture held equal.
AGM_MODELS = {
    "ddpmpp-64": {"channels": 128, "channel_mult": [1, 2, 2, 2], "num_res_blocks": 4, "attn_resolutions": [16], "dropout": 0.0},
    "peer-shape": {"channels": 128, "channel_mult": [1, 2, 3, 4], "num_res_blocks": 2, "attn_resolutions": [16],
                   "dropout": 0.0, "head_channels": 64},
}
MODEL = dict(AGM_MODELS["ddpmpp-64"])  # set from --agm-model in main()
AGM_MODEL_NAME = ["ddpmpp-64"]

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


PEER_MODEL = dict(num_res_blocks=2, num_channels=128, channel_mult=None, num_heads=4, num_head_channels=64,
                  attention_resolutions="16", dropout=0.1)  # torchcfm's UNetModelWrapper as in its CIFAR-10 example, at 64x64


class PeerStep:
    """torchcfm 1.0.7's training step as its examples write it: ConditionalFlowMatcher(sigma=0) location/target,
    UNetModelWrapper velocity, MSE, clip_grad_norm_, fused AdamW, bf16 autocast; data on the GPU. No EMA (ours
    keeps one, so the comparison is conservative for agm)."""

    def __init__(self, data, batch, compile_):
        from torchcfm.conditional_flow_matching import ConditionalFlowMatcher
        from torchcfm.models.unet.unet import UNetModelWrapper

        torch.manual_seed(0)
        self.net = UNetModelWrapper(dim=tuple(data.shape[1:]), **PEER_MODEL).cuda()
        self.model = torch.compile(self.net) if compile_ else self.net
        self.fm = ConditionalFlowMatcher(sigma=0.0)
        self.opt = torch.optim.AdamW(self.net.parameters(), lr=2e-4, fused=True)
        self.data, self.batch = data, batch

    def loss(self):
        x1 = self.data[torch.randint(self.data.shape[0], (self.batch,), device="cuda")]
        x0 = torch.randn_like(x1)
        t, xt, ut = self.fm.sample_location_and_conditional_flow(x0, x1)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            vt = self.model(t, xt)
        return ((vt.float() - ut) ** 2).mean()

    def train_step(self):
        self.opt.zero_grad(set_to_none=True)
        self.loss().backward()
        torch.nn.utils.clip_grad_norm_(self.net.parameters(), 1.0)
        self.opt.step()

    def flops(self):
        from torch.utils.flop_counter import FlopCounterMode

        fc = FlopCounterMode(display=False)
        with fc:
            with torch.autocast("cuda", dtype=torch.bfloat16):
                vt = self.net(torch.rand(self.batch, device="cuda"), self.data[: self.batch])
            vt.float().square().mean().backward()
        self.opt.zero_grad(set_to_none=True)
        return float(fc.get_total_flops())


def make_stepper(lib, method, batch, compiled, data, cl=False, count_flops=True):
    """(object with train_step(), FLOPs of one step or None) for lib 'agm' (method baseline|agm) or 'torchcfm'."""
    if lib == "torchcfm":
        st = PeerStep(data, batch, compiled)
        return st, (st.flops() if count_flops else None)
    if method.endswith("_cl"):  # the eager memory-format question: channels_last or not
        method, cl = method[:-3], True
    cfg = ig.make_cfg(method, 64, batch, MODEL, amp="bf16", cl=cl, fused=True, comp=compiled)
    tr, _ = ig.build_trainer(cfg, data)
    if not count_flops:
        return tr, None
    twin, _ = ig.build_trainer(ig.make_cfg(method, 64, batch, MODEL, amp="bf16", cl=cl, fused=True, comp=False), data)
    flops = ig.step_flops(twin)
    del twin
    return tr, flops


def warm_compile_cache(configs):
    """Compile each (lib, method, batch) once in parallel worker processes, so that the timed process's own compiles
    hit inductor's on-disk FX-graph/AOT caches (compiling is CPU-bound; this turns ~80 s per model into seconds)."""
    import os
    import subprocess

    t0 = time.perf_counter()
    env = dict(os.environ, PYTORCH_CUDA_ALLOC_CONF="expandable_segments:True")
    procs = []
    pending = list(configs)
    while pending or procs:
        while pending and len(procs) < 2:  # 3 workers of the 63M U-Net at batch 256 ran out of the H200's 140 GiB
            lib, method, batch = pending.pop(0)
            procs.append(subprocess.Popen([sys.executable, __file__, "--warm", lib, method, str(batch),
                                           "--agm-model", AGM_MODEL_NAME[0]], env=env))
        time.sleep(1)
        for pr in list(procs):
            if pr.poll() is not None:
                procs.remove(pr)
    return time.perf_counter() - t0


def peer_section(peak, batches, rounds, steps, warm=True, save=None):
    """Both libraries in one process, same data, bf16, fused AdamW: eager and compiled, at each batch; interleaved
    rounds; MFU from each step's own FLOPs; peak memory per step (allocated during the step beyond the resident state)."""
    data = torch.rand(4096, 3, 64, 64, device="cuda") * 2 - 1
    out = {"peer": "torchcfm 1.0.7", "peer_model": PEER_MODEL, "agm_model": MODEL, "batches": batches}
    configs = [(lib, m, b) for b in batches for lib, m in (("agm", "baseline"), ("agm", "agm"), ("torchcfm", "fm"))]
    out["cache_warm_s"] = warm_compile_cache(configs) if warm else None
    flop_cache: dict = {}  # FLOPs of a step do not depend on compiling: count once per (lib, method, batch)
    t_start = time.perf_counter()
    for compiled in (True, False):  # compiled first: the MFU and memory goals are read there
        for b in batches:
            key = f"{'compiled' if compiled else 'eager'}_b{b}"
            # A second batch size for the same forward code would make TorchDynamo recompile it with a symbolic
            # batch ("automatic dynamic": minutes per network, no cache hit; the compiled b256 section of the first
            # H200 run never finished). Reset, so each section compiles static shapes from the warm on-disk cache.
            torch._dynamo.reset()
            steppers = {}
            for lib, m, _ in configs[:3] + ([] if compiled else [("agm", "baseline_cl", b)]):
                t0 = time.perf_counter()
                cached = flop_cache.get((lib, m, b))
                st, flops = make_stepper(lib, m, b, compiled, data, count_flops=cached is None)
                flops = flop_cache.setdefault((lib, m, b), flops if cached is None else cached)
                for _ in range(3):
                    st.train_step()
                torch.cuda.synchronize()
                base = torch.cuda.memory_allocated()
                torch.cuda.reset_peak_memory_stats()
                st.train_step()
                torch.cuda.synchronize()
                mem = (torch.cuda.max_memory_allocated() - base) / 2**30
                params = sum(p.numel() for p in (st.net if lib == "torchcfm" else st.method.drift).parameters())
                steppers[f"{lib}_{m}"] = (st, flops, mem, params, time.perf_counter() - t0)
            times = {k: [] for k in steppers}
            for _ in range(rounds):
                for k, (st, *_rest) in steppers.items():
                    times[k].append(timed_steps(st, steps))
            res = {}
            for k, (st, flops, mem, params, build_s) in steppers.items():
                ms = statistics.median(times[k])
                res[k] = {"step_ms": times[k], "step_ms_median": ms, "images_per_s": b / (ms / 1e3),
                          "mfu": flops / (ms / 1e3) / peak, "gflop_per_image": flops / b / 1e9, "params_m": params / 1e6,
                          "step_peak_mem_gib": mem, "mem_gib_per_tflop_step": mem / (flops / 1e12), "build_s": build_s}
            res["agm_over_drift_step_time"] = res["agm_agm"]["step_ms_median"] / res["agm_baseline"]["step_ms_median"]
            res["drift_mfu_over_peer_mfu"] = res["agm_baseline"]["mfu"] / res["torchcfm_fm"]["mfu"]
            res["drift_mem_per_flop_over_peer"] = (res["agm_baseline"]["mem_gib_per_tflop_step"]
                                                   / res["torchcfm_fm"]["mem_gib_per_tflop_step"])
            out[key] = res
            if save is not None:  # a call cut short by its time limit still returns the sections it finished
                save(out)
            out.setdefault("section_end_s", {})[key] = time.perf_counter() - t_start
            print(f"[{key} at {out['section_end_s'][key]:.0f}s]", {k: (round(v["images_per_s"]), round(100 * v["mfu"], 1), round(v["step_peak_mem_gib"], 1))
                               for k, v in res.items() if isinstance(v, dict)},
                  "agm/drift", round(res["agm_over_drift_step_time"], 4), flush=True)
            if compiled and b == max(batches):
                out["nan_guard"] = nan_guard(steppers["agm_baseline"][0], rounds, steps, b)
                out["profile_compiled_drift"] = profile_step(steppers["agm_baseline"][0])
            del steppers, st
            torch.cuda.empty_cache()
    return out


def nan_guard(tr, rounds, steps, batch):
    """Compiled drift-only step with the NaN check every step (host sync) vs a device flag read every 50 steps."""
    res = {1: [], 50: []}
    for _ in range(rounds):
        for every in res:
            tr.nan_check_every = every
            res[every].append(timed_steps(tr, steps))
    tr.nan_check_every = 50
    return {"sync_every_step_ms": statistics.median(res[1]), "flag_every_50_ms": statistics.median(res[50]),
            "sync_over_flag": statistics.median(res[1]) / statistics.median(res[50])}


def profile_step(tr):
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
    res = {"kernel_ms_per_step": total / 1e3 / 5,
           "share_by_category": {k: v / total for k, v in sorted(cats.items(), key=lambda kv: -kv[1])},
           "top_kernels_ms_5_steps": [(k, us / 1e3) for us, k in sorted(top, reverse=True)[:15]]}
    print("[profile]", {k: round(v, 3) for k, v in res["share_by_category"].items()}, flush=True)
    return res


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
    p.add_argument("--skip-sample", action="store_true", help="training section only (sampling measured separately)")
    p.add_argument("--batches", type=int, nargs="+", default=[128, 256], help="training batches (both libraries)")
    p.add_argument("--warm-only", action="store_true",
                   help="only fill inductor's compile caches for the training section (for a later timed run)")
    p.add_argument("--skip-warm", action="store_true", help="the caches are warm already: compile in the timed process")
    p.add_argument("--agm-model", choices=sorted(AGM_MODELS), default="ddpmpp-64",
                   help="agm's U-Net: the 63.1 M DDPM++ (default) or the peer's widths and depth (like-for-like)")
    p.add_argument("--warm", nargs=3, metavar=("LIB", "METHOD", "BATCH"), help=argparse.SUPPRESS)
    args = p.parse_args()
    MODEL.clear()
    MODEL.update(AGM_MODELS[args.agm_model])
    AGM_MODEL_NAME[0] = args.agm_model
    # set before the workers too: the compile caches are keyed on these flags
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    torch.backends.cudnn.benchmark = True
    if args.warm:  # compile-cache worker (see warm_compile_cache)
        st, _ = make_stepper(args.warm[0], args.warm[1], int(args.warm[2]), True,
                             torch.rand(512, 3, 64, 64, device="cuda") * 2 - 1, count_flops=False)
        for _ in range(2):
            st.train_step()
        torch.cuda.synchronize()
        return
    if args.warm_only:
        configs = [(lib, m, b) for b in args.batches for lib, m in (("agm", "baseline"), ("agm", "agm"), ("torchcfm", "fm"))]
        print(f"[warm] {len(configs)} configs in {warm_compile_cache(configs):.0f}s", flush=True)
        return
    t0 = time.perf_counter()
    peak = ig.matmul_rate()
    print(f"[device] {torch.cuda.get_device_name()} bf16 {peak / 1e12:.0f} TFLOP/s", flush=True)
    rec = {"command": " ".join(["python3"] + sys.argv), "device": torch.cuda.get_device_name(), "cuda": torch.version.cuda,
           "measured_bf16_matmul_tflops": peak / 1e12, "agm_model_name": args.agm_model, "model": MODEL,
           "image_size": 64}
    if not args.skip_sample:
        rec["sampling"] = sample_section(peak, args.sample_batch, args.sample_steps, args.sample_reps)
    write_result(args.out, rec)
    import gc

    gc.collect()
    torch.cuda.empty_cache()  # the sampling section's cached blocks would starve the compile-cache workers (OOM seen)
    if not args.skip_train:
        def save(part):
            rec["training"] = part
            write_result(args.out, rec)

        rec["training"] = peer_section(peak, args.batches, args.rounds, args.steps, warm=not args.skip_warm, save=save)
    rec["wall_s"] = time.perf_counter() - t0
    write_result(args.out, rec)
    print("wrote", args.out)


if __name__ == "__main__":
    main()
