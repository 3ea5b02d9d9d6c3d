"""Built-in toy data sets (2-D and 1-D), drawn deterministically from a seed.

Every generator uses its own ``torch.Generator`` seeded with ``seed`` (never the global RNG), returns
float32 of shape (n, 2) or (n, 1), and is scaled so that (almost) all points lie within [-4, 4].

The 2-D sets follow the generators popularised by FFJORD (Grathwohl et al. 2019) and used by
``torchcfm``; the constants below are our choices and are stated in each docstring. Sets with a
closed-form density (``unbalanced_mixture``, ``gmm1d``, ``bimodal1d``, ``uniform3``, ``8gaussians``)
expose it via :func:`log_prob` so that tests and experiments can check mode weights and likelihoods.
"""
from __future__ import annotations

import math
from typing import Callable

import numpy as np
import torch
from torch import Tensor

from agm.errors import ConfigError, DataError, check_positive, closest

TOY_2D = ("moons", "8gaussians", "checkerboard", "pinwheel", "swissroll", "unbalanced_mixture")
TOY_1D = ("gmm1d", "uniform3", "bimodal1d")

# unbalanced_mixture: p(x) = sum_k w_k N(x; mu_k, s^2 I), modes >= 3.9 apart (~10 std)
UNBALANCED_WEIGHTS = (0.7, 0.2, 0.1)
UNBALANCED_MEANS = ((-2.0, -1.0), (2.0, -1.0), (0.0, 2.0))
UNBALANCED_STD = 0.4

# gmm1d: 1-D mixture of two Gaussians with unequal weights and widths
GMM1D_WEIGHTS = (0.3, 0.7)
GMM1D_MEANS = (-2.0, 1.5)
GMM1D_STDS = (0.5, 0.8)

# bimodal1d: symmetric 0.5 N(-2, 0.5^2) + 0.5 N(2, 0.5^2)
BIMODAL1D_WEIGHTS = (0.5, 0.5)
BIMODAL1D_MEANS = (-2.0, 2.0)
BIMODAL1D_STDS = (0.5, 0.5)

# uniform3: uniform on the union of three disjoint unit intervals (so each has mass 1/3)
UNIFORM3_INTERVALS = ((-3.0, -2.0), (-0.5, 0.5), (2.0, 3.0))

# 8gaussians: 8 modes on the circle of radius 4/sqrt(2), std 0.5/sqrt(2) (FFJORD's set divided by 1.414)
EIGHT_GAUSSIANS_RADIUS = 4.0 / math.sqrt(2.0)
EIGHT_GAUSSIANS_STD = 0.5 / math.sqrt(2.0)


def toy_names() -> tuple[str, ...]:
    """All built-in toy set names: the 2-D sets followed by the 1-D sets."""
    return TOY_2D + TOY_1D


def toy_dim(name: str) -> int:
    """Dimension (2 or 1) of the toy set ``name``; ConfigError for an unknown name."""
    _check_name(name)
    return 2 if name in TOY_2D else 1


def _check_name(name: str) -> None:
    if name not in toy_names():
        raise ConfigError(
            f"data.name={name!r} is not a built-in toy set; accepted names: {list(toy_names())}"
            f"{closest(str(name), toy_names())}"
        )


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(int(seed))


def _randn(n: int, d: int, g: torch.Generator) -> Tensor:
    return torch.randn(n, d, generator=g, dtype=torch.float64)


def _rand(n: int, d: int, g: torch.Generator) -> Tensor:
    return torch.rand(n, d, generator=g, dtype=torch.float64)


def _mixture(n: int, weights, means, stds, g: torch.Generator) -> Tensor:
    """x = mu_c + s_c * eps with c ~ Categorical(weights), eps ~ N(0, I)."""
    w = torch.tensor(weights, dtype=torch.float64)
    mu = torch.tensor(means, dtype=torch.float64)
    if mu.ndim == 1:
        mu = mu[:, None]
    s = torch.as_tensor(stds, dtype=torch.float64).reshape(-1, 1).expand(len(weights), 1)
    c = torch.multinomial(w, n, replacement=True, generator=g)
    return mu[c] + s[c] * _randn(n, mu.shape[1], g)


def _moons(n: int, g: torch.Generator) -> Tensor:
    """Two interleaving half circles (sklearn's make_moons, noise 0.1), centred and scaled by 2."""
    n_out = n // 2
    n_in = n - n_out
    t_out = math.pi * _rand(n_out, 1, g)
    t_in = math.pi * _rand(n_in, 1, g)
    outer = torch.cat([torch.cos(t_out), torch.sin(t_out)], 1)
    inner = torch.cat([1.0 - torch.cos(t_in), 0.5 - torch.sin(t_in)], 1)
    x = torch.cat([outer, inner], 0) + 0.1 * _randn(n, 2, g)
    x = (x - torch.tensor([0.5, 0.25], dtype=torch.float64)) * 2.0
    return x[torch.randperm(n, generator=g)]


