"""Generalised flow maps on Riemannian manifolds (few-step generation), with a Riemannian flow-matching
baseline. See docs/flowmaps.md."""
from agm.methods.flowmaps.losses import FlowMapObjective, eulerian_loss, lagrangian_loss, progressive_loss, rfm_loss
from agm.methods.flowmaps.nets import FlowMap, FlowMapMLP
from agm.methods.flowmaps.sampler import FlowMapSampler, RiemannianODESampler
from agm.methods.flowmaps.train import FlowMapTrainConfig, TrainResult, evaluate_samples, sample_flow_map, train_flow_map

__all__ = ["FlowMapObjective", "eulerian_loss", "lagrangian_loss", "progressive_loss", "rfm_loss", "FlowMap",
           "FlowMapMLP", "FlowMapSampler", "RiemannianODESampler", "FlowMapTrainConfig", "TrainResult",
           "evaluate_samples", "sample_flow_map", "train_flow_map"]
