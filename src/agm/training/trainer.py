"""A generic trainer for any method that follows the protocol below.

Method protocol (see ``agm.methods.AGM``):
    networks() -> dict[str, nn.Module]       trained networks; each gets its own AdamW parameter group
    ema_names: tuple[str, ...]                 networks to keep an EMA copy of (the ones sampled from)
    loss(batch, step, generator) -> (loss, logs)   scalar loss (a sum of independent terms is fine) and floats

The trainer owns the loop: batches drawn with its own ``torch.Generator`` (so resuming is exact),
AdamW, per-network gradient clipping, EMA, NaN/inf detection, ``metrics.jsonl`` (+ optional
tensorboard), tqdm progress, and atomic checkpoints (``agm.training.checkpoint``).

Speed options of TrainConfig (all off by default; CPU behaviour and exact CPU resume are unchanged):
    amp='bf16'        the method's loss runs under torch.autocast(bfloat16) (parameters, optimiser and
                      EMA stay float32; losses are reduced in float32)
    compile=True      nn.Module.compile() on every trained network (state_dict keys unchanged); with
                      compile_scope='loss' instead torch.compile of the method's loss function as a whole
                      (:func:`compile_loss`: the networks' forwards, the weighting and the reduction in one graph,
                      one AOTAutograd backward; the modules stay as they are, so state_dict keys, checkpoints
                      and exact resume are those of an eager run)
    channels_last     networks and 4-D batches in channels_last memory format
    fused_optimizer   AdamW(fused=True): one kernel for the whole update
    device='cuda'     the data tensor is moved to the device once; batches are indexed there
Without fused_optimizer, AdamW runs its foreach implementation on the CPU as well (PyTorch's own default there is
the per-tensor for-loop, about 9 operations per parameter tensor): bit-identical updates in about a dozen operations
per parameter group (docs/performance.md).
EMA uses ``torch._foreach_lerp_`` (agm.training.ema). Multi-GPU: launched by ``torchrun``, the trainer
finds the process group (``agm.training.distributed``), wraps each network in DDP, draws B/W samples
per rank from a per-rank generator, logs and checkpoints on rank 0 only, and stores every rank's RNG
state so that resume is exact per rank.
"""
from __future__ import annotations

import json
import math
import contextlib
import time
from pathlib import Path
from typing import Any, Callable, Protocol

import torch
from torch import Tensor, nn

from agm.training.config import TrainConfig
from agm.errors import CheckpointError, ConfigError, DataError, NonFiniteLossError
from agm.training.checkpoint import (
    load_checkpoint,
    optimizer_from_tensors,
    optimizer_to_tensors,
    save_checkpoint,
    unflatten,
)
from agm.training.distributed import DistContext, current_context, gather_objects, barrier, local_batch_size, rank_seed, wrap_ddp
from agm.training.devices import resolve_device
from agm.training.ema import EMA

BatchFn = Callable[[int, torch.Generator], Tensor]


def crash_test_hook() -> None:
    """For crash tests only: with AGM_KILL_AFTER_CHECKPOINT=N in the environment, the process SIGKILLs itself
    right after writing its N-th checkpoint (a real kill -9 at a reproducible point; see tests/conftest.py)."""
    import os

    n = os.environ.get("AGM_KILL_AFTER_CHECKPOINT")
    if not n:
        return
    crash_test_hook.count = getattr(crash_test_hook, "count", 0) + 1
    if crash_test_hook.count >= int(n):
        import signal

        os.kill(os.getpid(), signal.SIGKILL)


class TrainableMethod(Protocol):
    ema_names: tuple[str, ...]

    def networks(self) -> dict[str, nn.Module]: ...

    def loss(self, batch: Tensor, step: int, generator: torch.Generator) -> tuple[Tensor, dict[str, float]]: ...


def _frozen_parts(module: nn.Module) -> list[nn.Module]:
    """The largest submodules (the module itself included) that have parameters and train none of them."""
    params = list(module.parameters())
    if params and not any(p.requires_grad for p in params):
        return [module]
    return [m for child in module.children() for m in _frozen_parts(child)]