def _eight_gaussians(n: int, g: torch.Generator) -> Tensor:
    """8 equal-weight modes at radius 4/sqrt(2), angles k*pi/4, std 0.5/sqrt(2) (FFJORD)."""
    ang = torch.arange(8, dtype=torch.float64) * (math.pi / 4)
    centres = EIGHT_GAUSSIANS_RADIUS * torch.stack([torch.cos(ang), torch.sin(ang)], 1)
    return _mixture(n, [1 / 8] * 8, centres.tolist(), EIGHT_GAUSSIANS_STD, g)


def _checkerboard(n: int, g: torch.Generator) -> Tensor:
    """Uniform on the 8 dark squares of a 4x4 checkerboard covering [-4, 4]^2 (FFJORD)."""
    x1 = _rand(n, 1, g) * 4 - 2
    x2_ = _rand(n, 1, g) - torch.randint(0, 2, (n, 1), generator=g, dtype=torch.int64).double() * 2
    x2 = x2_ + torch.floor(x1) % 2
    return torch.cat([x1, x2], 1) * 2


def _pinwheel(n: int, g: torch.Generator) -> Tensor:
    """5-arm pinwheel: radial std 0.3, tangential std 0.1, rate 0.25, scaled by 2 (FFJORD)."""
    radial_std, tangential_std, k, rate = 0.3, 0.1, 5, 0.25
    rads = torch.arange(k, dtype=torch.float64) * (2 * math.pi / k)
    labels = torch.randint(0, k, (n,), generator=g)
    feats = _randn(n, 2, g) * torch.tensor([radial_std, tangential_std], dtype=torch.float64)
    feats[:, 0] += 1.0
    angles = rads[labels] + rate * torch.exp(feats[:, 0])
    c, s = torch.cos(angles), torch.sin(angles)
    rot = torch.stack([torch.stack([c, -s], -1), torch.stack([s, c], -1)], -2)  # (n, 2, 2)
    return 2.0 * torch.einsum("ni,nij->nj", feats, rot)


def _swissroll(n: int, g: torch.Generator) -> Tensor:
    """sklearn's make_swiss_roll (noise 1.0) projected to (x, z) and divided by 5 (FFJORD)."""
    t = 1.5 * math.pi * (1 + 2 * _rand(n, 1, g))
    x = torch.cat([t * torch.cos(t), t * torch.sin(t)], 1) + 1.0 * _randn(n, 2, g)
    return x / 5.0


def _unbalanced(n: int, g: torch.Generator) -> Tensor:
    """sum_k w_k N(mu_k, s^2 I) with UNBALANCED_WEIGHTS / _MEANS / _STD."""
    return _mixture(n, UNBALANCED_WEIGHTS, UNBALANCED_MEANS, UNBALANCED_STD, g)


def _gmm1d(n: int, g: torch.Generator) -> Tensor:
    """0.3 N(-2, 0.5^2) + 0.7 N(1.5, 0.8^2)."""
    return _mixture(n, GMM1D_WEIGHTS, GMM1D_MEANS, GMM1D_STDS, g)


def _bimodal1d(n: int, g: torch.Generator) -> Tensor:
    """0.5 N(-2, 0.5^2) + 0.5 N(2, 0.5^2)."""
    return _mixture(n, BIMODAL1D_WEIGHTS, BIMODAL1D_MEANS, BIMODAL1D_STDS, g)


def _uniform3(n: int, g: torch.Generator) -> Tensor:
    """Uniform on the union of UNIFORM3_INTERVALS (interval chosen with probability prop. to length)."""
    lo = torch.tensor([a for a, _ in UNIFORM3_INTERVALS], dtype=torch.float64)
    hi = torch.tensor([b for _, b in UNIFORM3_INTERVALS], dtype=torch.float64)
    c = torch.multinomial(hi - lo, n, replacement=True, generator=g)
    return (lo[c] + (hi[c] - lo[c]) * _rand(n, 1, g)[:, 0])[:, None]


_GENERATORS: dict[str, Callable[[int, torch.Generator], Tensor]] = {
    "moons": _moons,
    "8gaussians": _eight_gaussians,
    "checkerboard": _checkerboard,
    "pinwheel": _pinwheel,
    "swissroll": _swissroll,
    "unbalanced_mixture": _unbalanced,
    "gmm1d": _gmm1d,
    "uniform3": _uniform3,
    "bimodal1d": _bimodal1d,
}


