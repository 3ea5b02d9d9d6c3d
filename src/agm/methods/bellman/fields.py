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
SCALES = ("none", "kernel")
LEVEL_NOISE = ("none", "data")
EPS_RULES = ("fixed", "silverman")


def silverman_eps(n: int, d: int, var: float = 1.0) -> float:
    """Kernel variance from Silverman's rule of thumb for a d-dimensional Gaussian KDE of n points (docs/bellman.md):

        eps = var * (4 / (d + 2))^(2 / (d + 4)) * n^(-2 / (d + 4))

    (the square of Silverman's bandwidth; var is the data's per-coordinate variance, 1 on standardised data). The
    kernel weights K_i are a KDE over the n = B - 1 partners of a batch, so n is the batch size minus one. For the
    sliced kernel use d = 1 (the kernel sees 1-D projections): eps = 1.12 var n^(-2/5)."""
    check_positive("silverman_eps.n", n, integer=True)
    check_positive("silverman_eps.d", d, integer=True)
    check_positive("silverman_eps.var", var)
    return float(var * (4.0 / (d + 2)) ** (2.0 / (d + 4)) * n ** (-2.0 / (d + 4)))


def kernel_dim(kernel: str, d: int) -> int:
    """Dimension the kernel smooths in: d for the full kernel, 1 for the sliced one."""
    return d if kernel == "full" else 1


def field_scale(eps: float, kdim: int) -> float:
    """(2 pi (1 + eps))^(-kdim / 2): the peak of the smoothed density h of N(0, I) (full kernel: kdim = d; sliced:
    kdim = 1). ``scale='kernel'`` multiplies both field networks' outputs by it, so that the networks work on O(1)
    numbers even when h ~ 1e-4 (the full kernel in d = 10); a reparametrisation, the minimisers are unchanged."""
    return float((2 * math.pi * (1.0 + eps)) ** (-kdim / 2))


class _Field(nn.Module):
    """Shared input/output handling: optional conditioning on log eps (one network for several kernel variances,
    ``conditional=True``, the annealed sampler) and the optional output scale ``field_scale(eps, kdim)``."""

    def __init__(self, dim: int, out: int, hidden: int, depth: int, act: str, *, eps: float | None, conditional: bool,
                 scale: str, kdim: int) -> None:
        super().__init__()
        check_choice("field.scale", scale, SCALES)
        self.net = MLP(dim + int(conditional), out, hidden=hidden, depth=depth, act=act)
        self.eps, self.conditional, self.scale, self.kdim = eps, conditional, scale, kdim

    def _eps(self, eps: float | None) -> float | None:
        e = self.eps if eps is None else eps
        if e is None and (self.conditional or self.scale != "none"):
            raise ConfigError("this field is conditioned on / scaled by the kernel variance; call it with eps=")
        return e

    def raw(self, x: Tensor, eps: float | None) -> Tensor:
        e = self._eps(eps)
        if self.conditional:
            x = torch.cat([x, torch.full_like(x[:, :1], math.log(e))], dim=1)
        out = self.net(x)
        return out * field_scale(e, self.kdim) if self.scale == "kernel" else out


class ScalarField(_Field):
    """f_theta : R^d -> R, the scalar (density) field of Bellman Diffusion (docs/bellman.md).

    ``head='linear'`` (the paper's, as far as we can tell) or ``'softplus'`` (keeps f >= 0; RL
    targets stay positive combinations so linearity is kept; docs/bellman.md). Returns shape (B,).
    ``conditional``: the network also sees log eps (``forward(x, eps)``); ``scale='kernel'``: the output is
    multiplied by ``field_scale(eps, kdim)``. Defaults reproduce the plain MLP (same state-dict keys).
    """

    def __init__(self, dim: int, hidden: int = 128, depth: int = 3, act: str = "silu", head: str = "linear", *,
                 eps: float | None = None, conditional: bool = False, scale: str = "none", kdim: int = 1) -> None:
        check_choice("field.head", head, HEADS)
        super().__init__(dim, 1, hidden, depth, act, eps=eps, conditional=conditional, scale=scale, kdim=kdim)
        self.head = head

    def forward(self, x: Tensor, eps: float | None = None) -> Tensor:
        e = self._eps(eps)
        if self.conditional:
            x = torch.cat([x, torch.full_like(x[:, :1], math.log(e))], dim=1)
        out = self.net(x).squeeze(-1)
        out = nn.functional.softplus(out) if self.head == "softplus" else out
        return out * field_scale(e, self.kdim) if self.scale == "kernel" else out


