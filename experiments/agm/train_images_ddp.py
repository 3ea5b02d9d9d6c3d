"""Multi-GPU (or multi-process CPU) training of an agm run with DDP, launched by torchrun.

This is ``agm train`` under torchrun (``agm.methods.agm.run.train`` joins the process group when WORLD_SIZE > 1);
the two lines below are equivalent:

    torchrun --nproc_per_node 8 -m agm.cli train --config images_celeba64 --out runs/celeba_agm data.path=/data/celebahq64
    torchrun --nproc_per_node 8 experiments/agm/train_images_ddp.py --config images_celeba64 --out runs/celeba_agm data.path=/data/celebahq64
    torchrun --nproc_per_node 8 -m agm.cli train --resume runs/celeba_agm

``train.batch_size`` is the GLOBAL batch (each rank draws batch_size / world_size; ConfigError otherwise).
Rank r seeds its batch/noise generator with seed + r * 1_000_003 (agm.training.distributed.rank_seed); rank 0
alone writes config.yaml, run.json, metrics.jsonl and checkpoints (every rank's RNG state is stored, so a
resume with the same world size continues each rank exactly). Backend: NCCL on CUDA, gloo on the CPU.

    torchrun --nproc_per_node 2 experiments/agm/train_images_ddp.py --quick --out /tmp/ddp_smoke   # CPU smoke test
"""
from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "src"))

QUICK = ["data.image_size=8", "model.channels=8", "train.steps=2", "train.batch_size=8", "train.device=cpu",
         "train.threads=1", "train.ckpt_every=2", "train.log_every=1", "train.progress=false"]


def main() -> int:
    from agm.cli import main as agm_main

    argv = sys.argv[1:]
    if "--quick" in argv:  # smoke mode: 2 steps of a tiny U-Net on 8x8 digits, on the CPU
        argv = ["--config", "images_digits", *[a for a in argv if a != "--quick"], *QUICK]
    return agm_main(["train", *argv])


if __name__ == "__main__":
    sys.exit(main())
