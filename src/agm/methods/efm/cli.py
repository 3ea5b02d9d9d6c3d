"""``agm qipo ...`` (offline RL with QIPO, EFM paper section 5) and ``agm efm`` (energy-weighted flow matching
on a closed-form Gaussian target, EFM paper eq. 4.3). Imports stay inside the command functions."""
from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    q = sub.add_parser("qipo", help="offline RL with QIPO (Q-weighted iterative policy optimisation, flow policy)")
    qs = q.add_subparsers(dest="qipo_command", required=True)

    d = qs.add_parser("data", help="generate a built-in mixed-quality offline data set with a gymnasium env (.npz)")
    d.add_argument("--env", default="Pendulum-v1", help="gymnasium env id (scripted experts: Pendulum-v1, "
                   "MountainCarContinuous-v0, InvertedPendulum-v5 (MuJoCo); others: random behaviour only)")
    d.add_argument("--n-transitions", type=int, default=30_000, help="number of transitions (default 30000)")
    d.add_argument("--mixture", default=None, help="JSON dict of episode shares over expert_low_noise, expert_high_noise, "
                   "epsilon_expert, random (default: equal shares)")
    d.add_argument("--seed", type=int, default=0, help="data seed (default 0)")
    d.add_argument("--out", required=True, help="output .npz path (D4RL keys + meta_json)")
    d.set_defaults(func=_cmd_data)

    i = qs.add_parser("inspect", help="load a local .npz / D4RL .hdf5 / Minari data set and print its statistics")
    i.add_argument("path", help="data set path: .npz, D4RL .hdf5, Minari main_data.hdf5 or Minari data set folder")
    i.add_argument("--env", default=None, help="optional gymnasium env id to check observation/action shapes against")
    i.set_defaults(func=_cmd_inspect)

    t = qs.add_parser("train", help="run QIPO (Algorithm 2) on a local data set and evaluate it in the environment")
    t.add_argument("--data", required=True, help="data set path (.npz, D4RL .hdf5, Minari file or folder)")
    t.add_argument("--env", default=None, help="gymnasium env id for evaluation (default: the data set's meta env_id)")
    t.add_argument("--out", required=True, help="output folder: result.json, policy.safetensors, q.safetensors")
    t.add_argument("--beta", type=float, default=3.0, help="QIPO inverse temperature beta >= 0 (0 = behaviour cloning)")
    t.add_argument("--support-size", type=int, default=16, help="M: support actions per state (default 16)")
    t.add_argument("--behaviour-steps", type=int, default=3000, help="K1: behaviour warm-up steps (default 3000)")
    t.add_argument("--q-steps", type=int, default=3000, help="K2: Q-learning steps (default 3000)")
    t.add_argument("--improve-steps", type=int, default=2000, help="K3: Q-weighted improvement steps (default 2000)")
    t.add_argument("--renew-every", type=int, default=400, help="K_renew: support renewal period (default 400)")
    t.add_argument("--support-states", type=int, default=None, help="states per renewal (default: all states)")
    t.add_argument("--reward-scale", type=float, default=1.0, help="reward multiplier for Q-learning (default 1)")
    t.add_argument("--hidden", type=int, default=256, help="hidden width of the policy and Q MLPs (default 256)")
    t.add_argument("--eval-episodes", type=int, default=10, help="evaluation episodes (default 10)")
    t.add_argument("--best-of", type=int, default=1, help="1 = one policy sample (the method); N = best of N by Q")
    t.add_argument("--seed", type=int, default=0, help="training seed (default 0)")
    t.set_defaults(func=_cmd_train)

    e = sub.add_parser("efm", help="energy-weighted flow matching on a Gaussian with a quadratic energy (closed-form check)")
    e.add_argument("--beta", type=float, default=1.0, help="inverse temperature beta >= 0 (default 1)")
    e.add_argument("--steps", type=int, default=1000, help="Adam steps (default 1000)")
    e.add_argument("--n-train", type=int, default=20_000, help="samples of p (default 20000)")
    e.add_argument("--n-gen", type=int, default=10_000, help="generated samples (default 10000)")
    e.add_argument("--normalization", default="batch", help="weight normalisation: batch | none (default batch)")
    e.add_argument("--seed", type=int, default=0, help="seed (default 0)")
    e.set_defaults(func=_cmd_efm)


def _cmd_data(args) -> int:
    import json

    from agm.errors import ConfigError
    from agm.methods.efm import generate_dataset

    mixture = None
    if args.mixture is not None:
        try:
            mixture = json.loads(args.mixture)
        except json.JSONDecodeError as err:
            raise ConfigError(f"--mixture={args.mixture!r} is not valid JSON ({err}); accepted: e.g. '{{\"random\": 1, \"expert_low_noise\": 1}}'") from err
        if not isinstance(mixture, dict):
            raise ConfigError(f"--mixture={args.mixture!r} is not accepted; accepted: a JSON object of shares")
    data = generate_dataset(args.env, args.n_transitions, mixture=mixture, seed=args.seed)
    path = data.save_npz(args.out)
    r = data.episode_returns()
    print(json.dumps({"out": str(path), "transitions": len(data), "episodes": int(len(r)), "return_mean": float(r.mean()),
                      "ref_random_return": data.meta["ref_random_return"], "ref_expert_return": data.meta["ref_expert_return"],
                      "behaviour_returns": data.meta["behaviour_returns"]}))
    return 0


