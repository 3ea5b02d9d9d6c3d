"""Fréchet distance between Gaussian fits of features, and a built-in feature space for the digits set.

Fréchet (2-Wasserstein) distance between N(mu1, S1) and N(mu2, S2) (Dowson & Landau 1982; the FID of
Heusel et al. 2017 is this distance in Inception-v3 pool features):

    d^2 = ||mu1 - mu2||^2 + Tr(S1) + Tr(S2) - 2 Tr((S1^{1/2} S2 S1^{1/2})^{1/2})

computed in float64 with symmetric eigendecompositions (Tr((S1 S2)^{1/2}) equals the trace of the
symmetric PSD square root above, which avoids the complex round-off of scipy's sqrtm). Means and
covariances use the unbiased (N - 1) normaliser, as pytorch-fid does.

``DigitsFeatureNet`` is a small CNN classifier that agm trains itself on the built-in digits set
(``train_digits_classifier``); its penultimate activations define a feature space in which
``feature_frechet_distance`` is a *feature Fréchet distance* (FD_digits). It is an FID-like proxy for
the tiny built-in set only: it is NOT comparable to FID (different network, features, data and
scale) and its values are only comparable between runs that use the same classifier weights.
"""
from __future__ import annotations

import math
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from agm.errors import DataError, check_positive


