"""The steering tasks as :class:`~agm.training.recipe.Recipe` s: run folders, checkpoints, exact resume, sample, eval.

    agm steering base --out runs/base                      FLOW_RECIPE    a base flow-matching model
    agm steering train --out runs/ft [base.run=runs/base]  SOC_RECIPE     SOC / adjoint-matching fine-tuning (the main task)
    agm steering sample|eval --run runs/ft                              ODE samples of the fine-tuned velocity / metrics
                                                                        against the exact tilted optimum
    agm steering reward --out runs/rr                      REWARD_RECIPE  relative reward extraction + steering
    agm steering learn-sampler --out runs/ls               SAMPLER_RECIPE a sampler schedule learned by inverse RL

The frozen models of a task (its base, the expert) are either loaded from a run folder of ``agm steering base``
(``base.run``; its newest checkpoint is fingerprinted, so a resume refuses a changed base) or trained inside
the run, deterministically from the seed, by ``load_data`` (again at a resume: same seed, same result on the
CPU). Frozen networks that sampling needs are also part of the method's networks (without gradients), so the
run's checkpoints hold everything ``sample`` needs. See docs/steering.md.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from agm.errors import ConfigError
from agm.methods.steering.config import FlowConfig, RewardTaskConfig, SamplerTaskConfig, SteeringConfig
from agm.training.recipe import DataBundle, Recipe


def _toy_or_file(cfg) -> tuple[Tensor, Tensor, Any, list[str]]:
    from agm.data.toy import make_toy

    d = cfg.data
    if d.path is not None:
        train, test, tr, _ = d.load_table(cfg.seed)
        return train.float(), test.float(), tr, [d.path]
    return make_toy(d.name, d.n_train, seed=cfg.seed).float(), make_toy(d.name, d.n_test, seed=cfg.seed + 10_000).float(), None, []


def _frozen(net: nn.Module) -> nn.Module:
    for p in net.parameters():
        p.requires_grad_(False)
    return net.eval()


def _velocity(dim: int, hidden: int, depth: int) -> nn.Module:
    from agm.nets import TimeMLP

    return TimeMLP(dim, hidden=hidden, depth=depth)


def _ode(field, n: int, dim: int, steps: int, method: str, generator: torch.Generator, device) -> Tensor:
    from agm.samplers import ODESampler

    x0 = torch.randn(n, dim, generator=generator, device=device)
    return ODESampler(steps=steps, method=method).sample(field, x0)


def _train_base(data: Tensor, b, seed: int) -> nn.Module:
    from agm.methods.steering.flows import train_flow_model

    return train_flow_model(data, hidden=b.hidden, depth=b.depth, steps=b.steps, batch=b.batch_size, lr=b.lr, seed=seed, ema=b.ema_decay)


def _load_base_run(run: str) -> tuple[nn.Module, Any, list[str], int, int]:
    """The EMA velocity of a run of ``agm steering base``, its transform, its newest checkpoint's files, arch."""
    from agm.training.checkpoint import latest_checkpoint
    from agm.training.recipe import load_networks, load_transform

    nets, bcfg, meta = load_networks(FLOW_RECIPE, run, "cpu")
    ckpt = latest_checkpoint(Path(run))
    files = sorted(str(p) for p in Path(ckpt).iterdir() if p.is_file())
    return _frozen(nets["velocity"]), load_transform(run), files, bcfg.model.hidden, bcfg.model.depth


# ---- agm steering base ----------------------------------------------------------------------------------------------
class FlowRecipe(Recipe):
    name = "steering-base"
    config_cls = FlowConfig
    description = ("A linear flow-matching velocity (x_t = t x1 + (1 - t) x0, data at t = 1) on a built-in set or a "
                   "user file: the base model that 'agm steering train base.run=DIR' fine-tunes. See docs/steering.md.")
    sample_options = {"steps": (int, None, "ODE steps (default: the run's sample.steps)")}

    def load_data(self, cfg: FlowConfig) -> DataBundle:
        train, test, tr, files = _toy_or_file(cfg)
        return DataBundle(train, test, {"data_shape": list(train.shape[1:])}, files, tr)

    def build(self, cfg: FlowConfig, meta: dict[str, Any]):
        from agm.methods.steering.fitting import FlowMatching

        return FlowMatching(_velocity(meta["data_shape"][0], cfg.model.hidden, cfg.model.depth))

    def sample(self, nets, cfg: FlowConfig, meta, n, *, generator, device, steps: int | None = None) -> Tensor:
        return _ode(nets["velocity"], n, meta["data_shape"][0], steps or cfg.sample.steps, cfg.sample.method, generator, device)