def optimizer_implementation(fused: bool, device: torch.device) -> dict[str, bool]:
    """AdamW's implementation keywords: ``fused=True`` when train.fused_optimizer is set; otherwise ``foreach=True`` on
    the CPU, whose updates are bit-identical to PyTorch's CPU default (the per-tensor for-loop: about 9 operations per
    parameter tensor, each a dispatch; tests/training/test_trainer_step_ops.py checks the identity), and PyTorch's
    own choice elsewhere (foreach on CUDA already)."""
    if fused:
        return {"fused": True}
    return {"foreach": True} if device.type == "cpu" else {}


def compile_loss(method: TrainableMethod, mode: str | None) -> Callable[[Tensor, int, torch.Generator], tuple[Tensor, dict]]:
    """``method.loss`` through torch.compile as a whole (train.compile_scope='loss'): TorchDynamo traces the loss
    function with every network's forward, the weights and the loss reduction into one FX graph where it can, inductor
    fuses their element-wise work into a few kernels, and AOTAutograd derives one backward for it. The function is
    compiled, not the modules: no ``_orig_mod.`` prefix in any state_dict, so checkpoints and exact resume are as in
    eager runs.

    What TorchDynamo cannot trace runs eagerly between graphs (a graph break, never an error): every draw from the
    trainer's ``torch.Generator`` (so the random streams are those of an eager run) and host reads such as a loss's
    ``float(tensor)``; a method that draws first and computes after (AGM: ``agm.methods.agm.model``) keeps the rest in
    one graph. The ``step`` argument is a Python int: a loss that branches on it (e.g. a weighting warm-up) is
    recompiled once when the branch changes, not every step. An error of TorchDynamo or of the compiler backend is
    raised as a ConfigError naming train.compile_scope (``modules`` compiles each network instead); so is a failed
    backward of the compiled loss (Trainer.train_step): a loss that differentiates inside itself (torch.autograd.grad
    with create_graph=True as Bellman's fields, torch.func.jvp as the flow maps) needs a double backward, which
    AOTAutograd does not support; ``modules`` works for those.
    """
    compiled = torch.compile(method.loss, mode=mode)

    def loss(batch: Tensor, step: int, generator: torch.Generator) -> tuple[Tensor, dict]:
        try:
            return compiled(batch, step, generator)
        except torch._dynamo.exc.TorchDynamoException as e:
            raise ConfigError(
                f"train.compile_scope='loss': torch.compile could not compile {type(method).__name__}.loss "
                f"({type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else e!r}); use "
                f"train.compile_scope=modules (each network compiled) or train.compile=false") from e

    return loss


