"""EFM vs guidance baselines on closed-form tilted targets q ∝ p exp(-beta E) (arXiv 2503.04975, sections 4.2-4.3).

Targets (p known only through 20,000 samples; q in closed form, agm.methods.efm.efm):
  * gauss2d: p = N(m, S), m = (1, -0.5), S = [[1, 0.3], [0.3, 0.5]], E = 1/2 (x-c)^T A (x-c), A = diag(1.5, 0.5),
    c = (-1, 1)  ->  q = N(m_q, S_q) (gaussian_tilt).
  * gmm1d: p = 0.5 N(-2, 0.5^2) + 0.5 N(2, 0.5^2), E = 0.25 (x-1)^2  ->  a two-component mixture with
    closed-form weights (gmm_quadratic_tilt).
Methods, all with the same TimeMLP (hidden 64, depth 2), OT path, Heun ODE sampler with 30 steps:
  * EFM: the velocity trained with the energy-weighted CFM loss at each beta (batch softmax weights; no
    auxiliary model, no guidance at sampling).
  * CEP guidance (exact auxiliary-model method, QGPO/CEP): a plain CFM base model (beta = 0) plus a scalar
    energy model f_phi(x, t) trained with the contrastive loss at the same beta; sampling uses
    v_q = v_p - (1-t)/max(t, t_floor) grad f_phi (our derivation of the OT-path guidance, t_floor = 0.01).
  * scaled guidance (CG/CFG-like, Lemma 4.10): f_phi trained at beta = 1, applied with scale beta; exact only
    at beta = 1.
Every network is fitted by the shared agm.training.Trainer (fit_weighted_flow / fit_energy_model: AdamW without
weight decay, cosine learning rate set per step, no EMA), as the private Adam loops did before.
Metrics against the closed form: gauss2d - |mean error|, Frobenius covariance error and the Gaussian W2
(Bures) distance of the sample moments; gmm1d - error of the right-mode weight and the 1-D Wasserstein-1 to
200,000 exact samples of q. Sampling time for 10,000 samples is also recorded (wall clock, loaded machine).

    .venv/bin/python experiments/efm/tilted.py           # full run -> experiments/results/efm_tilted.json + .png
    .venv/bin/python experiments/efm/tilted.py --quick   # smoke run (< 1 min) -> /tmp/efm_tilted_quick.json
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

from agm.training.results import machine_info, write_result

ROOT = Path(__file__).resolve().parents[2]


def bures_w2(m1, S1, m2, S2) -> float:
    """W2 between N(m1, S1) and N(m2, S2): the square root of the library's Fréchet distance (agm.metrics.frechet)."""
    from agm.metrics.frechet import frechet_distance

    return frechet_distance(m1.numpy(), S1.numpy(), m2.numpy(), S2.numpy()) ** 0.5


def targets(n_train: int, gen: torch.Generator):
    from agm.methods.efm.efm import quadratic_energy

    m, S = torch.tensor([1.0, -0.5]), torch.tensor([[1.0, 0.3], [0.3, 0.5]])
    A, c = torch.tensor([[1.5, 0.0], [0.0, 0.5]]), torch.tensor([-1.0, 1.0])
    g2 = {"data": m + torch.randn(n_train, 2, generator=gen) @ torch.linalg.cholesky(S).T,
          "energy": quadratic_energy(A, c), "p": (m, S, A, c)}
    w0, M, C = torch.tensor([0.5, 0.5]), torch.tensor([[-2.0], [2.0]]), torch.tensor([[[0.25]], [[0.25]]])
    A1, c1 = torch.tensor([[0.5]]), torch.tensor([1.0])
    comp = torch.randint(0, 2, (n_train,), generator=gen)
    g1 = {"data": M[comp] + 0.5 * torch.randn(n_train, 1, generator=gen), "energy": quadratic_energy(A1, c1),
          "p": (w0, M, C, A1, c1)}
    return {"gauss2d": g2, "gmm1d": g1}


