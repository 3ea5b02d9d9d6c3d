"""Riemannian manifolds for geodesic flow matching and generalised flow maps (docs/flowmaps.md).

Own small code (no geoopt/geomstats dependency): :class:`Sphere`, :class:`FlatTorus`, :class:`Lorentz`
(hyperbolic space, Lorentz model; Poincare-ball conversions for plots), :class:`Euclidean`, all implementing
:class:`Manifold` (expmap, logmap, projx, proju, inner, dist, geodesic, priors).
"""
from agm.errors import check_choice
from agm.manifolds.base import Manifold
from agm.manifolds.euclidean import Euclidean
from agm.manifolds.lorentz import Lorentz, minkowski
from agm.manifolds.sphere import Sphere
from agm.manifolds.torus import FlatTorus

MANIFOLDS = {"euclidean": Euclidean, "sphere": Sphere, "torus": FlatTorus, "hyperbolic": Lorentz}


def make_manifold(name: str, dim: int = 2, **kwargs) -> Manifold:
    """Build a manifold by name: 'euclidean' (R^dim), 'sphere' (S^dim), 'torus' (T^dim) or 'hyperbolic' (H^dim, Lorentz model)."""
    check_choice("manifold", name, MANIFOLDS)
    return MANIFOLDS[name](dim, **kwargs)


__all__ = ["Manifold", "Euclidean", "Sphere", "FlatTorus", "Lorentz", "minkowski", "MANIFOLDS", "make_manifold"]
