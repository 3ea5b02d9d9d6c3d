"""Per-loss learning-rate sweep of the SOC fine-tuning losses on an analytic tilt (issue 19).

Base = the exact linear-FM velocity of N(mu, sd^2 I) (no base training, no base error); fine-tuned velocity
v_ft = v_base + delta with a zero-initialised TimeMLP delta (``ResidualVelocity``, = v_base at the start).
Reward quadratic r(x) = -(q/2)|x - c|^2 (or linear r = a^T x), multiplier lam: the tilted law is Gaussian in
closed form, p* = N(m*, S*) (``gaussian_tilt_quadratic`` / ``gaussian_tilt_linear``).

For every loss x learning rate x seed: train ``--iterations`` steps (Adam, grad-norm clip 1, cosine decay) and
report, on ODE samples (Heun) of v_ft from a fixed noise:
  * w2: the Gaussian-fit W2 to the analytic tilt, sqrt(frechet_distance(sample moments, (m*, S*)));
  * kl_to_base: KL(N(sample moments) || base law) next to the exact KL(p* || base);
  * reward: the mean reward, next to the exact E_p*[r];
  * s_per_iter: wall-clock seconds per training iteration (evaluations excluded; one thread);
  * the curve of w2 every iterations/10 steps.
The floor is the same evaluation of the exact tilted velocity (ODE discretisation + finite samples).
Summary: mean and 95% Student-t interval over seeds (agm.training.results.seed_summary); per loss, the lr with
the lowest mean final w2.

    nice -n 10 .venv/bin/python experiments/steering/soc_sweep.py                      # full sweep
    .venv/bin/python experiments/steering/soc_sweep.py --quick                         # smoke test (~20 s)
    .venv/bin/python experiments/steering/soc_sweep.py --merge A.json B.json --out X   # pool per-loss parts
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from agm.methods.steering import GaussianFlowVelocity, LinearReward, QuadraticReward, gaussian_kl, gaussian_tilt_linear, gaussian_tilt_quadratic
from agm.methods.steering.soc import SOC_LOSSES, MemorylessSchedule, ResidualVelocity, SOCProblem, finetune
from agm.metrics.frechet import feature_statistics, frechet_distance
from agm.training.results import seed_summary, write_result

DEFAULT_LRS = {  # 3 values per loss, around the region of a one-seed pilot at 600 iterations (docs/steering.md)
    "adjoint_matching": "3e-3,1e-2,3e-2",
    "log_variance": "1e-3,3e-3,1e-2",
    "cross_entropy": "1e-3,3e-3,1e-2",
    "relative_entropy": "1e-3,3e-3,1e-2",
    "reward_weighted_regression": "1e-3,3e-3,1e-2",
}


def analytic(args) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, object]:
    d = args.dim
    mu = torch.full((d,), args.mu, dtype=torch.float64)
    cov = args.sd**2 * torch.eye(d, dtype=torch.float64)
    if args.reward == "quadratic":
        c = torch.ones(d, dtype=torch.float64)
        m, s = gaussian_tilt_quadratic(mu, cov, c, args.q, args.lam)
        r = QuadraticReward(c.float(), args.q)
    else:
        a = torch.zeros(d, dtype=torch.float64)
        a[0] = 1.0
        m, s = gaussian_tilt_linear(mu, cov, a, args.lam)
        r = LinearReward(a.float())
    return mu, cov, m, s, r


def _moments(x: torch.Tensor, target, base, r) -> dict:
    m_star, s_star = target
    mu, cov = base
    x = x.double()
    if not torch.isfinite(x).all():
        return {"w2": float("nan"), "kl_to_base": float("nan"), "reward": float("nan"), "finite": False}
    mean, c = feature_statistics(x)
    w2 = frechet_distance(mean, c, m_star.numpy(), s_star.numpy()) ** 0.5
    mt, ct = torch.from_numpy(mean), torch.from_numpy(c)
    return {"w2": w2, "kl_to_base": gaussian_kl(mt, ct, mu, cov), "reward": float(r(x.float()).mean()), "finite": True,
            "mean_err": float((mt - m_star).norm()), "cov_err": float((ct - s_star).norm())}


def evaluate(field, args, target, base, r, prob=None) -> dict:
    """Metrics of ODE samples (Heun, args.ode_steps) of ``field``; with ``prob`` also of the memoryless SDE
    rollout of the fine-tuned model (the process the losses train; keys *_sde)."""
    from agm.methods.steering import sample_flow

    out = _moments(sample_flow(field, args.n_eval, args.dim, steps=args.ode_steps, seed=12345), target, base, r)
    if prob is not None:
        with torch.no_grad():
            xs = prob.rollout(args.n_eval, generator=torch.Generator().manual_seed(54321)).xs[-1]
        out.update({f"{k}_sde": v for k, v in _moments(xs, target, base, r).items() if k != "finite"})
    return out


def run_one(loss: str, lr: float, seed: int, args, mu, cov, m_star, s_star, r, pool) -> dict:
    from agm.nets import TimeMLP

    torch.manual_seed(seed)
    base = GaussianFlowVelocity(mu.float(), args.sd)
    ft = ResidualVelocity(base, TimeMLP(args.dim, hidden=args.hidden, depth=args.depth))
    prob = SOCProblem(base=base, ft=ft, reward=r, dim=args.dim, reward_multiplier=args.lam, steps=args.steps,
                      schedule=MemorylessSchedule(1.0 / args.steps), base_pool=pool)
    curve, eval_s = [], [0.0]
    every = max(1, args.iterations // 10)

    def cb(it: int, lv: float, info: dict) -> None:
        if (it + 1) % every == 0:
            t0 = time.perf_counter()
            e = evaluate(ft, args, (m_star, s_star), (mu, cov), r, prob)
            curve.append({"iteration": it + 1, "w2": e["w2"], "w2_sde": e.get("w2_sde"), "reward": e["reward"], "loss": lv})
            eval_s[0] += time.perf_counter() - t0

    t0 = time.perf_counter()
    try:
        finetune(prob, loss, iterations=args.iterations, batch=args.batch, lr=lr, grad_clip=1.0, seed=seed,
                 lr_schedule=args.lr_schedule, callback=cb)
        ok = True
    except Exception as exc:  # a diverged run (NaN guard) is a result, not a crash of the sweep
        print(f"  {loss} lr={lr} seed={seed} failed: {type(exc).__name__}: {exc}", flush=True)
        ok = False
    train_s = time.perf_counter() - t0 - eval_s[0]
    e = evaluate(ft, args, (m_star, s_star), (mu, cov), r, prob) if ok else {"w2": float("nan"), "kl_to_base": float("nan"), "reward": float("nan"), "finite": False}
    n_it = curve[-1]["iteration"] if curve else args.iterations
    return {"loss": loss, "lr": lr, "seed": seed, "trained": ok, **e, "s_per_iter": train_s / max(1, n_it), "curve": curve}


def summarise(per: list[dict]) -> dict:
    out: dict = {}
    for rec in per:
        out.setdefault(rec["loss"], {}).setdefault(str(rec["lr"]), []).append(rec)
    summary = {}
    for loss, by_lr in out.items():
        summary[loss] = {"by_lr": {}}
        best = None
        for lr, recs in by_lr.items():
            row = {"n_failed": sum(not q["trained"] or not q["finite"] for q in recs)}
            for key in ("w2", "kl_to_base", "reward", "s_per_iter", "mean_err", "cov_err", "w2_sde", "kl_to_base_sde", "reward_sde"):
                vals = [q[key] for q in recs if q.get(key) is not None and q["finite"]]
                if vals:
                    row[key] = seed_summary(vals)
            # stability: the worst w2 over the last half of the curve, relative to the final one
            late = [max(c["w2"] for c in q["curve"][len(q["curve"]) // 2:]) for q in recs if q["curve"] and q["finite"]]
            if late:
                row["late_max_w2"] = seed_summary(late)
            summary[loss]["by_lr"][lr] = row
            score = row["w2"]["mean"] if "w2" in row and row["n_failed"] == 0 else float("inf")
            if best is None or score < best[1]:
                best = (lr, score)
        summary[loss]["best_lr"] = float(best[0])
        summary[loss]["best"] = summary[loss]["by_lr"][best[0]]
    return summary


def plot(per: list[dict], summary: dict, ref: dict, out: str) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        losses = list(summary)
        fig, axes = plt.subplots(1, len(losses), figsize=(3.2 * len(losses), 3.0), sharey=True)
        for ax, loss in zip(axes if len(losses) > 1 else [axes], losses):
            for lr in summary[loss]["by_lr"]:
                recs = [q for q in per if q["loss"] == loss and str(q["lr"]) == lr and q["curve"]]
                if not recs:
                    continue
                its = [c["iteration"] for c in recs[0]["curve"]]
                curves = torch.tensor([[c["w2"] for c in q["curve"]] for q in recs if len(q["curve"]) == len(its)])
                m = curves.nanmean(0)
                ax.plot(its, m.clamp_min(1e-4), marker="o", ms=2, label=f"lr {lr}" + (" *" if float(lr) == summary[loss]["best_lr"] else ""))
                if curves.shape[0] > 1:
                    ax.fill_between(its, curves.min(0).values.clamp_min(1e-4), curves.max(0).values.clamp_min(1e-4), alpha=0.15)
            ax.axhline(ref["w2_base"], color="k", ls="--", lw=0.8)
            ax.axhline(ref["w2_floor"], color="gray", ls=":", lw=0.8)
            ax.set_yscale("log"); ax.set_title(loss, fontsize=8); ax.set_xlabel("iteration"); ax.legend(fontsize=6)
        (axes[0] if len(losses) > 1 else axes).set_ylabel("W2 to tilt, ODE (seed mean, min-max)", fontsize=8)
        fig.tight_layout(); fig.savefig(Path(out).with_suffix(".png"), dpi=80)
    except Exception as exc:  # plotting is optional
        print("plot failed:", exc)


def merge(files: list[str], out: str) -> int:
    recs = [json.loads(Path(f).read_text()) for f in files]
    ref = recs[0]["reference"]
    for q in recs[1:]:
        if q["reference"] != ref:
            raise SystemExit("parts have different references (settings); not merged")
    per = [p for q in recs for p in q["per_run"]]
    summary = summarise(per)
    res = {"command": "; ".join(q["command"] for q in recs) + f"; then --merge {' '.join(files)} --out {out}",
           "settings": recs[0]["settings"], "reference": ref, "summary": summary, "per_run": per,
           "wall_seconds": sum(q["wall_seconds"] for q in recs), "parts": files}
    write_result(out, res)
    plot(per, summary, ref, out)
    print(f"wrote {out}")
    return 0


def timing(args, mu, cov, m_star, s_star, r, pool, iterations: int = 60) -> dict:
    """Seconds per training iteration of every loss, wall-clock and CPU time of this process (time.process_time):
    on a shared machine the wall-clock of the sweep carries the other processes' load, the CPU time does not."""
    from agm.nets import TimeMLP

    out = {}
    for loss in args.losses.split(","):
        torch.manual_seed(0)
        base = GaussianFlowVelocity(mu.float(), args.sd)
        ft = ResidualVelocity(base, TimeMLP(args.dim, hidden=args.hidden, depth=args.depth))
        prob = SOCProblem(base=base, ft=ft, reward=r, dim=args.dim, reward_multiplier=args.lam, steps=args.steps,
                          schedule=MemorylessSchedule(1.0 / args.steps), base_pool=pool)
        finetune(prob, loss, iterations=10, batch=args.batch, lr=1e-3, seed=0)  # warm-up
        w0, c0 = time.perf_counter(), time.process_time()
        finetune(prob, loss, iterations=iterations, batch=args.batch, lr=1e-3, seed=0)
        out[loss] = {"wall_s_per_iter": (time.perf_counter() - w0) / iterations, "cpu_s_per_iter": (time.process_time() - c0) / iterations,
                     "iterations": iterations}
        print(loss, out[loss], flush=True)
    return out


