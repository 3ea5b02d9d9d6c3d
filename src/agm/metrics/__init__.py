"""Sample-quality metrics: MMD, exact W2 (POT), energy distance, precision/recall/density/coverage.

All metrics accept torch tensors or numpy arrays of shape (N, D) (images (N, C, H, W) are flattened)
and raise :class:`agm.errors.DataError` on mismatched dimensions or non-finite values.
"""
from __future__ import annotations

from typing import Optional

from agm.data.files import ArrayLike, subsample
from agm.metrics.energy import energy_distance
from agm.metrics.mmd import as_pair, check_max_samples, mmd
from agm.metrics.prdc import prdc
from agm.metrics.wasserstein import wasserstein2

METRIC_NAMES = ("w2", "mmd", "energy", "precision", "recall", "density", "coverage")


def evaluate(samples: ArrayLike, data: ArrayLike, *, max_samples: Optional[int] = 2000, seed: int = 0, k: int = 5) -> dict[str, float]:
    """All sample metrics of ``samples`` against reference ``data``.

    Returns {'w2', 'mmd', 'energy', 'precision', 'recall', 'density', 'coverage'}: exact W2
    (:func:`wasserstein2`), unbiased squared MMD (:func:`mmd`), unbiased squared energy distance
    (:func:`energy_distance`) and PRDC with ``k`` neighbours (:func:`prdc`, ``data`` as real). Every
    metric sees the same subsample: at most ``max_samples`` points per set, drawn once with ``seed``.
    """
    check_max_samples(max_samples)
    x, y = as_pair(samples, data, ("samples", "data"))
    x = subsample(x, max_samples, seed)
    y = subsample(y, max_samples, seed + 1)
    out = {
        "w2": wasserstein2(x, y, max_samples=None),
        "mmd": mmd(x, y, max_samples=None, seed=seed),
        "energy": energy_distance(x, y, max_samples=None),
    }
    pr = prdc(y, x, k=k, max_samples=None)
    out.update(pr)
    return {name: out[name] for name in METRIC_NAMES}


def _cmd_score(args) -> int:
    import json

    from agm.data.files import load_array

    out = evaluate(load_array(args.samples), load_array(args.data), max_samples=args.max_samples, seed=args.seed, k=args.k)
    text = json.dumps(out, indent=2)
    print(text)
    if args.out:
        from pathlib import Path

        Path(args.out).write_text(text + "\n")
    return 0


def register(subparsers) -> None:
    """Add ``agm score``: all sample metrics of a samples file against a data file (see :func:`evaluate`)."""
    p = subparsers.add_parser("score", help="W2, MMD, energy distance and PRDC of a samples file against a data file")
    p.add_argument("--samples", required=True, help="generated samples, .npy or .csv of shape (N, D)")
    p.add_argument("--data", required=True, help="reference data, .npy or .csv of shape (M, D)")
    p.add_argument("--max-samples", type=int, default=2000, help="subsample each set to at most this many points (default: 2000)")
    p.add_argument("--seed", type=int, default=0, help="subsampling seed (default: 0)")
    p.add_argument("--k", type=int, default=5, help="neighbours for precision/recall/density/coverage (default: 5)")
    p.add_argument("--out", default=None, help="optional JSON file to write the metrics to")
    p.set_defaults(func=_cmd_score)


__all__ = ["METRIC_NAMES", "energy_distance", "evaluate", "mmd", "prdc", "register", "wasserstein2"]
