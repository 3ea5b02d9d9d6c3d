"""Objectives shared by several methods: per-sample losses; reduction is explicit: loss = mean_i(w_i * l_i)."""
from agm.objectives.bridge_matching import bridge_matching_loss, per_sample_mse

__all__ = ["bridge_matching_loss", "per_sample_mse"]