# ---- agm steering train|sample|eval: SOC fine-tuning ----------------------------------------------------------------
class SOCRecipe(Recipe):
    name = "steering"
    config_cls = SteeringConfig
    description = ("Reward fine-tuning of a frozen base flow model towards p_base(x) exp(lambda r(x)) as memoryless "
                   "stochastic optimal control: adjoint matching (arXiv 2409.08861) or another loss of the SOC family "
                   "(arXiv 2410.00345), soc.loss. The base is trained inside the run, or loaded with base.run=DIR "
                   "(a run of 'agm steering base'). eval: distances to the exact tilted optimum. See docs/steering.md.")
    sample_options = {"steps": (int, None, "ODE steps (default: the run's sample.steps)")}
    data_path_keys = ("data.path", "base.run")

    def __init__(self) -> None:
        self._state: dict[str, Any] = {}

    def load_data(self, cfg: SteeringConfig) -> DataBundle:
        from agm.methods.steering.fitting import _dummy_batches
        from agm.methods.steering.flows import sample_flow
        from agm.methods.steering.tilt import make_reward, tilted_rejection_sample

        if cfg.base.run is not None:
            base, tr, files, hidden, depth = _load_base_run(cfg.base.run)
            dim = base.dim if hasattr(base, "dim") else None
            dim = int(next(iter(base.parameters())).shape[1]) if dim is None else dim
        else:
            train, _, tr, files = _toy_or_file(cfg)
            dim, hidden, depth = train.shape[1], cfg.base.hidden, cfg.base.depth
            base = _frozen(_train_base(train, cfg.base, cfg.seed))
        base.dim = dim
        r = make_reward(cfg.reward.kind, dim, scale=cfg.reward.scale)
        lam = cfg.soc.reward_multiplier
        pool = sample_flow(base, cfg.soc.pool, dim, steps=cfg.sample.steps, seed=cfg.seed + 999)
        opt = tilted_rejection_sample(pool, lam * r(pool), generator=torch.Generator().manual_seed(cfg.seed + 1))
        if opt.shape[0] < 10:
            raise ConfigError(f"only {opt.shape[0]} of soc.pool={cfg.soc.pool} base samples were accepted for the exact "
                              f"optimum; raise soc.pool or lower soc.reward_multiplier")
        rwr = sample_flow(base, cfg.soc.rwr_pool, dim, steps=cfg.sample.steps, seed=cfg.seed + 998) if cfg.soc.loss == "reward_weighted_regression" else None
        self._state = {"base": base, "reward": r, "rwr_pool": rwr}
        meta = {"data_shape": [dim], "hidden": hidden, "depth": depth, "n_optimum": int(opt.shape[0]),
                "mean_reward_base": float(r(pool).mean()), "mean_reward_optimum": float(r(opt).mean()),
                "transformed": tr is not None}
        return DataBundle(_dummy_batches(cfg.train.batch_size), opt, meta, files, tr)

    def build(self, cfg: SteeringConfig, meta: dict[str, Any]):
        from agm.methods.steering.fitting import SOCFineTuning
        from agm.methods.steering.soc import MemorylessSchedule, make_problem

        if not self._state:
            raise ConfigError("SOCRecipe.build needs load_data first (the frozen base)")
        K = cfg.soc.steps
        prob = make_problem(self._state["base"], self._state["reward"], meta["data_shape"][0], reward_multiplier=cfg.soc.reward_multiplier,
                            steps=K, schedule=MemorylessSchedule(1.0 / K if cfg.soc.offset is None else cfg.soc.offset),
                            last_step=cfg.soc.last_step, time_subsampling=cfg.soc.time_subsampling, loss_clip=cfg.soc.loss_clip,
                            base_pool=self._state["rwr_pool"])
        return SOCFineTuning(prob, cfg.soc.loss)

    def lrs(self, cfg: SteeringConfig) -> dict[str, float]:
        """The fine-tuned net's learning rate: soc.lr, else the measured per-loss default (docs/steering.md)."""
        from agm.methods.steering.soc import SOC_DEFAULT_LR

        return {"ft": SOC_DEFAULT_LR[cfg.soc.loss] if cfg.soc.lr is None else cfg.soc.lr}

    def sampler_networks(self, cfg: SteeringConfig, meta: dict[str, Any]) -> dict[str, nn.Module]:
        return {"ft": _velocity(meta["data_shape"][0], meta["hidden"], meta["depth"])}

    def sample(self, nets, cfg: SteeringConfig, meta, n, *, generator, device, steps: int | None = None) -> Tensor:
        return _ode(nets["ft"], n, meta["data_shape"][0], steps or cfg.sample.steps, cfg.sample.method, generator, device)

    def evaluate(self, cfg: SteeringConfig, samples: Tensor, reference: Tensor, meta: dict[str, Any], seed: int = 0) -> dict[str, float]:
        from agm.metrics import evaluate
        from agm.methods.steering.tilt import make_reward

        out = evaluate(samples, reference, max_samples=cfg.eval.max_samples, seed=seed)
        if not meta.get("transformed"):
            out["mean_reward"] = float(make_reward(cfg.reward.kind, meta["data_shape"][0], cfg.reward.scale)(samples.float()).mean())
            out["mean_reward_optimum"] = meta["mean_reward_optimum"]
            out["mean_reward_base"] = meta["mean_reward_base"]
        return out


