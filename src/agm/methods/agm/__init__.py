"""AGM, Action-inspired Generative Models (arXiv 2605.14631), its drift-only baseline, two controls
(learned time-only weighting, fixed lambda(t)) and a path-level variant of ours; see docs/agm.md."""
from agm.methods.agm.config import METHODS, Config, load_config
from agm.methods.agm.model import AGM, EndpointDrift, build_drift, build_method, generate
from agm.methods.agm.weighting import (
    POTENTIAL_OBJECTIVES,
    FixedTimeWeighting,
    PairCoupling,
    PotentialWeighting,
    TimeLogVariance,
    clipped_normalise,
    effective_sample_size,
    importance_weights,
    potential_loss,
)

__all__ = ["AGM", "EndpointDrift", "Config", "METHODS", "load_config", "build_drift", "build_method", "generate",
           "POTENTIAL_OBJECTIVES", "PotentialWeighting", "FixedTimeWeighting", "PairCoupling", "TimeLogVariance",
           "clipped_normalise", "effective_sample_size", "importance_weights", "potential_loss"]
