"""``agm bellman ...``: Bellman Diffusion (Li et al., arXiv 2410.01796; bellman-diffusion-digest.md).

    agm bellman fit --data moons --out runs/bd_moons       fit f ~ p, g ~ grad p (Eqs. 8-11) and sample (Eq. 13)
    agm bellman rl --env CartPole-v1 --agent bd --out r.json  distributional RL with return fields (sec. 5) or C51

Imports stay inside the command functions so that ``agm --help`` stays fast.
"""
from __future__ import annotations

import argparse


def _cmd_fit(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    import numpy as np
    import torch
    from safetensors.torch import save_file

    from agm.data.files import load_array
    from agm.data.toy import make_toy, toy_names
    from agm.errors import ConfigError, check_positive
    from agm.metrics import mmd, wasserstein2
    from agm.methods.bellman.fields import FieldMatching, train_fields
    from agm.methods.bellman.dynamics import BellmanDynamics

    torch.set_num_threads(args.threads)
    check_positive("--n-samples", args.n_samples, integer=True)
    if args.data in toy_names():
        x = make_toy(args.data, args.n_train, seed=args.seed)
    elif Path(args.data).suffix.lower() in (".npy", ".csv"):
        x = load_array(args.data)
    else:
        from agm.errors import closest

        raise ConfigError(f"--data={args.data!r} is not accepted; give a toy name {list(toy_names())}{closest(args.data, toy_names())} "
                          "or a .npy/.csv path")
    mu, sd = x.mean(0), x.std(0).clamp_min(1e-8)
    xs = (x - mu) / sd
    obj = FieldMatching(eps=args.eps, kernel=args.kernel, pairing=args.pairing, trace=args.trace, n_slices=args.slices)
    f_net, g_net, log = train_fields(xs, obj, steps=args.steps, batch_size=args.batch_size, lr=args.lr, hidden=args.hidden,
                                     depth=args.depth, head=args.head, seed=args.seed, log_every=max(args.steps // 20, 1))
    gen = torch.Generator().manual_seed(args.seed)
    sampler = BellmanDynamics(steps=args.sample_steps, rel_step=args.rel_step)
    z = sampler.sample(lambda u: g_net(u), torch.randn(args.n_samples, x.shape[1], generator=gen), lambda u: f_net(u), generator=gen)
    samples = z * sd + mu
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    np.save(out / "samples.npy", samples.numpy())
    save_file({**{f"f.{k}": v.contiguous() for k, v in f_net.state_dict().items()},
               **{f"g.{k}": v.contiguous() for k, v in g_net.state_dict().items()},
               "data_mean": mu.contiguous(), "data_std": sd.contiguous()}, str(out / "fields.safetensors"))
    ok = torch.isfinite(samples).all(1)
    metrics = {"data": args.data, "n_data": int(x.shape[0]), "dim": int(x.shape[1]), "sampler": sampler.last_stats,
               "finite_fraction": float(ok.float().mean()),
               "w2": wasserstein2(samples[ok], x, max_samples=2000, seed=args.seed),
               "mmd": mmd(samples[ok], x, max_samples=2000, seed=args.seed), "loss_log": log,
               "config": {k: v for k, v in vars(args).items() if k != "func"}}
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1))
    print(json.dumps({k: metrics[k] for k in ("w2", "mmd", "finite_fraction")}))
    print(f"wrote {out / 'samples.npy'}, {out / 'fields.safetensors'}, {out / 'metrics.json'}")
    return 0


def _cmd_rl(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    import torch

    from agm.errors import ConfigError
    from agm.methods.bellman.rl import LoopConfig, train_agent

    torch.set_num_threads(args.threads)
    if not args.out.endswith(".json"):
        raise ConfigError(f"--out={args.out!r} must end in .json")
    loop = LoopConfig(total_steps=args.steps, learning_starts=args.learning_starts, train_frequency=args.train_frequency,
                      target_frequency=args.target_frequency, batch_size=args.batch_size,
                      eval_every=args.eval_every, eval_episodes=args.eval_episodes)
    cfg = {"v_min": args.v_min, "v_max": args.v_max, "gamma": args.gamma, "lr": args.lr}
    if args.agent == "bd":
        cfg["eps_T"] = args.sigma_t**2
    _, rec = train_agent(args.agent, args.env, args.seed, loop, cfg)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(rec, indent=1))
    rets = [r for _, r in rec["episodes"]]
    last = rets[-10:]
    print(json.dumps({"episodes": len(rets), "mean_return_last_10": sum(last) / max(len(last), 1), "evals": rec["evals"][-3:],
                      "wall_s": round(rec["wall_s"], 1)}))
    print(f"wrote {args.out}")
    return 0


def register(subparsers) -> None:
    """Add ``agm bellman fit`` and ``agm bellman rl``."""
    p = subparsers.add_parser("bellman", help="Bellman Diffusion: field matching, its sampling dynamics, distributional RL")
    sub = p.add_subparsers(dest="bellman_cmd", required=True)

    f = sub.add_parser("fit", help="fit the scalar field f ~ p and gradient field g ~ grad p on data, then sample with the "
                                   "Bellman Diffusion Dynamics")
    f.add_argument("--data", required=True, help="a built-in toy name (e.g. moons, unbalanced_mixture, uniform3) or a .npy/.csv file")
    f.add_argument("--out", required=True, help="output directory (samples.npy, fields.safetensors, metrics.json)")
    f.add_argument("--n-train", type=int, default=20000, help="points drawn for a toy set (default 20000)")
    f.add_argument("--eps", type=float, default=0.05, help="kernel variance epsilon > 0 on standardised data (default 0.05)")
    f.add_argument("--kernel", default="sliced", help="'sliced' (Eqs. 10-11, default) or 'full' (Eq. 8, d-dim Gaussian)")
    f.add_argument("--pairing", default="all", help="'all' pairs j != i (default) or 'permutation' (one random partner)")
    f.add_argument("--trace", default="hutchinson", help="divergence estimate: 'hutchinson' (default), 'rademacher' or 'exact'")
    f.add_argument("--slices", type=int, default=1, help="Hutchinson slices per sample, >= 1 (default 1)")
    f.add_argument("--head", default="linear", help="scalar-field head: 'linear' (default) or 'softplus' (f >= 0)")
    f.add_argument("--steps", type=int, default=2000, help="Adam steps (default 2000)")
    f.add_argument("--batch-size", type=int, default=512, help="batch size (default 512)")
    f.add_argument("--lr", type=float, default=2e-3, help="learning rate (default 2e-3)")
    f.add_argument("--hidden", type=int, default=128, help="MLP width (default 128)")
    f.add_argument("--depth", type=int, default=3, help="MLP depth (default 3)")
    f.add_argument("--n-samples", type=int, default=4000, help="number of samples to draw (default 4000)")
    f.add_argument("--sample-steps", type=int, default=2000, help="Euler-Maruyama steps of the dynamics (default 2000)")
    f.add_argument("--rel-step", type=float, default=0.05, help="step size eta = rel_step / max f (default 0.05)")
    f.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    f.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    f.set_defaults(func=_cmd_fit)

    r = sub.add_parser("rl", help="train a distributional agent (Bellman Diffusion return fields or C51) on a gymnasium env")
    r.add_argument("--env", default="CartPole-v1", help="gymnasium id with a Discrete action space (default CartPole-v1)")
    r.add_argument("--agent", default="bd", choices=["bd", "c51"], help="'bd' (Bellman Diffusion fields) or 'c51' (default bd)")
    r.add_argument("--out", required=True, help="JSON file for the run record (episodes, evaluations)")
    r.add_argument("--steps", type=int, default=12000, help="environment steps (default 12000)")
    r.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    r.add_argument("--v-min", type=float, default=0.0, help="lower end of the return range (default 0)")
    r.add_argument("--v-max", type=float, default=100.0, help="upper end of the return range (default 100)")
    r.add_argument("--gamma", type=float, default=0.99, help="discount in (0, 1] (default 0.99)")
    r.add_argument("--lr", type=float, default=5e-4, help="Adam learning rate (default 5e-4)")
    r.add_argument("--sigma-t", type=float, default=0.05, help="bd only: std of the terminal return kernel, normalised units (default 0.05)")
    r.add_argument("--batch-size", type=int, default=128, help="replay batch size (default 128)")
    r.add_argument("--learning-starts", type=int, default=1000, help="env steps before the first update (default 1000)")
    r.add_argument("--train-frequency", type=int, default=4, help="env steps per update (default 4)")
    r.add_argument("--target-frequency", type=int, default=500, help="env steps per target-network sync (default 500)")
    r.add_argument("--eval-every", type=int, default=0, help="greedy evaluation period in env steps, 0 = none (default 0)")
    r.add_argument("--eval-episodes", type=int, default=0, help="episodes per greedy evaluation (default 0)")
    r.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    r.set_defaults(func=_cmd_rl)
