"""Generalised flow maps on Riemannian manifolds (few-step generation; GFM, arXiv 2510.21608), with the
Riemannian flow-matching baseline, Riemannian MeanFlow (G-MF) and exact likelihoods. See docs/flowmaps.md."""
from agm.methods.flowmaps.config import Config, load_config
from agm.methods.flowmaps.likelihood import log_likelihood, nll
from agm.methods.flowmaps.losses import FlowMapObjective, eulerian_loss, lagrangian_loss, meanflow_loss, progressive_loss, rfm_loss
from agm.methods.flowmaps.nets import FlowMap, FlowMapMLP
from agm.methods.flowmaps.sampler import FlowMapSampler, RiemannianODESampler
from agm.methods.flowmaps.train import FlowMapMethod, TrainResult, evaluate_samples, sample_flow_map, train_flow_map

__all__ = ["Config", "load_config", "FlowMapObjective", "eulerian_loss", "lagrangian_loss", "progressive_loss", "rfm_loss", "meanflow_loss", "log_likelihood", "nll",
           "FlowMap", "FlowMapMLP", "FlowMapSampler", "RiemannianODESampler", "FlowMapMethod", "TrainResult",
           "evaluate_samples", "sample_flow_map", "train_flow_map"]
