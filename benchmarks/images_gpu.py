"""GPU benchmark of image training and sampling: drift-only vs AGM at 64x64 (issue 3, item 6).

Measures, in one process on one GPU:
  * the bf16 matrix rate (8192^3 random bf16 matmul, median of 10 after warm-up) and copy bandwidth;
  * training images/s of the Trainer's step (drift-only vs AGM, same U-Net, same global batch) for
    several speed settings: fp32 eager; bf16 + channels_last + fused AdamW (eager); the same compiled;
    timed in interleaved rounds (drift, AGM, drift, AGM, ...) with CUDA events, median over rounds;
  * model FLOP utilisation MFU = (training FLOPs per step / step time) / measured bf16 matmul rate, with
    FLOPs counted by torch.utils.flop_counter on one forward+backward of the networks;
  * AGM / drift-only step-time ratio (goal <= 1.02) and peak memory;
  * sampling images/s at 100 Euler-Maruyama steps, eager vs CUDA graph (agm.samplers.cuda_graph).
Correctness checks run first (bf16 vs fp32 drift output, CUDA-graph vs eager sampler).

    PYTHONPATH=src python3 benchmarks/images_gpu.py --out benchmarks/results/images_gpu.json
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from agm.methods.agm.config import load_config  # noqa: E402
from agm.methods.agm import build_method  # noqa: E402
from agm.nets import count_params  # noqa: E402
from agm.samplers import EulerMaruyama  # noqa: E402
from agm.samplers.cuda_graph import GraphEulerMaruyama  # noqa: E402
from agm.training import Trainer  # noqa: E402
from agm.training.results import write_result  # noqa: E402


VARIANTS = {
    "fp32_eager": dict(amp="none", cl=False, fused=False, comp=False),
    "bf16_cl_fused_eager": dict(amp="bf16", cl=True, fused=True, comp=False),
    "bf16_fused_compiled": dict(amp="bf16", cl=False, fused=True, comp=True),
    "bf16_cl_fused_compiled": dict(amp="bf16", cl=True, fused=True, comp=True),
}


def sync_time(fn, reps: int) -> float:
    """Median milliseconds of fn() over reps, timed with CUDA events."""
    times = []
    for _ in range(reps):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        torch.cuda.synchronize()
        times.append(a.elapsed_time(b))
    return statistics.median(times)


def matmul_rate(n: int = 8192) -> float:
    a = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    ms = sync_time(lambda: a @ b, 10)
    return 2 * n**3 / (ms / 1e3)


def copy_bandwidth(nbytes: int = 2 << 30) -> float:
    x = torch.empty(nbytes // 4, device="cuda", dtype=torch.float32).uniform_()
    y = torch.empty_like(x)
    for _ in range(3):
        y.copy_(x)
    ms = sync_time(lambda: y.copy_(x), 10)
    return 2 * nbytes / (ms / 1e3)


def make_cfg(method: str, size: int, batch: int, model: dict, *, amp: str, cl: bool, fused: bool, comp: bool):
    ov = [f"method={method}", f"train.batch_size={batch}", "train.device=cuda", f"train.amp={amp}",
          f"train.channels_last={str(cl).lower()}", f"train.fused_optimizer={str(fused).lower()}",
          f"train.compile={str(comp).lower()}", "train.progress=false", "potential.warmup_steps=0",
          f"data.image_size={size}", "model.kind=unet"]
    for k, v in model.items():
        ov.append(f"model.{k}={json.dumps(v)}")
    return load_config("default", ov)


def build_trainer(cfg, data):
    torch.manual_seed(0)
    method, ratio = build_method(cfg, tuple(data.shape[1:]))
    method.to("cuda")
    return Trainer(method, data, cfg.train, seed=0), ratio


def step_flops(trainer) -> float:
    """FLOPs of one training step's forward+backward (matmuls, convs, attention) via FlopCounterMode."""
    from torch.utils.flop_counter import FlopCounterMode

    batch = trainer._batch()
    fc = FlopCounterMode(display=False)
    with fc:
        with trainer._autocast():
            loss, _ = trainer.method.loss(batch, 10**9, trainer.generator)
        loss.backward()
    trainer.optimizer.zero_grad(set_to_none=True)
    return float(fc.get_total_flops())


