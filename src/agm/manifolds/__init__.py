"""Riemannian manifolds for geodesic flow matching and generalised flow maps (docs/flowmaps.md).

Own small code (no geoopt/geomstats dependency): :class:`Sphere`, :class:`FlatTorus`, :class:`SO3` (rotations), :class:`Lorentz`
(hyperbolic space, Lorentz model; Poincare-ball conversions for plots), :class:`Euclidean`, all implementing
:class:`Manifold` (expmap, logmap, projx, proju, inner, dist, geodesic, priors).
"""
from __future__ import annotations

from agm.errors import check_choice
from agm.manifolds.base import Manifold
from agm.manifolds.euclidean import Euclidean
from agm.manifolds.lorentz import Lorentz, minkowski
from agm.manifolds.sphere import Sphere
from agm.manifolds.so3 import SO3
from agm.manifolds.torus import FlatTorus

MANIFOLDS = {"euclidean": Euclidean, "sphere": Sphere, "torus": FlatTorus, "hyperbolic": Lorentz, "so3": SO3}


def make_manifold(name: str, dim: int | None = None, **kwargs) -> Manifold:
    """Build a manifold by name: 'euclidean' (R^dim), 'sphere' (S^dim), 'torus' (T^dim), 'hyperbolic' (H^dim, Lorentz
    model) or 'so3' (rotations, dim 3). ``dim=None``: the class's default (2; SO(3): 3)."""
    check_choice("manifold", name, MANIFOLDS)
    return MANIFOLDS[name](**kwargs) if dim is None else MANIFOLDS[name](dim, **kwargs)


__all__ = ["Manifold", "Euclidean", "Sphere", "FlatTorus", "Lorentz", "SO3", "minkowski", "MANIFOLDS", "make_manifold"]
