"""User data files: load a numeric (N, D) array from .npy or .csv, validate it, split it.

All loaders return float32 torch tensors of shape (N, D). Bad input raises :class:`agm.errors.DataError`
naming the field or path, the bad value, and what is accepted.
"""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Union

import numpy as np
import torch
from torch import Tensor

from agm.errors import ConfigError, DataError

ACCEPTED_EXTENSIONS = (".npy", ".csv")

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


def _read_csv(path: Path) -> np.ndarray:
    """Parse a numeric CSV; the first row is treated as a header when any of its cells is not a number."""
    with path.open(newline="") as f:
        rows = [r for r in csv.reader(f) if r and any(c.strip() for c in r)]
    if not rows:
        raise DataError(f"data.path={str(path)!r} is an empty CSV file; accepted: numeric rows of equal length")

    def parse(row: list[str]) -> list[float] | None:
        try:
            return [float(c) for c in row]
        except ValueError:
            return None

    start = 0
    if parse(rows[0]) is None:  # header row
        start = 1
    width = len(rows[start]) if start < len(rows) else 0
    values = []
    for i in range(start, len(rows)):
        row = rows[i]
        if len(row) != width:
            raise DataError(
                f"data.path={str(path)!r}: line {i + 1} has {len(row)} columns but line {start + 1} has {width}; "
                "accepted: rows of equal length"
            )
        parsed = parse(row)
        if parsed is None:
            raise DataError(
                f"data.path={str(path)!r}: line {i + 1} has a non-numeric value {row!r}; accepted: numbers "
                "(an optional header in the first line only)"
            )
        values.append(parsed)
    if not values:
        raise DataError(f"data.path={str(path)!r} has a header but no data rows; accepted: N >= 2 numeric rows")
    return np.asarray(values, dtype=np.float64)


def load_array(path: Union[str, Path]) -> Tensor:
    """Load a numeric array of shape (N, D) (or (N,)) from a .npy or .csv file as float32 (N, D).

    CSV: comma-separated numbers; a first row containing a non-number is treated as a header.
    NPY: loaded with ``allow_pickle=False``. The result goes through :func:`validate_array` with
    ``field='data.path=<path>'``. Missing file or other extension -> DataError naming the path and
    the accepted extensions.
    """
    p = Path(path)
    ext = p.suffix.lower()
    if ext not in ACCEPTED_EXTENSIONS:
        raise DataError(f"data.path={str(path)!r} has extension {ext!r}; accepted extensions: {list(ACCEPTED_EXTENSIONS)}")
    if not p.is_file():
        raise DataError(f"data.path={str(path)!r} does not exist or is not a file; accepted: an existing {ext} file")
    if ext == ".npy":
        try:
            arr = np.load(p, allow_pickle=False)
        except ValueError as e:  # object arrays need pickle; corrupt headers
            raise DataError(f"data.path={str(path)!r} could not be read as a numeric .npy array: {e}") from e
    else:
        arr = _read_csv(p)
    return validate_array(arr, field=f"data.path={str(path)!r}")


def split(x: ArrayLike, test_fraction: float = 0.1, seed: int = 0) -> tuple[Tensor, Tensor]:
    """Random (train, test) split of the rows of x: a seeded permutation, test gets round(N * test_fraction) rows.

    ``test_fraction`` must lie in (0, 1) (ConfigError on ``data.test_fraction``); both parts get at
    least one row.
    """
    if isinstance(test_fraction, bool) or not isinstance(test_fraction, (int, float)) or not 0 < test_fraction < 1:
        raise ConfigError(f"data.test_fraction={test_fraction!r} is not accepted; it must be a number in (0, 1)")
    x = validate_array(x)
    n = x.shape[0]
    n_test = min(max(1, round(n * test_fraction)), n - 1)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(int(seed)))
    return x[perm[n_test:]].contiguous(), x[perm[:n_test]].contiguous()


def subsample(x: Tensor, max_samples: int | None, seed: int = 0) -> Tensor:
    """At most ``max_samples`` rows of x drawn without replacement by a seeded permutation (x itself if small)."""
    if max_samples is None or x.shape[0] <= max_samples:
        return x
    idx = torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(int(seed)))[:max_samples]
    return x[idx]


def save_array(x: ArrayLike, path: Union[str, Path]) -> Path:
    """Write an (N, D) array to .npy (float32) or .csv (comma-separated, no header); the inverse of load_array.

    DataError for another extension or an invalid array (see :func:`validate_array`).
    """
    p = Path(path)
    ext = p.suffix.lower()
    if ext not in ACCEPTED_EXTENSIONS:
        raise DataError(f"output path {str(path)!r} has extension {ext!r}; accepted extensions: {list(ACCEPTED_EXTENSIONS)}")
    arr = validate_array(x, field="array to save").numpy()
    p.parent.mkdir(parents=True, exist_ok=True)
    if ext == ".npy":
        np.save(p, arr)
    else:
        np.savetxt(p, arr, delimiter=",", fmt="%.9g")
    return p
