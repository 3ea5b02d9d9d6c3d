"""One training loop for both distributional agents (CleanRL-style DQN loop: epsilon-greedy,
replay, train every ``train_frequency`` steps after ``learning_starts``, hard target sync)."""
from __future__ import annotations

import json
import random
import time
from dataclasses import asdict, dataclass

import numpy as np
import torch

from agm.errors import check_choice, check_positive
from agm.methods.bellman.rl.bellman_diffusion import BDConfig, BellmanDiffusionAgent
from agm.methods.bellman.rl.c51 import C51Agent, C51Config
from agm.methods.bellman.rl.envs import check_reward, linear_schedule, make_env
from agm.methods.bellman.rl.replay import ReplayBuffer

AGENTS = ("c51", "bd")
TIMING_KEYS = ("wall_s", "train_cpu_s", "train_wall_s", "episode_times", "eval_times")  # machine-dependent: not in record.json


@dataclass
class LoopConfig:
    """Loop settings shared by both agents (same for C51 and BD in every comparison)."""

    total_steps: int = 50_000
    buffer_size: int = 10_000
    batch_size: int = 128
    learning_starts: int = 1_000
    train_frequency: int = 4
    target_frequency: int = 500
    start_e: float = 1.0
    end_e: float = 0.05
    exploration_fraction: float = 0.5
    eval_every: int = 0
    eval_episodes: int = 0

    def __post_init__(self) -> None:
        for k in ("total_steps", "buffer_size", "batch_size", "learning_starts", "train_frequency", "target_frequency"):
            check_positive(f"loop.{k}", getattr(self, k), integer=True)
        check_positive("loop.exploration_fraction", self.exploration_fraction)


def build_agent(name: str, obs_dim: int, n_actions: int, agent_cfg: dict | None = None, batch_size: int = 128):
    """'c51' -> C51Agent, 'bd' -> BellmanDiffusionAgent, with keyword settings from ``agent_cfg``; ``batch_size``
    (the loop's) sets C51's default Adam epsilon 0.01 / batch_size (CleanRL's)."""
    check_choice("agent", name, AGENTS)
    agent_cfg = dict(agent_cfg or {})
    if "hidden" in agent_cfg:
        agent_cfg["hidden"] = tuple(agent_cfg["hidden"])
    if name == "c51":
        return C51Agent(obs_dim, n_actions, C51Config(**agent_cfg), batch_size=batch_size)
    return BellmanDiffusionAgent(obs_dim, n_actions, BDConfig(**agent_cfg))


@torch.no_grad()
def evaluate(agent, env_id: str, episodes: int, seed: int, env_kwargs: dict | None = None) -> float:
    """Mean undiscounted return of the greedy policy over ``episodes`` episodes."""
    env, enc, _ = make_env(env_id, seed, **(env_kwargs or {}))
    total = 0.0
    for ep in range(episodes):
        obs, _ = env.reset(seed=seed + 10_000 + ep)
        done = False
        while not done:
            obs, r, term, trunc, _ = env.step(agent.act(torch.from_numpy(enc(obs))))
            total += float(r)
            done = term or trunc
    env.close()
    return total / episodes


def agent_networks(agent) -> dict:
    """The agent's networks by name (online and target copies): what a checkpoint stores."""
    if isinstance(agent, C51Agent):
        return {"net": agent.net, "target": agent.target}
    return {"f": agent.f, "g": agent.g, "f_tgt": agent.f_tgt, "g_tgt": agent.g_tgt}


def train_agent(name: str, env_id: str, seed: int, loop: LoopConfig, agent_cfg: dict | None = None, env_kwargs: dict | None = None,
                log=None):
    """Train one agent in memory (no files); returns (agent, record) with per-episode (step, return) and optional
    greedy evaluations. ``agm bellman rl`` runs the same loop with checkpoints (:func:`train_rl_run`)."""
    return _run_loop(name, env_id, seed, loop, agent_cfg, env_kwargs, log=log)


