"""Cross-check of agm.manifolds against two peer libraries (never used by agm itself or its tests):

* geoopt 0.5.1 (``SphereExact``, ``Lorentz(k=1)``): expmap, logmap, dist on S^2 and H^2;
* facebookresearch flow_matching 1.0.10 (``Sphere``, ``FlatTorus``, ``GeodesicProbPath`` with ``CondOTScheduler``):
  expmap, logmap on S^2/T^2 and the RFM baseline's path point x_t and target dx_t/dt (docs/flowmaps.md (F2)).

Install the peers with ``pip install --no-deps geoopt==0.5.1 flow-matching==1.0.10`` (see /work/shared/peers.md).
Random float64 points (away from the cut locus); reports the max absolute difference of each operation.

    python experiments/flowmaps/geometry_peers.py [--quick]

Writes experiments/results/flowmaps_geometry_peers.json.
"""
from __future__ import annotations

import argparse
import json
import sys

import torch

from agm.manifolds import FlatTorus, Lorentz, Sphere
from agm.paths.geodesic import GeodesicPath

F64 = torch.float64


def maxdiff(a, b) -> float:
    return float((a - b).abs().max())


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=100000, help="random point pairs per check")
    p.add_argument("--out", default="experiments/results/flowmaps_geometry_peers.json", help="output JSON")
    p.add_argument("--quick", action="store_true", help="smoke mode: 1000 pairs")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    n = 1000 if args.quick else args.n
    g = torch.Generator().manual_seed(0)
    res: dict = {}

    import geoopt
    from flow_matching.path import GeodesicProbPath
    from flow_matching.path.scheduler import CondOTScheduler
    from flow_matching.utils.manifolds import FlatTorus as FMTorus
    from flow_matching.utils.manifolds import Sphere as FMSphere

    s = Sphere(2)
    x, y = s.random_base(n, generator=g, dtype=F64), s.random_base(n, generator=g, dtype=F64)
    keep = (x * y).sum(-1) > -0.99  # away from the antipode (cut locus)
    x, y = x[keep], y[keep]
    u = s.logmap(x, y)
    go = geoopt.SphereExact()
    fms = FMSphere()
    res["sphere"] = {
        "pairs": int(x.shape[0]),
        "geoopt_expmap": maxdiff(s.expmap(x, u), go.expmap(x, u)),
        "geoopt_logmap": maxdiff(u, go.logmap(x, y)),
        "geoopt_dist": maxdiff(s.dist(x, y), go.dist(x, y)),
        "flow_matching_expmap": maxdiff(s.expmap(x, u), fms.expmap(x, u)),
        "flow_matching_logmap": maxdiff(u, fms.logmap(x, y)),
    }
    t = torch.rand(x.shape[0], generator=g, dtype=F64) * 0.98
    ours = GeodesicPath(s).sample(x, y, t)
    theirs = GeodesicProbPath(scheduler=CondOTScheduler(), manifold=fms).sample(x_0=x, x_1=y, t=t)
    res["sphere"]["flow_matching_path_xt"] = maxdiff(ours.xt, theirs.x_t)
    res["sphere"]["flow_matching_path_dxt"] = maxdiff(ours.target, theirs.dx_t)

    tor = FlatTorus(2)
    x, y = tor.random_base(n, generator=g, dtype=F64), tor.random_base(n, generator=g, dtype=F64)
    u = tor.logmap(x, y)
    fmt = FMTorus()
    ours = GeodesicPath(tor).sample(x, y, 0.98 * torch.rand(n, generator=g, dtype=F64))
    theirs = GeodesicProbPath(scheduler=CondOTScheduler(), manifold=fmt).sample(x_0=x, x_1=y, t=ours.t)
    res["torus"] = {
        "pairs": n,
        "flow_matching_expmap": maxdiff(tor.expmap(x, u), fmt.expmap(x, u)),
        "flow_matching_logmap": maxdiff(u, fmt.logmap(x, y)),
        "flow_matching_path_xt": maxdiff(tor.logmap(ours.xt, theirs.x_t), torch.zeros_like(ours.xt)),  # modulo 2 pi
        "flow_matching_path_dxt": maxdiff(ours.target, theirs.dx_t),
    }

    h = Lorentz(2)
    x, y = h.random_base(n, generator=g, dtype=F64), h.random_base(n, generator=g, dtype=F64)
    u = h.logmap(x, y)
    gl = geoopt.Lorentz(k=1.0)
    res["hyperbolic"] = {
        "pairs": n,
        "geoopt_expmap": maxdiff(h.expmap(x, u), gl.expmap(x, u)),
        "geoopt_logmap": maxdiff(u, gl.logmap(x, y)),
        "geoopt_dist": maxdiff(h.dist(x, y), gl.dist(x, y)),
    }
    out = {
        "command": "python experiments/flowmaps/geometry_peers.py" + (" " + " ".join(sys.argv[1:] if argv is None else argv)).rstrip(),
        "dtype": "float64",
        "peers": {"geoopt": geoopt.__version__, "flow_matching": "1.0.10"},
        "max_abs_diff": res,
    }
    from agm.training.results import write_result

    write_result(args.out, out)
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
