"""``agm steering ...``: steering pretrained flow models (issue 6).

Sub-commands (each trains a small flow model on a built-in 2-D toy set, applies one method and prints a JSON
line of metrics; ``--out`` also writes it to a file):

* ``agm steering relative-reward``: extract a relative reward from a base and an expert model (expert = base data
  tilted by exp(r)) and steer the base model (Nuti et al. 2023; efm-qipo-rewards-irl-digest.md part C).
* ``agm steering finetune``: reward fine-tuning by memoryless SOC with one loss of the family (adjoint matching,
  log-variance, cross-entropy, relative entropy, reward-weighted regression; soc-adjoint-flowmaps-digest.md A/A').
* ``agm steering learn-sampler``: learn a per-step sampler schedule by inverse RL and compare it with the default
  schedule at equal NFE (Bourdrez et al. 2026; efm-qipo-rewards-irl-digest.md part B).

The full experiments with several seeds are ``experiments/steering_*.py``.
"""
from __future__ import annotations

import argparse


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset", default="8gaussians", help="built-in 2-D toy data set (see `agm toy --help`; default 8gaussians)")
    p.add_argument("--model-steps", type=int, default=1500, help="training steps of each pretrained flow model (default 1500)")
    p.add_argument("--n-eval", type=int, default=1000, help="samples used for the reported metrics (default 1000)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--out", default=None, help="optional path of a JSON file for the metrics")


def _emit(rec: dict, out: str | None) -> int:
    import json

    from agm.training.results import machine_info, write_result

    rec["machine"] = machine_info()
    print(json.dumps(rec))
    if out:
        write_result(out, rec)
    return 0


def _dataset(name: str):
    from agm.data.toy import toy_dim, toy_names
    from agm.errors import ConfigError, closest

    if name not in toy_names():
        raise ConfigError(f"dataset={name!r} is not a built-in toy set; accepted: {', '.join(toy_names())}{closest(name, toy_names())}")
    if toy_dim(name) != 2:
        raise ConfigError(f"dataset={name!r} has dimension {toy_dim(name)}; the steering commands need a 2-D toy set")
    return name


def _cmd_relative_reward(args) -> int:
    import torch
    from scipy.stats import spearmanr

    from agm.errors import check_positive
    from agm.nets import TimeMLP
    from agm.methods.steering.relative_reward import FlowScore, RelativeRewardLoss, steer_sample, train_relative_reward
    from agm.methods.steering import make_reward, sample_flow, tilted_rejection_sample, toy_data, train_flow_model

    torch.set_num_threads(1)
    check_positive("reward_steps", args.reward_steps, integer=True)
    ds = _dataset(args.dataset)
    r = make_reward(args.reward, 2, scale=args.reward_scale)
    base_data = toy_data(ds, 20000, seed=1)
    pool = toy_data(ds, 200000, seed=2)
    expert_data = tilted_rejection_sample(pool, r(pool), generator=torch.Generator().manual_seed(3))[:20000]
    base_net = train_flow_model(base_data, steps=args.model_steps, seed=args.seed)
    expert_net = train_flow_model(expert_data, steps=args.model_steps, seed=args.seed)
    loss = RelativeRewardLoss(FlowScore(base_net), FlowScore(expert_net), target=args.target)
    torch.manual_seed(args.seed)
    net = TimeMLP(2, hidden=64, depth=3, out_dim=1, act="silu")
    train_relative_reward(net, loss, torch.cat([base_data[:10000], expert_data[:10000]]), steps=args.reward_steps, seed=args.seed)
    ev = torch.cat([base_data[-500:], expert_data[-500:]])
    with torch.no_grad():
        rho = net(ev, torch.full((len(ev),), 0.98)).reshape(-1)
    rec = {"command": "steering relative-reward", "spearman_rho_vs_r": float(spearmanr(rho.numpy(), r(ev).numpy())[0]),
           "mean_reward_base_model": float(r(sample_flow(base_net, args.n_eval, 2, seed=5)).mean()),
           "mean_reward_expert_data": float(r(expert_data).mean())}
    s = steer_sample(base_net, net, loss, args.n_eval, 2, scale=args.scale, seed=5)
    rec[f"mean_reward_steered_w{args.scale}"] = float(r(s).mean())
    return _emit(rec, args.out)


def _cmd_finetune(args) -> int:
    import torch

    from agm.methods.steering.soc import SOC_LOSSES, MemorylessSchedule, finetune, make_problem
    from agm.errors import check_choice, check_positive
    from agm.methods.steering import energy_distance, make_reward, sample_flow, tilted_rejection_sample, toy_data, train_flow_model

    torch.set_num_threads(1)
    check_choice("loss", args.loss, SOC_LOSSES)
    check_positive("iterations", args.iterations, integer=True)
    check_positive("steps", args.steps, integer=True)
    ds = _dataset(args.dataset)
    base = train_flow_model(toy_data(ds, 20000, seed=123), steps=args.model_steps, seed=args.seed)
    r = make_reward(args.reward, 2)
    pool = sample_flow(base, 30000, 2, seed=999)
    opt = tilted_rejection_sample(pool, args.lam * r(pool), generator=torch.Generator().manual_seed(1))
    prob = make_problem(base, r, 2, reward_multiplier=args.lam, steps=args.steps, schedule=MemorylessSchedule(1.0 / args.steps),
                        base_pool=sample_flow(base, 10000, 2, seed=998))
    finetune(prob, args.loss, iterations=args.iterations, batch=args.batch, lr=args.lr, seed=args.seed)
    s = sample_flow(prob.ft, args.n_eval, 2, seed=11)
    rec = {"command": "steering finetune", "loss": args.loss, "energy_to_optimum": energy_distance(s, opt[: args.n_eval]),
           "energy_base_to_optimum": energy_distance(pool[-args.n_eval:], opt[: args.n_eval]),
           "mean_reward_finetuned": float(r(s).mean()), "mean_reward_base": float(r(pool).mean()), "mean_reward_optimum": float(r(opt).mean())}
    return _emit(rec, args.out)


