"""Bellman Diffusion field matching: a scalar field f ~ p and a gradient field g ~ grad p.

Li, Lai, Schoenlieb, Mitsufuji, Ermon, "Bellman Diffusion", arXiv 2410.01796, Def. 3.1 and
Eqs. (5)-(11). Our copy of the paper states the structure but not every formula; the forms below are
our reconstruction, written out in docs/bellman.md. Losses:

    L_I(theta)   = E_{x1,x2,w} [ f(x1)^2 - 2 f(x1) k(x1, x2) ]                                  (Eq. 8 / 11)
    L_grad(phi)  = E_{x1,x2,v,w} [ ||g(x1)||^2 + v^T grad_x (v^T g(x1)) k(x1, x2) ]             (Eq. 8 / 9 / 10)

with the Gaussian smoothing kernel, epsilon a *variance* (docs/bellman.md),

    full   : k = N(x1 - x2; 0, eps I_d)                  (Eq. 8, d-dimensional)
    sliced : k = N(w^T (x1 - x2); 0, eps), w uniform on the unit sphere   (Eq. 10-11, "1-D projection")

Both are minimised (docs/bellman.md) by f* = h and g* = grad(p h) / (2 p), h(x) = E_y k(x, y);
eps -> 0 with the full kernel gives f* = p, g* = grad p. In d >= 2 the sliced kernel learns a
sliced density h, not p (docs/bellman.md); the pair (h, g*) still has p as the exact stationary
law of the Bellman dynamics (docs/bellman.md). The two losses must share the kernel, so we compute
the kernel weights once per batch and hand the same weights to both.

Reconstructed choices (each a config option of ``FieldMatching``; docs/bellman.md):
    kernel      'sliced' (default, Eqs. 10-11) | 'full' (Eq. 8)
    pairing     'all' (U-statistic over j != i, default) | 'permutation' (one random partner, closer to Algorithm 1)
    trace       'hutchinson' (v ~ N(0, I), Eq. 9, default) | 'rademacher' | 'exact' (d VJPs)
    first_term  'exact' ||g||^2 (variance-reduced, default) | 'sliced' (v^T g)^2 (the literal Eq. 9-10)
Losses are returned per sample (shape (B,)) and are negative (the constants E_p[p^2],
E_p||grad p||^2 are dropped); reduction is the caller's.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from agm.errors import ConfigError, DataError, check_choice, check_positive
from agm.nets import MLP

KERNELS = ("sliced", "full")
PAIRINGS = ("all", "permutation")
TRACES = ("hutchinson", "rademacher", "exact")
FIRST_TERMS = ("exact", "sliced")
HEADS = ("linear", "softplus")


# ------------------------------------------------------------------------------------------------
# networks
# ------------------------------------------------------------------------------------------------
class ScalarField(nn.Module):
    """f_theta : R^d -> R, the scalar (density) field of Bellman Diffusion (docs/bellman.md).

    ``head='linear'`` (the paper's, as far as we can tell) or ``'softplus'`` (keeps f >= 0; RL
    targets stay positive combinations so linearity is kept; docs/bellman.md). Returns shape (B,).
    """

    def __init__(self, dim: int, hidden: int = 128, depth: int = 3, act: str = "silu", head: str = "linear") -> None:
        super().__init__()
        check_choice("field.head", head, HEADS)
        self.net = MLP(dim, 1, hidden=hidden, depth=depth, act=act)
        self.head = head

    def forward(self, x: Tensor) -> Tensor:
        out = self.net(x).squeeze(-1)
        return nn.functional.softplus(out) if self.head == "softplus" else out


class GradientField(nn.Module):
    """g_phi : R^d -> R^d, the gradient field of Bellman Diffusion, a separate network (docs/bellman.md)."""

    def __init__(self, dim: int, hidden: int = 128, depth: int = 3, act: str = "silu") -> None:
        super().__init__()
        self.net = MLP(dim, dim, hidden=hidden, depth=depth, act=act)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


# ------------------------------------------------------------------------------------------------
# kernel weights
# ------------------------------------------------------------------------------------------------
def gaussian_pdf(u: Tensor, var: float) -> Tensor:
    """1-D Gaussian density N(u; 0, var)."""
    return torch.exp(-0.5 * u**2 / var) / math.sqrt(2 * math.pi * var)


def kernel_weights(
    x: Tensor,
    eps: float,
    *,
    kernel: str = "sliced",
    pairing: str = "all",
    n_proj: int = 1,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Per-sample kernel weight K_i ~ E_{x2, w} k(x_i, x2), the Monte-Carlo stand-in for p(x_i) (docs/bellman.md).

    sliced: k = N(w_i^T (x_i - x_j); 0, eps), w_i uniform on the unit sphere (n_proj directions
    per sample, averaged); full: k = N(x_i - x_j; 0, eps I_d). pairing='all' averages over all j != i
    (the i = j pair would add (2 pi eps)^{-1/2}, a large bias; docs/bellman.md), 'permutation' uses
    one partner j = pi(i) from a derangement. Returned detached (kernel weights carry no gradient).
    """
    check_positive("field_matching.eps", eps)
    check_choice("field_matching.kernel", kernel, KERNELS)
    check_choice("field_matching.pairing", pairing, PAIRINGS)
    check_positive("field_matching.n_proj", n_proj, integer=True)
    B, d = x.shape
    if B < 2:
        raise DataError(f"batch size B={B} is not accepted; field matching needs B >= 2 (pairs of data points)")
    x = x.detach()
    if pairing == "permutation":
        order = torch.randperm(B, generator=generator, device=x.device)
        perm = torch.empty_like(order)
        perm[order] = order.roll(-1)  # partner of order[k] is order[k + 1]: a random derangement (no i = j)
        diff = x - x[perm]  # (B, d)
        if kernel == "full":
            return (torch.exp(-0.5 * (diff**2).sum(-1) / eps) / (2 * math.pi * eps) ** (d / 2)).detach()
        w = torch.randn((n_proj, B, d), generator=generator, dtype=x.dtype, device=x.device)
        w = w / w.norm(dim=-1, keepdim=True)
        return gaussian_pdf((w * diff).sum(-1), eps).mean(0).detach()
    if kernel == "full":
        sq = torch.cdist(x, x).pow(2)
        kmat = torch.exp(-0.5 * sq / eps) / (2 * math.pi * eps) ** (d / 2)
        kmat.fill_diagonal_(0.0)
        return (kmat.sum(1) / (B - 1)).detach()
    w = torch.randn((n_proj, B, d), generator=generator, dtype=x.dtype, device=x.device)
    w = w / w.norm(dim=-1, keepdim=True)
    # proj[p, i, j] = w_{p,i} . (x_i - x_j)
    proj = (w * x).sum(-1)[:, :, None] - torch.einsum("pid,jd->pij", w, x)
    kmat = gaussian_pdf(proj, eps)
    kmat = kmat * (1.0 - torch.eye(B, dtype=x.dtype, device=x.device))
    return (kmat.sum(2) / (B - 1)).mean(0).detach()


