"""A generic trainer for any method that follows the protocol below.

Method protocol (see ``agm.methods.AGM``):
    networks() -> dict[str, nn.Module]       trained networks; each gets its own AdamW parameter group
    ema_names: tuple[str, ...]                 networks to keep an EMA copy of (the ones sampled from)
    loss(batch, step, generator) -> (loss, logs)   scalar loss (a sum of independent terms is fine) and floats

The trainer owns the loop: batches drawn with its own ``torch.Generator`` (so resuming is exact),
AdamW, per-network gradient clipping, EMA, NaN/inf detection, ``metrics.jsonl`` (+ optional
tensorboard), tqdm progress, and atomic checkpoints (``agm.training.checkpoint``).
"""
from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any, Callable, Protocol

import torch
from torch import Tensor, nn

from agm.config import TrainConfig
from agm.errors import CheckpointError, DataError, NonFiniteLossError
from agm.training.checkpoint import (
    atomic_write_text,
    latest_checkpoint,
    load_checkpoint,
    optimizer_from_tensors,
    optimizer_to_tensors,
    save_checkpoint,
    unflatten,
)
from agm.training.ema import EMA

BatchFn = Callable[[int, torch.Generator], Tensor]


class TrainableMethod(Protocol):
    ema_names: tuple[str, ...]

    def networks(self) -> dict[str, nn.Module]: ...

    def loss(self, batch: Tensor, step: int, generator: torch.Generator) -> tuple[Tensor, dict[str, float]]: ...


