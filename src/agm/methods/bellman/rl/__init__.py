"""Distributional RL: Bellman Diffusion return fields vs C51 (Bellman Diffusion sec. 5; docs/bellman.md)."""
from agm.methods.bellman.rl.bellman_diffusion import BDConfig, BellmanDiffusionAgent, ReturnField, bellman_field_targets
from agm.methods.bellman.rl.c51 import C51Agent, C51Config, categorical_projection
from agm.methods.bellman.rl.dp import cdf_of_atoms, cdf_of_density, exact_return_distribution, mrp_from_gym, w1_from_cdfs
from agm.methods.bellman.rl.envs import ObsEncoder, check_action_space, check_returns, make_env
from agm.methods.bellman.rl.replay import ReplayBuffer
from agm.methods.bellman.rl.train import LoopConfig, build_agent, evaluate, train_agent

__all__ = [
    "BDConfig", "BellmanDiffusionAgent", "ReturnField", "bellman_field_targets",
    "C51Agent", "C51Config", "categorical_projection",
    "ObsEncoder", "check_action_space", "check_returns", "make_env",
    "ReplayBuffer", "LoopConfig", "build_agent", "evaluate", "train_agent",
    "exact_return_distribution", "mrp_from_gym", "cdf_of_atoms", "cdf_of_density", "w1_from_cdfs",
]