class GradientField(_Field):
    """g_phi : R^d -> R^d, the gradient field of Bellman Diffusion, a separate network (docs/bellman.md).
    ``conditional`` and ``scale`` as for :class:`ScalarField`."""

    def __init__(self, dim: int, hidden: int = 128, depth: int = 3, act: str = "silu", *, eps: float | None = None,
                 conditional: bool = False, scale: str = "none", kdim: int = 1) -> None:
        super().__init__(dim, dim, hidden, depth, act, eps=eps, conditional=conditional, scale=scale, kdim=kdim)

    def forward(self, x: Tensor, eps: float | None = None) -> Tensor:
        return self.raw(x, eps)


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

    def weights(self, x: Tensor, generator: torch.Generator | None = None, eps: float | None = None) -> Tensor:
        """Kernel weights K_i (see ``kernel_weights``); ``eps`` overrides ``self.eps`` (the annealed fields)."""
        if x.dim() != 2:
            raise DataError(f"x has shape {tuple(x.shape)}; field matching expects (B, d)")
        if not torch.isfinite(x).all():
            raise DataError("x contains non-finite values (NaN or inf); field matching needs finite data")
        return kernel_weights(x, self.eps if eps is None else eps, kernel=self.kernel, pairing=self.pairing, n_proj=self.n_proj,
                              generator=generator)

    def losses(self, f_net, g_net, x: Tensor, *, generator: torch.Generator | None = None,
               eps: float | None = None) -> tuple[Tensor, Tensor]:
        """(l_f, l_g): per-sample losses of Eq. (11) and Eq. (10) with shared kernel weights (variance ``eps`` or self.eps)."""
        k = self.weights(x, generator, eps)
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
    (Algorithm 1 of arXiv 2410.01796).

    ``eps_levels`` (ours, docs/bellman.md): when given, both networks are conditioned on log eps and every batch
    is trained at one level drawn uniformly from ``eps_levels`` (the objective's own eps is then unused); the
    annealed sampler runs the dynamics level by level. ``scale``: see :func:`field_scale`.
    ``level_noise='data'``: a batch trained at kernel variance eps is also perturbed, x + sqrt(eps) z with fresh
    z ~ N(0, I) every step, so that the fields of that level learn the smoothed density p_eps = p * N(0, eps I) (the
    noise levels of annealed Langevin): the fields are trained off the rows too, and the empirical loss, whose
    divergence term is unbounded below on a finite set of rows, becomes the population loss of a continuous law.
    'none' (default, the paper's) keeps the data clean, so every level targets p itself.
    """

    ema_names = ("f", "g")

    def __init__(self, dim: int, objective: FieldMatching, *, hidden: int = 128, depth: int = 3, head: str = "linear",
                 eps_levels: tuple | list = (), scale: str = "none", level_noise: str = "none") -> None:
        super().__init__()
        check_choice("field.level_noise", level_noise, LEVEL_NOISE)
        self.level_noise = level_noise
        self.eps_levels = tuple(float(e) for e in eps_levels)
        for e in self.eps_levels:
            check_positive("field.eps_levels", e)
        cond = len(self.eps_levels) > 0
        kdim = kernel_dim(objective.kernel, dim)
        eps = None if cond else objective.eps
        self.f = ScalarField(dim, hidden, depth, head=head, eps=eps, conditional=cond, scale=scale, kdim=kdim)
        self.g = GradientField(dim, hidden, depth, eps=eps, conditional=cond, scale=scale, kdim=kdim)
        self.objective = objective

    def networks(self) -> dict[str, nn.Module]:
        return {"f": self.f, "g": self.g}

    def loss(self, batch: Tensor, step: int, generator: torch.Generator) -> tuple[Tensor, dict[str, Tensor]]:
        if self.eps_levels:
            eps = self.eps_levels[int(torch.randint(len(self.eps_levels), (1,), generator=generator, device=generator.device))]
            if self.level_noise == "data":
                z = torch.randn(batch.shape, generator=generator, device=batch.device, dtype=batch.dtype)
                batch = batch + math.sqrt(eps) * z
            l_f, l_g = self.objective.losses(lambda u: self.f(u, eps), lambda u: self.g(u, eps), batch, generator=generator, eps=eps)
        else:
            if self.level_noise == "data":
                z = torch.randn(batch.shape, generator=generator, device=batch.device, dtype=batch.dtype)
                batch = batch + math.sqrt(self.objective.eps) * z
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
    eps_levels: tuple | list = (),
    scale: str = "none",
    level_noise: str = "none",
) -> tuple[ScalarField, GradientField, list[dict]]:
    """Fit f and g on data x (N, d) with the shared :class:`agm.training.Trainer` (AdamW, optional clipping,
    EMA, NaN guard, ``schedule``: constant | cosine | linear learning rate), no files written. Returns the EMA copies (f, g) (the raw networks when ema_decay = 0)
    and the logged records {step, loss, loss_f, loss_g} every ``log_every`` steps (0: only the last step).
    ``eps_levels``, ``scale`` and ``level_noise``: see :class:`FieldMethod`.
    For runs with checkpoints and resume use ``agm bellman train`` (:mod:`agm.methods.bellman.run`).
    """
    from agm.training.config import TrainConfig
    from agm.training.trainer import Trainer

    check_positive("train.steps", steps, integer=True)
    check_positive("train.batch_size", batch_size, integer=True)
    check_positive("train.lr", lr)
    batches = RowBatches(x, batch_size)
    torch.manual_seed(seed)  # network initialisation from the seed
    method = FieldMethod(x.shape[1], objective, hidden=hidden, depth=depth, head=head, eps_levels=eps_levels, scale=scale,
                         level_noise=level_noise).to(device)
    cfg = TrainConfig(steps=steps, batch_size=batches.batch_size, lr=lr, weight_decay=weight_decay, grad_clip=grad_clip,
                      ema_decay=ema_decay, log_every=log_every or steps, ckpt_every=steps, tensorboard=False, progress=False,
                      device=device, schedule=schedule)
    trainer = Trainer(method, batches, cfg, seed=seed)
    log = trainer.fit()
    if ema_decay > 0:
        return trainer.ema["f"].model, trainer.ema["g"].model, log
    return method.f.eval(), method.g.eval(), log
