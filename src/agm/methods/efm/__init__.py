"""Energy-weighted flow matching (EFM) and QIPO offline RL (arXiv 2503.04975; docs/efm_qipo.md).

EFM: ``agm.methods.efm.efm`` (objectives, closed forms, Trainer-based fitting helpers) and ``agm efm`` (run.py).
QIPO: D4RL-style data sets and loaders, built-in behaviour data, Q-learning, QIPO with a flow policy as one
resumable Trainer run (qipo.py, qipo_run.py) and ``agm qipo``.
"""
from agm.methods.efm.behaviour import BEHAVIOURS, BUILTIN_ENVS, generate_dataset, normalized_score
from agm.data.offline import (
    REQUIRED_KEYS,
    OfflineDataset,
    check_env_compatible,
    load_d4rl_hdf5,
    load_minari,
    load_npz,
    load_offline_dataset,
)
from agm.methods.efm.config import EFMConfig, QIPOConfig
from agm.methods.efm.efm import effective_sample_size
from agm.methods.efm.evaluate import evaluate_policy, score_summary
from agm.methods.efm.policy import ActionScaler, FlowPolicy, Normalizer
from agm.methods.efm.qipo import QIPO, fit_qipo, make_trainer, qipo_policy_loss
from agm.methods.efm.qlearning import SoftmaxQLearner, TwinQ, softmax_q_target, td_loss

__all__ = [
    "BEHAVIOURS", "BUILTIN_ENVS", "generate_dataset", "normalized_score", "REQUIRED_KEYS", "OfflineDataset",
    "check_env_compatible", "load_d4rl_hdf5", "load_minari", "load_npz", "load_offline_dataset", "evaluate_policy",
    "score_summary", "ActionScaler", "FlowPolicy", "Normalizer", "QIPO", "QIPOConfig", "EFMConfig", "fit_qipo",
    "make_trainer", "qipo_policy_loss", "SoftmaxQLearner", "TwinQ", "softmax_q_target", "td_loss", "effective_sample_size",
]
