"""Exponential moving average of a network's parameters: ema <- decay * ema + (1 - decay) * param."""
from __future__ import annotations

import copy

import torch
from torch import nn


class EMA:
    """EMA copy of ``model`` updated with ``torch._foreach_lerp_`` (one fused kernel per dtype/device group).

    ema + (1 - decay) * (param - ema) = decay * ema + (1 - decay) * param. Buffers are copied.
    """

    def __init__(self, model: nn.Module, decay: float = 0.999) -> None:
        if not 0 <= decay < 1:
            raise ValueError(f"ema_decay={decay!r} must be in [0, 1)")
        self.decay = decay
        self.model = copy.deepcopy(model).eval().requires_grad_(False)
        self._src = [p for p in model.parameters()]
        self._dst = [p for p in self.model.parameters()]
        self._src_buf = list(model.buffers())
        self._dst_buf = list(self.model.buffers())

    @torch.no_grad()
    def update(self, decay: float | None = None) -> None:
        """One EMA step with ``decay`` (default: the EMA's own)."""
        rate = 1.0 - (self.decay if decay is None else decay)
        if self._dst:  # under no_grad the parameters themselves (no per-tensor detach: 1 operation each)
            torch._foreach_lerp_(self._dst, self._src, rate)
        for d, s in zip(self._dst_buf, self._src_buf):
            d.copy_(s)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.model.state_dict()

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.model.load_state_dict(state)
