"""AGM, Action-inspired Generative Models (arXiv 2605.14631), and its drift-only baseline; see docs/agm.md."""
from agm.methods.agm.config import Config, load_config
from agm.methods.agm.model import AGM, EndpointDrift, build_drift, build_method, generate
from agm.methods.agm.weighting import (
    POTENTIAL_OBJECTIVES,
    PotentialWeighting,
    effective_sample_size,
    importance_weights,
    potential_loss,
)

__all__ = ["AGM", "EndpointDrift", "Config", "load_config", "build_drift", "build_method", "generate",
           "POTENTIAL_OBJECTIVES", "PotentialWeighting", "effective_sample_size", "importance_weights", "potential_loss"]
