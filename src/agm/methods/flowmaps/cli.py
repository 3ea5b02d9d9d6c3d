"""``agm flowmaps ...``: generalised flow maps on Riemannian manifolds (GFM, Davis et al., ICLR 2026;
soc-adjoint-flowmaps-digest.md part B). Sub-commands:

* ``agm flowmaps train``  - train a flow map (or the RFM baseline) on a synthetic set or a local data file, save it
  (``flow_map.safetensors`` + ``flow_map.json``) and evaluate 1/2/4-step and many-step samples (``result.json``);
* ``agm flowmaps sample`` - draw k-step samples from a saved flow map into a .npy file (checked on the manifold).

Imports stay inside the command functions (fast ``agm --help``).
"""
from __future__ import annotations

import argparse

METHOD_HELP = "rfm (Riemannian flow matching baseline) | lagrangian (G-LSD) | eulerian (G-ESD) | progressive (G-PSD)"


def register(sub: argparse._SubParsersAction) -> None:
    f = sub.add_parser("flowmaps", help="generalised flow maps on the sphere, flat torus and hyperbolic plane (few-step sampling)")
    fs = f.add_subparsers(dest="flowmaps_command", required=True)

    t = fs.add_parser("train", help="train a flow map, save it and evaluate 1/2/4-step samples against held-out data")
    t.add_argument("--dataset", default="sphere_vmf", help="synthetic set: sphere_vmf | torus_wrapped | hyperbolic_mixture "
                   "(ignored with --data-file)")
    t.add_argument("--data-file", default=None, help="local data file instead of a synthetic set: earth events (CSV lat, lon in "
                   "degrees) with --manifold sphere, or torsion angles in degrees (CSV/TSV/NPY) with --manifold torus")
    t.add_argument("--manifold", default=None, help="manifold of --data-file: sphere (S^2) | torus (T^d, d = number of columns)")
    t.add_argument("--method", default="lagrangian", help=METHOD_HELP + " (default lagrangian)")
    t.add_argument("--iters", type=int, default=2000, help="training iterations (default 2000)")
    t.add_argument("--batch", type=int, default=256, help="batch size (default 256)")
    t.add_argument("--hidden", type=int, default=128, help="MLP width (default 128)")
    t.add_argument("--depth", type=int, default=3, help="MLP depth (default 3)")
    t.add_argument("--lr", type=float, default=2e-3, help="Adam learning rate with cosine decay (default 2e-3)")
    t.add_argument("--diag-fraction", type=float, default=0.75, help="share of the batch on the diagonal s = t, in (0, 1) "
                   "(reconstructed choice, default 0.75)")
    t.add_argument("--st-sampling", default="scaled", help="off-diagonal times: scaled (t ~ U, s = t U) | sorted (default scaled)")
    t.add_argument("--midpoint", default="mid", help="G-PSD intermediate time: mid ((s+t)/2) | uniform (u ~ U[s, t]) (default mid)")
    t.add_argument("--n-train", type=int, default=20000, help="training points drawn from a synthetic set (default 20000)")
    t.add_argument("--n-eval", type=int, default=1000, help="held-out points and samples per evaluation (default 1000)")
    t.add_argument("--seed", type=int, default=0, help="training seed (default 0)")
    t.add_argument("--out", required=True, help="output folder: flow_map.safetensors, flow_map.json, result.json")
    t.set_defaults(func=_cmd_train)

    s = fs.add_parser("sample", help="draw samples from a saved flow map into a .npy file")
    s.add_argument("--run", required=True, help="folder written by 'agm flowmaps train'")
    s.add_argument("--n", type=int, default=1000, help="number of samples (default 1000)")
    s.add_argument("--steps", type=int, default=1, help="flow-map steps (network evaluations), > 0 (default 1)")
    s.add_argument("--mode", default="map", help="map (k-step flow map) | ode (k-step Riemannian Euler on v_{t,t}) (default map)")
    s.add_argument("--seed", type=int, default=0, help="prior seed (default 0)")
    s.add_argument("--out", required=True, help="output .npy file (float32, ambient coordinates)")
    s.set_defaults(func=_cmd_sample)


