"""Why Bellman Diffusion's MMD is high on breast_cancer (issue 18; docs/bellman.md, "Tabular: the breast_cancer MMD gap").

Two parts, on the split of experiments/bellman/tabular.py (standardised units, held-out 20 %):
  noise   no training: the MMD / W2 to the held-out rows of n training rows (the "floor" draw) plus the training noise
          of `field.level_noise=data`, N(0, eps I), and of the shaped alternative N(0, eps Sigma) (Sigma: covariance
          of the standardised training rows), averaged over --noise-draws draws. If the noise alone reproduces BD's MMD,
          the noise is the failing component.
  bd      for each configuration (name[:transform], names from tabular.BD_CONFIGS, transform standard | whiten): fit,
          sample from N(0, I) (2000 steps), and record W2, MMD, the per-component variance ratio generated / real in
          the training rows' PCA basis, and the MMD per block of PCA components (1-5, 6-10, 11-20, 21-30).

    python experiments/bellman/tabular_breast_cancer_diag.py --seeds 0 1 2 --bd-seeds 0 --steps 2000 --bd sliced_noise sliced_noise_eps0.1
Writes experiments/results/bellman_tabular_breast_cancer_diag.json (--out), rewritten after every fit.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(Path(__file__).resolve().parent))
BLOCKS = ((0, 5), (5, 10), (10, 20), (20, 30))


def pca(x: torch.Tensor):
    """(eigenvalues descending, eigenvectors as columns, mean) of the rows' covariance."""
    x64 = x.double()
    lam, vec = torch.linalg.eigh(torch.cov(x64.T))
    order = torch.argsort(lam, descending=True)
    return lam[order], vec[:, order], x64.mean(0)


def spectrum_and_blocks(xs: torch.Tensor, xtr: torch.Tensor, xte: torch.Tensor, seed: int) -> dict:
    """Per-component variance ratio of xs to the training rows in their PCA basis, and MMD per block of components."""
    from agm.metrics import mmd

    lam, vec, m = pca(xtr)
    ps, pt = (xs.double() - m) @ vec, (xte.double() - m) @ vec
    ratio = (ps.var(0) / lam).tolist()
    test_ratio = (pt.var(0) / lam).tolist()
    blocks = {}
    for a, b in BLOCKS:
        if a < xtr.shape[1]:
            b = min(b, xtr.shape[1])
            blocks[f"{a + 1}-{b}"] = mmd(ps[:, a:b].float(), pt[:, a:b].float(), max_samples=None, seed=seed)
    return {"real_eigenvalues": lam.tolist(), "var_ratio_gen_over_train": ratio, "var_ratio_test_over_train": test_ratio,
            "mmd_per_pca_block": blocks}