def evaluate(name: str, tgt: dict, beta: float, x: torch.Tensor, gen: torch.Generator) -> dict:
    from agm.methods.efm.efm import gaussian_tilt, gmm_quadratic_tilt

    x = x.double()
    if not torch.isfinite(x).all():
        return {"finite": False}
    if name == "gauss2d":
        m, S, A, c = tgt["p"]
        mq, Sq = gaussian_tilt(m, S, A, c, beta)
        mean, cov = x.mean(0), torch.cov(x.T)
        return {"mean_err": float((mean - mq).norm()), "cov_err_fro": float((cov - Sq).norm()),
                "w2_gauss": bures_w2(mean, cov, mq, Sq)}
    w0, M, C, A, c = tgt["p"]
    wq, mq, Sq = gmm_quadratic_tilt(w0, M, C, A, c, beta)
    n = 200_000
    comp = torch.multinomial(wq, n, replacement=True, generator=gen)
    exact = mq[comp, 0] + Sq[comp, 0, 0].sqrt() * torch.randn(n, generator=gen, dtype=torch.float64)
    qs = torch.linspace(0.0005, 0.9995, 2000, dtype=torch.float64)
    w1 = float((torch.quantile(x[:, 0], qs) - torch.quantile(exact, qs)).abs().mean())
    frac = float((x[:, 0] > 0).double().mean())  # modes at about -2 and +2, > 8 sd apart
    return {"right_weight": frac, "right_weight_true": float(wq[1]), "weight_err": abs(frac - float(wq[1])), "w1": w1}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="smoke mode (< 1 min): 1 seed, 2 betas, 150 steps")
    p.add_argument("--betas", type=float, nargs="+", default=[0.5, 1.0, 2.0, 4.0], help="inverse temperatures of the sweep")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="seeds (data, init, sampling)")
    p.add_argument("--steps", type=int, default=1500, help="Adam steps for every model")
    p.add_argument("--n-train", type=int, default=20_000, help="samples of p")
    p.add_argument("--n-gen", type=int, default=10_000, help="generated samples per model")
    p.add_argument("--t-floor", type=float, default=0.01, help="floor of t in the guidance factor (1-t)/t")
    p.add_argument("--out", default=None, help="output JSON (default experiments/results/efm_tilted.json)")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    if args.quick:
        args.betas, args.seeds, args.steps, args.n_gen = [1.0, 4.0], [0], 150, 2000
    out = Path(args.out or ("/tmp/efm_tilted_quick.json" if args.quick else ROOT / "experiments/results/efm_tilted.json"))

    from agm.nets import TimeMLP
    from agm.methods.efm.efm import (ContrastiveEnergyPrediction, EnergyWeightedFlowMatching, effective_sample_size,
                                    energy_weights, fit_energy_model, fit_weighted_flow)
    from agm.samplers import ODESampler

    sampler = ODESampler(30, "heun")
    rows = []
    t_start = time.time()
    for seed in args.seeds:
        gen = torch.Generator().manual_seed(seed)
        for name, tgt in targets(args.n_train, gen).items():
            data, energy = tgt["data"], tgt["energy"]
            dim = data.shape[1]

            def sample(field, s):
                g = torch.Generator().manual_seed(1000 + s)
                x0 = torch.randn(args.n_gen, dim, generator=g)
                t0 = time.perf_counter()
                x = sampler.sample(field, x0)
                return x.detach(), time.perf_counter() - t0

            torch.manual_seed(seed)
            base = TimeMLP(dim, hidden=64, depth=2)
            fit_weighted_flow(base, data, EnergyWeightedFlowMatching(energy, 0.0), steps=args.steps, lr=3e-3, seed=seed)
            base_field = lambda x, t: base(x, t)  # noqa: E731
            ceps = {}
            for b in sorted(set(args.betas) | {1.0}):
                torch.manual_seed(seed + 7)
                cep = ContrastiveEnergyPrediction(TimeMLP(dim, hidden=64, depth=2, out_dim=1), energy, b, group_size=16)
                fit_energy_model(cep, data, steps=args.steps, lr=3e-3, seed=seed)
                ceps[b] = cep
            for beta in args.betas:
                ess = float(effective_sample_size(energy_weights(energy(data), beta)))
                torch.manual_seed(seed)
                net = TimeMLP(dim, hidden=64, depth=2)
                fit_weighted_flow(net, data, EnergyWeightedFlowMatching(energy, beta), steps=args.steps, lr=3e-3, seed=seed)
                runs = {
                    "efm": lambda x, t: net(x, t),
                    "cep_guidance": ceps[beta].guided_field(base_field, 1.0, args.t_floor),
                    "scaled_guidance_beta1": ceps[1.0].guided_field(base_field, beta, args.t_floor),
                }
                for method, field in runs.items():
                    x, secs = sample(field, seed)
                    row = {"target": name, "seed": seed, "beta": beta, "method": method, "ess_train": ess,
                           "sample_seconds": secs, **evaluate(name, tgt, beta, x, torch.Generator().manual_seed(seed + 55))}
                    rows.append(row)
                    print(json.dumps(row), flush=True)

    summary = {}
    for name in ("gauss2d", "gmm1d"):
        keys = ("mean_err", "cov_err_fro", "w2_gauss") if name == "gauss2d" else ("weight_err", "w1")
        for method in ("efm", "cep_guidance", "scaled_guidance_beta1"):
            for beta in args.betas:
                sel = [r for r in rows if r["target"] == name and r["method"] == method and r["beta"] == beta]
                ent = {"n_seeds": len(sel), "sample_seconds_mean": float(np.mean([r["sample_seconds"] for r in sel]))}
                for k in keys:
                    v = np.array([r.get(k, np.nan) for r in sel], dtype=float)
                    ent[k] = {"mean": float(v.mean()), "std": float(v.std(ddof=1)) if len(v) > 1 else 0.0}
                summary[f"{name}/{method}/beta={beta:g}"] = ent
    result = {"command": " ".join([".venv/bin/python", "experiments/efm/tilted.py", *sys.argv[1:]]) if argv is None else f"main({argv})",
              "settings": vars(args), "machine": {**machine_info(), "load_avg_at_end": os.getloadavg()},
              "wall_seconds": time.time() - t_start, "summary": summary, "rows": rows}
    write_result(out, result)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.4))
    for ax, (name, key, label) in zip(axes, (("gauss2d", "w2_gauss", "Gaussian W2 to q"), ("gmm1d", "w1", "W1 to q"))):
        for method, col in (("efm", "C0"), ("cep_guidance", "C1"), ("scaled_guidance_beta1", "C2")):
            mu = [summary[f"{name}/{method}/beta={b:g}"][key]["mean"] for b in args.betas]
            sd = [summary[f"{name}/{method}/beta={b:g}"][key]["std"] for b in args.betas]
            ax.errorbar(args.betas, mu, yerr=sd, color=col, marker="o", capsize=3, label=method)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("beta")
        ax.set_ylabel(label)
        ax.set_title(f"{name}, {len(args.seeds)} seeds (mean ± sd)")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out.with_suffix(".png"), dpi=90)
    plt.close(fig)
    print(f"wall {result['wall_seconds']:.0f} s -> {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
