"""Tensor helpers shared by the whole library: input validation, seeded subsampling, time broadcasting."""
from __future__ import annotations

from typing import Union

import numpy as np
import torch
from torch import Tensor

from agm.errors import DataError

ArrayLike = Union[Tensor, np.ndarray]

_BAD_NUMPY_KINDS = {"b": "bool", "c": "complex", "O": "object", "U": "str", "S": "bytes", "V": "void", "M": "datetime", "m": "timedelta"}


def validate_array(x: ArrayLike, field: str = "data", *, flatten: bool = False, dtype: torch.dtype = torch.float32) -> Tensor:
    """Check that ``x`` is a finite numeric (N, D) array with N >= 2, D >= 1; return it as ``dtype`` (N, D).

    Accepted: a torch tensor or numpy array of integer or real floating dtype. A 1-D array of shape
    (N,) is reshaped to (N, 1). With ``flatten=True`` an array of shape (N, d1, d2, ...) (e.g. images)
    is flattened to (N, d1*d2*...); otherwise anything that is not 1-D or 2-D is rejected.
    Raises DataError naming ``field`` for: wrong ndim, non-numeric dtype (bool/complex/object/str),
    NaN/inf values (with the number of bad rows and the first bad row index), N < 2, D == 0.
    """
    if isinstance(x, Tensor):
        if x.dtype == torch.bool or x.is_complex():
            raise DataError(f"{field} has dtype {x.dtype}; accepted: integer or real floating-point numbers")
        arr = x.detach().cpu()
    elif isinstance(x, np.ndarray):
        kind = x.dtype.kind
        if kind in _BAD_NUMPY_KINDS:
            raise DataError(
                f"{field} has dtype {x.dtype} ({_BAD_NUMPY_KINDS[kind]}); accepted: integer or real floating-point numbers"
            )
        if kind not in "iuf":
            raise DataError(f"{field} has dtype {x.dtype}; accepted: integer or real floating-point numbers")
        arr = torch.from_numpy(np.array(x, copy=True, order="C"))
    else:
        raise DataError(f"{field} has type {type(x).__name__}; accepted: a torch.Tensor or numpy.ndarray of shape (N, D)")

    if arr.ndim == 1:
        arr = arr.reshape(-1, 1)
    elif arr.ndim > 2 and flatten:
        arr = arr.reshape(arr.shape[0], -1)
    elif arr.ndim != 2:
        extra = " or (N, d1, d2, ...) (flattened)" if flatten else ""
        raise DataError(f"{field} has shape {tuple(arr.shape)} (ndim={arr.ndim}); accepted shapes: (N, D) or (N,){extra}")
    n, d = arr.shape
    if d == 0:
        raise DataError(f"{field} has shape {tuple(arr.shape)} with D=0 columns; accepted: D >= 1")
    if n < 2:
        raise DataError(f"{field} has N={n} rows (shape {tuple(arr.shape)}); accepted: N >= 2")
    out = arr.to(dtype)
    # check after the cast so that float64 values beyond float32's range (-> inf) are also caught
    bad = ~torch.isfinite(out).all(dim=1)
    if arr.is_floating_point():
        bad |= ~torch.isfinite(arr).all(dim=1)
    n_bad = int(bad.sum())
    if n_bad:
        first = int(bad.nonzero()[0, 0])
        raise DataError(
            f"{field} has {n_bad} of {n} rows with NaN/inf values (first bad row index: {first}); "
            "accepted: finite numbers only"
        )
    return out.contiguous()


def subsample(x: Tensor, max_samples: int | None, seed: int = 0) -> Tensor:
    """At most ``max_samples`` rows of x drawn without replacement by a seeded permutation (x itself if small)."""
    if max_samples is None or x.shape[0] <= max_samples:
        return x
    idx = torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(int(seed)))[:max_samples]
    return x[idx]


def expand_time(t: Tensor, like: Tensor) -> Tensor:
    """Reshape per-sample times (B,) to (B, 1, ..., 1) so that they broadcast against ``like`` (B, ...).

    A 0-d ``t`` is expanded to the batch first. The result has ``like``'s dtype.
    """
    if t.dim() == 0:
        t = t.expand(like.shape[0])
    return t.reshape(-1, *([1] * (like.dim() - 1))).to(like.dtype)