def noise_only(name: str, seed: int, draws: int, eps_list: list[float]) -> dict:
    from tabular import split

    from agm.metrics import mmd, wasserstein2

    xtr, xte, _ = split(name, seed)
    n = xte.shape[0]
    gen = torch.Generator().manual_seed(seed + 7)
    rows = xtr[torch.randperm(len(xtr), generator=gen)[:n]]  # n training rows (a draw like, not the same as, tabular.py's floor)
    cov = torch.cov(xtr.double().T)
    chol = torch.linalg.cholesky(cov + 1e-9 * torch.eye(cov.shape[0], dtype=torch.float64)).float()
    out = {"set": name, "seed": seed, "n": n, "clean_rows_diagnosis": spectrum_and_blocks(rows, xtr, xte, seed), "clean_rows": {"w2": wasserstein2(rows, xte, max_samples=None),
                                                             "mmd": mmd(rows, xte, max_samples=None, seed=seed)}, "noised": []}
    g2 = torch.Generator().manual_seed(1000 + seed)
    for shape in ("iso", "cov"):
        for eps in eps_list:
            w2s, mmds = [], []
            for _ in range(draws):
                z = torch.randn(rows.shape, generator=g2)
                noise = z if shape == "iso" else z @ chol.T
                xs = rows + eps**0.5 * noise
                w2s.append(wasserstein2(xs, xte, max_samples=None))
                mmds.append(mmd(xs, xte, max_samples=None, seed=seed))
            d = spectrum_and_blocks(xs, xtr, xte, seed)  # of the last draw
            out["noised"].append({"noise": shape, "eps": eps, "w2_mean": float(np.mean(w2s)), "mmd_mean": float(np.mean(mmds)),
                                  "mmd_sd": float(np.std(mmds)), "draws": draws, "last_draw_mmd_per_pca_block": d["mmd_per_pca_block"],
                                  "last_draw_var_ratio_gen_over_train": d["var_ratio_gen_over_train"]})
            print(seed, shape, eps, round(out["noised"][-1]["w2_mean"], 3), round(out["noised"][-1]["mmd_mean"], 4), flush=True)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="breast_cancer")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--bd-seeds", type=int, nargs="+", default=None, help="seeds of the BD fits (default: --seeds)")
    ap.add_argument("--steps", type=int, default=2000, help="field-matching steps (default 2000, as tabular.py)")
    ap.add_argument("--bd", nargs="*", default=["sliced_noise"], help="BD configurations name[:transform] (tabular.BD_CONFIGS)")
    ap.add_argument("--noise-eps", type=float, nargs="+", default=[0.05, 0.1, 0.3])
    ap.add_argument("--noise-draws", type=int, default=5)
    ap.add_argument("--no-noise", action="store_true", help="skip the noise-only part")
    ap.add_argument("--samplers", nargs="+", default=["normal"], help="samplers of tabular.SAMPLERS (default normal)")
    ap.add_argument("--append", action="store_true", help="add to an existing --out file (its commands kept in 'commands')")
    ap.add_argument("--out", default=str(ROOT / "experiments" / "results" / "bellman_tabular_breast_cancer_diag.json"))
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    from tabular import BD_CONFIGS, TRANSFORMS, run_bd, split

    from agm.training.results import write_result

    res = {"command": " ".join(["python", "experiments/bellman/tabular_breast_cancer_diag.py", *(argv if argv is not None else sys.argv[1:])]),
           "set": args.data, "noise_only": [], "bd": []}
    for spec in args.bd:
        c, _, tf = spec.partition(":")
        if c not in BD_CONFIGS or (tf or "standard") not in TRANSFORMS:
            ap.error(f"--bd {spec!r}: name in {list(BD_CONFIGS)}, transform in {list(TRANSFORMS)}")
    t0 = time.time()
    out = Path(args.out)
    if args.append and out.is_file():
        import json

        old = json.loads(out.read_text())
        res["commands"] = old.get("commands", [old["command"]]) + [res["command"]]
        res["noise_only"], res["bd"] = old["noise_only"], old["bd"]
    if not args.no_noise:
        for seed in args.seeds:
            res["noise_only"].append(noise_only(args.data, seed, args.noise_draws, args.noise_eps))
        write_result(out, res)
    for seed in args.seeds if args.bd_seeds is None else args.bd_seeds:
        xtr, xte, _ = split(args.data, seed)
        for spec in args.bd:
            c, _, tf = spec.partition(":")
            r, kept = run_bd(args.data, seed, c, args.steps, 256, 1e-3, 1000, 2000, samplers=tuple(args.samplers), transform=tf or "standard",
                             return_samples=True)
            r["diagnosis"] = {}
            for sname, xs in kept.items():
                xs = xs[torch.isfinite(xs).all(1)]
                r["diagnosis"][sname] = d = spectrum_and_blocks(xs, xtr, xte, seed)
                v = r["samplers"][sname]
                rat = d["var_ratio_gen_over_train"]
                print(seed, r["model"], sname, f"w2 {v.get('w2', float('nan')):.3f} mmd {v.get('mmd', float('nan')):.4f}",
                      f"{r['train_s']:.0f}s", "var ratio first/last 5:", [round(q, 2) for q in rat[:5]], [round(q, 2) for q in rat[-5:]],
                      "block mmd:", {k: round(q, 4) for k, q in d["mmd_per_pca_block"].items()}, flush=True)
            res["bd"].append(r)
            res["wall_s"] = time.time() - t0
            write_result(out, res)
    print(f"wrote {out} in {time.time() - t0:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
