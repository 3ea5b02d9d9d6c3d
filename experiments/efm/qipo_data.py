"""Medium-replay and medium style offline data made here: an online TD3 behaviour policy, trained and saved.

D4RL's *-medium-replay sets are the replay buffer of an online agent trained until it reaches about a third of
expert return, and *-medium sets are rollouts of that agent (Fu et al. 2020, arXiv 2004.07219). We reproduce the
recipe on a gymnasium task (default Hopper-v5, MuJoCo): plain TD3 (agm.methods.efm.baselines.TD3BC with bc=False, the
same networks as the offline baselines, trained through the one agm.training.Trainer: every Trainer step takes one
environment step with the current actor plus N(0, 0.1^2) exploration noise, uniform-random actions for the first
``start_steps``, then one gradient step on a batch from the replay buffer).

Writes, under --out (a folder):
  <env>_td3_actor.pt          the behaviour actor (state dict of agm.methods.efm.baselines.Actor; observations unnormalised)
  <env>_medium_replay.npz     the whole replay buffer (agm .npz layout, agm.data.offline), metadata in meta_json
  <env>_medium.npz            --medium-transitions transitions of the saved actor with N(0, 0.1^2) noise
                              (agm.methods.efm.behaviour.generate_dataset with the noisy actor as its policy)
  <env>_td3.json              training curve (evaluation returns), sizes, seconds, machine
Reference returns for D4RL-normalised scores: D4RL's own for Hopper (random -20.272305, expert 3234.3; d4rl/infos.py),
else measured (uniform random; expert = the trained actor, flagged in the metadata).

    .venv/bin/python experiments/efm/qipo_data.py --env Hopper-v5 --steps 100000 --out /tmp/qipo_data
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import numpy as np
import torch

D4RL_REFS = {"Hopper-v5": (-20.272305, 3234.3), "HalfCheetah-v5": (-280.178953, 12135.0), "Walker2d-v5": (1.629008, 4592.3)}


def train_td3(env_id: str, steps: int, seed: int, start_steps: int, expl_noise: float, hidden: int, depth: int,
              eval_every: int, max_seconds: float = float("inf"), stop_return: float = float("inf"), log=print):
    import gymnasium as gym

    from agm.data.offline import OfflineDataset
    from agm.methods.efm.baselines import TD3BC, BaselineConfig, make_baseline_trainer
    from agm.methods.efm.evaluate import evaluate_policy

    env = gym.make(env_id)
    o_dim, a_dim = env.observation_space.shape[0], env.action_space.shape[0]
    low, high = env.action_space.low, env.action_space.high
    buf = {k: torch.zeros(steps, d) for k, d in (("observations", o_dim), ("actions", a_dim), ("next_observations", o_dim))}
    buf.update(rewards=torch.zeros(steps), terminals=torch.zeros(steps, dtype=torch.bool), timeouts=torch.zeros(steps, dtype=torch.bool))
    dummy = OfflineDataset(observations=torch.zeros(2, o_dim), actions=torch.zeros(2, a_dim), rewards=torch.zeros(2),
                           next_observations=torch.zeros(2, o_dim), terminals=torch.zeros(2, dtype=torch.bool),
                           timeouts=torch.zeros(2, dtype=torch.bool))
    algo = TD3BC(dummy, BaselineConfig(hidden=hidden, depth=depth, bc=False, reward_scale=1.0), low, high, seed=seed)
    algo.obs_norm.mean.zero_()
    algo.obs_norm.std.fill_(1.0)  # online TD3: raw observations (as in the TD3 reference code)
    rng = np.random.default_rng(seed)
    state = {"obs": env.reset(seed=seed)[0], "n": 0, "ret": 0.0, "ep": 0, "returns": []}

    def env_step():
        n = state["n"]
        if n < start_steps:
            a = rng.uniform(-1, 1, a_dim).astype(np.float32)
        else:
            with torch.no_grad():
                a = algo.actor(torch.as_tensor(state["obs"], dtype=torch.float32)[None])[0].numpy()
            a = np.clip(a + expl_noise * rng.standard_normal(a_dim), -1, 1).astype(np.float32)
        env_a = low + (a + 1) * (high - low) / 2
        nxt, r, term, trunc, _ = env.step(env_a)
        buf["observations"][n] = torch.as_tensor(state["obs"])
        buf["actions"][n] = torch.as_tensor(env_a)
        buf["next_observations"][n] = torch.as_tensor(nxt)
        buf["rewards"][n], buf["terminals"][n], buf["timeouts"][n] = float(r), bool(term), bool(trunc)
        state["ret"] += float(r)
        state["n"] = n + 1
        if term or trunc:
            state["returns"].append(state["ret"])
            state["ep"] += 1
            state["obs"], state["ret"] = env.reset(seed=seed * 100_003 + state["ep"])[0], 0.0
        else:
            state["obs"] = nxt

    def batch(step, generator):
        env_step()
        n = state["n"]
        idx = torch.randint(0, n, (algo.batch_size,), generator=generator)
        act = 2 * (buf["actions"][idx] - algo.scaler.low) / (algo.scaler.high - algo.scaler.low) - 1
        return {"obs": buf["observations"][idx], "act": act, "rew": buf["rewards"][idx], "next_obs": buf["next_observations"][idx],
                "done": buf["terminals"][idx].float()}

    algo.batch = batch
    for _ in range(start_steps):
        env_step()
    trainer = make_baseline_trainer(algo, steps=steps - start_steps, lr=3e-4, batch_size=256, tau=0.005)
    curve = []
    t0 = time.time()
    for k in range(0, steps - start_steps, eval_every):
        trainer.fit(min(k + eval_every, steps - start_steps))
        ev = evaluate_policy(algo.act, env_id, 5, seed=90_000 + k)
        curve.append({"env_steps": state["n"], "eval_return": float(np.mean(ev)), "seconds": time.time() - t0,
                      "recent_train_return": float(np.mean(state["returns"][-10:])) if state["returns"] else None})
        log(json.dumps(curve[-1]), flush=True)
        if time.time() - t0 > max_seconds or curve[-1]["eval_return"] >= stop_return:
            break  # wall-clock budget, or "medium" reached (D4RL's medium-replay stops there): keep what was collected
    n = state["n"]
    data = {k: v[:n] for k, v in buf.items()}
    data["timeouts"][-1] = data["timeouts"][-1] | ~data["terminals"][-1]  # the cut last episode
    env.close()
    return algo, data, curve, state["returns"]


def noisy_actor(algo, action_space, noise: float):
    """The policy (obs, rng) -> action of agm.methods.efm.behaviour: the actor plus N(0, (noise half-range)^2), clipped."""
    low, high = action_space.low, action_space.high

    def policy(obs, rng):
        a = algo.act(obs[None])[0]
        return np.clip(a + noise * (high - low) / 2 * rng.standard_normal(a.shape), low, high).astype(np.float32)

    return policy


def main(argv=None) -> int:
    from agm.data.offline import OfflineDataset
    from agm.methods.efm.behaviour import generate_dataset, make_behaviour, rollout_returns
    from agm.training.results import machine_info, write_result

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--env", default="Hopper-v5")
    p.add_argument("--steps", type=int, default=100_000, help="environment steps of the online TD3 run (= medium-replay size)")
    p.add_argument("--start-steps", type=int, default=5000, help="uniform-random steps before learning")
    p.add_argument("--expl-noise", type=float, default=0.1)
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--depth", type=int, default=2)
    p.add_argument("--eval-every", type=int, default=5000)
    p.add_argument("--medium-transitions", type=int, default=50_000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-seconds", type=float, default=float("inf"), help="stop the online run after this wall time")
    p.add_argument("--stop-return", type=float, default=float("inf"),
                   help="stop the online run once its evaluation return reaches this (the 'medium' level)")
    p.add_argument("--out", default="/tmp/qipo_data")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    import gymnasium as gym

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    algo, data, curve, train_returns = train_td3(args.env, args.steps, args.seed, args.start_steps, args.expl_noise, args.hidden,
                                                 args.depth, args.eval_every, args.max_seconds, args.stop_return)
    torch.save(algo.actor.state_dict(), out / f"{args.env}_td3_actor.pt")
    ref_random = float(np.mean(rollout_returns(args.env, make_behaviour(gym.make(args.env), "random", None), 10, args.seed + 10_000)))
    final = curve[-1]["eval_return"]
    from agm.methods.efm.behaviour import EXPERTS

    if args.env in D4RL_REFS:
        refs, src = D4RL_REFS[args.env], "D4RL d4rl/infos.py"
    elif args.env in EXPERTS:  # agm's scripted expert (agm.methods.efm.behaviour), as for the built-in data sets
        refs = (ref_random, float(np.mean(rollout_returns(args.env, EXPERTS[args.env], 10, args.seed + 20_000))))
        src = "measured: uniform random / agm's scripted expert (10 episodes each)"
    else:
        refs, src = (ref_random, final), "measured: uniform random / the trained actor"
    base_meta = {"env_id": args.env, "seed": args.seed, "ref_random_return": refs[0], "ref_expert_return": refs[1],
                 "refs_source": src,
                 "behaviour_actor_final_return": final, "policies_doc": "experiments/efm/qipo_data.py"}
    mr = OfflineDataset(**data, meta={**base_meta, "kind": "medium-replay", "td3_env_steps": int(data["rewards"].shape[0])})
    mr.save_npz(out / f"{args.env}_medium_replay.npz")
    med = generate_dataset(args.env, args.medium_transitions, policy=noisy_actor(algo, gym.make(args.env).action_space, 0.1),
                           seed=args.seed + 1, reference_episodes=0)
    med_return = med.meta["behaviour_returns"]["policy"]  # mean over the finished episodes (None: none finished)
    dataclasses.replace(med, meta={**base_meta, "kind": "medium", "noise": 0.1}).save_npz(out / f"{args.env}_medium.npz")
    write_result(out / f"{args.env}_td3.json", {
        "command": "experiments/efm/qipo_data.py " + " ".join(f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items()),
        "settings": vars(args), "env_steps_done": len(mr), "curve": curve, "train_episode_returns": train_returns,
        "medium_replay": {"transitions": len(mr), "episodes": int(len(mr.episode_returns())), "return_mean": float(mr.episode_returns().mean())},
        "medium": {"transitions": len(med), "episode_return_mean": med_return},
        "ref_random_measured": ref_random, "seconds": time.time() - t0, "machine": machine_info()})
    print(f"done in {time.time() - t0:.0f} s; final eval return {final:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