def _cmd_learn_sampler(args) -> int:
    import torch

    from agm.methods.steering.learn_to_sample import FlowSamplerMDP, IRLConfig, SamplerPolicy, schedule_from_policy, train_sampler_policy
    from agm.methods.steering import energy_distance, toy_data, train_flow_model

    torch.set_num_threads(1)
    ds = _dataset(args.dataset)
    data = toy_data(ds, 20000, seed=1)
    held = toy_data(ds, args.n_eval, seed=77)
    net = train_flow_model(data, steps=args.model_steps, seed=args.seed)
    mdp = FlowSamplerMDP(net, 2, args.nfe, family=args.family)
    pol = SamplerPolicy(args.nfe, mdp.n_actions, identity_action=mdp.identity_action)
    train_sampler_policy(mdp, pol, data, IRLConfig(iterations=args.iterations, divergence=args.divergence, seed=args.seed))
    sched = schedule_from_policy(pol)
    with torch.no_grad():
        learned = mdp.rollout(pol, args.n_eval, generator=torch.Generator().manual_seed(5), greedy=True).xs[-1]
        default = mdp.rollout(pol, args.n_eval, generator=torch.Generator().manual_seed(5),
                              actions=torch.full((args.nfe,), mdp.identity_action)).xs[-1]
    rec = {"command": "steering learn-sampler", "nfe": args.nfe, "family": args.family,
           "schedule_values": [float(mdp.values[i]) for i in sched],
           "energy_learned": energy_distance(learned, held), "energy_default": energy_distance(default, held)}
    return _emit(rec, args.out)


def register(subparsers) -> None:
    """Add ``agm steering {relative-reward, finetune, learn-sampler}``."""
    p = subparsers.add_parser("steering", help="steer pretrained flow models: relative rewards, SOC fine-tuning, learned samplers")
    sub = p.add_subparsers(dest="steering_command", required=True, metavar="{relative-reward,finetune,learn-sampler}")

    a = sub.add_parser("relative-reward", help="extract a relative reward from base/expert flow models and steer the base (Nuti et al. 2023)")
    _common(a)
    a.add_argument("--reward", default="linear", choices=["linear", "quadratic"], help="true reward defining the expert data (default linear)")
    a.add_argument("--reward-scale", type=float, default=1.0, help="scale k of the true reward (default 1)")
    a.add_argument("--target", default="score", choices=["score", "eps", "velocity"], help="regression target space (digest §C.3; default score)")
    a.add_argument("--reward-steps", type=int, default=800, help="training steps of the reward network (default 800)")
    a.add_argument("--scale", type=float, default=1.0, help="guidance scale w for steering (default 1)")
    a.set_defaults(func=_cmd_relative_reward)

    f = sub.add_parser("finetune", help="reward fine-tuning by memoryless SOC (adjoint matching and other losses)")
    _common(f)
    f.add_argument("--loss", default="adjoint_matching", help="SOC loss: adjoint_matching, log_variance, cross_entropy, relative_entropy, reward_weighted_regression")
    f.add_argument("--reward", default="linear", choices=["linear", "quadratic"], help="terminal reward (default linear)")
    f.add_argument("--lam", type=float, default=0.5, help="reward multiplier: target p_base exp(lam r) (default 0.5)")
    f.add_argument("--steps", type=int, default=20, help="K, Euler-Maruyama steps of the memoryless SDE (default 20)")
    f.add_argument("--iterations", type=int, default=150, help="fine-tuning iterations (default 150)")
    f.add_argument("--batch", type=int, default=64, help="trajectories per iteration (default 64)")
    f.add_argument("--lr", type=float, default=3e-3, help="Adam learning rate (default 3e-3)")
    f.set_defaults(func=_cmd_finetune)

    s = sub.add_parser("learn-sampler", help="learn a sampler schedule by inverse RL and compare with the default at equal NFE")
    _common(s)
    s.add_argument("--nfe", type=int, default=4, help="horizon N = network evaluations per sample (default 4)")
    s.add_argument("--family", default="step", choices=["step", "churn", "scale"], help="action family (default step)")
    s.add_argument("--divergence", default="reverse_kl", choices=["reverse_kl", "forward_kl", "pr"], help="f-divergence (default reverse_kl)")
    s.add_argument("--iterations", type=int, default=150, help="policy-gradient iterations (default 150)")
    s.set_defaults(func=_cmd_learn_sampler)