def _load_data(args):
    """(manifold, train, heldout) from a synthetic set or a local file (10% held out, at most n_eval points)."""
    import torch

    from agm.data.manifold import SYNTHETIC, load_earth_events, load_torsion_angles, make_manifold_data
    from agm.errors import ConfigError, check_choice
    from agm.manifolds import FlatTorus, Sphere

    if args.data_file is None:
        check_choice("dataset", args.dataset, SYNTHETIC)
        m, train = make_manifold_data(args.dataset, args.n_train, seed=0)
        _, held = make_manifold_data(args.dataset, args.n_eval, seed=10_001)
        return m, train, held, args.dataset
    if args.manifold is None:
        raise ConfigError("manifold=None is not accepted with --data-file; accepted values: ['sphere', 'torus']")
    check_choice("manifold", args.manifold, ("sphere", "torus"))
    if args.manifold == "sphere":
        x = load_earth_events(args.data_file)
        m = Sphere(2)
    else:
        x = load_torsion_angles(args.data_file)
        m = FlatTorus(x.shape[1])
    perm = torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(0))
    n_held = max(2, min(args.n_eval, x.shape[0] // 10))
    return m, x[perm[n_held:]], x[perm[:n_held]], args.data_file


def _cmd_train(args) -> int:
    import json
    import os

    import torch
    from safetensors.torch import save_file

    from agm.errors import check_positive
    from agm.metrics.geodesic import median_geodesic_distance
    from agm.methods.flowmaps.train import FlowMapTrainConfig, evaluate_samples, sample_flow_map, train_flow_map

    torch.set_num_threads(1)
    for name in ("n_train", "n_eval"):
        check_positive(name, getattr(args, name), integer=True)
    cfg = FlowMapTrainConfig(method=args.method, iters=args.iters, batch=args.batch, lr=args.lr, hidden=args.hidden,
                             depth=args.depth, diag_fraction=args.diag_fraction, st_sampling=args.st_sampling,
                             midpoint=args.midpoint, seed=args.seed)
    cfg.validate()
    m, train, held, source = _load_data(args)
    res = train_flow_map(m, train, cfg)
    os.makedirs(args.out, exist_ok=True)
    save_file({k: v.contiguous() for k, v in res.flow_map.state_dict().items()}, os.path.join(args.out, "flow_map.safetensors"))
    meta = {"manifold": m.name, "dim": m.dim, "config": cfg.to_dict(), "source": source,
            "prior_std": getattr(m, "prior_std", None), "head": getattr(m, "head", None)}
    with open(os.path.join(args.out, "flow_map.json"), "w") as f:
        json.dump(meta, f, indent=1)
    h = median_geodesic_distance(m, held)
    mode = "ode" if cfg.method == "rfm" else "map"
    evals = {}
    for nfe in (1, 2, 4):
        x = sample_flow_map(res.flow_map, held.shape[0], nfe, mode=mode, seed=args.seed)
        evals[f"{mode}_{nfe}"] = evaluate_samples(m, x, held, bandwidth=h, seed=args.seed, max_samples=held.shape[0])
    x = sample_flow_map(res.flow_map, held.shape[0], 100, mode="ode", seed=args.seed)
    evals["ode_100"] = evaluate_samples(m, x, held, bandwidth=h, seed=args.seed, max_samples=held.shape[0])
    result = {"manifold": m.describe(), "source": source, "config": cfg.to_dict(), "bandwidth": h,
              "history": res.history, "eval": evals}
    with open(os.path.join(args.out, "result.json"), "w") as f:
        json.dump(result, f, indent=1)
    for k, v in evals.items():
        print(f"{k:8s} MMD^2={v['mmd2']:.5f} W2={v['w2']:.4f} on_manifold={v['on_manifold']}")
    print("wrote", args.out)
    return 0


def load_flow_map(run: str):
    """Rebuild a saved flow map from ``run``/flow_map.json + flow_map.safetensors (no pickle)."""
    import json
    import os

    from safetensors.torch import load_file

    from agm.errors import CheckpointError
    from agm.manifolds import make_manifold
    from agm.methods.flowmaps.nets import FlowMap, FlowMapMLP

    meta_path, w_path = os.path.join(run, "flow_map.json"), os.path.join(run, "flow_map.safetensors")
    for p in (meta_path, w_path):
        if not os.path.isfile(p):
            raise CheckpointError(f"run={run!r} has no {os.path.basename(p)}; pass a folder written by 'agm flowmaps train'")
    with open(meta_path) as f:
        meta = json.load(f)
    kw = {k: meta[k] for k in ("prior_std", "head") if meta.get(k) is not None}
    m = make_manifold(meta["manifold"], meta["dim"], **kw)
    c = meta["config"]
    fm = FlowMap(m, FlowMapMLP(m, c["hidden"], c["depth"], c["n_freq"]))
    fm.load_state_dict(load_file(w_path))
    return fm.eval()


def _cmd_sample(args) -> int:
    import numpy as np
    import torch

    from agm.errors import check_choice, check_positive
    from agm.methods.flowmaps.train import sample_flow_map

    torch.set_num_threads(1)
    check_positive("steps", args.steps, integer=True)
    check_positive("n", args.n, integer=True)
    check_choice("mode", args.mode, ("map", "ode"))
    fm = load_flow_map(args.run)
    x = sample_flow_map(fm, args.n, args.steps, mode=args.mode, seed=args.seed)
    fm.manifold.check_point(x, "samples")
    np.save(args.out, x.numpy().astype(np.float32))
    err = float(fm.manifold.constraint_error(x).max())
    print(f"wrote {args.out}: {args.n} samples on {fm.manifold.describe()}, max constraint error {err:.2e}")
    return 0
