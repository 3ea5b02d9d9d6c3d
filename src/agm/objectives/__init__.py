"""Objectives: per-sample losses and weighting schemes. Reduction is explicit: loss = mean_i(w_i * l_i)."""
from agm.objectives.bridge_matching import bridge_matching_loss, per_sample_mse
from agm.objectives.agm import (
    POTENTIAL_OBJECTIVES,
    PotentialWeighting,
    effective_sample_size,
    importance_weights,
    potential_loss,
)

__all__ = [
    "bridge_matching_loss",
    "per_sample_mse",
    "POTENTIAL_OBJECTIVES",
    "PotentialWeighting",
    "effective_sample_size",
    "importance_weights",
    "potential_loss",
]