def bench_training(variants, size, batch, model, rounds, steps, data, peak):
    out = []
    for name, kw in variants:
        res = {}
        trainers = {}
        for m in ("baseline", "agm"):
            cfg = make_cfg(m, size, batch, model, **kw)
            tr, ratio = build_trainer(cfg, data)
            # FLOPs on an uncompiled twin (FlopCounterMode does not see inside compiled graphs)
            if not kw["comp"]:
                flops = step_flops(tr)
            else:
                twin_cfg = make_cfg(m, size, batch, model, **dict(kw, comp=False))
                twin, _ = build_trainer(twin_cfg, data)
                flops = step_flops(twin)
                del twin
            torch.cuda.reset_peak_memory_stats()
            t0 = time.perf_counter()
            for _ in range(3):  # warm-up (and compilation)
                tr.train_step()
            torch.cuda.synchronize()
            warm = time.perf_counter() - t0
            trainers[m] = tr
            res[m] = {"flops_per_step": flops, "warmup_s": round(warm, 2), "potential_param_ratio": ratio,
                      "drift_params": count_params(tr.nets["drift"]), "step_ms": []}
        for _ in range(rounds):
            for m in ("baseline", "agm"):
                tr = trainers[m]
                torch.cuda.reset_peak_memory_stats()
                ms = sync_time(lambda: [tr.train_step() for _ in range(steps)], 1) / steps
                res[m]["step_ms"].append(ms)
                res[m]["peak_mem_gib"] = torch.cuda.max_memory_allocated() / 2**30
        for m in ("baseline", "agm"):
            r = res[m]
            r["step_ms_median"] = statistics.median(r["step_ms"])
            r["images_per_s"] = batch / (r["step_ms_median"] / 1e3)
            r["achieved_tflops"] = r["flops_per_step"] / (r["step_ms_median"] / 1e3) / 1e12
            r["mfu_vs_measured_bf16"] = r["achieved_tflops"] * 1e12 / peak
        ratios = [a / b for a, b in zip(res["agm"]["step_ms"], res["baseline"]["step_ms"])]
        entry = {"variant": name, "settings": kw, "batch": batch, **res,
                 "agm_over_drift_step_time": res["agm"]["step_ms_median"] / res["baseline"]["step_ms_median"],
                 "agm_over_drift_per_round": ratios}
        print(f"[train] {name}: drift {res['baseline']['step_ms_median']:.2f} ms ({res['baseline']['images_per_s']:.0f} img/s, "
              f"MFU {100*res['baseline']['mfu_vs_measured_bf16']:.1f}%), AGM {res['agm']['step_ms_median']:.2f} ms, "
              f"ratio {entry['agm_over_drift_step_time']:.4f}", flush=True)
        out.append(entry)
        del trainers
        torch.cuda.empty_cache()
    return out


def bench_sampling(drift, size, channels, n, steps=100, reps=3):
    drift = drift.eval()
    res = {}
    x0 = torch.randn(n, channels, size, size, device="cuda")
    em = EulerMaruyama(steps)

    def eager():
        with torch.autocast("cuda", dtype=torch.bfloat16):
            em.sample(drift, x0, 0.5, generator=torch.Generator("cuda").manual_seed(0))

    gs = GraphEulerMaruyama(steps, cuda_graph=True, amp="bf16")
    gs.sample(drift, x0, 0.5, generator=torch.Generator("cuda").manual_seed(0))  # capture
    ms_e = sync_time(eager, reps)
    ms_g = sync_time(lambda: gs.sample(drift, x0, 0.5, generator=torch.Generator("cuda").manual_seed(0)), reps)
    res = {"batch": n, "steps": steps, "eager_bf16_ms": ms_e, "graph_bf16_ms": ms_g,
           "eager_images_per_s": n / (ms_e / 1e3), "graph_images_per_s": n / (ms_g / 1e3)}
    print(f"[sample] n={n}: eager {res['eager_images_per_s']:.0f} img/s, graph {res['graph_images_per_s']:.0f} img/s", flush=True)
    return res