# ---- agm steering reward ----------------------------------------------------------------------------------------------
class _WithFrozen:
    """A trainable method plus frozen networks that sampling needs (base / expert / velocity models): they are
    listed as networks, so they are checkpointed, but carry no gradient. ``ema_names``: the EMA networks
    (default: the inner method's)."""

    def __init__(self, inner, frozen: dict[str, nn.Module], ema_names: tuple[str, ...] | None = None) -> None:
        self.inner, self.frozen = inner, frozen
        self.ema_names = inner.ema_names if ema_names is None else ema_names

    def networks(self) -> dict[str, nn.Module]:
        return {**self.inner.networks(), **self.frozen}

    def loss(self, batch, step, generator):
        return self.inner.loss(batch, step, generator)


class RewardRecipe(Recipe):
    name = "steering-reward"
    config_cls = RewardTaskConfig
    description = ("Relative reward extraction (Nuti et al., arXiv 2306.01804): a base flow model on a built-in 2-D set, "
                   "an expert on the same set tilted by exp(r), a reward net rho(x, t) whose gradient fits the difference "
                   "of their scores; sample/eval steer the base with grad rho (steer.scale). See docs/steering.md.")

    def __init__(self) -> None:
        self._state: dict[str, Any] = {}

    def load_data(self, cfg: RewardTaskConfig) -> DataBundle:
        from agm.data.toy import make_toy
        from agm.methods.steering.tilt import make_reward, tilted_rejection_sample

        d = cfg.data
        base_data = make_toy(d.name, d.n_train, seed=cfg.seed + 1).float()
        dim = base_data.shape[1]
        r = make_reward(cfg.reward.kind, dim, scale=cfg.reward.scale)
        pool = make_toy(d.name, 10 * (d.n_train + d.n_test), seed=cfg.seed + 2).float()
        expert_all = tilted_rejection_sample(pool, r(pool), generator=torch.Generator().manual_seed(cfg.seed + 3))
        if expert_all.shape[0] < d.n_train + 10:
            raise ConfigError(f"rejection sampling kept {expert_all.shape[0]} expert points; lower reward.scale")
        expert_data, expert_test = expert_all[: d.n_train], expert_all[d.n_train: d.n_train + d.n_test]
        base = _frozen(_train_base(base_data, cfg.base, cfg.seed))
        expert = _frozen(_train_base(expert_data, cfg.base, cfg.seed))
        self._state = {"base": base, "expert": expert}
        half = d.n_train // 2
        mixed = torch.cat([base_data[:half], expert_data[:half]])  # balanced base + expert mix
        meta = {"data_shape": [dim], "mean_reward_expert_data": float(r(expert_data).mean()), "mean_reward_base_data": float(r(base_data).mean())}
        return DataBundle(mixed, expert_test, meta)

    def _loss_fn(self, cfg: RewardTaskConfig, base: nn.Module, expert: nn.Module):
        from agm.methods.steering.relative_reward import FlowScore, RelativeRewardLoss

        rr = cfg.relative_reward
        return RelativeRewardLoss(FlowScore(base), FlowScore(expert), target=rr.target, weighting=rr.weighting, eval_at=rr.eval_at)

    def _reward_net(self, cfg: RewardTaskConfig, dim: int) -> nn.Module:
        from agm.nets import TimeMLP

        return TimeMLP(dim, hidden=cfg.relative_reward.hidden, depth=cfg.relative_reward.depth, out_dim=1, act="silu")

    def build(self, cfg: RewardTaskConfig, meta: dict[str, Any]):
        from agm.methods.steering.fitting import RewardRegression

        base, expert = self._state["base"], self._state["expert"]
        rr = cfg.relative_reward
        inner = RewardRegression(self._reward_net(cfg, meta["data_shape"][0]), self._loss_fn(cfg, base, expert), rr.t_min, rr.t_max)
        return _WithFrozen(inner, {"base": base, "expert": expert})

    def sampler_networks(self, cfg: RewardTaskConfig, meta: dict[str, Any]) -> dict[str, nn.Module]:
        dim = meta["data_shape"][0]
        return {"reward": self._reward_net(cfg, dim), "base": _velocity(dim, cfg.base.hidden, cfg.base.depth),
                "expert": _velocity(dim, cfg.base.hidden, cfg.base.depth)}

    def sample(self, nets, cfg: RewardTaskConfig, meta, n, *, generator, device) -> Tensor:
        from agm.methods.steering.relative_reward import SteeredVelocity

        field = SteeredVelocity(nets["base"], nets["reward"], self._loss_fn(cfg, nets["base"], nets["expert"]),
                                scale=cfg.steer.scale, t_start=cfg.steer.t_start)
        with torch.enable_grad():  # the steering field differentiates rho
            return _ode(field, n, meta["data_shape"][0], cfg.steer.steps, "heun", generator, device).detach()

    def evaluate(self, cfg: RewardTaskConfig, samples: Tensor, reference: Tensor, meta: dict[str, Any], seed: int = 0) -> dict[str, float]:
        from agm.metrics import evaluate
        from agm.methods.steering.tilt import make_reward

        out = evaluate(samples, reference, max_samples=cfg.eval.max_samples, seed=seed)
        out["mean_reward_steered"] = float(make_reward(cfg.reward.kind, meta["data_shape"][0], cfg.reward.scale)(samples.float()).mean())
        out["mean_reward_expert_data"] = meta["mean_reward_expert_data"]
        return out