class Trainer:
    """Train ``method`` on ``data`` (a tensor of samples, or a function (step, generator) -> batch).

    Args:
        method: follows the method protocol.
        data: tensor (N, ...) sampled uniformly with replacement, or a batch function.
        cfg: TrainConfig (steps, batch_size, lr, weight_decay, grad_clip, ema_decay, log_every, ...).
        out_dir: run directory (None: no files written).
        seed: seeds the trainer's generator and torch's global RNG.
        lrs: per-network learning rates overriding cfg.lr (e.g. {'potential': 1e-3}).
        dist_ctx: rank / world size (default: the initialised process group, or a single process).
            ``cfg.batch_size`` is the GLOBAL batch; each rank draws batch_size / world_size samples
            (ConfigError if not divisible). A batch function must return the rank's local batch.
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
        dist_ctx: DistContext | None = None,
    ) -> None:
        self.method = method
        self.cfg = cfg
        device = str(resolve_device(cfg.device))
        self.dist = dist_ctx if dist_ctx is not None else current_context(device)
        self.device = torch.device(self.dist.device if self.dist.enabled else device)
        self.batch_size = local_batch_size(cfg.batch_size, self.dist.world_size)
        self.out_dir = Path(out_dir) if out_dir is not None else None
        if self.out_dir is not None and not self.dist.is_main:
            self.out_dir_writes = False
        else:
            self.out_dir_writes = self.out_dir is not None
        if isinstance(data, Tensor):
            if data.shape[0] < 1:
                raise DataError("data has no samples")
            if not torch.isfinite(data).all():
                raise DataError("data contains NaN/inf values")
            data = data.to(self.device)
        self.data = data
        self.seed = rank_seed(seed, self.dist.rank)
        torch.manual_seed(self.seed)
        self.generator = torch.Generator(device=self.device).manual_seed(self.seed)
        nets = method.networks()
        lrs = lrs or {}
        for name in lrs:
            if name not in nets:
                raise ValueError(f"lrs names network {name!r}; the method's networks are {list(nets)}")
        self.nets = nets
        # frozen parts (every parameter requires_grad=False when the Trainer is built: a pretrained base model, a frozen
        # encoder) stay in eval mode while the rest trains, so their dropout / norm statistics do not change
        self._frozen_modules = [m for net in nets.values() for m in _frozen_parts(net)]
        self._frozen_ids = frozenset(id(x) for m in self._frozen_modules for x in m.modules())  # for _train_mode
        self.channels_last = bool(cfg.channels_last)
        if self.channels_last:
            for net in nets.values():
                net.to(memory_format=torch.channels_last)
        groups = [
            {"params": list(net.parameters()), "lr": lrs.get(name, cfg.lr), "name": name} for name, net in nets.items()
        ]
        self._opt_kw = optimizer_implementation(cfg.fused_optimizer, self.device)
        self.optimizer = torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay, **self._opt_kw)
        cfg.validate("train")  # the one check of the training-loop options (also for a TrainConfig built by hand)
        for group in self.optimizer.param_groups:
            group["base_lr"] = group["lr"]
        self._scheduled = cfg.schedule != "constant" or cfg.warmup_steps > 0
        self.ema = {name: EMA(nets[name], cfg.ema_decay) for name in method.ema_names}
        self._compiled_loss = None  # compile_scope='loss': compile_loss(method); else method.loss is called as it is
        if cfg.compile:
            mode = None if cfg.compile_mode == "default" else cfg.compile_mode
            if cfg.compile_scope == "loss":
                if self.dist.enabled:
                    raise ConfigError("train.compile_scope='loss' is not supported with several processes (DDP); "
                                      "use train.compile_scope=modules")
                self._compiled_loss = compile_loss(method, mode)
            else:
                for net in nets.values():
                    net.compile(mode=mode)
        if self.dist.enabled:
            wrap_ddp(method, nets, self.dist)
        self.amp_dtype = torch.bfloat16 if cfg.amp == "bf16" else None
        self.step = 0
        self._tb = None
        # NaN guard: 1 = check every step (CPU default: free there); N = a device-side flag read every N steps
        # and before every log line and checkpoint (CUDA default 50: no host sync per step)
        every = cfg.nan_check_every if cfg.nan_check_every > 0 else (1 if self.device.type == "cpu" else 50)
        self.nan_check_every = int(every)
        self._bad_step: Tensor | None = None
        self._fit_total: int | None = None  # set by fit(): which steps are logged (method.logs_wanted)
        self._logs_optional = hasattr(method, "logs_wanted")  # optional protocol: skip statistics nobody logs

    def _autocast(self) -> contextlib.AbstractContextManager:
        """bf16 autocast on the trainer's device when cfg.amp='bf16', else a no-op context."""
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype)

    # ---- data -------------------------------------------------------------------------------------
    def _batch(self) -> Tensor:
        if callable(self.data) and not isinstance(self.data, Tensor):
            batch = self.data(self.step, self.generator)
        else:
            idx = torch.randint(self.data.shape[0], (self.batch_size,), generator=self.generator, device=self.device)
            batch = self.data[idx]
        if self.channels_last and batch.dim() == 4:
            batch = batch.contiguous(memory_format=torch.channels_last)
        return batch

    # ---- one step ---------------------------------------------------------------------------------
    def train_step(self) -> dict[str, float]:
        """One optimisation step; raises NonFiniteLossError (and writes nothing) on a NaN/inf loss.

        Under DDP the loss is averaged over ranks before the finiteness check (so every rank stops
        together) and the logged 'loss' is that global mean. Gradient norms are returned as 0-d
        tensors (converted to floats only when logged, to avoid a device sync every step).
        """
        self._train_mode()
        batch = self._batch()
        if self._logs_optional:  # a method may skip the statistics of steps nobody logs
            self.method.logs_wanted = (self._fit_total is None or (self.step + 1) % self.cfg.log_every == 0
                                       or self.step + 1 >= self._fit_total)
        with self._autocast():
            loss, logs = (self._compiled_loss or self.method.loss)(batch, self.step, self.generator)
        check = loss.detach()
        if self.dist.enabled:
            import torch.distributed as tdist

            check = check.float().clone()
            tdist.all_reduce(check)
            check = check / self.dist.world_size
            logs["loss"] = check
        bad = ~torch.isfinite(check)
        if self.nan_check_every == 1:
            if bool(bad):  # host sync; on the CPU it costs nothing
                self._raise_nonfinite(self.step, float(check))
        else:  # device-side flag, read every nan_check_every steps and before every log and checkpoint (no per-step sync)
            step_t = torch.full((), self.step, device=check.device, dtype=torch.long)
            if self._bad_step is None:
                self._bad_step = torch.full((), -1, device=check.device, dtype=torch.long)
            self._bad_step = torch.where(bad & (self._bad_step < 0), step_t, self._bad_step)
            if (self.step + 1) % self.nan_check_every == 0:
                self.check_finite()
        self.optimizer.zero_grad(set_to_none=True)
        try:
            loss.backward()
        except RuntimeError as e:
            if self._compiled_loss is None or isinstance(e, torch.OutOfMemoryError):
                raise
            raise ConfigError(
                f"train.compile_scope='loss': the backward of the compiled {type(self.method).__name__}.loss failed "
                f"({str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__}); torch.compile of a whole "
                f"loss does not support a loss that differentiates inside itself (torch.autograd.grad with "
                f"create_graph=True, torch.func.jvp: a double backward). Use train.compile_scope=modules or "
                f"train.compile=false") from e
        if self.cfg.grad_clip > 0:
            logs.update(self._clip_gradients())
        if self._scheduled:
            f = self.lr_factor(self.step)
            for group in self.optimizer.param_groups:
                group["lr"] = group["base_lr"] * f
        self.optimizer.step()
        decay = min(self.cfg.ema_decay, (1 + self.step) / (10 + self.step)) if self.cfg.ema_warmup else None
        for ema in self.ema.values():
            ema.update(decay)
        self.step += 1
        return logs

    def _train_mode(self) -> None:
        """Every trained network in train mode and its frozen parts in eval mode (net.train(), then m.eval() on each
        frozen part). Those calls walk the modules and set each flag through nn.Module.__setattr__, a per-step cost on
        the CPU, so they run only when a read-only walk finds a flag that is not as wanted (e.g. after an evaluation
        callback, or every step for a module whose own train() keeps a part in eval mode: the same modes as before)."""
        inside = self._frozen_ids
        stack = list(self.nets.values())
        while stack:  # every module once per path, as Module.train() visits them
            m = stack.pop()
            if m is None:
                continue
            if m.training is (id(m) in inside):
                break
            stack.extend(m._modules.values())
        else:
            return
        for net in self.nets.values():
            net.train()
        for m in self._frozen_modules:
            m.eval()

    def _clip_gradients(self) -> dict[str, Tensor]:
        """Per-network clipping to train.grad_clip, as torch.nn.utils.clip_grad_norm_ per network (bit-identical:
        the same per-tensor norms, total norm, coefficient and in-place multiply), with one _foreach_norm for all
        networks' gradients instead of one clip_grad_norm_ call each (fewer small operations per step on the CPU)."""
        grads = {name: [p.grad for p in net.parameters() if p.grad is not None] for name, net in self.nets.items()}
        flat = [g for gs in grads.values() for g in gs]
        if self.dist.enabled or any(g.device != self.device or g.dtype != flat[0].dtype for g in flat):
            return {f"grad_norm_{name}": torch.nn.utils.clip_grad_norm_(net.parameters(), self.cfg.grad_clip)
                    for name, net in self.nets.items()}
        norms = torch._foreach_norm(flat, 2.0) if flat else []
        out, start = {}, 0
        for name, gs in grads.items():
            if not gs:
                out[f"grad_norm_{name}"] = torch.tensor(0.0)
                continue
            total = torch.linalg.vector_norm(torch.stack(norms[start:start + len(gs)]), 2.0)
            start += len(gs)
            coef = torch.clamp(self.cfg.grad_clip / (total + 1e-6), max=1.0)
            torch._foreach_mul_(gs, coef)
            out[f"grad_norm_{name}"] = total
        return out

    def snapshot(self) -> dict[str, Any]:
        """An in-memory copy of the training state (networks, EMA copies, optimiser, generator, step), to branch
        several continuations from one point (e.g. one phase-3 run per beta from the same policy and Q);
        :meth:`restore` puts it back. Checkpoints on disk are :meth:`save`'s job."""
        import copy

        return {"nets": {k: copy.deepcopy(n.state_dict()) for k, n in self.nets.items()},
                "ema": {k: copy.deepcopy(e.state_dict()) for k, e in self.ema.items()},
                "opt": copy.deepcopy(self.optimizer.state_dict()), "gen": self.generator.get_state(), "step": self.step}

    def restore(self, snap: dict[str, Any]) -> None:
        """Return to a :meth:`snapshot` (which stays usable for further restores)."""
        import copy

        for k, n in self.nets.items():
            n.load_state_dict(snap["nets"][k])
        for k, e in self.ema.items():
            e.load_state_dict(snap["ema"][k])
        self.optimizer.load_state_dict(copy.deepcopy(snap["opt"]))
        self.generator.set_state(snap["gen"])
        self.step = snap["step"]

    def lr_factor(self, step: int) -> float:
        """The learning-rate multiplier at ``step`` (0-based): linear warm-up over train.warmup_steps, then
        train.schedule over the remaining steps. A function of the step alone, so resume stays exact."""
        cfg = self.cfg
        if cfg.warmup_steps > 0 and step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        span = max(cfg.steps - cfg.warmup_steps, 1)
        frac = min(max(step - cfg.warmup_steps, 0) / span, 1.0)
        if cfg.schedule == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * frac))
        if cfg.schedule == "linear":
            return 1.0 - frac
        return 1.0

    def _raise_nonfinite(self, step: int, value: float | None = None) -> None:
        last = self._last_checkpoint_name()
        what = f"loss is {value}" if value is not None else "loss became NaN/inf"
        raise NonFiniteLossError(
            f"{what} at step {step}; training stopped (no checkpoint was written after it). "
            f"Last good checkpoint: {last}. Lower train.lr, raise train.grad_clip protection, or check the data."
        )

    def check_finite(self) -> None:
        """Raise NonFiniteLossError if a loss since the last check was NaN/inf (one host sync)."""
        if self._bad_step is not None:
            s = int(self._bad_step)
            if s >= 0:
                self._raise_nonfinite(s)

    def fit(self, steps: int | None = None, callback: Callable[[int, dict], None] | None = None) -> list[dict[str, Any]]:
        """Train until ``steps`` (default cfg.steps) total steps; returns the logged records."""
        total = self.cfg.steps if steps is None else steps
        self._fit_total = total
        records: list[dict[str, Any]] = []
        bar = None
        plain_every = 0
        if self.cfg.progress and self.dist.is_main:
            import sys

            if sys.stderr.isatty():
                from tqdm.auto import tqdm

                bar = tqdm(total=total, initial=self.step, desc="train", dynamic_ncols=True, leave=False)
            else:  # a log file: a plain line about every 5% of the run, never a bar's control characters
                plain_every = max(self.cfg.log_every, -(-max(total, 1) // 20))
        t0 = time.perf_counter()
        try:
            while self.step < total:
                logs = self.train_step()
                if self.step % self.cfg.log_every == 0 or self.step == total:
                    self.check_finite()
                    logs = {k: float(v) if isinstance(v, Tensor) else v for k, v in logs.items()}
                    rec = {"step": self.step, **logs, "time": round(time.perf_counter() - t0, 4)}
                    records.append(rec)
                    self._log(rec)
                    if callback is not None:
                        callback(self.step, rec)
                    if bar is not None:
                        bar.set_postfix(loss=f"{logs['loss']:.4f}")
                if plain_every and (self.step % plain_every == 0 or self.step == total):
                    import sys

                    loss = logs.get("loss")
                    loss_s = f" loss {float(loss):.4g}" if loss is not None else ""
                    print(f"train step {self.step}/{total}{loss_s} ({time.perf_counter() - t0:.1f} s)", file=sys.stderr, flush=True)
                if self.out_dir is not None and (self.step % self.cfg.ckpt_every == 0 or self.step == total):
                    self.check_finite()
                    self.save()
                    crash_test_hook()
                if bar is not None:
                    bar.update(1)
        finally:
            if bar is not None:
                bar.close()
            if self._tb:
                self._tb.flush()
        return records

    # ---- logging ----------------------------------------------------------------------------------
    def _log(self, rec: dict[str, Any]) -> None:
        if not self.out_dir_writes:
            return
        with open(self.out_dir / "metrics.jsonl", "a") as f:
            f.write(json.dumps(rec) + "\n")
        if self.cfg.tensorboard and self._tb is not False:
            if self._tb is None:
                try:
                    from torch.utils.tensorboard import SummaryWriter
                except ImportError:  # tensorboard not installed: metrics.jsonl only
                    self._tb = False
                    return
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

    def save(self) -> Path | None:
        """Write a checkpoint of everything needed to resume exactly (rank 0 writes; all ranks must call it).

        Single process: RNG keys 'rng.generator', 'rng.torch', 'rng.cuda<i>'. Under DDP every rank's
        generator / torch / CUDA states are gathered and stored as '<key>.rank<r>' as well.
        """
        assert self.out_dir is not None
        rng = {"rng.generator": self.generator.get_state(), "rng.torch": torch.get_rng_state()}
        if self.dist.enabled:
            if self.device.type == "cuda":
                rng["rng.cuda_device"] = torch.cuda.get_rng_state(self.device)
            gathered = gather_objects(rng, self.dist)
        if not self.dist.is_main:
            barrier(self.dist)
            return None
        opt_tensors, opt_meta = optimizer_to_tensors(self.optimizer)
        trainer_tensors = dict(opt_tensors)
        trainer_tensors.update(rng)
        if torch.cuda.is_available():
            for i, s in enumerate(torch.cuda.get_rng_state_all()):
                trainer_tensors[f"rng.cuda{i}"] = s
        if self.dist.enabled:
            for r, states in enumerate(gathered):
                for k, v in states.items():
                    trainer_tensors[f"{k}.rank{r}"] = v
        path = save_checkpoint(
            self.out_dir / "checkpoints",
            self.step,
            {name: net.state_dict() for name, net in self.nets.items()},
            {name: ema.state_dict() for name, ema in self.ema.items()},
            trainer_tensors,
            {"optimizer": opt_meta, "networks": list(self.nets), "ema": list(self.ema), "world_size": self.dist.world_size},
            keep=self.cfg.keep_checkpoints,
        )
        barrier(self.dist)
        return path

    def resume(self) -> int:
        """Load the newest intact checkpoint of out_dir and truncate metrics.jsonl to it; returns the step.

        * no checkpoint yet (killed before the first one): the run restarts from step 0, exactly as a new run;
        * a corrupt newest checkpoint (sha256 mismatch, missing file) falls back to the previous intact one,
          with a warning naming both (CheckpointError when none is intact);
        * ``.tmp-*`` folders of a kill mid-write are removed; a cut-off metrics line is dropped.
        World size: a checkpoint resumes on any number of processes. On the same number the resume is
        exact (every rank's RNG state is restored); on another number networks, optimiser, EMA and step
        are exact and each rank's RNG streams are re-seeded from (seed, step, rank), so the continuation is
        statistically, not bitwise, equal to an uninterrupted run (a warning says so).
        """
        import warnings

        from agm.training.checkpoint import checkpoint_candidates
        from agm.training.runs import clean_partial_checkpoints, read_metrics

        assert self.out_dir is not None
        if self.out_dir_writes:
            clean_partial_checkpoints(self.out_dir)
        loaded = None
        errors = []
        for ckpt in checkpoint_candidates(self.out_dir):
            try:
                loaded = (ckpt, *load_checkpoint(ckpt))
                break
            except CheckpointError as e:
                errors.append(str(e))
        if errors and loaded is None:
            raise CheckpointError(
                f"{'; '.join(errors)}; no intact checkpoint is left. Move the checkpoints/ folder away to restart from step 0"
            )
        if errors:
            warnings.warn(f"{'; '.join(errors)}; fell back to the intact {loaded[0].name}", RuntimeWarning, stacklevel=2)
        if loaded is None:
            self.step = 0
        else:
            ckpt, state, files = loaded
            try:
                for name, net in self.nets.items():
                    net.load_state_dict(unflatten(files["networks"], name))
                for name, ema in self.ema.items():
                    ema.load_state_dict(unflatten(files["ema"], name))
                optimizer_from_tensors(self.optimizer, files["trainer"], state["optimizer"])
                if "foreach" in self._opt_kw:  # a checkpoint of the for-loop AdamW: the same numbers, foreach's speed
                    for group in self.optimizer.param_groups:
                        if not group.get("fused"):
                            group["foreach"] = self._opt_kw["foreach"]
            except (RuntimeError, KeyError, ValueError) as e:
                raise CheckpointError(f"checkpoint {ckpt} does not match this model/config: {e}") from None
            self.step = int(state["step"])
            self._restore_rng(files["trainer"], int(state.get("world_size", 1)))
        log = self.out_dir / "metrics.jsonl"
        if self.out_dir_writes and log.exists():
            read_metrics(log, repair=True, upto_step=self.step)
        barrier(self.dist)
        return self.step

    def _restore_rng(self, t: dict[str, Tensor], saved_world: int) -> None:
        import warnings

        world = self.dist.world_size
        if saved_world != world:
            warnings.warn(
                f"resuming a checkpoint written by {saved_world} process(es) on {world}: networks, optimiser, EMA and "
                f"step are exact; the random streams are re-seeded from (seed, step, rank), so the continuation is "
                f"statistically equal to, not identical with, an uninterrupted run",
                RuntimeWarning,
                stacklevel=3,
            )
            s = rank_seed(self.seed * 1_000_003 + self.step, self.dist.rank)
            self.generator.manual_seed(s)
            torch.manual_seed(s)
            return
        if self.dist.enabled:
            r = self.dist.rank
            self.generator.set_state(t[f"rng.generator.rank{r}"])
            torch.set_rng_state(t[f"rng.torch.rank{r}"])
            if self.device.type == "cuda" and f"rng.cuda_device.rank{r}" in t:
                torch.cuda.set_rng_state(t[f"rng.cuda_device.rank{r}"], self.device)
        else:
            self.generator.set_state(t["rng.generator"])
            torch.set_rng_state(t["rng.torch"])
            if torch.cuda.is_available():
                states = [t[k] for k in sorted((k for k in t if k.startswith("rng.cuda") and k[8:].isdigit()), key=lambda k: int(k[8:]))]
                if states:
                    torch.cuda.set_rng_state_all(states)
