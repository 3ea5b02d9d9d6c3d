"""Paths: how x_t is drawn between x_0 ~ prior (t = 0) and x_1 ~ data (t = 1), and the regression target."""
from agm.paths.bridge import BrownianBridge, PathSample, gaussian_bridge_marginal, gaussian_optimal_drift

__all__ = ["BrownianBridge", "PathSample", "gaussian_bridge_marginal", "gaussian_optimal_drift"]
