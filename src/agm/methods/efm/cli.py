"""``agm efm train|sample|eval`` (energy-weighted flow matching, arXiv 2503.04975 eq. 4.3, generated from its Recipe)
and ``agm qipo data|inspect|train|eval`` (offline RL with QIPO, arXiv 2503.04975 section 5). A CLI module: imports
stay inside the command functions."""
from __future__ import annotations

import argparse


class _QIPOTrainSpec:
    """What agm.command_line.add_train needs to generate `agm qipo train` from the QIPO config dataclass."""

    name = "qipo"
    default_config = None
    description = ("QIPO (arXiv 2503.04975, Algorithm 2): behaviour warm-up, in-support softmax Q-learning, Q-weighted "
                   "iterative policy improvement with a flow policy, as one resumable Trainer run. See docs/efm_qipo.md.")

    @property
    def builtin_dir(self):
        """qipo_v1: the original defaults, before the tuned v2 setting (``--config qipo_v1``)."""
        from agm.methods.efm.config import QIPO_BUILTIN_DIR

        return QIPO_BUILTIN_DIR

    @property
    def config_cls(self):
        from agm.methods.efm.config import QIPOConfig

        return QIPOConfig


def register(sub: argparse._SubParsersAction) -> None:
    from agm.command_line import add_method, add_train
    from agm.methods.efm.run import RECIPE

    add_method(sub, RECIPE, help="energy-weighted flow matching towards q ∝ p exp(-beta E) (train|sample|eval)")

    q = sub.add_parser("qipo", help="offline RL with QIPO (Q-weighted iterative policy optimisation, flow policy)")
    qs = q.add_subparsers(dest="qipo_command", required=True, metavar="COMMAND")

    d = qs.add_parser("data", help="generate a built-in mixed-quality offline data set with a gymnasium env (.npz)")
    d.add_argument("--env", default="Pendulum-v1", help="gymnasium env id (scripted experts: Pendulum-v1, "
                   "MountainCarContinuous-v0, InvertedPendulum-v5 (MuJoCo); others: random behaviour only)")
    d.add_argument("--n-transitions", type=int, default=30_000, help="number of transitions (default 30000)")
    d.add_argument("--mixture", default=None, help="JSON dict of episode shares over expert_low_noise, expert_high_noise, "
                   "epsilon_expert, random (default: equal shares)")
    d.add_argument("--seed", type=int, default=0, help="data seed (default 0)")
    d.add_argument("--out", required=True, help="output .npz path (D4RL keys + meta_json); never overwritten")
    d.set_defaults(func=_cmd_data)

    i = qs.add_parser("inspect", help="load a local .npz / D4RL .hdf5 / Minari data set and print its statistics")
    i.add_argument("path", help="data set path: .npz, D4RL .hdf5, Minari main_data.hdf5 or Minari data set folder")
    i.add_argument("--env", default=None, help="optional gymnasium env id to check observation/action shapes against")
    i.set_defaults(func=_cmd_inspect)

    t = add_train(qs, _QIPOTrainSpec(), help="run QIPO (Algorithm 2) on a local data set into a run folder, or --resume one")
    t.add_argument("--env", default=None, help="gymnasium env id (sets data.env; default: the data set's meta env_id)")
    t.set_defaults(func=_cmd_train)
    from agm.command_line import keys_help

    t.epilog = keys_help(_QIPOTrainSpec()) + "\n\nOne process on the CPU (train.device=cpu); train.steps is derived from the three phases."

    e = qs.add_parser("eval", help="evaluate a QIPO run's policy in its environment (writes eval.json)")
    e.add_argument("--run", required=True, help="run folder")
    e.add_argument("--episodes", type=int, default=None, help="episodes (default: the run's eval.episodes)")
    e.add_argument("--best-of", type=int, default=None, help="1 = one policy sample (the method); N = best of N by Q "
                   "(default: the run's best_of)")
    e.add_argument("--seed", type=int, default=None, help="episode e is reset with seed + e (default: the run's eval.seed)")
    e.set_defaults(func=_cmd_eval)


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
    from pathlib import Path

    if Path(args.out).exists():
        raise ConfigError(f"--out {args.out} already exists; choose a new file name (agm never overwrites a data set)")
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

    from agm.errors import AGMError
    from agm.methods.efm.qipo_run import load_qipo_config, resume_qipo, train_qipo

    if args.resume:
        extra = [f for f in ("config", "out", "data", "device", "env") if getattr(args, f, None)] + (["key=value"] if args.overrides else [])
        if extra or args.overwrite:
            raise AGMError(f"--resume DIR takes no --{'/--'.join(extra or ['overwrite'])}: the run's config.yaml is used")
        step = resume_qipo(args.resume)
        print(f"resumed {args.resume} to step {step}")
        return 0
    if not args.out:
        raise AGMError("--out DIR is required (or --resume DIR)")
    overrides = list(args.overrides)
    if args.data:
        overrides.append(f"data.path={json.dumps(args.data)}")
    if args.env:
        overrides.append(f"data.env={json.dumps(args.env)}")
    if args.device:
        overrides.append(f"train.device={args.device}")
    cfg = load_qipo_config(args.config, overrides)
    info = train_qipo(cfg, args.out, overwrite=args.overwrite)
    print(json.dumps({"out": args.out, "method": "qipo", "env": info["env"], "steps": cfg.train.steps,
                      "next": f"agm qipo eval --run {args.out}"}))
    return 0


def _cmd_eval(args) -> int:
    import json

    from agm.errors import ConfigError
    from agm.methods.efm.qipo_run import evaluate_qipo

    for name in ("episodes", "best_of"):
        v = getattr(args, name)
        if v is not None and v <= 0:
            raise ConfigError(f"--{name.replace('_', '-')}={v} must be an integer > 0")
    res = evaluate_qipo(args.run, episodes=args.episodes, best_of=args.best_of, seed=args.seed)
    print(json.dumps({k: v for k, v in res.items() if k != "returns"}))
    return 0
