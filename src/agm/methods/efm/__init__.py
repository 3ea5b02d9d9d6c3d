"""Offline RL: D4RL-style data sets and loaders, built-in behaviour data, Q-learning, QIPO with a flow policy."""
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
from agm.methods.efm.evaluate import evaluate_policy, score_summary
from agm.methods.efm.policy import ActionScaler, FlowPolicy, Normalizer
from agm.methods.efm.qipo import QIPO, QIPOConfig, qipo_policy_loss
from agm.methods.efm.qlearning import SoftmaxQLearner, TwinQ

__all__ = [
    "BEHAVIOURS", "BUILTIN_ENVS", "generate_dataset", "normalized_score", "REQUIRED_KEYS", "OfflineDataset",
    "check_env_compatible", "load_d4rl_hdf5", "load_minari", "load_npz", "load_offline_dataset", "evaluate_policy",
    "score_summary", "ActionScaler", "FlowPolicy", "Normalizer", "QIPO", "QIPOConfig", "qipo_policy_loss",
    "SoftmaxQLearner", "TwinQ",
]