class Trainer:
    """Train ``method`` on ``data`` (a tensor of samples, or a function (step, generator) -> batch).

    Args:
        method: follows the method protocol.
        data: tensor (N, ...) sampled uniformly with replacement, or a batch function.
        cfg: TrainConfig (steps, batch_size, lr, weight_decay, grad_clip, ema_decay, log_every, ...).
        out_dir: run directory (None: no files written).
        seed: seeds the trainer's generator and torch's global RNG.
        lrs: per-network learning rates overriding cfg.lr (e.g. {'potential': 1e-3}).
    """

    def __init__(
        self,
        method: TrainableMethod,
        data: Tensor | BatchFn,
        cfg: TrainConfig,
        *,
        out_dir: str | Path | None = None,
        seed: int = 0,
        lrs: dict[str, float] | None = None,
    ) -> None:
        self.method = method
        self.cfg = cfg
        self.device = torch.device(cfg.device)
        self.out_dir = Path(out_dir) if out_dir is not None else None
        if isinstance(data, Tensor):
            if data.shape[0] < 1:
                raise DataError("data has no samples")
            if not torch.isfinite(data).all():
                raise DataError("data contains NaN/inf values")
            data = data.to(self.device)
        self.data = data
        torch.manual_seed(seed)
        self.generator = torch.Generator(device=self.device).manual_seed(seed)
        nets = method.networks()
        lrs = lrs or {}
        for name in lrs:
            if name not in nets:
                raise ValueError(f"lrs names network {name!r}; the method's networks are {list(nets)}")
        self.nets = nets
        groups = [
            {"params": list(net.parameters()), "lr": lrs.get(name, cfg.lr), "name": name} for name, net in nets.items()
        ]
        self.optimizer = torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.ema = {name: EMA(nets[name], cfg.ema_decay) for name in method.ema_names}
        self.step = 0
        self._tb = None

    # ---- data -------------------------------------------------------------------------------------
    def _batch(self) -> Tensor:
        if callable(self.data) and not isinstance(self.data, Tensor):
            return self.data(self.step, self.generator)
        idx = torch.randint(self.data.shape[0], (self.cfg.batch_size,), generator=self.generator, device=self.device)
        return self.data[idx]

    # ---- one step ---------------------------------------------------------------------------------
    def train_step(self) -> dict[str, float]:
        """One optimisation step; raises NonFiniteLossError (and writes nothing) on a NaN/inf loss."""
        for net in self.nets.values():
            net.train()
        batch = self._batch()
        loss, logs = self.method.loss(batch, self.step, self.generator)
        if not torch.isfinite(loss):
            last = self._last_checkpoint_name()
            raise NonFiniteLossError(
                f"loss is {float(loss.detach())} at step {self.step}; training stopped. "
                f"Last good checkpoint: {last}. Lower train.lr, raise train.grad_clip protection, or check the data."
            )
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.cfg.grad_clip > 0:
            for name, net in self.nets.items():
                gn = torch.nn.utils.clip_grad_norm_(net.parameters(), self.cfg.grad_clip)
                logs[f"grad_norm_{name}"] = float(gn)
        self.optimizer.step()
        for ema in self.ema.values():
            ema.update()
        self.step += 1
        return logs

    def fit(self, steps: int | None = None, callback: Callable[[int, dict], None] | None = None) -> list[dict[str, Any]]:
        """Train until ``steps`` (default cfg.steps) total steps; returns the logged records."""
        total = self.cfg.steps if steps is None else steps
        records: list[dict[str, Any]] = []
        bar = None
        if self.cfg.progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=total, initial=self.step, desc="train", dynamic_ncols=True, leave=False)
        t0 = time.perf_counter()
        try:
            while self.step < total:
                logs = self.train_step()
                if self.step % self.cfg.log_every == 0 or self.step == total:
                    rec = {"step": self.step, **logs, "time": round(time.perf_counter() - t0, 4)}
                    records.append(rec)
                    self._log(rec)
                    if callback is not None:
                        callback(self.step, rec)
                    if bar is not None:
                        bar.set_postfix(loss=f"{logs['loss']:.4f}")
                if self.out_dir is not None and (self.step % self.cfg.ckpt_every == 0 or self.step == total):
                    self.save()
                if bar is not None:
                    bar.update(1)
        finally:
            if bar is not None:
                bar.close()
            if self._tb is not None:
                self._tb.flush()
        return records

    # ---- logging ----------------------------------------------------------------------------------
    def _log(self, rec: dict[str, Any]) -> None:
        if self.out_dir is None:
            return
        with open(self.out_dir / "metrics.jsonl", "a") as f:
            f.write(json.dumps(rec) + "\n")
        if self.cfg.tensorboard:
            if self._tb is None:
                from torch.utils.tensorboard import SummaryWriter

                self._tb = SummaryWriter(str(self.out_dir / "tb"))
            for k, v in rec.items():
                if k != "step" and isinstance(v, (int, float)) and math.isfinite(v):
                    self._tb.add_scalar(k, v, rec["step"])

    # ---- checkpoints ------------------------------------------------------------------------------
    def _last_checkpoint_name(self) -> str:
        if self.out_dir is None:
            return "none (no run directory)"
        pointer = self.out_dir / "checkpoints" / "latest"
        return str(self.out_dir / "checkpoints" / pointer.read_text().strip()) if pointer.exists() else "none yet"

    def save(self) -> Path:
        """Write a checkpoint of everything needed to resume exactly."""
        assert self.out_dir is not None
        opt_tensors, opt_meta = optimizer_to_tensors(self.optimizer)
        trainer_tensors = dict(opt_tensors)
        trainer_tensors["rng.generator"] = self.generator.get_state()
        trainer_tensors["rng.torch"] = torch.get_rng_state()
        if torch.cuda.is_available():
            for i, s in enumerate(torch.cuda.get_rng_state_all()):
                trainer_tensors[f"rng.cuda{i}"] = s
        return save_checkpoint(
            self.out_dir / "checkpoints",
            self.step,
            {name: net.state_dict() for name, net in self.nets.items()},
            {name: ema.state_dict() for name, ema in self.ema.items()},
            trainer_tensors,
            {"optimizer": opt_meta, "networks": list(self.nets), "ema": list(self.ema)},
            keep=self.cfg.keep_checkpoints,
        )

    def resume(self) -> int:
        """Load the latest checkpoint of out_dir; truncate metrics.jsonl to it. Returns the step."""
        assert self.out_dir is not None
        ckpt = latest_checkpoint(self.out_dir)
        state, files = load_checkpoint(ckpt)
        try:
            for name, net in self.nets.items():
                net.load_state_dict(unflatten(files["networks"], name))
            for name, ema in self.ema.items():
                ema.load_state_dict(unflatten(files["ema"], name))
            optimizer_from_tensors(self.optimizer, files["trainer"], state["optimizer"])
        except (RuntimeError, KeyError, ValueError) as e:
            raise CheckpointError(f"checkpoint {ckpt} does not match this model/config: {e}") from None
        t = files["trainer"]
        self.generator.set_state(t["rng.generator"])
        torch.set_rng_state(t["rng.torch"])
        if torch.cuda.is_available():
            states = [t[k] for k in sorted(k for k in t if k.startswith("rng.cuda"))]
            if states:
                torch.cuda.set_rng_state_all(states)
        self.step = int(state["step"])
        log = self.out_dir / "metrics.jsonl"
        if log.exists():
            keep = [ln for ln in log.read_text().splitlines() if ln.strip() and json.loads(ln)["step"] <= self.step]
            atomic_write_text(log, "".join(ln + "\n" for ln in keep))
        return self.step