def feature_statistics(feats: Tensor | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(mean, unbiased covariance) of features (N, D) in float64; DataError for N < 2 or non-finite values."""
    f = feats.detach().cpu().double().numpy() if isinstance(feats, Tensor) else np.asarray(feats, dtype=np.float64)
    if f.ndim != 2 or f.shape[0] < 2:
        raise DataError(f"features have shape {f.shape}; accepted: (N, D) with N >= 2")
    if not np.isfinite(f).all():
        raise DataError("features contain NaN/inf values; accepted: finite features")
    return f.mean(axis=0), np.cov(f, rowvar=False).reshape(f.shape[1], f.shape[1])


def _psd_sqrt(s: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh((s + s.T) / 2)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """Squared Fréchet distance ||mu1-mu2||^2 + Tr(S1 + S2 - 2 (S1^{1/2} S2 S1^{1/2})^{1/2}) (>= 0)."""
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    s1, s2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    if mu1.shape != mu2.shape or s1.shape != s2.shape or s1.shape != (mu1.size, mu1.size):
        raise DataError(f"Fréchet statistics have mismatched shapes: mu {mu1.shape} vs {mu2.shape}, sigma {s1.shape} vs {s2.shape}")
    r1 = _psd_sqrt(s1)
    m = r1 @ s2 @ r1
    tr_cross = np.sqrt(np.clip(np.linalg.eigvalsh((m + m.T) / 2), 0, None)).sum()
    d = float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * tr_cross)
    return max(d, 0.0)


def frechet_distance_features(f1: Tensor | np.ndarray, f2: Tensor | np.ndarray) -> float:
    """Fréchet distance between Gaussian fits of two feature sets (N1, D), (N2, D)."""
    a, b = feature_statistics(f1), feature_statistics(f2)
    if a[0].shape != b[0].shape:
        raise DataError(f"feature dimensions differ: {a[0].shape[0]} vs {b[0].shape[0]}")
    return frechet_distance(a[0], a[1], b[0], b[1])


class DigitsFeatureNet(nn.Module):
    """Small CNN classifier for 1-channel images in [-1, 1]; ``features`` = penultimate (feat_dim) activations.

    conv(32)-SiLU-conv(32, s2)-SiLU-conv(64)-SiLU-conv(64, s2)-SiLU-global mean-linear(feat_dim)-SiLU-linear(10).
    """

    def __init__(self, in_channels: int = 1, feat_dim: int = 64, n_classes: int = 10) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, 32, 3, padding=1), nn.SiLU(), nn.Conv2d(32, 32, 3, stride=2, padding=1), nn.SiLU(),
            nn.Conv2d(32, 64, 3, padding=1), nn.SiLU(), nn.Conv2d(64, 64, 3, stride=2, padding=1), nn.SiLU(),
        )
        self.fc = nn.Linear(64, feat_dim)
        self.head = nn.Linear(feat_dim, n_classes)

    def features(self, x: Tensor) -> Tensor:
        return F.silu(self.fc(self.body(x).mean(dim=(2, 3))))

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))


def train_digits_classifier(
    image_size: int = 16, *, steps: int = 400, batch_size: int = 128, lr: float = 2e-3, seed: int = 0,
    device: str | torch.device = "cpu", holdout: float = 0.2,
) -> tuple[DigitsFeatureNet, float]:
    """Train ``DigitsFeatureNet`` on scikit-learn's digits at ``image_size``; returns (net in eval mode, held-out accuracy).

    Deterministic for a seed on the CPU. Light augmentation: random shifts of up to 1/8 of the image side.
    """
    from agm.data.images import digits_dataset

    check_positive("steps", steps, integer=True)
    x, y = digits_dataset(image_size)
    g = torch.Generator().manual_seed(seed)
    perm = torch.randperm(x.shape[0], generator=g)
    n_hold = int(holdout * x.shape[0])
    xt, yt = x[perm[n_hold:]].to(device), y[perm[n_hold:]].to(device)
    xh, yh = x[perm[:n_hold]].to(device), y[perm[:n_hold]].to(device)
    torch.manual_seed(seed)
    net = DigitsFeatureNet().to(device)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    shift = max(1, image_size // 8)
    for _ in range(steps):
        idx = torch.randint(xt.shape[0], (batch_size,), generator=g).to(device)
        xb = xt[idx]
        dx, dy = (int(v) for v in torch.randint(-shift, shift + 1, (2,), generator=g))
        xb = torch.roll(xb, shifts=(dy, dx), dims=(2, 3))
        loss = F.cross_entropy(net(xb), yt[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    net.eval()
    with torch.no_grad():
        acc = float((net(xh).argmax(1) == yh).float().mean()) if n_hold else float("nan")
    return net, acc


@torch.no_grad()
def extract_features(fn: Callable[[Tensor], Tensor], x: Tensor, batch_size: int = 500) -> Tensor:
    """Features fn(x) in batches, returned on the CPU as float32 (N, D)."""
    out = [fn(x[i : i + batch_size]).float().cpu() for i in range(0, x.shape[0], batch_size)]
    return torch.cat(out)


def feature_frechet_distance(net: DigitsFeatureNet, generated: Tensor, reference: Tensor) -> float:
    """FD_digits: Fréchet distance of ``net.features`` of generated vs reference images (NOT comparable to FID)."""
    dev = next(net.parameters()).device
    if generated.shape[1:] != reference.shape[1:]:
        raise DataError(f"generated images {tuple(generated.shape[1:])} and reference images {tuple(reference.shape[1:])} differ in shape")
    fg = extract_features(net.features, generated.to(dev).float())
    fr = extract_features(net.features, reference.to(dev).float())
    return frechet_distance_features(fg, fr)


def feature_metrics(net: DigitsFeatureNet, generated: Tensor, reference: Tensor, *, k: int = 5, seed: int = 0) -> dict[str, float]:
    """{'fd': FD_digits, 'precision', 'recall', 'density', 'coverage'} in the classifier's feature space
    (PRDC of Naeem et al. 2020 via ``agm.metrics.prdc``, reference as real)."""
    from agm.metrics.prdc import prdc

    dev = next(net.parameters()).device
    fg = extract_features(net.features, generated.to(dev).float())
    fr = extract_features(net.features, reference.to(dev).float())
    out = {"fd": frechet_distance_features(fg, fr)}
    out.update(prdc(fr, fg, k=k, max_samples=None, seed=seed))
    return out


def gaussian_w2_closed_form(mu1: np.ndarray, s1: np.ndarray, mu2: np.ndarray, s2: np.ndarray) -> float:
    """Reference for commuting (diagonal) covariances: ||mu1-mu2||^2 + sum (sqrt(s1_ii) - sqrt(s2_ii))^2."""
    return float(((np.asarray(mu1) - np.asarray(mu2)) ** 2).sum() + sum((math.sqrt(a) - math.sqrt(b)) ** 2 for a, b in zip(np.diag(s1), np.diag(s2))))
