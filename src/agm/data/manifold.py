"""Data on manifolds: synthetic sets on the sphere, flat torus and hyperbolic plane, and loaders for the GFM
paper's real sets from a local file (GFM, arXiv 2510.21608, Sec. 5; docs/flowmaps.md).

Synthetic (all deterministic given ``seed``):

* ``sphere_vmf``: equal-weight mixture of von Mises-Fisher laws on S^d, density prop. to
  exp(kappa_k <mu_k, x>), sampled exactly with Wood's (1994) rejection algorithm.
* ``torus_wrapped``: mixture of wrapped Gaussians on T^d, x = (m_k + L_k eps) mod 2 pi (one component
  straddles the seam at angle 0 so that wrapping matters).
* ``earth_volcano``, ``earth_earthquake``, ``earth_flood``, ``earth_fire``: stand-ins with the shape of the
  earth-science sets on S^2: mixtures of concentrated vMF clusters along bands (:data:`EARTH_SETS`).
* ``so3_mixture``: mixture of wrapped normals R_k exp(hat z) on SO(3) (rows: flattened rotation matrices).
* ``hyperbolic_mixture``: mixture of wrapped normals exp_{c_k}(z), z ~ N(0, s^2 I) on T_{c_k} H^2 (Lorentz
  model), centres at geodesic radius 1.5 from the origin in 5 directions.

Real sets (no download at run time; each loader takes a local path and its error says where to get it):

* earth-science events on S^2 (Volcano, Earthquake, Flood, Fire; Mathieu & Nickel 2020): a table of latitude and
  longitude in degrees, mapped to (cos lat cos lon, cos lat sin lon, sin lat). With a header the columns are found
  by name (lat/latitude, lon/lng/long/longitude, any case) or chosen with ``columns``; without a header the first
  two columns are read as (latitude, longitude).
* torsion angles on T^d (protein backbone (phi, psi): General, Glycine, Proline, Pre-Pro; RNA: 7 angles;
  Huang et al. 2022): CSV/TSV/NPY of angles in degrees (or radians), mapped to [0, 2 pi).
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from torch import Tensor

from agm.errors import DataError, check_choice, check_positive
from agm.manifolds import FlatTorus, Lorentz, Manifold, Sphere

EARTH_DATA_HINT = (
    "the earth-science event sets (volcano, earthquake, flood, fire) of Mathieu & Nickel (2020) are distributed with "
    "the Riemannian CNF / Riemannian flow matching code (github.com/facebookresearch/riemannian-fm, data/ folder); "
    "save one as CSV with a header and columns latitude, longitude in degrees"
)
TORSION_DATA_HINT = (
    "the protein (General, Glycine, Proline, Pre-Pro) and RNA torsion-angle sets of Huang et al. (2022), used by "
    "Riemannian flow matching and GFM, are distributed with github.com/facebookresearch/riemannian-fm (data/ folder); "
    "save one as CSV/TSV/NPY with one column per angle"
)


# ---------------------------------------------------------------------------------------------- sphere
def sample_vmf(mu: Tensor, kappa: float, n: int, *, generator: torch.Generator | None = None) -> Tensor:
    """n exact draws of vMF(mu, kappa) on S^{p-1} (p = len(mu)) by Wood's (1994) algorithm.

    W = <mu, X> has density prop. to exp(kappa w)(1 - w^2)^((p-3)/2); it is drawn by rejection from
    w = (1 - (1+b) z)/(1 - (1-b) z), z ~ Beta((p-1)/2, (p-1)/2), b = (-2 kappa + sqrt(4 kappa^2 + (p-1)^2))/(p-1),
    accepted when kappa w + (p-1) log(1 - x0 w) - c >= log U, x0 = (1-b)/(1+b), c = kappa x0 + (p-1) log(1 - x0^2).
    Then X = W mu + sqrt(1 - W^2) V with V uniform on the unit sphere of mu's orthogonal complement.
    """
    check_positive("kappa", kappa)
    check_positive("n", n, integer=True)
    mu = mu.double() / mu.double().norm()
    p = mu.shape[0]
    if p < 2:
        raise DataError(f"mu has length {p}; a vMF needs a direction in R^p with p >= 2")
    seed = int(torch.randint(0, 2**62, (1,), generator=generator))
    rng = np.random.default_rng(seed)
    b = (-2 * kappa + math.sqrt(4 * kappa**2 + (p - 1) ** 2)) / (p - 1)
    x0 = (1 - b) / (1 + b)
    c = kappa * x0 + (p - 1) * math.log(1 - x0**2)
    out = np.empty(0)
    while out.size < n:
        m = 2 * (n - out.size) + 16
        z = rng.beta((p - 1) / 2, (p - 1) / 2, size=m)
        w = (1 - (1 + b) * z) / (1 - (1 - b) * z)
        u = rng.uniform(size=m)
        out = np.concatenate([out, w[kappa * w + (p - 1) * np.log(1 - x0 * w) - c >= np.log(u)]])
    w = torch.from_numpy(out[:n])
    v = torch.from_numpy(rng.standard_normal((n, p)))
    v = v - (v @ mu)[:, None] * mu
    v = v / v.norm(dim=-1, keepdim=True)
    x = w[:, None] * mu + torch.sqrt(torch.clamp(1 - w * w, min=0))[:, None] * v
    return (x / x.norm(dim=-1, keepdim=True)).float()


def sphere_vmf_mixture(n: int, seed: int = 0, dim: int = 2, kappas: Sequence[float] = (8.0, 15.0, 25.0, 40.0)) -> Tensor:
    """Equal-weight mixture of len(kappas) vMF laws on S^dim; centres are fixed (drawn with seed 1234)."""
    check_positive("n", n, integer=True)
    sphere = Sphere(dim)
    centres = sphere.random_base(len(kappas), generator=torch.Generator().manual_seed(1234), dtype=torch.float64)
    g = torch.Generator().manual_seed(seed)
    comp = torch.randint(0, len(kappas), (n,), generator=g)
    x = torch.empty(n, dim + 1)
    for k, kappa in enumerate(kappas):
        idx = (comp == k).nonzero().squeeze(-1)
        if idx.numel():
            x[idx] = sample_vmf(centres[k], float(kappa), idx.numel(), generator=g)
    return x


# ---------------------------------------------------------------------------------------------- earth-like sets on S^2
#: Synthetic stand-ins with the shape of the earth-science event sets (Mathieu & Nickel 2020): each is a mixture
#: of concentrated vMF clusters placed along bands given by (latitude, longitude) waypoints in degrees (a band's
#: clusters are spread evenly along its polyline), plus isolated clusters. The bands are rough sketches of where
#: such events happen (not data): volcanoes and earthquakes along the Pacific rim and the Alpide belt, floods over
#: the great river basins, fires along the savanna/boreal belts. Entries: (waypoints, n_clusters, kappa, weight).
_PACIFIC_RIM = [(-55, -70), (-20, -70), (5, -78), (15, -92), (35, -118), (58, -150), (52, 175), (40, 142),
                (25, 125), (5, 125), (-8, 112), (-20, 168), (-40, 175)]
_ALPIDE = [(38, -28), (38, 15), (39, 28), (36, 45), (32, 60), (34, 72), (29, 86), (25, 97)]
EARTH_SETS: dict[str, list[tuple[list[tuple[float, float]], int, float, float]]] = {
    # volcanoes: tight clusters (kappa 400) on the Pacific rim, a few on the Alpide belt, hotspots (Hawaii, Iceland, East Africa)
    "volcano": [(_PACIFIC_RIM, 40, 400.0, 0.72), (_ALPIDE, 6, 400.0, 0.08),
                ([(19.5, -155.5)], 1, 600.0, 0.04), ([(64.5, -19.0)], 1, 600.0, 0.04), ([(0, 30), (-5, 36), (-12, 35)], 3, 500.0, 0.12)],
    # earthquakes: the same belts, denser and a little wider (kappa 150-250), plus the mid-Atlantic ridge
    "earthquake": [(_PACIFIC_RIM, 60, 250.0, 0.70), (_ALPIDE, 20, 200.0, 0.22),
                   ([(60, -30), (20, -45), (-10, -14), (-45, -15)], 8, 150.0, 0.08)],
    # floods: broad clusters (kappa 40-120) over river basins: South/South-East Asia, China, the US, Europe, Africa, South America
    "flood": [([(25, 80), (23, 90), (15, 105), (30, 115)], 6, 80.0, 0.40), ([(38, -95), (35, -80)], 3, 60.0, 0.18),
              ([(48, 2), (47, 20)], 3, 80.0, 0.12), ([(8, 5), (0, 30), (-15, 35)], 4, 50.0, 0.18), ([(-5, -60), (-25, -50)], 3, 40.0, 0.12)],
    # fires: the African savanna belts, Australia's north, the South American cerrado, the boreal belt (kappa 60-150)
    "fire": [([(10, -15), (10, 30)], 6, 120.0, 0.25), ([(-10, 15), (-15, 35)], 6, 120.0, 0.25), ([(-15, 125), (-17, 145)], 3, 100.0, 0.15),
             ([(-10, -60), (-18, -45)], 3, 80.0, 0.15), ([(62, 30), (60, 100), (62, 130), (58, -120)], 8, 60.0, 0.20)],
}


def _polyline_points(waypoints: Sequence[tuple[float, float]], k: int) -> Tensor:
    """k points evenly spaced (by geodesic arc length) along the polyline through the waypoints on S^2."""
    pts = latlon_to_sphere(torch.tensor(waypoints, dtype=torch.float64))
    if pts.shape[0] == 1:
        return pts.expand(k, 3)
    sph = Sphere(2)
    seg = sph.dist(pts[:-1], pts[1:])
    cum = torch.cat([torch.zeros(1, dtype=torch.float64), seg.cumsum(0)])
    pos = torch.linspace(0, float(cum[-1]), k, dtype=torch.float64) if k > 1 else cum[-1:] / 2
    i = torch.clamp(torch.searchsorted(cum, pos, right=True) - 1, 0, seg.shape[0] - 1)
    frac = ((pos - cum[i]) / seg[i]).clamp(0, 1)
    return sph.geodesic(pts[i], pts[i + 1], frac)


def earth_like_mixture(name: str) -> tuple[Tensor, Tensor, Tensor]:
    """(centres (K, 3), kappas (K,), weights (K,)) of the vMF mixture of the earth-like set ``name``, float64."""
    check_choice("earth set", name, EARTH_SETS)
    centres, kappas, weights = [], [], []
    for waypoints, k, kappa, w in EARTH_SETS[name]:
        centres.append(_polyline_points(waypoints, k))
        kappas += [kappa] * k
        weights += [w / k] * k
    w = torch.tensor(weights, dtype=torch.float64)
    return torch.cat(centres), torch.tensor(kappas, dtype=torch.float64), w / w.sum()


def vmf_mixture_log_density(x: Tensor, mu: Tensor, kappa: Tensor, weights: Tensor) -> Tensor:
    """log sum_k w_k vMF(x; mu_k, kappa_k) on S^2 with respect to area, shape (B,) float64:
    log vMF = log kappa - log(2 pi) - log(1 - exp(-2 kappa)) + kappa (<mu, x> - 1)."""
    x = x.double()
    logc = torch.log(kappa) - math.log(2 * math.pi) - torch.log1p(-torch.exp(-2 * kappa))
    comp = logc + kappa * (x @ mu.T - 1) + torch.log(weights)
    return torch.logsumexp(comp, dim=-1)


def earth_like_log_density(name: str, x: Tensor) -> Tensor:
    """The true log density (w.r.t. area on the unit sphere) of the earth-like set ``name`` at the rows of x."""
    return vmf_mixture_log_density(x, *earth_like_mixture(name))


def earth_like(name: str, n: int, seed: int = 0) -> Tensor:
    """n points of the synthetic earth-like set ``name`` (volcano | earthquake | flood | fire) on S^2, float32 (n, 3):
    a weighted mixture of vMF clusters along bands (:data:`EARTH_SETS`); the layout is fixed, ``seed`` draws the points."""
    check_positive("n", n, integer=True)
    mu, kappas, weights = earth_like_mixture(name)
    kappas = kappas.tolist()
    g = torch.Generator().manual_seed(seed)
    comp = torch.multinomial(weights, n, replacement=True, generator=g)
    x = torch.empty(n, 3)
    for j in range(mu.shape[0]):
        idx = (comp == j).nonzero().squeeze(-1)
        if idx.numel():
            x[idx] = sample_vmf(mu[j], kappas[j], idx.numel(), generator=g)
    return x


# ---------------------------------------------------------------------------------------------- SO(3)
def so3_mixture(n: int, seed: int = 0, n_components: int = 6, std: float = 0.25) -> Tensor:
    """Mixture of wrapped normals on SO(3): R_k exp(hat z), z ~ N(0, std^2 I_3), with n_components fixed centres R_k
    (Haar draws with seed 4321); rows are flattened rotations (n, 9), float32."""
    from agm.manifolds import SO3

    check_positive("n", n, integer=True)
    check_positive("n_components", n_components, integer=True)
    check_positive("std", std)
    m = SO3()
    centres = m.random_base(n_components, generator=torch.Generator().manual_seed(4321), dtype=torch.float64)
    g = torch.Generator().manual_seed(seed)
    comp = torch.randint(0, n_components, (n,), generator=g)
    z = std * torch.randn(n, 3, generator=g, dtype=torch.float64)
    from agm.manifolds.so3 import hat

    c = m.mat(centres[comp])
    v = m.flat(c @ hat(z))
    return m.projx(m.expmap(centres[comp], v)).float()


# ---------------------------------------------------------------------------------------------- torus
def torus_wrapped_mixture(n: int, seed: int = 0, dim: int = 2) -> Tensor:
    """Mixture of 4 wrapped Gaussians on T^dim: (m_k + s_k eps) mod 2 pi; component 0 sits on the seam (m = 0).

    Means (per coordinate, then cycled over dims): 0, pi/2, pi, 3 pi/2 shifted by k pi/3 along the other axes;
    stds 0.25, 0.35, 0.3, 0.5 (radians). Component 1 is correlated in 2-D (covariance axis along (1, 1)).
    """
    check_positive("n", n, integer=True)
    check_positive("dim", dim, integer=True)
    g = torch.Generator().manual_seed(seed)
    means = torch.stack([torch.tensor([(k * math.pi / 2 + j * k * math.pi / 3) % (2 * math.pi) for j in range(dim)]) for k in range(4)])
    stds = torch.tensor([0.25, 0.35, 0.3, 0.5])
    comp = torch.randint(0, 4, (n,), generator=g)
    eps = torch.randn(n, dim, generator=g)
    if dim >= 2:  # correlate component 1: eps_1 <- 0.9 eps_0 + sqrt(1 - 0.81) eps_1
        c1 = comp == 1
        eps[c1, 1] = 0.9 * eps[c1, 0] + math.sqrt(1 - 0.81) * eps[c1, 1]
    return torch.remainder(means[comp] + stds[comp, None] * eps, 2 * math.pi)


# ---------------------------------------------------------------------------------------------- hyperbolic
def hyperbolic_mixture(n: int, seed: int = 0, radius: float = 1.5, std: float = 0.3, n_components: int = 5) -> Tensor:
    """Mixture of wrapped normals on H^2 (Lorentz model): exp_{c_k}(z), z ~ N(0, std^2 I) on T_{c_k}H^2,
    c_k = exp_o(radius (0, cos a_k, sin a_k)), a_k = 2 pi k / n_components."""
    check_positive("n", n, integer=True)
    check_positive("radius", radius)
    check_positive("n_components", n_components, integer=True)
    h = Lorentz(2)
    g = torch.Generator().manual_seed(seed)
    comp = torch.randint(0, n_components, (n,), generator=g)
    x = torch.empty(n, 3)
    o = h.origin()
    for k in range(n_components):
        a = 2 * math.pi * k / n_components
        c = h.expmap(o[None], radius * torch.tensor([[0.0, math.cos(a), math.sin(a)]]))[0]
        idx = (comp == k).nonzero().squeeze(-1)
        if idx.numel():
            x[idx] = h.wrapped_normal(c, std, idx.numel(), generator=g)
    return x


SYNTHETIC: dict[str, tuple[Callable[..., Manifold], Callable[..., Tensor]]] = {
    "sphere_vmf": (lambda: Sphere(2), sphere_vmf_mixture),
    "torus_wrapped": (lambda: FlatTorus(2), torus_wrapped_mixture),
    "hyperbolic_mixture": (lambda: Lorentz(2), hyperbolic_mixture),
    "so3_mixture": (lambda: _so3(), so3_mixture),
    **{f"earth_{k}": (lambda: Sphere(2), (lambda n, seed=0, _k=k: earth_like(_k, n, seed))) for k in EARTH_SETS},
}


def _so3() -> Manifold:
    from agm.manifolds import SO3

    return SO3()


def make_manifold_data(name: str, n: int, seed: int = 0) -> tuple[Manifold, Tensor]:
    """(manifold, n points) of a synthetic set: 'sphere_vmf', 'torus_wrapped', 'hyperbolic_mixture', 'so3_mixture' or
    an earth-like set on S^2 ('earth_volcano', 'earth_earthquake', 'earth_flood', 'earth_fire')."""
    check_choice("dataset", name, SYNTHETIC)
    make_m, make_x = SYNTHETIC[name]
    return make_m(), make_x(n, seed=seed)


# ---------------------------------------------------------------------------------------------- loaders
#: header names recognised (case-insensitive, surrounding spaces ignored) for the two sphere columns
LATITUDE_NAMES = ("lat", "latitude")
LONGITUDE_NAMES = ("lon", "lng", "long", "longitude")


def read_table(path: str | Path, hint: str = "") -> tuple[np.ndarray, list[str] | None]:
    """(values (N, D) float64, header names or None) of a .csv/.tsv/.txt/.npy table.

    .csv and .npy are read by :func:`agm.data.files.load_array` (the reader every method uses; a first row with a
    non-number is a header, see :func:`agm.data.files.csv_header`); .tsv/.txt (tab- or space-separated) the same
    way here. DataError naming the path for a missing file, another extension, a non-numeric or non-finite table.
    """
    from agm.data.files import csv_header, load_array

    p = Path(path)
    if not p.is_file():
        raise DataError(f"data path {str(p)!r} does not exist{'; ' + hint if hint else ''}")
    suffix = p.suffix.lower()
    if suffix not in (".csv", ".tsv", ".txt", ".npy"):
        raise DataError(f"data path {str(p)!r} has extension {suffix!r}; accepted: .csv, .tsv, .txt, .npy")
    if suffix in (".csv", ".npy"):
        arr = load_array(p).double().numpy()
        names = csv_header(p)
    else:
        delim = "\t" if suffix == ".tsv" else None
        with open(p) as f:
            first = f.readline()
        tokens = first.split(delim) if delim else first.split()
        names = None if all(_is_number(t) for t in tokens) else [t.strip() for t in tokens]
        try:
            arr = np.loadtxt(p, delimiter=delim, skiprows=0 if names is None else 1, ndmin=2)
        except ValueError as e:
            raise DataError(f"data path {str(p)!r} is not a numeric table: {e}") from None
    arr = np.asarray(arr, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[0] < 2:
        raise DataError(f"data in {str(p)!r} has shape {arr.shape}; a table of shape (N >= 2, D) is accepted")
    if not np.isfinite(arr).all():
        raise DataError(f"data in {str(p)!r} contains non-finite values")
    return arr, names


def _is_number(s: str) -> bool:
    try:
        float(s)
        return True
    except ValueError:
        return False


def column_index(col: str | int, names: list[str] | None, width: int, path: str | Path) -> int:
    """The 0-based index of a column given by name (case-insensitive; needs a header) or by index."""
    if isinstance(col, bool) or not isinstance(col, (int, str)):
        raise DataError(f"data.columns entry {col!r} must be a column name or a 0-based index")
    if isinstance(col, int):
        if not 0 <= col < width:
            raise DataError(f"data.columns has out-of-range index {col}; {str(path)!r} has {width} columns (0..{width - 1})")
        return col
    if names is None:
        raise DataError(f"data.columns names column {col!r} but {str(path)!r} has no header row; give 0-based indices instead")
    low = [n.strip().lower() for n in names]
    if col.strip().lower() not in low:
        raise DataError(f"data.columns names column {col!r}, which is not in the header of {str(path)!r}: {names}")
    return low.index(col.strip().lower())


def latlon_columns(names: list[str] | None, width: int, path: str | Path, columns: Sequence[str | int] | None = None) -> tuple[int, int]:
    """Indices of (latitude, longitude) in a table.

    ``columns`` given: [latitude column, longitude column] (names or indices). Else, with a header: the columns
    named lat/latitude and lon/lng/long/longitude (case-insensitive), in whatever order they stand. Else (no
    header): the first two columns, read as latitude then longitude, in degrees.
    """
    if columns:
        if len(columns) != 2:
            raise DataError(f"data.columns={list(columns)!r} must name 2 columns on the sphere: [latitude, longitude]")
        return column_index(columns[0], names, width, path), column_index(columns[1], names, width, path)
    if names is None:
        if width < 2:
            raise DataError(f"data in {str(path)!r} has {width} column(s); columns (latitude, longitude) are accepted")
        return 0, 1
    low = [n.strip().lower() for n in names]
    found = []
    for what, accepted in (("latitude", LATITUDE_NAMES), ("longitude", LONGITUDE_NAMES)):
        hits = [i for i, n in enumerate(low) if n in accepted]
        if len(hits) != 1:
            raise DataError(
                f"the header of {str(path)!r} is {names}: {'no' if not hits else 'more than one'} {what} column "
                f"(accepted names, any case: {list(accepted)}); name the columns with data.columns=[LAT,LON]"
            )
        found.append(hits[0])
    return found[0], found[1]


def load_earth_events(path: str | Path, columns: Sequence[str | int] | None = None) -> Tensor:
    """Load events given by latitude and longitude in degrees as points on S^2, float32 (N, 3).

    Columns: see :func:`latlon_columns` (named columns when the file has a header; the first two columns read as
    latitude, longitude otherwise; ``columns`` to choose).
    """
    arr, names = read_table(path, EARTH_DATA_HINT)
    i_lat, i_lon = latlon_columns(names, arr.shape[1], path, columns)
    lat, lon = arr[:, i_lat], arr[:, i_lon]
    if np.abs(lat).max() > 90 or np.abs(lon).max() > 360:
        raise DataError(f"data in {str(path)!r}: latitude must be in [-90, 90] and longitude in [-180, 360] degrees "
                        f"(read latitude from column {i_lat}, longitude from column {i_lon}; set data.columns to choose)")
    return latlon_to_sphere(torch.from_numpy(np.stack([lat, lon], axis=1))).float()


def load_torsion_angles(path: str | Path, degrees: bool = True, columns: Sequence[str | int] | None = None) -> Tensor:
    """Load torsion angles (one column per angle; ``columns`` selects some, by name or index) as points on T^d in
    [0, 2 pi), float32."""
    arr, names = read_table(path, TORSION_DATA_HINT)
    if columns:
        arr = arr[:, [column_index(c, names, arr.shape[1], path) for c in columns]]
    bound = 360.0 if degrees else 2 * math.pi
    if np.abs(arr).max() > bound + 1e-6:
        unit = "degrees" if degrees else "radians"
        raise DataError(f"data in {str(path)!r} has |angle| up to {np.abs(arr).max():.3g}; angles in {unit} within +-{bound:g} are accepted")
    rad = np.deg2rad(arr) if degrees else arr
    return torch.remainder(torch.from_numpy(rad), 2 * math.pi).float()


def latlon_to_sphere(latlon_deg: Tensor) -> Tensor:
    """(lat, lon) in degrees -> unit vectors (cos lat cos lon, cos lat sin lon, sin lat)."""
    lat, lon = torch.deg2rad(latlon_deg[:, 0]), torch.deg2rad(latlon_deg[:, 1])
    return torch.stack([torch.cos(lat) * torch.cos(lon), torch.cos(lat) * torch.sin(lon), torch.sin(lat)], dim=-1)


def sphere_to_latlon(x: Tensor) -> Tensor:
    """Unit vectors -> (lat, lon) in degrees."""
    return torch.rad2deg(torch.stack([torch.asin(x[:, 2].clamp(-1, 1)), torch.atan2(x[:, 1], x[:, 0])], dim=-1))
