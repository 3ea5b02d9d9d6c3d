"""Bytes each operation reads and writes, and the FLOPs, in one bf16-autocast training step (forward + backward) of
agm's 64x64 DDPM++ U-Net and of torchcfm's UNetModelWrapper (the models of benchmarks/gpu_perf.py), counted on the CPU.

A device-independent look at element-wise traffic per FLOP (issue 21's eager-MFU question). CPU autocast casts
fewer operations to float32 than CUDA autocast, so the bytes are indicative, not the GPU's; FLOPs are exact.

    PYTHONPATH=src python benchmarks/traffic.py --out benchmarks/results/traffic_unets.json
"""
from __future__ import annotations

import argparse
import collections
import sys
from pathlib import Path

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves
from torch.utils.flop_counter import FlopCounterMode

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from agm.nets.unet import UNet  # noqa: E402
from agm.training.results import write_result  # noqa: E402

# metadata-only operations: no kernel, no traffic
VIEWS = {"view", "_unsafe_view", "t", "transpose", "permute", "expand", "unsqueeze", "squeeze", "slice", "select",
         "split", "unbind", "chunk", "detach", "alias", "as_strided", "reshape", "split_with_sizes"}
# agm's U-Nets of benchmarks/gpu_perf.py (AGM config defaults: heads 4, no skip rescale, conv resampling)
AGM_MODELS = {"ddpmpp-64": dict(channels=128, channel_mult=(1, 2, 2, 2), num_res_blocks=4, attn_resolutions=(16,), dropout=0.0),
              "peer-shape": dict(channels=128, channel_mult=(1, 2, 3, 4), num_res_blocks=2, attn_resolutions=(16,),
                                 dropout=0.0, head_channels=64)}
MATMUL = ("convolution", "convolution_backward", "mm", "addmm", "bmm")


class Traffic(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.bytes: collections.Counter = collections.Counter()
        self.calls: collections.Counter = collections.Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        name = func.__name__.split(".")[0]
        if name not in VIEWS:
            self.bytes[name] += sum(x.numel() * x.element_size() for x in tree_leaves((args, kwargs, out))
                                    if isinstance(x, torch.Tensor))
            self.calls[name] += 1
        return out


def count(model, batch: int, size: int, peer: bool) -> dict:
    x, t = torch.randn(batch, 3, size, size), torch.rand(batch)
    tr, fc = Traffic(), FlopCounterMode(display=False)
    with fc, tr, torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(t, x) if peer else model(x, t)
        out.float().square().mean().backward()
    total, flops = sum(tr.bytes.values()), fc.get_total_flops()
    matmul = sum(v for k, v in tr.bytes.items() if k in MATMUL)
    return {"params_m": sum(p.numel() for p in model.parameters()) / 1e6, "gflop_per_image": flops / batch / 1e9,
            "mb_per_image": total / batch / 1e6, "bytes_per_flop": total / flops,
            "non_matmul_byte_share": (total - matmul) / total, "operations": sum(tr.calls.values()),
            "top_mb_per_image": {k: v / batch / 1e6 for k, v in tr.bytes.most_common(12)},
            "calls": {k: tr.calls[k] for k, _ in tr.bytes.most_common(12)}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--out", default=str(ROOT / "benchmarks/results/traffic_unets.json"))
    args = ap.parse_args()
    torch.manual_seed(0)
    rec = {"command": " ".join(["python"] + sys.argv), "batch": args.batch, "image_size": 64, "amp": "bf16 (CPU autocast)"}
    for name, model in AGM_MODELS.items():  # the U-Nets of benchmarks/gpu_perf.py --agm-model, as its config builds them
        rec[f"agm_{name}"] = count(UNet(3, image_size=64, **model), args.batch, 64, False)
    from torchcfm.models.unet.unet import UNetModelWrapper

    peer = UNetModelWrapper(dim=(3, 64, 64), num_res_blocks=2, num_channels=128, channel_mult=None, num_heads=4,
                            num_head_channels=64, attention_resolutions="16", dropout=0.1)
    rec["torchcfm"] = count(peer, args.batch, 64, True)
    for k in [f"agm_{n}" for n in AGM_MODELS] + ["torchcfm"]:
        r = rec[k]
        print(f"{k}: {r['gflop_per_image']:.1f} GFLOP/img, {r['mb_per_image']:.0f} MB/img, "
              f"{r['bytes_per_flop']:.4f} B/FLOP, {r['operations']} ops")
    write_result(args.out, rec)


if __name__ == "__main__":
    main()