def table(path: str, timing_path: str | None = None) -> str:
    """Markdown tables of docs/steering.md from a results JSON of this script (every number from the file)."""
    res = json.loads(Path(path).read_text())
    summ, ref = res["summary"], res["reference"]
    tim = json.loads(Path(timing_path).read_text())["timing"] if timing_path else {}

    def ci(row, key, fmt="{:.3f}"):
        if key not in row:
            return "-"
        q = row[key]
        return (fmt + " [" + fmt + ", " + fmt + "]").format(q["mean"], *q["ci95"])

    lines = ["| loss | lr | W2 ODE | W2 SDE | KL(fit ‖ base) | mean reward | wall ms/iter | failed |", "|---|---|---|---|---|---|---|---|"]
    for loss, v in summ.items():
        for lr, row in sorted(v["by_lr"].items(), key=lambda kv: float(kv[0])):
            star = " **(best)**" if float(lr) == v["best_lr"] else ""
            ms = row["s_per_iter"]["mean"] * 1e3 if "s_per_iter" in row else float("nan")
            lines.append(f"| {loss} | {float(lr):g}{star} | {ci(row, 'w2')} | {ci(row, 'w2_sde')} | {ci(row, 'kl_to_base')} | "
                         f"{ci(row, 'reward')} | {ms:.0f} | {row['n_failed']} |")
    lines.append("")
    lines.append("| loss (best lr) | W2 ODE | W2 SDE | KL(fit ‖ base) | mean reward | worst W2 over the last half | CPU ms/iter |")
    lines.append("|---|---|---|---|---|---|---|")
    order = sorted(summ, key=lambda k: summ[k]["best"]["w2"]["mean"])
    for loss in order:
        b = summ[loss]["best"]
        cpu = f"{tim[loss]['cpu_s_per_iter'] * 1e3:.1f}" if loss in tim else "-"
        lines.append(f"| {loss} ({summ[loss]['best_lr']:g}) | {ci(b, 'w2')} | {ci(b, 'w2_sde')} | {ci(b, 'kl_to_base')} | {ci(b, 'reward')} | "
                     f"{ci(b, 'late_max_w2')} | {cpu} |")
    lines.append(f"| floor: exact tilted velocity | {ref['w2_floor']:.3f} | {ref['w2_floor_sde']:.3f} | {ref['kl_floor']:.3f} (exact {ref['kl_opt_to_base_exact']:.3f}) | "
                 f"{ref['reward_floor']:.3f} (exact {ref['reward_opt_exact_mc']:.3f}) | | |")
    lines.append(f"| base (no fine-tuning) | {ref['w2_base']:.3f} | {ref['w2_base_sde']:.3f} | 0 | {ref['reward_base']:.3f} | | |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--losses", default=",".join(SOC_LOSSES), help="comma-separated SOC losses")
    ap.add_argument("--lrs", default=None, help="comma-separated learning rates for every loss (default: DEFAULT_LRS per loss)")
    ap.add_argument("--seeds", default="0,1,2,3,4", help="comma-separated seeds")
    ap.add_argument("--reward", default="quadratic", choices=["quadratic", "linear"])
    ap.add_argument("--dim", type=int, default=2)
    ap.add_argument("--mu", type=float, default=0.0, help="base mean (every coordinate)")
    ap.add_argument("--sd", type=float, default=0.8, help="base standard deviation")
    ap.add_argument("--q", type=float, default=1.0, help="quadratic reward curvature")
    ap.add_argument("--lam", type=float, default=1.0, help="reward multiplier lambda")
    ap.add_argument("--steps", type=int, default=20, help="K, Euler-Maruyama steps of the memoryless SDE")
    ap.add_argument("--iterations", type=int, default=300)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--depth", type=int, default=2)
    ap.add_argument("--lr-schedule", default="cosine", choices=["constant", "cosine", "linear"])
    ap.add_argument("--n-eval", type=int, default=4000, help="ODE samples per evaluation")
    ap.add_argument("--ode-steps", type=int, default=50, help="Heun steps of the evaluation ODE")
    ap.add_argument("--out", default="experiments/results/steering_soc_sweep.json")
    ap.add_argument("--merge", nargs="+", default=None)
    ap.add_argument("--quick", action="store_true", help="smoke mode: 2 losses, 1 lr, 1 seed, 40 iterations")
    ap.add_argument("--timing-only", action="store_true", help="only time every loss (wall and CPU s/iteration), write --out")
    ap.add_argument("--table", nargs="+", default=None, metavar="JSON", help="print the docs tables of a results JSON (and a --timing-only JSON), then stop")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    if args.table:
        print(table(*args.table[:2]))
        return 0
    if args.merge:
        return merge(args.merge, args.out)
    if args.quick:
        args.losses, args.seeds, args.iterations, args.n_eval = "adjoint_matching,log_variance", "0", 40, 1000
        args.lrs = args.lrs or "1e-3"
        if args.out == ap.get_default("out"):
            args.out = "/tmp/steering_soc_sweep_quick.json"
    t_start = time.time()
    mu, cov, m_star, s_star, r = analytic(args)
    pool = (mu.float() + args.sd * torch.randn(20000, args.dim, generator=torch.Generator().manual_seed(998)))
    base_v = GaussianFlowVelocity(mu.float(), args.sd)
    opt_v = GaussianFlowVelocity(m_star.float(), float(s_star[0, 0]) ** 0.5) if torch.allclose(s_star, s_star[0, 0] * torch.eye(args.dim, dtype=s_star.dtype)) else None
    def _prob(ft):
        return SOCProblem(base=base_v, ft=ft, reward=r, dim=args.dim, reward_multiplier=args.lam, steps=args.steps,
                          schedule=MemorylessSchedule(1.0 / args.steps))

    e_base = evaluate(base_v, args, (m_star, s_star), (mu, cov), r, _prob(base_v))
    e_opt = evaluate(opt_v, args, (m_star, s_star), (mu, cov), r, _prob(opt_v)) if opt_v is not None else {}
    g = torch.Generator().manual_seed(5)
    xs = m_star[:, None] + torch.linalg.cholesky(s_star) @ torch.randn(args.dim, 200000, generator=g, dtype=torch.float64)
    ref = {"m_star": m_star.tolist(), "S_star": s_star.tolist(), "w2_base": e_base["w2"], "w2_floor": e_opt.get("w2"),
           "kl_opt_to_base_exact": gaussian_kl(m_star, s_star, mu, cov), "kl_floor": e_opt.get("kl_to_base"),
           "reward_base": e_base["reward"], "reward_opt_exact_mc": float(r(xs.T.float()).mean()), "reward_floor": e_opt.get("reward"),
           "w2_base_sde": e_base["w2_sde"], "w2_floor_sde": e_opt.get("w2_sde"), "kl_floor_sde": e_opt.get("kl_to_base_sde"),
           "reward_floor_sde": e_opt.get("reward_sde"), "floor_note": "the exact tilted velocity evaluated the same way (ODE / K-step memoryless SDE)"}
    print(json.dumps(ref), flush=True)
    if args.timing_only:
        res = {"command": " ".join([".venv/bin/python", *(sys.argv if argv is None else ["experiments/steering/soc_sweep.py", *argv])]),
               "settings": vars(args), "timing": timing(args, mu, cov, m_star, s_star, r, pool), "wall_seconds": time.time() - t_start}
        write_result(args.out, res)
        print(f"wrote {args.out}")
        return 0
    losses = args.losses.split(",")
    seeds = [int(s) for s in args.seeds.split(",")]
    per = []
    for loss in losses:
        lrs = [float(v) for v in (args.lrs or DEFAULT_LRS[loss]).split(",")]
        for lr in lrs:
            for seed in seeds:
                rec = run_one(loss, lr, seed, args, mu, cov, m_star, s_star, r, pool)
                per.append(rec)
                print(f"{loss} lr={lr:g} seed={seed}: w2 {rec['w2']:.4f} (sde {rec.get('w2_sde', float('nan')):.4f}) kl {rec['kl_to_base']:.4f} "
                      f"reward {rec['reward']:.4f} s/it {rec['s_per_iter'] * 1e3:.2f} ms curve "
                      + " ".join(f"{c['w2']:.3f}" for c in rec["curve"]), flush=True)
    summary = summarise(per)
    res = {"command": " ".join([".venv/bin/python", *(sys.argv if argv is None else ["experiments/steering/soc_sweep.py", *argv])]),
           "settings": vars(args), "reference": ref, "summary": summary, "per_run": per, "wall_seconds": time.time() - t_start}
    write_result(args.out, res)
    plot(per, summary, ref, args.out)
    for loss in losses:
        b = summary[loss]["best"]
        print(f"{loss}: best lr {summary[loss]['best_lr']:g} w2 {b['w2']['mean']:.4f} {b['w2']['ci95']}")
    print(f"wrote {args.out} in {time.time() - t_start:.0f}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
