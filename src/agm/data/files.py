"""User data files: load a numeric (N, D) array from .npy or .csv, validate it, split it.

All loaders return float32 torch tensors of shape (N, D). Bad input raises :class:`agm.errors.DataError`
naming the field or path, the bad value, and what is accepted.
"""
from __future__ import annotations

import csv
from pathlib import Path
from dataclasses import dataclass, field
from typing import Optional, Sequence, Union

import numpy as np
import torch
from torch import Tensor

from agm.errors import ConfigError, DataError
from agm.tensors import ArrayLike, subsample, validate_array  # noqa: F401  (re-exported)

ACCEPTED_EXTENSIONS = (".npy", ".csv")


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


def csv_header(path: Union[str, Path]) -> list[str] | None:
    """The column names of a CSV whose first row is a header (any non-numeric cell), else None."""
    p = Path(path)
    if p.suffix.lower() != ".csv" or not p.is_file():
        return None
    with p.open(newline="") as f:
        for row in csv.reader(f):
            if row and any(c.strip() for c in row):
                try:
                    [float(c) for c in row]
                    return None
                except ValueError:
                    return [c.strip() for c in row]
    return None


def check_test_fraction(test_fraction) -> None:
    """ConfigError on ``data.test_fraction`` unless it is a number in (0, 1)."""
    if isinstance(test_fraction, bool) or not isinstance(test_fraction, (int, float)) or not 0 < test_fraction < 1:
        raise ConfigError(f"data.test_fraction={test_fraction!r} is not accepted; it must be a number in (0, 1)")


@dataclass
class UserTable:
    """The keys of a user's table, the same in every method's ``data`` group (a method's DataConfig subclasses this
    and adds its built-in sets): where the file is, the held-out share, and the column transforms (docs/data.md)."""

    name: str = "file"  # a built-in set (each method's DataConfig sets its default) or 'file'
    path: Optional[str] = None  # user file: .npy / .csv of shape (N, D); sets data.name='file'
    test_fraction: float = 0.1  # user files: held-out fraction (split by the run's seed)
    standardise: bool = True  # user files: per-column (x - mean) / std, inverted at sampling (docs/data.md)
    log_columns: list = field(default_factory=list)  # user files: signed-log columns (index or header name)
    quantile_columns: list = field(default_factory=list)  # user files: Gaussianised columns (index or header name)
    whiten: bool = False  # user files: PCA-whiten the standardised columns (identity covariance; docs/data.md)

    def resolve_file(self) -> None:
        """A path given means the table is the data: ``name`` becomes 'file'."""
        if self.path is not None and self.name != "file":
            self.name = "file"

    def check_table(self) -> None:
        """ConfigError naming the key for a bad held-out share, a file set without a path, or whitening without
        standardisation."""
        check_test_fraction(self.test_fraction)
        if self.name == "file" and self.path is None:
            raise ConfigError("data.name='file' needs data.path (a .npy or .csv file of shape (N, D))")
        if self.whiten and not self.standardise:
            raise ConfigError("data.whiten=true needs data.standardise=true (whitening acts on the standardised columns)")

    def load_table(self, seed: int):
        """(train, test, transform, names) of :func:`load_user_data` with this group's keys."""
        return load_user_data(self.path, test_fraction=self.test_fraction, seed=seed, standardise=self.standardise,
                              log_columns=self.log_columns, quantile_columns=self.quantile_columns, whiten=self.whiten)


def load_user_data(path: Union[str, Path], *, test_fraction: float, seed: int, standardise: bool = True,
                   log_columns: list | tuple = (), quantile_columns: list | tuple = (), whiten: bool = False):
    """A user's table, the same way for every method: load (header names kept), split by the seed, fit the
    column transform on the training rows only (:class:`agm.data.transforms.DataTransform`), transform both.

    Returns (train, test, transform, names) with train/test in model space.
    """
    from agm.data.transforms import DataTransform

    x = load_array(path)
    names = csv_header(path)
    train, test = split(x, test_fraction, seed=seed)
    tr = DataTransform.fit(train, standardise=standardise, log_columns=log_columns, quantile_columns=quantile_columns,
                           names=names, whiten=whiten)
    if tr.is_identity:
        return train, test, None, names
    return tr.forward(train), tr.forward(test), tr, names


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
    check_test_fraction(test_fraction)
    x = validate_array(x)
    n = x.shape[0]
    n_test = min(max(1, round(n * test_fraction)), n - 1)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(int(seed)))
    return x[perm[n_test:]].contiguous(), x[perm[:n_test]].contiguous()



def save_array(x: ArrayLike, path: Union[str, Path], header: Sequence[str] | None = None) -> Path:
    """Write an (N, D) array to .npy (float32) or .csv (comma-separated; ``header``: D column names for a first
    line, as the user's table had); the inverse of load_array.

    DataError for another extension, an invalid array (see :func:`validate_array`) or a header of the wrong length.
    """
    p = Path(path)
    ext = p.suffix.lower()
    if ext not in ACCEPTED_EXTENSIONS:
        raise DataError(f"output path {str(path)!r} has extension {ext!r}; accepted extensions: {list(ACCEPTED_EXTENSIONS)}")
    arr = validate_array(x, field="array to save").numpy()
    p.parent.mkdir(parents=True, exist_ok=True)
    if header is not None and len(header) != arr.shape[1]:
        raise DataError(f"header has {len(header)} names for {arr.shape[1]} columns")
    if ext == ".npy":
        np.save(p, arr)
    else:
        np.savetxt(p, arr, delimiter=",", fmt="%.9g", header=",".join(header) if header else "", comments="")
    return p
