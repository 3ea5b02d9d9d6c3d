"""Bellman Diffusion's two configs, each one dataclass that is its defaults, its YAML schema and its CLI:

    Config     ``agm bellman train|sample|eval``: fit f ~ p and g ~ grad p by field matching, sample with the
               Bellman Diffusion Dynamics (Li et al., arXiv 2410.01796, Eqs. 8-13; docs/bellman.md)
    RLConfig   ``agm bellman rl``: distributional RL with return fields (Bellman Diffusion agent) or C51

Loaded from YAML (a file or a built-in name under ``configs/``) plus ``key=value`` overrides through
:mod:`agm.training.config`; every run writes its resolved config to ``config.yaml``.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from agm.data.files import UserTable
from agm.errors import ConfigError, check_choice, check_positive
from agm.training.config import TrainConfig, build_config

BUILTIN_DIR = Path(__file__).parent / "configs"

KERNELS = ("sliced", "full")
PAIRINGS = ("all", "permutation")
TRACES = ("hutchinson", "rademacher", "exact")
FIRST_TERMS = ("exact", "sliced")
HEADS = ("linear", "softplus")
POSITIVITY = ("clamp", "softplus", "abs")
EPS_RULES = ("fixed", "silverman")
SCALES = ("none", "kernel")
LEVEL_NOISE = ("none", "data")
INITS = ("normal", "data_gaussian")
AGENTS = ("bd", "c51")
POINTS = ("uniform", "target")
ACTION_SELECTION = ("target", "double")


@dataclass
class DataConfig(UserTable):  # standardise/whiten: eps is in the transformed units
    name: str = "moons"  # built-in set (agm.data.toy.toy_names()) or 'file'
    n_train: int = 20000  # built-in sets: training points drawn once from the seed
    n_test: int = 5000  # built-in sets: held-out points for evaluation


@dataclass
class FieldConfig:
    eps: float = 0.05  # kernel variance epsilon > 0 (standardised units), shared by both losses; with eps_rule=fixed
    eps_rule: str = "fixed"  # fixed (field.eps) | silverman (eps from batch size and dimension, docs/bellman.md)
    eps_levels: list = dataclasses.field(default_factory=list)  # multipliers of the base eps: [] = one eps; else eps-conditioned fields
    scale: str = "none"  # none | kernel: field outputs multiplied by the smoothed Gaussian's peak (2 pi (1 + eps))^(-k/2)
    level_noise: str = "none"  # none (targets p) | data (a batch at kernel variance eps trains on x + N(0, eps I): targets p * N_eps)
    kernel: str = "sliced"  # sliced (Eqs. 10-11, 1-D projected Gaussian) | full (Eq. 8, d-dim Gaussian)
    pairing: str = "all"  # all (every j != i in the batch) | permutation (one random partner)
    trace: str = "hutchinson"  # divergence estimate: hutchinson (v ~ N(0, I), Eq. 9) | rademacher | exact (d VJPs)
    first_term: str = "exact"  # exact ||g||^2 | sliced (v^T g)^2
    slices: int = 1  # Hutchinson slices v per sample
    projections: int = 1  # kernel directions w per sample (sliced kernel)
    head: str = "linear"  # scalar-field head: linear | softplus (f >= 0)
    hidden: int = 128  # MLP width of f and g
    depth: int = 3  # MLP depth of f and g


@dataclass
class SampleConfig:
    steps: int = 2000  # Euler-Maruyama steps of the Bellman Diffusion Dynamics (Eq. 13)
    rel_step: float = 0.05  # eta = rel_step / max f(x0) when step_size is null
    step_size: Optional[float] = None  # a fixed eta instead
    positivity: str = "clamp"  # how f is made >= 0 under the square root: clamp | softplus | abs
    drift_clip: Optional[float] = None  # bound on ||g|| per particle and step (standardised units); null = none
    init: str = "normal"  # x0 ~ N(0, I) (normal) | N(mean, cov) of the standardised training rows (data_gaussian)
    eps_schedule: list = dataclasses.field(default_factory=list)  # annealed sampler: multipliers of the base eps in order;
    # [] = every field.eps_levels entry, largest first (or the single eps)


@dataclass
class EvalConfig:
    n_samples: int = 4000
    max_samples: int = 2000  # W2 subsample size


def _fields_train() -> TrainConfig:
    # the former private loop's settings: lr 2e-3 annealed by a cosine, batch 512, 2000 steps, no clipping, no weight
    # decay; EMA 0.99 (a 0.999 EMA would still weigh the initial networks by 0.999^2000 = 14 % at the end)
    return TrainConfig(steps=2000, batch_size=512, lr=2e-3, grad_clip=0.0, ema_decay=0.99, schedule="cosine", log_every=100,
                       ckpt_every=500)


@dataclass
class Config:
    """``agm bellman train``: field matching on a built-in set or a user file (``data.path``)."""

    seed: int = 0
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    field: FieldConfig = dataclasses.field(default_factory=FieldConfig)  # noqa: F811 (the group is called 'field')
    train: TrainConfig = dataclasses.field(default_factory=_fields_train)
    sample: SampleConfig = dataclasses.field(default_factory=SampleConfig)
    eval: EvalConfig = dataclasses.field(default_factory=EvalConfig)

    def validate(self) -> "Config":
        self.data.resolve_file()
        f, s = self.field, self.sample
        check_positive("field.eps", f.eps)
        check_choice("field.kernel", f.kernel, KERNELS)
        check_choice("field.pairing", f.pairing, PAIRINGS)
        check_choice("field.trace", f.trace, TRACES)
        check_choice("field.first_term", f.first_term, FIRST_TERMS)
        check_choice("field.head", f.head, HEADS)
        check_choice("sample.positivity", s.positivity, POSITIVITY)
        check_choice("field.eps_rule", f.eps_rule, EPS_RULES)
        check_choice("field.scale", f.scale, SCALES)
        check_choice("field.level_noise", f.level_noise, LEVEL_NOISE)
        check_choice("sample.init", s.init, INITS)
        for name, values in (("field.eps_levels", f.eps_levels), ("sample.eps_schedule", s.eps_schedule)):
            if not isinstance(values, list):
                raise ConfigError(f"{name}={values!r} must be a list of positive numbers, e.g. [1, 4, 16]")
            for v in values:
                check_positive(name, v)
        if s.eps_schedule and not f.eps_levels:
            raise ConfigError("sample.eps_schedule needs eps-conditioned fields: set field.eps_levels (e.g. [1, 4, 16])")
        missing = [v for v in s.eps_schedule if not any(abs(float(v) - float(e)) < 1e-12 for e in f.eps_levels)]
        if missing:
            raise ConfigError(f"sample.eps_schedule entries {missing} are not among field.eps_levels={f.eps_levels}")
        if f.first_term == "sliced" and f.trace == "exact":
            raise ConfigError("field.first_term='sliced' needs field.trace in ('hutchinson', 'rademacher'); got trace='exact'")
        for name in ("field.slices", "field.projections", "field.hidden", "field.depth", "sample.steps", "eval.n_samples", "eval.max_samples",
                     "data.n_train", "data.n_test"):
            check_positive(name, self.get(name), integer=True)
        check_positive("train.batch_size", self.train.batch_size, integer=True)
        if self.train.batch_size < 2:
            raise ConfigError(f"train.batch_size={self.train.batch_size!r} must be >= 2 (field matching pairs data points)")
        check_positive("sample.rel_step", s.rel_step)
        if s.step_size is not None:
            check_positive("sample.step_size", s.step_size)
        if s.drift_clip is not None:
            check_positive("sample.drift_clip", s.drift_clip)
        self.data.check_table()
        return self

    def get(self, dotted: str) -> Any:
        obj: Any = self
        for part in dotted.split("."):
            obj = getattr(obj, part)
        return obj


# ---- distributional RL ---------------------------------------------------------------------------------------
@dataclass
class LoopGroup:
    """The DQN-style loop shared by both agents (CleanRL's C51 loop)."""

    total_steps: int = 12000  # environment steps
    buffer_size: int = 10000
    batch_size: int = 128
    learning_starts: int = 1000  # env steps before the first update
    train_frequency: int = 4  # env steps per update
    target_frequency: int = 500  # env steps per hard target sync
    start_e: float = 1.0  # epsilon-greedy: linear from start_e to end_e over exploration_fraction * total_steps
    end_e: float = 0.05
    exploration_fraction: float = 0.5
    eval_every: int = 0  # greedy evaluation period in env steps (0 = none)
    eval_episodes: int = 0  # episodes per greedy evaluation


@dataclass
class AgentGroup:
    v_min: float = 0.0  # return range [v_min, v_max] (raw units)
    v_max: float = 100.0
    gamma: float = 0.99
    lr: float = 5e-4  # Adam
    hidden: list = field(default_factory=lambda: [120, 84])  # state trunk widths
    # Bellman Diffusion agent
    sigma_t: float = 0.05  # std of the terminal return kernel (normalised units); eps_T = sigma_t^2
    grid_size: int = 101  # quadrature grid for Q
    n_points: int = 32  # evaluation points z per transition
    grad_weight: float = 0.1  # lambda_g, weight of the g regression
    points: str = "uniform"  # uniform | target (half from the target's own law)
    action_selection: str = "target"  # target | double
    margin: float = 0.1  # fields live on [-1 - margin, 1 + margin] (normalised returns)
    shared_points: bool = True  # one stratified set of M return points per batch (False: per transition, the old update)
    target_eval: str = "grid"  # grid (read the target fields off a* 's grid) | exact (evaluate them at the points)
    adam_eps: Optional[float] = None  # None: each agent's default (BD 1e-8, C51 0.01 / batch_size as CleanRL)
    # C51
    n_atoms: int = 101
    c51_loss: str = "log_softmax"  # log_softmax | clamped_log (CleanRL's)


@dataclass
class RLConfig:
    """``agm bellman rl``: a distributional agent on a gymnasium environment with a Discrete action space."""

    env: str = "CartPole-v1"
    agent: str = "bd"  # bd (Bellman Diffusion return fields) | c51
    seed: int = 0
    loop: LoopGroup = field(default_factory=LoopGroup)
    model: AgentGroup = field(default_factory=AgentGroup)
    log_every: int = 1  # write every log_every-th finished episode to metrics.jsonl
    ckpt_every: int = 2000  # a checkpoint at the first episode end after every ckpt_every env steps (and at the end)
    keep_checkpoints: int = 2
    threads: int = 1  # torch intra-op threads
    progress: bool = True  # periodic plain progress lines on stderr

    def validate(self) -> "RLConfig":
        check_choice("agent", self.agent, AGENTS)
        for k in ("total_steps", "buffer_size", "batch_size", "learning_starts", "train_frequency", "target_frequency"):
            check_positive(f"loop.{k}", getattr(self.loop, k), integer=True)
        check_positive("loop.eval_every", self.loop.eval_every, integer=True, allow_zero=True)
        check_positive("loop.eval_episodes", self.loop.eval_episodes, integer=True, allow_zero=True)
        check_positive("loop.exploration_fraction", self.loop.exploration_fraction)
        for k in ("log_every", "ckpt_every", "keep_checkpoints", "threads"):
            check_positive(k, getattr(self, k), integer=True)
        check_positive("model.sigma_t", self.model.sigma_t)
        self.to_agent_cfg()  # the agents' own checks (value range, gamma, grid, ...)
        return self

    def to_agent_cfg(self) -> Any:
        """The agent's own settings object (BDConfig or C51Config), validated."""
        from agm.methods.bellman.rl.bellman_diffusion import BDConfig
        from agm.methods.bellman.rl.c51 import C51Config

        m = self.model
        common = dict(v_min=m.v_min, v_max=m.v_max, gamma=m.gamma, lr=m.lr, hidden=tuple(int(h) for h in m.hidden))
        if self.agent == "c51":
            return C51Config(n_atoms=m.n_atoms, adam_eps=m.adam_eps, loss=m.c51_loss, **common)
        eps = {} if m.adam_eps is None else {"adam_eps": m.adam_eps}
        return BDConfig(eps_T=m.sigma_t**2, grid_size=m.grid_size, n_points=m.n_points, grad_weight=m.grad_weight,
                        points=m.points, action_selection=m.action_selection, margin=m.margin,
                        shared_points=m.shared_points, target_eval=m.target_eval, **eps, **common)

    def to_loop(self) -> Any:
        from agm.methods.bellman.rl.train import LoopConfig

        return LoopConfig(**dataclasses.asdict(self.loop))


def load_config(source: str | Path | dict | None = None, overrides: list[str] | tuple = ()) -> Config:
    """The field-matching config from a YAML path, a built-in name, a dict or None (defaults), plus overrides."""
    return build_config(Config, source, overrides, BUILTIN_DIR)


def load_rl_config(source: str | Path | dict | None = None, overrides: list[str] | tuple = ()) -> RLConfig:
    return build_config(RLConfig, source, overrides, BUILTIN_DIR)


__all__ = ["Config", "DataConfig", "FieldConfig", "SampleConfig", "EvalConfig", "RLConfig", "LoopGroup", "AgentGroup",
           "load_config", "load_rl_config", "BUILTIN_DIR"]