def _cmd_inspect(args) -> int:
    import json

    from agm.methods.efm import check_env_compatible, load_offline_dataset

    data = load_offline_dataset(args.path)
    r = data.episode_returns()
    info = {"transitions": len(data), "obs_dim": data.obs_dim, "act_dim": data.act_dim, "episodes": int(len(r)),
            "return_mean": float(r.mean()), "return_min": float(r.min()), "return_max": float(r.max()),
            "action_min": float(data.actions.min()), "action_max": float(data.actions.max()),
            "terminals": int(data.terminals.sum()), "timeouts": int(data.timeouts.sum()),
            "meta": {k: v for k, v in data.meta.items() if k != "policies_doc"}}
    if args.env:
        import gymnasium as gym

        env = gym.make(args.env)
        check_env_compatible(data, env)
        env.close()
        info["env_check"] = f"compatible with {args.env}"
    print(json.dumps(info, indent=2))
    return 0


def _cmd_train(args) -> int:
    import json
    import time
    from dataclasses import asdict
    from pathlib import Path

    import gymnasium as gym
    import numpy as np
    import torch
    from safetensors.torch import save_file

    from agm.errors import ConfigError
    from agm.methods.efm import QIPO, QIPOConfig, check_env_compatible, evaluate_policy, load_offline_dataset, normalized_score

    data = load_offline_dataset(args.data)
    env_id = args.env or data.meta.get("env_id")
    if env_id is None:
        raise ConfigError("--env is required: the data set has no meta env_id; accepted: a gymnasium env id")
    try:
        env = gym.make(env_id)
    except Exception as err:
        raise ConfigError(f"--env={env_id!r} cannot be created here ({type(err).__name__}: {err})") from err
    check_env_compatible(data, env)
    low, high = env.action_space.low.tolist(), env.action_space.high.tolist()
    env.close()
    cfg = QIPOConfig(beta=args.beta, support_size=args.support_size, q_support_size=args.support_size,
                     behaviour_steps=args.behaviour_steps, q_steps=args.q_steps, improve_steps=args.improve_steps,
                     renew_every=args.renew_every, support_states=args.support_states, reward_scale=args.reward_scale,
                     policy_hidden=args.hidden, q_hidden=args.hidden, best_of=args.best_of)
    t0 = time.time()
    algo = QIPO(data, cfg, low, high, seed=args.seed)
    algo.train_behaviour()
    algo.train_q()
    if args.beta > 0 and cfg.improve_steps > 0:
        algo.improve()
    elif cfg.improve_steps > 0:  # beta = 0: behaviour cloning, K3 more steps of plain CFM on the data
        algo.train_behaviour(cfg.improve_steps)
    returns = evaluate_policy(algo.act, env_id, args.eval_episodes, seed=10_000 + args.seed)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in algo.policy.state_dict().items()}, str(out / "policy.safetensors"))
    save_file({k: v.contiguous() for k, v in algo.q.state_dict().items()}, str(out / "q.safetensors"))
    res = {"env": env_id, "data": str(args.data), "seed": args.seed, "config": asdict(cfg),
           "returns": returns, "return_mean": float(np.mean(returns)), "seconds": time.time() - t0, "log": algo.log,
           "torch": torch.__version__}
    if data.meta.get("ref_expert_return") is not None:
        res["score_mean"] = float(np.mean(normalized_score(np.asarray(returns), data.meta["ref_random_return"], data.meta["ref_expert_return"])))
    (out / "result.json").write_text(json.dumps(res, indent=2))
    print(json.dumps({k: res[k] for k in ("env", "return_mean", "seconds") + (("score_mean",) if "score_mean" in res else ())}))
    return 0


def _cmd_efm(args) -> int:
    import json

    import torch

    from agm.errors import check_choice
    from agm.nets import TimeMLP
    from agm.methods.efm.efm import (EnergyWeightedFlowMatching, check_beta, fit_weighted_flow, gaussian_tilt,
                                    quadratic_energy)
    from agm.samplers import ODESampler

    check_beta(args.beta)
    check_choice("--normalization", args.normalization, ("batch", "none"))
    torch.manual_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    m, S = torch.tensor([1.0, -0.5]), torch.tensor([[1.0, 0.3], [0.3, 0.5]])
    A, c = torch.tensor([[1.5, 0.0], [0.0, 0.5]]), torch.tensor([-1.0, 1.0])
    data = m + torch.randn(args.n_train, 2, generator=gen) @ torch.linalg.cholesky(S).T
    net = TimeMLP(2, hidden=64, depth=2)
    obj = EnergyWeightedFlowMatching(quadratic_energy(A, c), args.beta, normalization=args.normalization)
    fit_weighted_flow(net, data, obj, steps=args.steps, lr=3e-3, seed=args.seed)
    x = ODESampler(30, "heun").sample(lambda z, t: net(z, t), torch.randn(args.n_gen, 2, generator=gen)).double()
    mq, Sq = gaussian_tilt(m, S, A, c, args.beta)
    print(json.dumps({"beta": args.beta, "mean": x.mean(0).tolist(), "mean_closed_form": mq.tolist(),
                      "cov": torch.cov(x.T).tolist(), "cov_closed_form": Sq.tolist()}))
    return 0
