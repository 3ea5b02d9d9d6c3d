"""Offline RL: D4RL-style data sets and loaders, built-in behaviour data, Q-learning, QIPO with a flow policy."""
from agm.rl.offline.behaviour import BEHAVIOURS, BUILTIN_ENVS, generate_dataset, normalized_score
from agm.rl.offline.dataset import (
    REQUIRED_KEYS,
    OfflineDataset,
    check_env_compatible,
    load_d4rl_hdf5,
    load_minari,
    load_npz,
    load_offline_dataset,
)
from agm.rl.offline.evaluate import evaluate_policy, score_summary
from agm.rl.offline.policy import ActionScaler, FlowPolicy, Normalizer
from agm.rl.offline.qipo import QIPO, QIPOConfig, qipo_policy_loss
from agm.rl.offline.qlearning import SoftmaxQLearner, TwinQ

__all__ = [
    "BEHAVIOURS", "BUILTIN_ENVS", "generate_dataset", "normalized_score", "REQUIRED_KEYS", "OfflineDataset",
    "check_env_compatible", "load_d4rl_hdf5", "load_minari", "load_npz", "load_offline_dataset", "evaluate_policy",
    "score_summary", "ActionScaler", "FlowPolicy", "Normalizer", "QIPO", "QIPOConfig", "qipo_policy_loss",
    "SoftmaxQLearner", "TwinQ",
]