# ------------------------------------------------------------------------------------------------
# per-sample losses
# ------------------------------------------------------------------------------------------------
def scalar_field_loss(f: Tensor, k: Tensor) -> Tensor:
    """Per-sample scalar-field loss f(x_i)^2 - 2 f(x_i) K_i (Bellman Diffusion Eq. 8 / 11; docs/bellman.md)."""
    return f**2 - 2.0 * f * k


def divergence_term(
    g_net, x: Tensor, *, trace: str = "hutchinson", n_slices: int = 1, generator: torch.Generator | None = None
) -> tuple[Tensor, Tensor, Tensor]:
    """Return (g(x), div-estimate per sample, v) with div ~ tr(grad_x g(x)) (Bellman Diffusion Eq. 9; docs/bellman.md).

    hutchinson / rademacher: mean over n_slices of v^T grad_x (v^T g) with v ~ N(0, I) / Rademacher
    (E[v v^T] = I makes it unbiased; a test oracle in tests/methods/bellman); exact: the sum of d diagonal Jacobian entries.
    The graph is kept (create_graph=True) so the loss can be back-propagated into g's parameters.
    """
    check_choice("field_matching.trace", trace, TRACES)
    check_positive("field_matching.n_slices", n_slices, integer=True)
    xg = x.detach().requires_grad_(True)
    g = g_net(xg)
    B, d = x.shape
    if trace == "exact":
        div = torch.zeros(B, dtype=x.dtype, device=x.device)
        for i in range(d):
            gi = torch.autograd.grad(g[:, i].sum(), xg, create_graph=True)[0][:, i]
            div = div + gi
        return g, div, torch.empty(0)
    v = torch.randn((n_slices, B, d), generator=generator, dtype=x.dtype, device=x.device)
    if trace == "rademacher":
        v = torch.sign(v)
    div = torch.zeros(B, dtype=x.dtype, device=x.device)
    for s in range(n_slices):
        gv = (g * v[s]).sum(-1)
        jtv = torch.autograd.grad(gv.sum(), xg, create_graph=True)[0]
        div = div + (jtv * v[s]).sum(-1)
    return g, div / n_slices, v


