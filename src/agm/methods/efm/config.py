"""The config dataclasses of ``agm efm`` (:class:`EFMConfig`) and ``agm qipo`` (:class:`QIPOConfig`).

Each is at once its task's defaults, its YAML schema and its command line (``agm efm train --help``,
``agm qipo train --help`` list every key with type and default); the machinery is :mod:`agm.training.config`.
QIPO's defaults are the tuned "v2" setting measured in docs/efm_qipo.md ("Issue 19"; experiments/results/
qipo_compare_v2.json: 97.5 on pendulum-mixed); the earlier "v1" defaults are the built-in config ``qipo_v1``
(``agm qipo train --config qipo_v1``, file configs/qipo_v1.yaml), which reproduces results made with them.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from agm.data.files import UserTable
from agm.errors import ConfigError, check_choice, check_positive
from agm.training.config import TrainConfig

BUILTIN_DIR = None  # EFM has no built-in YAML configs: the dataclass defaults are the configs
#: QIPO's built-in configs (``agm qipo train --config NAME``): qipo_v1 = the original defaults, before the tuned v2 setting
QIPO_BUILTIN_DIR = Path(__file__).parent / "configs"
#: built-in EFM data sets whose tilted law q ∝ p exp(-beta E) is known in closed form (docs/efm_qipo.md)
TILT_SETS = ("gauss2d", "mixture1d")


def _get(obj: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        obj = getattr(obj, part)
    return obj


# ---------------------------------------------------------------------------------------------- EFM
@dataclass
class EFMDataConfig(UserTable):
    name: str = "gauss2d"  # gauss2d | mixture1d (exact tilt known) | a built-in set of agm.data.toy | file
    n_train: int = 20000  # built-in sets: samples of p
    n_test: int = 5000  # built-in sets: held-out samples of p


@dataclass
class EnergyConfig:
    kind: str = "quadratic"  # quadratic: E = 1/2 (x-c)^T A (x-c) | linear: E = g^T x  (x in data units)
    A: Optional[list] = None  # quadratic: D x D matrix, or a list of D diagonal entries (null: the built-in set's)
    c: Optional[list] = None  # quadratic: centre, D entries (null: the built-in set's)
    g: Optional[list] = None  # linear: D entries
    beta: float = 1.0  # inverse temperature >= 0 (0 = plain flow matching on p)
    normalization: str = "batch"  # batch | none (exact needs log Z; library API only)


@dataclass
class EFMModelConfig:
    hidden: int = 64
    depth: int = 2


@dataclass
class EFMSampleConfig:
    steps: int = 30
    method: str = "heun"  # euler | heun (ODE from N(0, I) at t = 0 to t = 1)


@dataclass
class EFMEvalConfig:
    n_samples: int = 5000
    max_samples: int = 2000  # subsample of each set for the metrics (W2 is cubic in it)


def _efm_train() -> TrainConfig:
    # constant learning rate + EMA: the Trainer has no schedule (the library helper fit_weighted_flow anneals)
    return TrainConfig(steps=1500, batch_size=512, lr=3e-3, grad_clip=0.0, ema_decay=0.99, log_every=100, ckpt_every=500)


@dataclass
class EFMConfig:
    seed: int = 0
    data: EFMDataConfig = field(default_factory=EFMDataConfig)
    energy: EnergyConfig = field(default_factory=EnergyConfig)
    model: EFMModelConfig = field(default_factory=EFMModelConfig)
    train: TrainConfig = field(default_factory=_efm_train)
    sample: EFMSampleConfig = field(default_factory=EFMSampleConfig)
    eval: EFMEvalConfig = field(default_factory=EFMEvalConfig)

    def validate(self) -> "EFMConfig":
        self.data.resolve_file()
        check_choice("energy.kind", self.energy.kind, ("quadratic", "linear"))
        check_choice("energy.normalization", self.energy.normalization, ("batch", "none"))
        check_choice("sample.method", self.sample.method, ("euler", "heun"))
        check_positive("energy.beta", self.energy.beta, allow_zero=True)
        if not math.isfinite(self.energy.beta):
            raise ConfigError(f"energy.beta={self.energy.beta!r} must be a finite number >= 0")
        for name in ("sample.steps", "eval.n_samples", "eval.max_samples", "data.n_train", "data.n_test", "model.hidden",
                     "model.depth"):
            check_positive(name, _get(self, name), integer=True)
        self.data.check_table()
        if self.data.name not in TILT_SETS and self.data.name != "file":
            from agm.data.toy import toy_names

            check_choice("data.name", self.data.name, (*TILT_SETS, *toy_names(), "file"))
        if self.data.name not in TILT_SETS:
            need = ("A", "c") if self.energy.kind == "quadratic" else ("g",)
            missing = [f"energy.{k}" for k in need if getattr(self.energy, k) is None]
            if missing:
                raise ConfigError(f"data.name={self.data.name!r} has no built-in energy; set {', '.join(missing)} "
                                  f"(energy.kind={self.energy.kind!r})")
        return self

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


# --------------------------------------------------------------------------------------------- QIPO
@dataclass
class QIPODataConfig:
    path: Optional[str] = None  # offline data set: .npz, D4RL .hdf5, Minari main_data.hdf5 or folder (required)
    env: Optional[str] = None  # gymnasium env id (default: the data set's meta env_id)


@dataclass
class QIPOEvalConfig:
    episodes: int = 20  # evaluation episodes of `agm qipo eval`
    seed: int = 50000  # episode e is reset with seed + e


def _qipo_train() -> TrainConfig:
    # train.steps is derived: behaviour_steps + q_steps + improve_steps. train.lr is the policy's learning rate,
    # q_lr the Q-network's; train.batch_size the batch of the behaviour and Q phases; the Q target network is the
    # Trainer's EMA of Q, so train.ema_decay = 1 - tau (Polyak rate tau = 0.01; v1: lr 3e-4, 0.995).
    return TrainConfig(steps=3500, batch_size=256, lr=1e-3, grad_clip=0.0, ema_decay=0.99, log_every=100,
                       ckpt_every=500, tensorboard=False, device="cpu")


@dataclass
class QIPOConfig:
    """QIPO (arXiv 2503.04975, section 5, Algorithm 2); module docstring of agm.methods.efm.qipo for each choice.

    The defaults are the "v2" setting selected on tuning seed 100 and measured on 5 seeds (docs/efm_qipo.md,
    "Issue 19"); the comments give the v1 value where it differs (built-in config ``qipo_v1``)."""

    beta: float = 30.0  # inverse temperature of the Q weights (0 = behaviour cloning in phase 3); v1: 3
    support_size: int = 8  # M: support actions per state from the current policy
    beta_q: float = 1.0  # softmax temperature of the in-support Q target
    gamma: float = 0.99
    reward_scale: float = 0.1  # reward multiplier for Q-learning
    behaviour_steps: int = 500  # K1: behaviour warm-up (plain CFM on the data); v1: 3000
    q_steps: int = 500  # K2: in-support softmax Q-learning; v1: 3000
    improve_steps: int = 2500  # K3: Q-weighted iterative improvement; v1: 2000
    renew_every: int = 400  # K_renew: support renewal period in phase 3
    improve_batch_size: int = 128  # states per phase-3 batch
    q_lr: float = 1e-3  # v1: 3e-4
    policy_hidden: int = 64  # v1: 128
    policy_depth: int = 2
    q_hidden: int = 64  # v1: 128
    q_depth: int = 2
    sampler_steps: int = 5  # ODE steps of the flow policy
    sampler_method: str = "euler"  # euler | heun
    eval_sampler_steps: Optional[int] = None  # ODE steps when acting (null: sampler_steps)
    eval_sampler_method: Optional[str] = None  # euler | heun when acting (null: sampler_method)
    beta_schedule: str = "constant"  # beta per renewal l of L: constant (beta) | linear (beta (l + 1) / L)
    q_norm: str = "none"  # none: softmax(beta Q) | std: Q / (batch sd of per-state advantages) first
    weight_all_actions: bool = True
    include_dataset_action: bool = True
    freeze_q: bool = False  # False: Q keeps training in phase 3 (needs a learned Q, no fixed q_fn); v1: True
    weight_cap: Optional[float] = None
    support_states: Optional[int] = 8192  # states per renewal (null: all)
    q_support_size: int = 8  # support actions per next state in the Q target
    best_of: int = 1  # 1 = one policy sample (the method); N = best of N by Q at evaluation
    seed: int = 0
    data: QIPODataConfig = field(default_factory=QIPODataConfig)
    train: TrainConfig = field(default_factory=_qipo_train)
    eval: QIPOEvalConfig = field(default_factory=QIPOEvalConfig)

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> "QIPOConfig":
        for name in ("beta", "beta_q"):
            v = getattr(self, name)
            check_positive(name, v, allow_zero=True)
            if not math.isfinite(float(v)):
                raise ConfigError(f"{name}={v!r} is not accepted; it must be a finite number >= 0")
        for name in ("support_size", "behaviour_steps", "renew_every", "improve_batch_size", "policy_hidden", "policy_depth",
                     "q_hidden", "q_depth", "sampler_steps", "q_support_size", "best_of", "eval.episodes"):
            check_positive(name, _get(self, name), integer=True)
        for name in ("q_steps", "improve_steps"):
            check_positive(name, getattr(self, name), integer=True, allow_zero=True)
        check_positive("reward_scale", self.reward_scale)
        check_positive("q_lr", self.q_lr)
        check_choice("sampler_method", self.sampler_method, ("euler", "heun"))
        if self.eval_sampler_steps is not None:
            check_positive("eval_sampler_steps", self.eval_sampler_steps, integer=True)
        if self.eval_sampler_method is not None:
            check_choice("eval_sampler_method", self.eval_sampler_method, ("euler", "heun"))
        check_choice("beta_schedule", self.beta_schedule, ("constant", "linear"))
        check_choice("q_norm", self.q_norm, ("none", "std"))
        check_choice("train.device", self.train.device, ("cpu",))
        if not 0.0 <= self.gamma < 1.0:
            raise ConfigError(f"gamma={self.gamma!r} is not accepted; it must satisfy 0 <= gamma < 1")
        if not 0.0 <= self.train.ema_decay < 1.0:
            raise ConfigError(f"train.ema_decay={self.train.ema_decay!r} (= 1 - Polyak tau of the Q target) must be in [0, 1)")
        if self.weight_cap is not None:
            check_positive("weight_cap", self.weight_cap)
        if self.support_states is not None:
            check_positive("support_states", self.support_states, integer=True)
        self.train.steps = self.behaviour_steps + self.q_steps + self.improve_steps
        return self

    @property
    def phase_ends(self) -> tuple[int, int, int]:
        """Global step at which the behaviour, Q and improvement phases end."""
        k1 = self.behaviour_steps
        return k1, k1 + self.q_steps, k1 + self.q_steps + self.improve_steps

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


__all__ = ["EFMConfig", "EFMDataConfig", "EnergyConfig", "EFMModelConfig", "EFMSampleConfig", "EFMEvalConfig",
           "QIPOConfig", "QIPODataConfig", "QIPOEvalConfig", "TILT_SETS", "BUILTIN_DIR", "QIPO_BUILTIN_DIR"]