def make_toy(name: str, n: int, seed: int = 0) -> Tensor:
    """Draw ``n`` points of the toy set ``name`` (float32, shape (n, 2) or (n, 1)), deterministic in ``seed``.

    Names: :data:`TOY_2D` and :data:`TOY_1D`. Unknown name -> ConfigError on ``data.name`` with the
    accepted names and the closest match; ``n`` must be a positive integer (``data.n``).
    """
    _check_name(name)
    if isinstance(n, np.integer):
        n = int(n)
    check_positive("data.n", n, integer=True)
    if isinstance(seed, np.integer):
        seed = int(seed)
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise ConfigError(f"seed={seed!r} must be an integer")
    x = _GENERATORS[name](n, _gen(seed))
    return x.to(torch.float32).contiguous()


# ----------------------------------------------------------------------------------------------
# closed-form densities
# ----------------------------------------------------------------------------------------------
def _mixture_components(name: str):
    if name == "unbalanced_mixture":
        return UNBALANCED_WEIGHTS, UNBALANCED_MEANS, [UNBALANCED_STD] * 3
    if name == "gmm1d":
        return GMM1D_WEIGHTS, [(m,) for m in GMM1D_MEANS], GMM1D_STDS
    if name == "bimodal1d":
        return BIMODAL1D_WEIGHTS, [(m,) for m in BIMODAL1D_MEANS], BIMODAL1D_STDS
    if name == "8gaussians":
        ang = [k * math.pi / 4 for k in range(8)]
        means = [(EIGHT_GAUSSIANS_RADIUS * math.cos(a), EIGHT_GAUSSIANS_RADIUS * math.sin(a)) for a in ang]
        return [1 / 8] * 8, means, [EIGHT_GAUSSIANS_STD] * 8
    raise ConfigError(
        f"data.name={name!r} has no Gaussian-mixture form; accepted: "
        "['unbalanced_mixture', 'gmm1d', 'bimodal1d', '8gaussians']"
    )


def _component_log_probs(x: Tensor, name: str) -> Tensor:
    """(n, K) matrix of log w_k + log N(x; mu_k, s_k^2 I)."""
    w, mu, s = _mixture_components(name)
    x = torch.as_tensor(x, dtype=torch.float64)
    if x.ndim == 1:
        x = x[:, None]
    mu_t = torch.tensor(mu, dtype=torch.float64)
    if x.shape[1] != mu_t.shape[1]:
        raise DataError(f"x has shape {tuple(x.shape)}; {name} needs (n, {mu_t.shape[1]})")
    s_t = torch.tensor(s, dtype=torch.float64)
    d = mu_t.shape[1]
    sq = ((x[:, None, :] - mu_t[None]) ** 2).sum(-1)  # (n, K)
    log_norm = -0.5 * d * math.log(2 * math.pi) - d * torch.log(s_t)
    return torch.log(torch.tensor(w, dtype=torch.float64)) + log_norm - 0.5 * sq / s_t**2


def mixture_log_prob(x: Tensor, name: str = "unbalanced_mixture") -> Tensor:
    """log p(x) = logsumexp_k [log w_k + log N(x; mu_k, s_k^2 I)] for a Gaussian-mixture toy set (float64, (n,))."""
    return torch.logsumexp(_component_log_probs(x, name), dim=1)


def assign_modes(x: Tensor, name: str = "unbalanced_mixture") -> Tensor:
    """Index of the most probable component, argmax_k w_k N(x; mu_k, s_k^2 I) (int64, (n,)).

    ``mode_weights(assign_modes(x), K)`` recovers the empirical mode weights of a sample.
    """
    return _component_log_probs(x, name).argmax(dim=1)


def mode_weights(x: Tensor, name: str = "unbalanced_mixture") -> Tensor:
    """Empirical fraction of points assigned to each mixture component (float64, (K,)); sums to 1."""
    k = len(_mixture_components(name)[0])
    a = assign_modes(x, name)
    return torch.bincount(a, minlength=k).double() / a.numel()


def uniform3_log_prob(x: Tensor) -> Tensor:
    """log p(x) of uniform3: -log(total length) inside UNIFORM3_INTERVALS, -inf outside (float64, (n,))."""
    x = torch.as_tensor(x, dtype=torch.float64).reshape(-1)
    total = sum(b - a for a, b in UNIFORM3_INTERVALS)
    inside = torch.zeros_like(x, dtype=torch.bool)
    for a, b in UNIFORM3_INTERVALS:
        inside |= (x >= a) & (x <= b)
    out = torch.full_like(x, -math.inf)
    out[inside] = -math.log(total)
    return out


def log_prob(name: str, x: Tensor) -> Tensor:
    """Closed-form log density of the toy set ``name`` at x, where one exists (float64, (n,)).

    Available for 'unbalanced_mixture', '8gaussians', 'gmm1d', 'bimodal1d' (Gaussian mixtures) and
    'uniform3'; other names raise ConfigError.
    """
    if name == "uniform3":
        return uniform3_log_prob(x)
    return mixture_log_prob(x, name)


# ----------------------------------------------------------------------------------------------
