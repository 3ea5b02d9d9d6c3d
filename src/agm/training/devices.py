"""Devices and CPU threads: one resolution of ``train.device`` / ``--device`` and of ``train.threads`` for every command."""
from __future__ import annotations

import torch

from agm.errors import ConfigError


def resolve_device(name: str, field_name: str = "train.device") -> torch.device:
    """'auto' (CUDA when present, else CPU), 'cpu', 'cuda', 'cuda:N' or 'mps'; ConfigError naming the field otherwise."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except (RuntimeError, TypeError):
        raise ConfigError(f"{field_name}={name!r} is not a device; accepted: auto, cpu, cuda, cuda:N, mps") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"{field_name}={name!r} but CUDA is not available on this machine; use {field_name}=cpu or auto")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ConfigError(f"{field_name}={name!r}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    if dev.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ConfigError(f"{field_name}={name!r} but MPS is not available on this machine")
    if dev.type not in ("cpu", "cuda", "mps"):
        raise ConfigError(f"{field_name}={name!r} is not accepted; accepted: auto, cpu, cuda, cuda:N, mps")
    return dev


#: networks below this many parameters train fastest on one CPU thread (measured: docs/runs.md)
SMALL_MODEL_PARAMS = 2_000_000


def apply_threads(threads: int, device: torch.device, n_params: int | None = None) -> int:
    """Set torch's intra-op threads: ``threads`` > 0 as given; 0 = auto: one thread for small models on the
    CPU (per-op overhead dominates, and other work on the machine does not stall every op), torch's
    default otherwise. Returns the number in force."""
    if threads < 0:
        raise ConfigError(f"train.threads={threads!r} must be >= 0 (0 = auto)")
    if threads > 0:
        torch.set_num_threads(threads)
    elif device.type == "cpu" and (n_params is None or n_params < SMALL_MODEL_PARAMS):
        torch.set_num_threads(1)
    return torch.get_num_threads()
