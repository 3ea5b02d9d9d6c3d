"""Multi-GPU (or multi-process CPU) training of an agm run with DDP, launched by torchrun.

    torchrun --nproc_per_node 8 experiments/train_images_ddp.py --config images_celeba64 \
        --out runs/celeba_agm data.path=/data/celebahq64
    torchrun --nproc_per_node 8 experiments/train_images_ddp.py --resume runs/celeba_agm

``train.batch_size`` is the GLOBAL batch (each rank draws batch_size / world_size; ConfigError otherwise).
Rank r seeds its batch/noise generator with seed + r * 1_000_003 (agm.training.distributed.rank_seed); rank 0
alone writes config.yaml, run.json, metrics.jsonl and checkpoints (every rank's RNG state is stored, so a
resume with the same world size continues each rank exactly). The run directory is the same as
``agm train``'s, so ``agm sample`` / ``agm evaluate`` read it. Backend: NCCL on CUDA, gloo on the CPU.
(``agm train`` itself is single-process: run.train is not DDP-aware; this script is the torchrun entry.)
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))


def main() -> None:
    p = argparse.ArgumentParser(description="DDP training of an agm run under torchrun")
    p.add_argument("--config", default="images_celeba64", help="built-in config name or YAML path")
    p.add_argument("--out", help="new run directory (rank 0 creates it)")
    p.add_argument("--resume", help="continue the run in this directory")
    p.add_argument("--quick", action="store_true", help="smoke mode: 2 steps on CPU digits 8x8 with a tiny U-Net")
    p.add_argument("overrides", nargs="*", help="config overrides key=value")
    args = p.parse_args()
    from agm.config import load_config, save_config
    from agm.errors import ConfigError
    from agm.run import _setup, load_data, load_run_config
    from agm.training.checkpoint import RUN_FORMAT, RUN_VERSION, atomic_write_text
    from agm.training.distributed import barrier, cleanup, init_distributed

    if args.resume:
        out = Path(args.resume)
        cfg = load_run_config(out)
    else:
        if not args.out:
            raise ConfigError("--out is required (a new run directory), or --resume DIR")
        out = Path(args.out)
        ov = list(args.overrides)
        if args.quick:
            args.config = "images_digits"
            ov = ["data.image_size=8", "model.channels=8", "train.steps=2", "train.batch_size=8", "train.device=cpu",
                  "train.ckpt_every=2", "train.log_every=1", "train.progress=false", *ov]
        cfg = load_config(args.config, ov)
    if cfg.train.device == "cpu":
        torch.set_num_threads(1)
    ctx = init_distributed(cfg.train.device)
    try:
        train_x, test_x = load_data(cfg)
        if not args.resume:
            if ctx.is_main:
                if out.exists() and any(out.iterdir()):
                    raise ConfigError(f"--out {out} already exists and is not empty; use --resume {out} or a new directory")
                out.mkdir(parents=True, exist_ok=True)
                save_config(cfg, out / "config.yaml")
            barrier(ctx)
        trainer = _setup(cfg, out, train_x)
        if not args.resume and ctx.is_main:
            nets = trainer.nets
            ratio = (sum(p.numel() for p in nets["potential"].parameters()) / sum(p.numel() for p in nets["drift"].parameters())
                     if "potential" in nets else None)
            info = {"format": RUN_FORMAT, "version": RUN_VERSION, "data_shape": list(train_x.shape[1:]),
                    "n_train": int(train_x.shape[0]), "potential_param_ratio": ratio,
                    "drift_params": sum(p.numel() for p in nets["drift"].parameters()), "world_size": ctx.world_size,
                    "machine": {"platform": platform.platform(), "torch": torch.__version__}}
            atomic_write_text(out / "run.json", json.dumps(info, indent=1))
            from safetensors.torch import save_file

            save_file({"test": test_x.contiguous()}, str(out / "test_data.safetensors"))
        barrier(ctx)
        if args.resume:
            trainer.resume()
        trainer.fit()
        if ctx.is_main:
            print(f"rank 0 of {ctx.world_size}: trained to step {trainer.step}; run in {out}")
    finally:
        cleanup()


if __name__ == "__main__":
    main()
