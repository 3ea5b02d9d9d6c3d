"""Shared helpers for steering pretrained models (issue 6): pretrained flow models, exact velocities,
tilted targets and distances. The methods live in agm.methods.steering.relative_reward,
agm.methods.steering.soc and agm.methods.steering.learn_to_sample."""
from agm.methods.steering.flows import (
    EmpiricalFlowVelocity,
    GaussianFlowVelocity,
    sample_flow,
    train_flow_model,
    velocity_to_score,
)
from agm.methods.steering.tilt import (
    LinearReward,
    QuadraticReward,
    check_reward_values,
    gaussian_kl,
    gaussian_tilt_linear,
    gaussian_tilt_quadratic,
    make_reward,
    tilted_rejection_sample,
    toy_data,
)

__all__ = [
    "EmpiricalFlowVelocity", "GaussianFlowVelocity", "sample_flow", "train_flow_model", "velocity_to_score",
    "LinearReward", "QuadraticReward", "check_reward_values", "gaussian_kl",
    "gaussian_tilt_linear", "gaussian_tilt_quadratic", "make_reward", "tilted_rejection_sample", "toy_data",
]
