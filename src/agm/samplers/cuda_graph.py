"""Euler-Maruyama over a fixed time grid, optionally captured once as a CUDA graph and replayed.

The step is the one of ``agm.samplers.EulerMaruyama`` (docs/agm.md, AGM's sampler):

    x_{k+1} = x_k + f(x_k, t_k) dt_k + g sqrt(|dt_k|) xi_k,   xi_k ~ N(0, I),   last step without noise.

With ``cuda_graph=True`` (CUDA only) the per-step kernels of f are recorded once into a
``torch.cuda.CUDAGraph`` that reads static buffers (x, t_k, dt_k, g sqrt(|dt_k|), xi_k) and writes x in
place; each of the ``steps`` steps is then one graph replay, which removes the CPU launch overhead of
the many small kernels of a U-Net at small batch. The noise xi_k is drawn outside the graph (into the
static buffer) from the caller's generator, so the samples are the same random function of the seed
with and without the graph (up to floating-point reassociation in f's kernels).
On the CPU, or with ``cuda_graph=False``, the same loop runs eagerly.
"""
from __future__ import annotations

import contextlib
from typing import Callable

import torch
from torch import Tensor

from agm.errors import ConfigError, check_positive
from agm.samplers.base import time_grid

Field = Callable[[Tensor, Tensor], Tensor]


class GraphEulerMaruyama:
    """EM sampler x0 (t0) -> x(t1) with a constant diffusion ``sigma``, optionally as a CUDA graph.

    Args:
        steps: number of EM steps.
        t0, t1: integration interval (default 0 -> 1, prior -> data).
        cuda_graph: capture one step as a CUDA graph (only when x0 is on a CUDA device).
        amp: 'none' or 'bf16' (the field runs under bf16 autocast; the state x stays float32).
        warmup: eager steps run on a side stream before capture (lets cuDNN/cuBLAS pick kernels).
    """

    def __init__(self, steps: int = 100, t0: float = 0.0, t1: float = 1.0, *, cuda_graph: bool = True,
                 amp: str = "none", warmup: int = 2) -> None:
        check_positive("sample.steps", steps, integer=True)
        if amp not in ("none", "bf16"):
            raise ConfigError(f"amp={amp!r} is not accepted; accepted values: ['none', 'bf16']")
        self.steps, self.t0, self.t1 = steps, t0, t1
        self.cuda_graph = cuda_graph
        self.amp = amp
        self.warmup = warmup
        self._graph: torch.cuda.CUDAGraph | None = None
        self._key: tuple | None = None

    def _ctx(self, device: torch.device) -> contextlib.AbstractContextManager:
        if self.amp == "bf16":
            return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def _step(self, field: Field) -> None:
        with self._ctx(self._x.device):
            f = field(self._x, self._t.expand(self._x.shape[0]))
        self._x.add_(f.float() * self._dt + self._g * self._xi)

    def _setup(self, field: Field, x0: Tensor) -> None:
        key = (id(field), tuple(x0.shape), x0.device, x0.dtype)
        if self._key == key:
            # the captured graph reads and writes these very buffers: refill them, never rebind them
            self._x.copy_(x0)
            return
        self._x = x0.detach().clone().float()
        self._t = torch.zeros((), device=x0.device)
        self._dt = torch.zeros((), device=x0.device)
        self._g = torch.zeros((), device=x0.device)
        self._xi = torch.zeros_like(self._x)
        self._graph = None
        self._key = key
        if self.cuda_graph and x0.is_cuda:
            x_keep = self._x.clone()
            s = torch.cuda.Stream()
            s.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(s):
                for _ in range(self.warmup):
                    self._step(field)
            torch.cuda.current_stream().wait_stream(s)
            g = torch.cuda.CUDAGraph()
            with torch.cuda.graph(g):
                self._step(field)
            self._graph = g
            self._x.copy_(x_keep)

    @torch.no_grad()
    def sample(self, field: Field, x0: Tensor, sigma: float = 0.0, *, generator: torch.Generator | None = None) -> Tensor:
        """Integrate dX = f dt + sigma dW from x0 at t0 to t1; returns a new tensor (float32)."""
        check_positive("sigma", sigma, allow_zero=True)
        self._setup(field, x0)
        ts = time_grid(self.steps, self.t0, self.t1, device=x0.device)
        for k in range(self.steps):
            dt = ts[k + 1] - ts[k]
            self._t.copy_(ts[k])
            self._dt.copy_(dt)
            noisy = sigma > 0 and k < self.steps - 1
            self._g.copy_(sigma * dt.abs().sqrt() if noisy else torch.zeros((), device=x0.device))
            if noisy:
                self._xi.copy_(torch.randn(self._x.shape, generator=generator, device=x0.device))
            else:
                self._xi.zero_()
            if self._graph is not None:
                self._graph.replay()
            else:
                self._step(field)
        return self._x.clone()