def _run_loop(name, env_id, seed, loop, agent_cfg=None, env_kwargs=None, *, log=None, out_dir=None, ckpt_every=0, keep=2,
              log_every=1, progress=False, resume=False):
    """The DQN-style loop. With ``out_dir`` it appends to metrics.jsonl and writes a checkpoint at the first episode
    end after every ``ckpt_every`` env steps and at the end (networks, Adam, replay buffer, the loop's, torch's,
    numpy's and python's RNG states and the environment's RNG state, taken between episodes so that a resumed run
    continues exactly); ``resume`` loads the newest intact checkpoint first."""
    import sys

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    env, enc, n_actions = make_env(env_id, seed, **(env_kwargs or {}))
    agent = build_agent(name, enc.dim, n_actions, agent_cfg, batch_size=loop.batch_size)
    rb = ReplayBuffer(loop.buffer_size, enc.dim, seed)
    rng = np.random.default_rng(seed)
    st = {"step": 0, "episodes": [], "evals": [], "losses": [], "pending": [], "n_episodes": 0}
    next_ckpt = ckpt_every
    loaded = _load_latest(out_dir, agent, rb, rng, env) if resume else None
    if loaded is not None:
        st = loaded
        next_ckpt = st.pop("next_ckpt")
        obs, _ = env.reset()  # the env's RNG was restored: the same episode start as the uninterrupted run
    else:
        obs, _ = env.reset(seed=seed)
    o = enc(obs)
    ep_ret = 0.0
    t0 = time.time()
    c0 = time.process_time()
    eval_cpu = eval_wall = 0.0  # greedy evaluations are not training cost
    times: list[tuple[float, float]] = []  # (training CPU s, training wall s) at each episode end of this process
    eval_times: list[tuple[float, float]] = []  # the same at each greedy evaluation
    every = max(loop.total_steps // 20, 1)
    metrics = None if out_dir is None else open(out_dir / "metrics.jsonl", "a")

    def write(rec):
        if metrics is not None:
            metrics.write(json.dumps(rec) + "\n")
            metrics.flush()

    try:
        step = st["step"]
        while step < loop.total_steps:
            eps = linear_schedule(loop.start_e, loop.end_e, loop.exploration_fraction * loop.total_steps, step)
            a = int(rng.integers(n_actions)) if rng.random() < eps else agent.act(torch.from_numpy(o))
            nobs, r, term, trunc, _ = env.step(a)
            r = check_reward(r)
            no = enc(nobs)
            rb.add(o, a, r, no, term)
            ep_ret += r
            o = no
            done = term or trunc
            if done:
                times.append((time.process_time() - c0 - eval_cpu, time.time() - t0 - eval_wall))
                st["episodes"].append((step + 1, ep_ret))
                st["n_episodes"] += 1
                if st["n_episodes"] % log_every == 0:
                    pend = st["pending"]
                    write({"step": step + 1, "episode": st["n_episodes"], "return": ep_ret, "epsilon": eps,
                           "loss": float(np.mean(pend)) if pend else None})
                    st["pending"] = []
                if log is not None:
                    log(f"{name} seed={seed} step={step + 1} episodic_return={ep_ret:.2f}")
                ep_ret = 0.0
            if step >= loop.learning_starts:
                if step % loop.train_frequency == 0:
                    loss = agent.update(rb.sample(loop.batch_size))
                    st["losses"] = (st["losses"] + [loss])[-100:]
                    st["pending"].append(loss)
                if step % loop.target_frequency == 0:
                    agent.sync_target()
            if loop.eval_every and loop.eval_episodes and (step + 1) % loop.eval_every == 0:
                ce, we = time.process_time(), time.time()
                eval_times.append((ce - c0 - eval_cpu, we - t0 - eval_wall))
                ev = evaluate(agent, env_id, loop.eval_episodes, seed, env_kwargs)
                eval_cpu += time.process_time() - ce
                eval_wall += time.time() - we
                st["evals"].append((step + 1, ev))
                write({"step": step + 1, "eval_return": ev})
            step += 1
            st["step"] = step
            if progress and (step % every == 0 or step == loop.total_steps):
                last = [r_ for _, r_ in st["episodes"][-10:]]
                mean = f" mean return (last 10) {np.mean(last):.3g}" if last else ""
                print(f"rl step {step}/{loop.total_steps}{mean} ({time.time() - t0:.1f} s)", file=sys.stderr, flush=True)
            if out_dir is not None and done and ckpt_every and step >= next_ckpt and step < loop.total_steps:
                next_ckpt = (step // ckpt_every + 1) * ckpt_every
                _save(out_dir, agent, rb, rng, env, st, next_ckpt, keep)
            if done:
                obs, _ = env.reset()
                o = enc(obs)
        if out_dir is not None and not _has_checkpoint(out_dir, loop.total_steps):
            _save(out_dir, agent, rb, rng, env, st, next_ckpt, keep)
    finally:
        if metrics is not None:
            metrics.close()
        env.close()
    record = {
        "agent": name,
        "env_id": env_id,
        "seed": seed,
        "episodes": [list(e) for e in st["episodes"]],
        "evals": [list(e) for e in st["evals"]],
        "final_loss": float(np.mean(st["losses"])) if st["losses"] else None,
        "wall_s": time.time() - t0,
        "train_cpu_s": time.process_time() - c0 - eval_cpu,
        "train_wall_s": time.time() - t0 - eval_wall,
        "episode_times": [list(t) for t in times],
        "eval_times": [list(t) for t in eval_times],
        "loop": asdict(loop),
        "agent_cfg": agent_cfg or {},
    }
    return agent, record


# ---- checkpoints of the RL loop (the core's atomic safetensors checkpoints, agm.training.checkpoint) -----------
def _has_checkpoint(out_dir, step: int) -> bool:
    return (out_dir / "checkpoints" / f"step-{step:09d}").is_dir()


def _save(out_dir, agent, rb, rng, env, st, next_ckpt, keep) -> None:
    from agm.training.checkpoint import optimizer_to_tensors, save_checkpoint
    from agm.training.trainer import crash_test_hook

    opt_t, opt_meta = optimizer_to_tensors(agent.opt)
    tensors = dict(opt_t)
    tensors.update({"rng.torch": torch.get_rng_state()})
    for k in ("obs", "next_obs", "actions", "rewards", "terminated"):
        tensors[f"replay.{k}"] = torch.from_numpy(getattr(rb, k).copy())
    np_state = np.random.get_state(legacy=False)
    state = {
        "optimizer": opt_meta,
        "networks": list(agent_networks(agent)),
        "ema": [],
        "world_size": 1,
        "loop": {**{k: st[k] for k in ("episodes", "evals", "losses", "pending", "n_episodes")}, "next_ckpt": next_ckpt},
        "replay": {"pos": rb.pos, "size": rb.size, "rng": rb.rng.bit_generator.state},
        "rng": {"loop": rng.bit_generator.state, "env": env.unwrapped.np_random.bit_generator.state,
                "python": list(random.getstate()),
                "numpy": {**np_state, "state": {"key": np_state["state"]["key"].tolist(), "pos": np_state["state"]["pos"]}}},
    }
    save_checkpoint(out_dir / "checkpoints", st["step"], {k: v.state_dict() for k, v in agent_networks(agent).items()}, {}, tensors,
                    state, keep=keep)
    crash_test_hook()


def _load_latest(out_dir, agent, rb, rng, env):
    """Restore the newest intact checkpoint into the objects; None when the run has none yet (start from step 0)."""
    import warnings

    from agm.errors import CheckpointError
    from agm.training.checkpoint import checkpoint_candidates, load_checkpoint, optimizer_from_tensors, unflatten
    from agm.training.runs import clean_partial_checkpoints, read_metrics

    clean_partial_checkpoints(out_dir)
    errors, loaded = [], None
    for ckpt in checkpoint_candidates(out_dir):
        try:
            loaded = (ckpt, *load_checkpoint(ckpt, parts=("networks", "trainer")))
            break
        except CheckpointError as e:
            errors.append(str(e))
    if errors and loaded is None:
        raise CheckpointError(f"{'; '.join(errors)}; no intact checkpoint is left. Move the checkpoints/ folder away to restart")
    if errors:
        warnings.warn(f"{'; '.join(errors)}; fell back to the intact {loaded[0].name}", RuntimeWarning, stacklevel=2)
    log = out_dir / "metrics.jsonl"
    if loaded is None:
        if log.exists():
            read_metrics(log, repair=True, upto_step=0)
        return None
    ckpt, state, files = loaded
    try:
        for name, net in agent_networks(agent).items():
            net.load_state_dict(unflatten(files["networks"], name))
        optimizer_from_tensors(agent.opt, files["trainer"], state["optimizer"])
    except (RuntimeError, KeyError, ValueError) as e:
        raise CheckpointError(f"checkpoint {ckpt} does not match this agent/config: {e}") from None
    t = files["trainer"]
    for k in ("obs", "next_obs", "actions", "rewards", "terminated"):
        getattr(rb, k)[...] = t[f"replay.{k}"].numpy()
    rb.pos, rb.size = int(state["replay"]["pos"]), int(state["replay"]["size"])
    rb.rng.bit_generator.state = state["replay"]["rng"]
    rng.bit_generator.state = state["rng"]["loop"]
    env_rng = np.random.Generator(np.random.PCG64())
    env_rng.bit_generator.state = state["rng"]["env"]
    env.unwrapped.np_random = env_rng
    torch.set_rng_state(t["rng.torch"])
    py = state["rng"]["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    npst = state["rng"]["numpy"]
    np.random.set_state({**npst, "state": {"key": np.asarray(npst["state"]["key"], dtype=np.uint32), "pos": npst["state"]["pos"]}}
                        if npst.get("bit_generator") == "MT19937" else npst)
    step = int(state["step"])
    if log.exists():
        read_metrics(log, repair=True, upto_step=step)
    lp = state["loop"]
    return {"step": step, "episodes": [tuple(e) for e in lp["episodes"]], "evals": [tuple(e) for e in lp["evals"]],
            "losses": list(lp["losses"]), "pending": list(lp["pending"]), "n_episodes": int(lp["n_episodes"]),
            "next_ckpt": int(lp["next_ckpt"])}


def _summary(out_dir, record: dict) -> dict:
    rets = [r for _, r in record["episodes"]]
    last = rets[-10:]
    return {"out": str(out_dir), "agent": record["agent"], "env": record["env_id"], "episodes": len(rets),
            "mean_return_last_10": sum(last) / max(len(last), 1), "evals": record["evals"][-3:], "wall_s": round(record["wall_s"], 1)}


def _run(cfg, out_dir, resume: bool) -> dict:
    from agm.training.checkpoint import atomic_write_text

    torch.set_num_threads(cfg.threads)
    _, rec = _run_loop(cfg.agent, cfg.env, cfg.seed, cfg.to_loop(), _agent_cfg_dict(cfg), out_dir=out_dir, ckpt_every=cfg.ckpt_every,
                       keep=cfg.keep_checkpoints, log_every=cfg.log_every, progress=cfg.progress, resume=resume)
    rec.pop("wall_s_total", None)
    atomic_write_text(out_dir / "record.json", json.dumps({k: v for k, v in rec.items() if k not in TIMING_KEYS}, indent=1))
    return _summary(out_dir, rec)


def _agent_cfg_dict(cfg) -> dict:
    return asdict(cfg.to_agent_cfg())


def train_rl_run(cfg, out_dir, *, overwrite: bool = False) -> dict:
    """``agm bellman rl --out DIR``: a new run folder (run.json, config.yaml, metrics.jsonl, checkpoints/, record.json);
    refuses a non-empty folder unless ``overwrite``; holds the folder's lock while it runs. Returns a summary."""
    from pathlib import Path

    from agm.training.checkpoint import RUN_FORMAT, RUN_VERSION, atomic_write_text
    from agm.training.config import save_config
    from agm.training.results import machine_info
    from agm.training.runs import RunLock, check_out_dir

    out_dir = check_out_dir(Path(out_dir), overwrite=overwrite)
    with RunLock(out_dir):
        save_config(cfg, out_dir / "config.yaml")
        atomic_write_text(out_dir / "run.json", json.dumps({"format": RUN_FORMAT, "version": RUN_VERSION, "method": "bellman-rl",
                                                            "env": cfg.env, "agent": cfg.agent, "machine": machine_info()}, indent=1))
        return _run(cfg, out_dir, resume=False)


def resume_rl_run(run_dir) -> dict:
    """``agm bellman rl --resume DIR``: continue from the newest intact checkpoint (from step 0 if there is none);
    the continuation equals an uninterrupted run (same checkpoints bit for bit, same metrics.jsonl)."""
    from pathlib import Path

    from agm.errors import CheckpointError
    from agm.methods.bellman.config import load_rl_config
    from agm.training.checkpoint import check_run_dir
    from agm.training.runs import RunLock

    run_dir = Path(run_dir)
    info = check_run_dir(run_dir)
    if info.get("method") != "bellman-rl":
        raise CheckpointError(f"{run_dir} is a run of {info.get('method')!r}, not of 'agm bellman rl'")
    cfg = load_rl_config(str(run_dir / "config.yaml"))
    with RunLock(run_dir):
        return _run(cfg, run_dir, resume=True)