# ---- agm steering learn-sampler ------------------------------------------------------------------------------------
class SamplerRecipe(Recipe):
    name = "steering-learn-sampler"
    config_cls = SamplerTaskConfig
    description = ("Learning to sample (Bourdrez et al., arXiv 2602.08689): a per-step schedule of a frozen flow model's "
                   "sampler learned by inverse RL against the data noised to each level; sample/eval use the greedy "
                   "learned schedule at policy.nfe network evaluations. See docs/steering.md.")

    def __init__(self) -> None:
        self._state: dict[str, Any] = {}

    def load_data(self, cfg: SamplerTaskConfig) -> DataBundle:
        from agm.methods.steering.fitting import _dummy_batches

        train, test, tr, files = _toy_or_file(cfg)
        base = _frozen(_train_base(train, cfg.base, cfg.seed))
        self._state = {"velocity": base, "data": train}
        return DataBundle(_dummy_batches(cfg.policy.batch), test, {"data_shape": [train.shape[1]]}, files, tr)

    def _mdp(self, cfg, velocity, dim):
        from agm.methods.steering.learn_to_sample import FlowSamplerMDP

        return FlowSamplerMDP(velocity, dim, cfg.policy.nfe, family=cfg.policy.family)

    def _policy(self, cfg, mdp):
        from agm.methods.steering.learn_to_sample import SamplerPolicy

        return SamplerPolicy(cfg.policy.nfe, mdp.n_actions, identity_action=mdp.identity_action)

    def build(self, cfg: SamplerTaskConfig, meta: dict[str, Any]):
        from agm.methods.steering.fitting import InverseRLSampler
        from agm.methods.steering.learn_to_sample import Discriminator, IRLConfig

        p = cfg.policy
        dim = meta["data_shape"][0]
        mdp = self._mdp(cfg, self._state["velocity"], dim)
        irl = IRLConfig(iterations=p.iterations, batch=p.batch, lr=cfg.train.lr, disc_lr=p.disc_lr, disc_steps=p.disc_steps,
                        divergence=p.divergence, pr_lambda=p.pr_lambda, level_weights=p.level_weights,
                        entropy_coef=p.entropy_coef, normalise_advantage=p.normalise_advantage, seed=cfg.seed)
        inner = InverseRLSampler(mdp, self._policy(cfg, mdp), Discriminator(dim), self._state["data"], irl)
        return _WithFrozen(inner, {"velocity": self._state["velocity"]}, ema_names=())

    def lrs(self, cfg: SamplerTaskConfig) -> dict[str, float]:
        return {"policy": cfg.train.lr, "disc": cfg.policy.disc_lr}

    def sampler_networks(self, cfg: SamplerTaskConfig, meta: dict[str, Any]) -> dict[str, nn.Module]:
        dim = meta["data_shape"][0]
        velocity = _velocity(dim, cfg.base.hidden, cfg.base.depth)
        return {"policy": self._policy(cfg, self._mdp(cfg, velocity, dim)), "velocity": velocity}

    def sample(self, nets, cfg: SamplerTaskConfig, meta, n, *, generator, device) -> Tensor:
        mdp = self._mdp(cfg, nets["velocity"], meta["data_shape"][0])
        return mdp.rollout(nets["policy"], n, generator=generator, greedy=True).xs[-1]


FLOW_RECIPE = FlowRecipe()
SOC_RECIPE = SOCRecipe()
REWARD_RECIPE = RewardRecipe()
SAMPLER_RECIPE = SamplerRecipe()

__all__ = ["FLOW_RECIPE", "SOC_RECIPE", "REWARD_RECIPE", "SAMPLER_RECIPE", "FlowRecipe", "SOCRecipe", "RewardRecipe", "SamplerRecipe"]
