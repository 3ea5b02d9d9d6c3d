"""Per-column transforms of user data, fitted on the training rows, stored in the run folder, inverted at sampling.

Every method treats a user's table the same way (docs/data.md): columns in their own units (millimetres next
to dollars) are mapped to a common scale before training, and samples are mapped back.

    y = whiten( standardise( quantile_or_log( x ) ) )

* ``log_columns``: signed log, y = sign(x) log(1 + |x|), for heavy-tailed columns (no fit; exact inverse);
* ``quantile_columns``: the empirical CDF followed by the standard normal quantile,
  y = Phi^{-1}((1/2 + (m - 1) F_n(x)) / m), with F_n interpolated between the m = min(n_quantiles, N) stored
  quantiles (so the training range maps onto [Phi^{-1}(1/2m), Phi^{-1}(1 - 1/2m)], finite; inverse: the same
  map backwards, exact up to float64 rounding inside the training range; samples beyond it are clamped to the
  column's training range);
* ``standardise``: y = (x - mean) / std per column (std floored at 1e-8 times the column's scale);
* ``whiten`` (off by default; needs ``standardise``): PCA whitening of the standardised columns,
  y = V^T s / sqrt(lambda + delta), with (lambda, V) the eigenpairs of their training covariance and
  delta = 1e-6 max(lambda) (a constant or collinear column stays finite). The training rows then have identity
  covariance, so isotropic noise or an isotropic kernel is shaped like the data (docs/data.md); exact inverse.

Columns are given by 0-based index, or by name when the file had a header.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Sequence

import torch
from torch import Tensor

from agm.errors import ConfigError, DataError


def _resolve_columns(spec: Sequence[Any], dim: int, names: Sequence[str] | None, field_name: str) -> list[int]:
    out = []
    for c in spec:
        if isinstance(c, bool):
            raise ConfigError(f"{field_name} entry {c!r} must be a column index or a header name")
        if isinstance(c, int):
            if not -dim <= c < dim:
                raise ConfigError(f"{field_name} entry {c} is out of range; the data has {dim} columns (0..{dim - 1})")
            out.append(c % dim)
        elif isinstance(c, str):
            if not names or c not in names:
                from agm.errors import closest

                raise ConfigError(f"{field_name} entry {c!r} is not a column name; columns: {list(names or [])}"
                                  f"{closest(c, names or [])}")
            out.append(list(names).index(c))
        else:
            raise ConfigError(f"{field_name} entry {c!r} must be a column index or a header name")
    return sorted(set(out))


@dataclass
class DataTransform:
    """A fitted per-column transform; ``forward`` maps data to model space, ``inverse`` maps samples back."""

    standardise: bool = True
    log_columns: list[int] = field(default_factory=list)
    quantile_columns: list[int] = field(default_factory=list)
    mean: list[float] | None = None
    std: list[float] | None = None
    quantiles: dict[int, list[float]] = field(default_factory=dict)
    names: list[str] | None = None  # the table's column names (from its header), kept for the samples written later
    whiten: list[list[float]] | None = None  # D x D whitening matrix W (y = s W), fitted on the standardised rows
    unwhiten: list[list[float]] | None = None  # its inverse (s = y W^-1)

    @classmethod
    def fit(cls, x: Tensor, *, standardise: bool = True, log_columns: Sequence[Any] = (), quantile_columns: Sequence[Any] = (),
            names: Sequence[str] | None = None, n_quantiles: int = 1000, whiten: bool = False) -> "DataTransform":
        """Fit on training rows ``x`` (N, D)."""
        if x.dim() != 2:
            raise DataError(f"a column transform needs (N, D) data, got shape {tuple(x.shape)}")
        d = x.shape[1]
        logs = _resolve_columns(log_columns, d, names, "data.log_columns")
        quants = _resolve_columns(quantile_columns, d, names, "data.quantile_columns")
        both = set(logs) & set(quants)
        if both:
            raise ConfigError(f"columns {sorted(both)} are in both data.log_columns and data.quantile_columns; choose one")
        tr = cls(standardise=standardise, log_columns=logs, quantile_columns=quants,
                 names=list(names) if names and len(names) == d else None)
        xd = x.double()
        if quants:
            probs = torch.linspace(0, 1, min(n_quantiles, x.shape[0]), dtype=torch.float64)
            for c in quants:
                tr.quantiles[c] = torch.quantile(xd[:, c], probs).tolist()
        y = tr._pre(xd)
        if standardise:
            mean = y.mean(0)
            std = y.std(0)
            floor = 1e-8 * y.abs().max(0).values.clamp_min(1.0)
            tr.mean, tr.std = mean.tolist(), torch.maximum(std, floor).tolist()
        if whiten:
            if not standardise:
                raise ConfigError("data.whiten=true needs data.standardise=true (whitening acts on the standardised columns)")
            s = (y - mean) / torch.maximum(std, floor)
            lam, vec = torch.linalg.eigh(torch.cov(s.T).reshape(d, d))
            scale = (lam.clamp_min(0) + 1e-6 * lam.max().clamp_min(1e-12)).sqrt()
            tr.whiten = (vec / scale).tolist()
            tr.unwhiten = (vec * scale).T.tolist()
        return tr

    # ---- the maps --------------------------------------------------------------------------------
    def _pre(self, x: Tensor) -> Tensor:
        y = x.clone()
        for c in self.log_columns:
            y[:, c] = torch.sign(x[:, c]) * torch.log1p(x[:, c].abs())
        normal = torch.distributions.Normal(0.0, 1.0)
        for c, q in self.quantiles.items():
            qs = torch.tensor(q, dtype=torch.float64)
            m = len(q)
            u = _interp(x[:, c].double(), qs, torch.linspace(0, 1, m, dtype=torch.float64))
            y[:, c] = normal.icdf((0.5 + u * (m - 1)) / m).to(y.dtype)  # [0, 1] -> [0.5/m, 1 - 0.5/m]: finite, invertible
        return y

    def _post(self, y: Tensor) -> Tensor:
        x = y.clone()
        for c in self.log_columns:
            x[:, c] = torch.sign(y[:, c]) * torch.expm1(y[:, c].abs())
        normal = torch.distributions.Normal(0.0, 1.0)
        for c, q in self.quantiles.items():
            qs = torch.tensor(q, dtype=torch.float64)
            m = len(q)
            u = ((normal.cdf(y[:, c].double()) * m - 0.5) / (m - 1)).clamp(0, 1)
            x[:, c] = _interp(u, torch.linspace(0, 1, m, dtype=torch.float64), qs).to(x.dtype)
        return x

    def forward(self, x: Tensor) -> Tensor:
        """Data (N, D) -> model space."""
        y = self._pre(x.double())
        if self.standardise:
            y = (y - torch.tensor(self.mean, dtype=y.dtype)) / torch.tensor(self.std, dtype=y.dtype)
        if self.whiten is not None:
            y = y @ torch.tensor(self.whiten, dtype=y.dtype)
        return y.to(x.dtype)

    def inverse(self, y: Tensor) -> Tensor:
        """Model-space samples (N, D) -> data units."""
        out_dtype = y.dtype
        z = y.detach().double().cpu()
        if self.unwhiten is not None:
            z = z @ torch.tensor(self.unwhiten, dtype=z.dtype)
        if self.standardise:
            z = z * torch.tensor(self.std, dtype=z.dtype) + torch.tensor(self.mean, dtype=z.dtype)
        return self._post(z).to(out_dtype)

    @property
    def is_identity(self) -> bool:
        return not (self.standardise or self.log_columns or self.quantile_columns)

    # ---- storage ---------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {"standardise": self.standardise, "log_columns": self.log_columns, "quantile_columns": self.quantile_columns,
                "mean": self.mean, "std": self.std, "quantiles": {str(k): v for k, v in self.quantiles.items()},
                "names": self.names, "whiten": self.whiten, "unwhiten": self.unwhiten}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "DataTransform":
        return cls(standardise=bool(d["standardise"]), log_columns=list(d["log_columns"]),
                   quantile_columns=list(d["quantile_columns"]), mean=d.get("mean"), std=d.get("std"),
                   quantiles={int(k): v for k, v in (d.get("quantiles") or {}).items()}, names=d.get("names"),
                   whiten=d.get("whiten"), unwhiten=d.get("unwhiten"))


def _interp(x: Tensor, xp: Tensor, fp: Tensor) -> Tensor:
    """Piecewise-linear interpolation of (xp, fp) at x (xp increasing; ties broken by the first index); clamped at the ends."""
    x = x.clamp(float(xp[0]), float(xp[-1]))
    idx = torch.searchsorted(xp, x, right=True).clamp(1, len(xp) - 1)
    x0, x1 = xp[idx - 1], xp[idx]
    f0, f1 = fp[idx - 1], fp[idx]
    w = torch.where(x1 > x0, (x - x0) / (x1 - x0).clamp_min(1e-300), torch.zeros_like(x))
    return f0 + w * (f1 - f0)


def heavy_tail_score(x: Tensor) -> list[float]:
    """Per-column excess kurtosis (a hint for ``data.log_columns`` / ``data.quantile_columns``)."""
    xd = x.double()
    z = (xd - xd.mean(0)) / xd.std(0).clamp_min(1e-12)
    return [float(v) if math.isfinite(float(v)) else float("inf") for v in (z**4).mean(0) - 3]


__all__ = ["DataTransform", "heavy_tail_score"]