def checks(drift, size, channels):
    """bf16 vs fp32 drift output; CUDA-graph vs eager EM sampler (fp32)."""
    # the U-Net's output convs are zero-initialised (its output is exactly 0 at init, which would make the
    # comparisons below trivially exact): perturb every parameter first so the checks test real arithmetic
    with torch.no_grad():
        g = torch.Generator("cuda").manual_seed(0)
        for p_ in drift.parameters():
            p_.add_(0.02 * torch.randn(p_.shape, generator=g, device=p_.device))
    x = torch.randn(8, channels, size, size, device="cuda")
    t = torch.rand(8, device="cuda")
    with torch.no_grad():
        ref = drift.double()(x.double(), t.double()).float()
        drift.float()
        f32 = drift(x, t)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            b16 = drift(x, t).float()
    rel = lambda a, b: float((a - b).norm() / b.norm().clamp_min(1e-30))  # noqa: E731
    x0 = torch.randn(4, channels, size, size, device="cuda")
    a = EulerMaruyama(20).sample(drift, x0, 0.5, generator=torch.Generator("cuda").manual_seed(1))
    b = GraphEulerMaruyama(20, cuda_graph=True).sample(drift, x0, 0.5, generator=torch.Generator("cuda").manual_seed(1))
    out = {"fp32_vs_fp64_rel": rel(f32, ref), "bf16_vs_fp64_rel": rel(b16, ref), "graph_vs_eager_em_rel": rel(b, a),
           "all_finite": bool(torch.isfinite(b).all())}
    print("[check]", out, flush=True)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default=str(ROOT / "benchmarks/results/images_gpu.json"), help="output JSON path")
    p.add_argument("--size", type=int, default=64, help="image size (default 64)")
    p.add_argument("--batch", type=int, default=128, help="global training batch (default 128)")
    p.add_argument("--rounds", type=int, default=5, help="interleaved timing rounds (default 5)")
    p.add_argument("--steps", type=int, default=10, help="training steps per round (default 10)")
    p.add_argument("--preset", default="ddpmpp-64", choices=["ddpmpp-64", "small"], help="drift size")
    p.add_argument("--no-compile", action="store_true", help="skip the torch.compile variant")
    p.add_argument("--sample-batch", type=int, default=256, help="sampling batch (default 256)")
    p.add_argument("--variants", nargs="+", default=None, choices=list(VARIANTS), help="training variants (default: all)")
    p.add_argument("--sample-reps", type=int, default=3, help="timed sampling repetitions (0 skips sampling)")
    p.add_argument("--quick", action="store_true", help="smoke mode (< 1 min): 32x32, small drift, 2 rounds of 3 steps, no compile")
    args = p.parse_args()
    if args.quick:
        args.size, args.preset, args.rounds, args.steps, args.no_compile, args.sample_batch = 32, "small", 2, 3, True, 64
    if not torch.cuda.is_available():
        raise SystemExit("benchmarks/images_gpu.py needs a CUDA GPU (torch.cuda.is_available() is False)")
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    torch.backends.cudnn.benchmark = True
    model = ({"channels": 128, "channel_mult": [1, 2, 2, 2], "num_res_blocks": 4, "attn_resolutions": [16], "dropout": 0.0}
             if args.preset == "ddpmpp-64" else
             {"channels": 64, "channel_mult": [1, 2, 2], "num_res_blocks": 2, "attn_resolutions": [8], "dropout": 0.0})
    t_start = time.perf_counter()
    peak = matmul_rate()
    bw = copy_bandwidth()
    print(f"[device] {torch.cuda.get_device_name()}: bf16 matmul {peak/1e12:.0f} TFLOP/s, copy {bw/1e12:.2f} TB/s", flush=True)
    data = torch.rand(4096, 3, args.size, args.size, device="cuda") * 2 - 1
    names = args.variants or [v for v in VARIANTS if not (args.no_compile and VARIANTS[v]["comp"])]
    variants = [(v, VARIANTS[v]) for v in names]
    cfg = make_cfg("baseline", args.size, args.batch, model, amp="none", cl=False, fused=False, comp=False)
    torch.manual_seed(0)
    m, _ = build_method(cfg, (3, args.size, args.size))
    drift = m.drift.cuda()
    chk = checks(drift, args.size, 3)
    sampling = bench_sampling(drift.float(), args.size, 3, args.sample_batch, reps=args.sample_reps) if args.sample_reps > 0 else None
    del m, drift
    result: dict = {}

    def write(training, partial):
        result.update({
        "command": " ".join([os.path.basename(sys.executable)] + sys.argv),
        "device": torch.cuda.get_device_name(),
        "machine": {"platform": platform.platform(), "processor": platform.processor(), "cpu_count": os.cpu_count(),
                    "torch": torch.__version__, "cuda": torch.version.cuda, "threads": torch.get_num_threads(),
                    "device": torch.cuda.get_device_name()},
        "measured_bf16_matmul_tflops": peak / 1e12, "measured_copy_tb_per_s": bw / 1e12,
        "image_size": args.size, "channels": 3, "model": model, "preset": args.preset,
        "checks": chk, "training": training, "sampling": sampling,
        "goals": {"agm_over_drift_step_time_max": 1.02, "mfu_min": 0.35},
        "wall_s": round(time.perf_counter() - t_start, 1), "partial": partial,
        })
        write_result(args.out, result)

    training: list = []
    for v in variants:  # the JSON is rewritten after each variant, so a run cut short keeps what it measured
        training += bench_training([v], args.size, args.batch, model, args.rounds, args.steps, data, peak)
        write(training, v is not variants[-1])
    print("SUMMARY")
    for e in training:
        b, a = e["baseline"], e["agm"]
        print(f"{e['variant']:26s} drift {b['images_per_s']:7.0f} img/s MFU {100*b['mfu_vs_measured_bf16']:5.1f}% "
              f"| AGM {a['images_per_s']:7.0f} img/s MFU {100*a['mfu_vs_measured_bf16']:5.1f}% | ratio {e['agm_over_drift_step_time']:.4f} "
              f"| peak {b['peak_mem_gib']:.1f}/{a['peak_mem_gib']:.1f} GiB")
    print(f"sampling {sampling}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