def gradient_field_loss(g: Tensor, div: Tensor, k: Tensor, *, first_term: str = "exact", v: Tensor | None = None) -> Tensor:
    """Per-sample gradient-field loss ||g||^2 + div_hat(g) K_i (Bellman Diffusion Eq. 8-10; docs/bellman.md).

    ``first_term='sliced'`` replaces ||g||^2 by the mean over slices of (v^T g)^2 (the literal Eq. 9-10).
    """
    check_choice("field_matching.first_term", first_term, FIRST_TERMS)
    if first_term == "sliced":
        if v is None or v.numel() == 0:
            raise ConfigError("field_matching.first_term='sliced' needs trace in ('hutchinson', 'rademacher'); got trace='exact'")
        sq = ((v * g.unsqueeze(0)).sum(-1) ** 2).mean(0)
    else:
        sq = g.pow(2).sum(-1)
    return sq + div * k


@dataclass
class FieldMatching:
    """Bellman Diffusion field-matching objective (Eqs. 8-11; docs/bellman.md), options as in the module docstring.

    ``losses(f_net, g_net, x)`` returns the per-sample losses (l_f, l_g), both shape (B,), computed with
    one shared set of kernel weights.
    """

    eps: float = 0.05
    kernel: str = "sliced"
    pairing: str = "all"
    trace: str = "hutchinson"
    first_term: str = "exact"
    n_slices: int = 1
    n_proj: int = 1

    def __post_init__(self) -> None:
        check_positive("field_matching.eps", self.eps)
        check_choice("field_matching.kernel", self.kernel, KERNELS)
        check_choice("field_matching.pairing", self.pairing, PAIRINGS)
        check_choice("field_matching.trace", self.trace, TRACES)
        check_choice("field_matching.first_term", self.first_term, FIRST_TERMS)
        check_positive("field_matching.n_slices", self.n_slices, integer=True)
        check_positive("field_matching.n_proj", self.n_proj, integer=True)
        if self.first_term == "sliced" and self.trace == "exact":
            raise ConfigError("field_matching.first_term='sliced' needs trace in ('hutchinson', 'rademacher'); got trace='exact'")

    def weights(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Kernel weights K_i (see ``kernel_weights``)."""
        if x.dim() != 2:
            raise DataError(f"x has shape {tuple(x.shape)}; field matching expects (B, d)")
        if not torch.isfinite(x).all():
            raise DataError("x contains non-finite values (NaN or inf); field matching needs finite data")
        return kernel_weights(x, self.eps, kernel=self.kernel, pairing=self.pairing, n_proj=self.n_proj, generator=generator)

    def losses(self, f_net, g_net, x: Tensor, *, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """(l_f, l_g): per-sample losses of Eq. (11) and Eq. (10) with shared kernel weights."""
        k = self.weights(x, generator)
        l_f = scalar_field_loss(f_net(x), k)
        g, div, v = divergence_term(g_net, x, trace=self.trace, n_slices=self.n_slices, generator=generator)
        l_g = gradient_field_loss(g, div, k, first_term=self.first_term, v=v)
        return l_f, l_g


def gaussian_field_minimisers(mu: Tensor, var: float, eps: float, kernel: str = "full"):
    """Closed-form minimisers (f*, g*) for data N(mu, var I) (docs/bellman.md; test oracle).

    full:   f* = N(x; mu, (var + eps) I),  g* = -1/2 f* (x - mu) [1/(var + eps) + 1/var]
    sliced: f* = N(w^T(x - mu); 0, var + eps) averaged over unit w; for d = 1 equal to 'full'.
    Only ``kernel='full'`` (any d) or d = 1 is provided here. Returns callables f(x) -> (B,), g(x) -> (B, d).
    """
    d = mu.numel()
    if kernel != "full" and d != 1:
        raise ConfigError(f"gaussian_field_minimisers: kernel={kernel!r} closed form given only for d = 1 or kernel='full'")
    s2 = var + eps

    def f(x: Tensor) -> Tensor:
        r2 = ((x - mu) ** 2).sum(-1)
        return torch.exp(-0.5 * r2 / s2) / (2 * math.pi * s2) ** (d / 2)

    def g(x: Tensor) -> Tensor:
        return -0.5 * f(x)[:, None] * (x - mu) * (1.0 / s2 + 1.0 / var)

    return f, g


class FieldMethod(nn.Module):
    """The two fields as one trainable method for :class:`agm.training.Trainer` (its protocol: ``networks()``,
    ``ema_names``, ``loss(batch, step, generator)``). The loss is l_f + l_g (Eqs. 10-11 with shared kernel
    weights); the two networks have disjoint parameters, so one step on the sum is one step on each network
    (Algorithm 1 of arXiv 2410.01796)."""

    ema_names = ("f", "g")

    def __init__(self, dim: int, objective: FieldMatching, *, hidden: int = 128, depth: int = 3, head: str = "linear") -> None:
        super().__init__()
        self.f = ScalarField(dim, hidden, depth, head=head)
        self.g = GradientField(dim, hidden, depth)
        self.objective = objective

    def networks(self) -> dict[str, nn.Module]:
        return {"f": self.f, "g": self.g}

    def loss(self, batch: Tensor, step: int, generator: torch.Generator) -> tuple[Tensor, dict[str, Tensor]]:
        l_f, l_g = self.objective.losses(self.f, self.g, batch, generator=generator)
        lf, lg = l_f.mean(), l_g.mean()
        loss = lf + lg
        return loss, {"loss": loss.detach(), "loss_f": lf.detach(), "loss_g": lg.detach()}


class RowBatches:
    """Batch function for the Trainer: ``batch_size`` distinct rows of x per step (a seeded permutation from
    the Trainer's generator, so a resume is exact). Distinct rows matter here: a row drawn twice would pair
    with itself in the kernel weights and add the large self-term (2 pi eps)^(-d/2) / (B - 1)."""

    def __init__(self, x: Tensor, batch_size: int) -> None:
        if x.dim() != 2 or x.shape[0] < 2 or not torch.isfinite(x).all():
            raise DataError(f"training data must be a finite (N, d) tensor with N >= 2; got shape {tuple(x.shape)}")
        self.x = x
        self.batch_size = min(int(batch_size), x.shape[0])

    def __call__(self, step: int, generator: torch.Generator) -> Tensor:
        if self.x.device != generator.device:
            self.x = self.x.to(generator.device)
        idx = torch.randperm(self.x.shape[0], generator=generator, device=self.x.device)[: self.batch_size]
        return self.x[idx]


def train_fields(
    x: Tensor,
    objective: FieldMatching,
    *,
    steps: int = 2000,
    batch_size: int = 512,
    lr: float = 2e-3,
    hidden: int = 128,
    depth: int = 3,
    head: str = "linear",
    seed: int = 0,
    log_every: int = 0,
    grad_clip: float = 0.0,
    ema_decay: float = 0.99,
    weight_decay: float = 0.0,
    schedule: str = "cosine",
    device: str = "cpu",
) -> tuple[ScalarField, GradientField, list[dict]]:
    """Fit f and g on data x (N, d) with the shared :class:`agm.training.Trainer` (AdamW, optional clipping,
    EMA, NaN guard, ``schedule``: constant | cosine | linear learning rate), no files written. Returns the EMA copies (f, g) (the raw networks when ema_decay = 0)
    and the logged records {step, loss, loss_f, loss_g} every ``log_every`` steps (0: only the last step).
    For runs with checkpoints and resume use ``agm bellman train`` (:mod:`agm.methods.bellman.run`).
    """
    from agm.training.config import TrainConfig
    from agm.training.trainer import Trainer

    check_positive("train.steps", steps, integer=True)
    check_positive("train.batch_size", batch_size, integer=True)
    check_positive("train.lr", lr)
    batches = RowBatches(x, batch_size)
    torch.manual_seed(seed)  # network initialisation from the seed
    method = FieldMethod(x.shape[1], objective, hidden=hidden, depth=depth, head=head).to(device)
    cfg = TrainConfig(steps=steps, batch_size=batches.batch_size, lr=lr, weight_decay=weight_decay, grad_clip=grad_clip,
                      ema_decay=ema_decay, log_every=log_every or steps, ckpt_every=steps, tensorboard=False, progress=False,
                      device=device, schedule=schedule)
    trainer = Trainer(method, batches, cfg, seed=seed)
    log = trainer.fit()
    if ema_decay > 0:
        return trainer.ema["f"].model, trainer.ema["g"].model, log
    return method.f.eval(), method.g.eval(), log
