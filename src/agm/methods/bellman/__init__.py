"""Bellman Diffusion (Li et al., arXiv 2410.01796): a scalar field f ~ p and a gradient field g ~ grad p
learned by (sliced) field matching, sampled with Bellman Diffusion Dynamics, and distributional RL with
return fields against C51. Runs: ``agm bellman train|sample|eval|rl`` (:mod:`agm.methods.bellman.run`,
:mod:`agm.methods.bellman.rl.train`). See docs/bellman.md."""
from agm.methods.bellman.config import Config, RLConfig, load_config, load_rl_config
from agm.methods.bellman.dynamics import BellmanDynamics
from agm.methods.bellman.fields import (FieldMatching, FieldMethod, GradientField, RowBatches, ScalarField, gaussian_field_minimisers,
                                        silverman_eps, train_fields)
from agm.methods.bellman.langevin import LangevinDynamics, ScoreMethod, ScoreNet, dsm_loss, train_score

__all__ = ["Config", "RLConfig", "load_config", "load_rl_config", "BellmanDynamics", "FieldMatching", "FieldMethod", "GradientField",
           "RowBatches", "ScalarField", "gaussian_field_minimisers", "silverman_eps", "train_fields", "LangevinDynamics", "ScoreMethod", "ScoreNet",
           "dsm_loss", "train_score"]
