"""The steering tasks' configs: one dataclass per task, which is at once its defaults, its YAML schema and its
command-line options (``agm steering train --help`` lists every key). Built with :mod:`agm.training.config`.

    SteeringConfig       agm steering train|sample|eval     SOC / adjoint-matching fine-tuning of a base flow model
    FlowConfig           agm steering base                  the base flow-matching model (a run folder to fine-tune)
    RewardTaskConfig     agm steering reward                relative reward extraction + steering
    SamplerTaskConfig    agm steering learn-sampler         a sampler schedule learned by inverse RL

The tasks are small (2-D toys, rollouts of a few MLP calls): ``train.device`` defaults to ``cpu`` for all of them
(the rollouts and the frozen models live on the CPU).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from agm.data.files import UserTable
from agm.errors import ConfigError, check_choice, check_positive
from agm.training.config import TrainConfig


@dataclass
class DataConfig(UserTable):
    name: str = "8gaussians"  # built-in set (agm.data.toy.toy_names()) or 'file'
    n_train: int = 20000  # built-in sets: training points drawn once from the seed
    n_test: int = 2000  # built-in sets: held-out points


@dataclass
class ModelConfig:  # a velocity TimeMLP trained by linear flow matching
    hidden: int = 128
    depth: int = 3


@dataclass
class BaseConfig:  # the frozen pretrained flow model of a steering task
    run: Optional[str] = None  # run folder of `agm steering base` to load; None: trained inside this run (below)
    hidden: int = 128
    depth: int = 3
    steps: int = 3000
    batch_size: int = 256
    lr: float = 2e-3
    ema_decay: float = 0.999


@dataclass
class RewardConfig:
    kind: str = "linear"  # linear: r = scale x_1 | quadratic: r = -(scale / 2) |x - (1, ..., 1)|^2
    scale: float = 1.0


@dataclass
class SOCConfig:
    loss: str = "adjoint_matching"  # adjoint_matching | log_variance | cross_entropy | relative_entropy | reward_weighted_regression
    reward_multiplier: float = 0.5  # lambda: target p_base(x) exp(lambda r(x))
    steps: int = 20  # K, Euler-Maruyama steps of the memoryless SDE
    offset: Optional[float] = None  # h in sigma(t), kappa(t); None: 1 / K
    last_step: str = "noiseless_base"  # noiseless_base | noisy
    time_subsampling: str = "all"  # all | am (last K/4 + K/4 random earlier steps)
    loss_clip: Optional[float] = None  # adjoint matching: per-term clip LCT
    pool: int = 60000  # base ODE samples; the exact optimum is drawn from them by rejection
    rwr_pool: int = 20000  # independent base samples for reward_weighted_regression
    lr: Optional[float] = None  # learning rate of the fine-tuned net; None: the measured per-loss default (soc.SOC_DEFAULT_LR)


@dataclass
class SampleConfig:
    steps: int = 100
    method: str = "heun"  # euler | heun (ODE of the fine-tuned velocity)


@dataclass
class EvalConfig:
    n_samples: int = 1500
    max_samples: int = 1500


def _soc_train() -> TrainConfig:
    # train.lr is not used by SOC fine-tuning (its one trained network takes soc.lr or the per-loss default);
    # cosine decay as in the learning-rate sweep of docs/steering.md
    return TrainConfig(steps=600, batch_size=64, lr=3e-3, grad_clip=1.0, ema_decay=0.999, log_every=50, ckpt_every=200, device="cpu",
                       schedule="cosine")


def _validate_common(cfg) -> None:
    cfg.train.validate("train")  # the one check of the training-loop options (agm.training.config)
    check_positive("eval.n_samples", cfg.eval.n_samples, integer=True)
    check_positive("eval.max_samples", cfg.eval.max_samples, integer=True)
    if getattr(cfg, "data", None) is not None:
        cfg.data.resolve_file()
        cfg.data.check_table()
        check_positive("data.n_train", cfg.data.n_train, integer=True)
        check_positive("data.n_test", cfg.data.n_test, integer=True)


def _validate_base(b: BaseConfig) -> None:
    for name in ("hidden", "depth", "steps", "batch_size"):
        check_positive(f"base.{name}", getattr(b, name), integer=True)
    check_positive("base.lr", b.lr)


@dataclass
class SteeringConfig:
    """``agm steering train``: fine-tune a frozen base flow model towards p_base(x) exp(lambda r(x)) with one SOC loss."""

    seed: int = 0
    data: DataConfig = field(default_factory=DataConfig)  # the base model's data (when base.run is not given)
    base: BaseConfig = field(default_factory=BaseConfig)
    reward: RewardConfig = field(default_factory=RewardConfig)
    soc: SOCConfig = field(default_factory=SOCConfig)
    train: TrainConfig = field(default_factory=_soc_train)
    sample: SampleConfig = field(default_factory=SampleConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def validate(self) -> "SteeringConfig":
        from agm.methods.steering.soc import LAST_STEPS, SOC_LOSSES, TIME_SUBSAMPLING

        _validate_common(self)
        _validate_base(self.base)
        check_choice("reward.kind", self.reward.kind, ("linear", "quadratic"))
        check_choice("soc.loss", self.soc.loss, SOC_LOSSES)
        check_choice("soc.last_step", self.soc.last_step, LAST_STEPS)
        check_choice("soc.time_subsampling", self.soc.time_subsampling, TIME_SUBSAMPLING)
        check_choice("sample.method", self.sample.method, ("euler", "heun"))
        check_positive("soc.reward_multiplier", self.soc.reward_multiplier, allow_zero=True)
        for name in ("steps", "pool", "rwr_pool"):
            check_positive(f"soc.{name}", getattr(self.soc, name), integer=True)
        check_positive("sample.steps", self.sample.steps, integer=True)
        if self.soc.offset is not None:
            check_positive("soc.offset", self.soc.offset, allow_zero=True)
        if self.soc.loss_clip is not None:
            check_positive("soc.loss_clip", self.soc.loss_clip)
        if self.soc.lr is not None:
            check_positive("soc.lr", self.soc.lr)
        return self


@dataclass
class FlowConfig:
    """``agm steering base``: a linear flow-matching velocity (the model that ``agm steering train`` fine-tunes)."""

    seed: int = 0
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=lambda: TrainConfig(steps=3000, batch_size=256, lr=2e-3, grad_clip=0.0, ema_decay=0.999, log_every=100, ckpt_every=1000, device="cpu"))
    sample: SampleConfig = field(default_factory=SampleConfig)
    eval: EvalConfig = field(default_factory=lambda: EvalConfig(n_samples=2000, max_samples=2000))

    def validate(self) -> "FlowConfig":
        _validate_common(self)
        check_positive("model.hidden", self.model.hidden, integer=True)
        check_positive("model.depth", self.model.depth, integer=True)
        check_choice("sample.method", self.sample.method, ("euler", "heun"))
        return self


@dataclass
class RelativeRewardConfig:
    target: str = "score"  # score | eps | velocity
    weighting: str = "sigma2"  # sigma2 | none
    eval_at: str = "xt"  # xt | base_mean
    hidden: int = 64
    depth: int = 3
    t_min: float = 0.02
    t_max: float = 0.98


@dataclass
class SteerConfig:
    scale: float = 1.0  # guidance scale w
    t_start: float = 0.02
    steps: int = 100  # Heun steps


@dataclass
class RewardTaskConfig:
    """``agm steering reward``: extract a relative reward from a base model and an expert model (the base data tilted
    by exp(r)) and steer the base with it."""

    seed: int = 0
    data: DataConfig = field(default_factory=lambda: DataConfig(n_train=20000))
    reward: RewardConfig = field(default_factory=RewardConfig)
    base: BaseConfig = field(default_factory=lambda: BaseConfig(steps=2500))  # settings of both frozen models
    relative_reward: RelativeRewardConfig = field(default_factory=RelativeRewardConfig)
    steer: SteerConfig = field(default_factory=SteerConfig)
    train: TrainConfig = field(default_factory=lambda: TrainConfig(steps=1200, batch_size=256, lr=1e-3, grad_clip=0.0, ema_decay=0.0, log_every=100, ckpt_every=400, device="cpu"))
    eval: EvalConfig = field(default_factory=lambda: EvalConfig(n_samples=2000, max_samples=2000))

    def validate(self) -> "RewardTaskConfig":
        from agm.methods.steering.relative_reward import EVAL_AT, TARGETS, WEIGHTINGS

        _validate_common(self)
        _validate_base(self.base)
        if self.base.run is not None:
            raise ConfigError("base.run is not used by 'agm steering reward' (it trains its base and expert models); remove it")
        if self.data.path is not None:
            raise ConfigError("'agm steering reward' uses a built-in 2-D set (data.name): the expert data are its tilt by exp(r)")
        check_choice("reward.kind", self.reward.kind, ("linear", "quadratic"))
        check_choice("relative_reward.target", self.relative_reward.target, TARGETS)
        check_choice("relative_reward.weighting", self.relative_reward.weighting, WEIGHTINGS)
        check_choice("relative_reward.eval_at", self.relative_reward.eval_at, EVAL_AT)
        check_positive("steer.scale", self.steer.scale, allow_zero=True)
        check_positive("steer.steps", self.steer.steps, integer=True)
        return self


@dataclass
class PolicyConfig:
    family: str = "step"  # step | churn | scale
    nfe: int = 4  # horizon N = network evaluations per sample
    divergence: str = "reverse_kl"  # reverse_kl | forward_kl | pr
    pr_lambda: float = 1.0
    level_weights: str = "all"  # all | final
    entropy_coef: float = 0.01
    normalise_advantage: bool = True
    disc_lr: float = 2e-3
    disc_steps: int = 2  # discriminator steps per policy step
    batch: int = 256  # trajectories per iteration
    iterations: int = 200  # policy-gradient iterations (train.steps is set to iterations * (disc_steps + 1))


@dataclass
class SamplerTaskConfig:
    """``agm steering learn-sampler``: learn a per-step sampler schedule of a frozen flow model by inverse RL."""

    seed: int = 0
    data: DataConfig = field(default_factory=DataConfig)
    base: BaseConfig = field(default_factory=lambda: BaseConfig(steps=2000))
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    train: TrainConfig = field(default_factory=lambda: TrainConfig(steps=600, batch_size=256, lr=0.05, grad_clip=0.0, ema_decay=0.0, log_every=30, ckpt_every=300, device="cpu"))
    eval: EvalConfig = field(default_factory=lambda: EvalConfig(n_samples=2000, max_samples=2000))

    def validate(self) -> "SamplerTaskConfig":
        from agm.methods.steering.learn_to_sample import ACTION_FAMILIES, DIVERGENCES, LEVEL_WEIGHTS

        _validate_common(self)
        _validate_base(self.base)
        if self.base.run is not None:
            raise ConfigError("base.run is not used by 'agm steering learn-sampler' (the expert occupancy needs the base's "
                              "training data); give data.name or data.path, the frozen model is trained inside the run")
        check_choice("policy.family", self.policy.family, ACTION_FAMILIES)
        check_choice("policy.divergence", self.policy.divergence, DIVERGENCES)
        check_choice("policy.level_weights", self.policy.level_weights, LEVEL_WEIGHTS)
        for name in ("nfe", "disc_steps", "batch", "iterations"):
            check_positive(f"policy.{name}", getattr(self.policy, name), integer=True)
        self.train.steps = self.policy.iterations * (self.policy.disc_steps + 1)
        return self
