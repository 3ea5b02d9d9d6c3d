"""Bellman Diffusion (Li et al., arXiv 2410.01796): a scalar field f ~ p and a gradient field g ~ grad p
learned by (sliced) field matching, sampled with Bellman Diffusion Dynamics, and distributional RL with
return fields against C51. See docs/bellman.md."""
from agm.methods.bellman.dynamics import BellmanDynamics
from agm.methods.bellman.fields import FieldMatching, GradientField, ScalarField, gaussian_field_minimisers, train_fields
from agm.methods.bellman.langevin import LangevinDynamics, ScoreNet, dsm_loss, train_score

__all__ = ["BellmanDynamics", "FieldMatching", "GradientField", "ScalarField", "gaussian_field_minimisers",
           "train_fields", "LangevinDynamics", "ScoreNet", "dsm_loss", "train_score"]
