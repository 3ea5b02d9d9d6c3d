"""Energy-weighted flow matching (EFM) and energy-weighted diffusion (ED).

Paper: Zhang et al., "Energy-Weighted Flow Matching for Offline Reinforcement Learning", ICLR 2025
(arXiv 2503.04975). Our notation and derivations: docs/efm_qipo.md.

Target law (arXiv 2503.04975, section 4):  q(x) ∝ p(x) exp(-beta E(x)),  p known through samples, E a given energy.

EFM loss (arXiv 2503.04975, Theorem 4.3 / eq. 4.3), data at t = 1, noise x_0 ~ N(0, I) at t = 0:

    L_CEFM(theta) = E_{t, x_1 ~ p, x_t ~ p_t(.|x_1)} [ exp(-beta E(x_1)) / E_p[exp(-beta E)]
                                                      * || v_theta(x_t, t) - u_t(x_t | x_1) ||^2 ]

The weight w = exp(-beta E)/Z satisfies w p = q, so L_CEFM is plain CFM on q and its minimiser is the
guided field of Theorem 4.1. E is evaluated on clean data only.

Normalisation of the weight (``normalization`` option):
  * 'batch' (default, the paper's practical estimator): g_i = softmax_i(-beta E(x_1^i)) over the batch,
    loss = sum_i g_i l_i (self-normalised);
  * 'exact': w_i = exp(-beta E_i - log Z) with a supplied log Z (population normaliser), loss = mean_i w_i l_i;
  * 'none': w_i = exp(-beta (E_i - min_j E_j)) (unnormalised up to a per-batch constant), loss = mean_i w_i l_i.
Only 'exact' is an unbiased estimate of L_CEFM, whose minimiser is the tilted velocity. 'batch' divides by
a per-batch estimate of Z and 'none' by the per-batch factor exp(-beta min_j E_j); both factors depend on the
batch, so the expected loss of either is L_CEFM reweighted per batch, and its minimiser equals the tilted
velocity only up to O(1/B) for a batch of B samples (the self-normalised importance-sampling bias). They have
the same minimiser as 'exact' exactly only as B -> infinity (docs/efm_qipo.md, "Normalisation").

ED loss (arXiv 2503.04975, Corollary 4.8, Algorithm 1) on a VP path x_t = alpha_t x + sigma_t eps:
    L_CED(theta) = E[ w(x) lambda(t) || s_theta(x_t, t) + eps / sigma_t ||^2 ]
with lambda(t) = sigma_t^2 ('eps' weighting, equivalently w ||eps_theta - eps||^2; default) or
lambda(t) = 1 ('score' weighting, i.e. w ||eps_theta - eps||^2 / sigma_t^2).

Training: every network here is fitted by the shared :class:`agm.training.Trainer` (``fit_weighted_flow``,
``fit_energy_model``, and ``agm efm train`` through :mod:`agm.methods.efm.run`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor, nn

from agm.metrics.ess import effective_sample_size  # noqa: F401  (the library's one ESS)
from agm.errors import ConfigError, DataError, check_choice, check_positive
from agm.objectives.bridge_matching import per_sample_mse
from agm.paths.bridge import BrownianBridge, PathSample
from agm.tensors import expand_time

Energy = Callable[[Tensor], Tensor]
NORMALIZATIONS = ("batch", "exact", "none")
DIFFUSION_WEIGHTINGS = ("eps", "score")


# --------------------------------------------------------------------------------------------- weights
def check_beta(beta: float, field: str = "beta") -> float:
    """Validate an inverse temperature beta >= 0 (q ∝ p exp(-beta E), arXiv 2503.04975 section 4); returns it as float."""
    check_positive(field, beta, allow_zero=True)
    if not math.isfinite(float(beta)):
        raise ConfigError(f"{field}={beta!r} is not accepted; it must be a finite number >= 0")
    return float(beta)


def evaluate_energy(energy: Energy, x: Tensor) -> Tensor:
    """E(x) as a (B,) tensor without gradient; raises DataError for a wrong shape or non-finite values.

    EFM evaluates the energy on clean data only (arXiv 2503.04975, eq. 4.3).
    """
    with torch.no_grad():
        e = energy(x)
    if not isinstance(e, Tensor):
        raise DataError(f"energy(x) returned {type(e).__name__}; accepted: a tensor of shape ({x.shape[0]},)")
    e = e.reshape(e.shape[0], -1).squeeze(-1) if e.dim() == 2 and e.shape[-1] == 1 else e
    if e.shape != (x.shape[0],):
        raise DataError(f"energy(x) has shape {tuple(e.shape)}; accepted: ({x.shape[0]},) or ({x.shape[0]}, 1)")
    check_finite_energy(e)
    return e.detach()


def check_finite_energy(e: Tensor, field: str = "energy") -> None:
    """Raise DataError naming the first non-finite energy value (NaN/inf energies make the weights undefined)."""
    bad = ~torch.isfinite(e)
    if bad.any():
        idx = int(bad.nonzero()[0, 0]) if bad.dim() == 1 else tuple(bad.nonzero()[0].tolist())
        val = e[bad][0].item()
        raise DataError(f"{field} contains non-finite values (first at index {idx}: {val}); accepted: finite real energies")


def energy_weights(
    energy_values: Tensor,
    beta: float,
    *,
    normalization: str = "batch",
    log_z: float | None = None,
) -> Tensor:
    """Per-sample EFM weights (no grad), arXiv 2503.04975 eq. 4.3; docs/efm_qipo.md "Normalisation".

    'batch': g_i = softmax_i(-beta E_i)          (sums to 1; the loss is sum_i g_i l_i)
    'exact': w_i = exp(-beta E_i - log Z)        (mean ≈ 1; the loss is mean_i w_i l_i); needs ``log_z``
    'none' : w_i = exp(-beta (E_i - min_j E_j))  (the loss is mean_i w_i l_i)
    """
    beta = check_beta(beta)
    check_choice("normalization", normalization, NORMALIZATIONS)
    e = energy_values.detach()
    check_finite_energy(e)
    logits = -beta * e
    if normalization == "batch":
        return torch.softmax(logits, dim=0)
    if normalization == "exact":
        if log_z is None or not math.isfinite(float(log_z)):
            raise ConfigError(f"log_z={log_z!r} is not accepted with normalization='exact'; give the finite log E_p[exp(-beta E)]")
        return torch.exp(logits - float(log_z))
    return torch.exp(logits - logits.max())


def reduce_weighted(per_sample: Tensor, weights: Tensor, normalization: str) -> Tensor:
    """sum_i g_i l_i for 'batch' (weights sum to one), mean_i w_i l_i otherwise (docs/efm_qipo.md)."""
    if normalization == "batch":
        return (weights * per_sample).sum()
    return (weights * per_sample).mean()


def grouped_softmax(logits: Tensor, cap: float | None = None) -> Tensor:
    """Row-wise softmax g_ij = softmax_j(logits_ij) for (B, M) logits (QIPO per-state weights, arXiv 2503.04975 eq. 5.2).

    ``cap`` (our degeneracy guard, optional): clamp logits_ij - max_j logits_ij to >= -cap before the softmax,
    which bounds the weight ratio within a row by exp(cap) and so limits degeneracy.
    """
    check_finite_energy(logits, "logits")
    z = logits - logits.max(dim=-1, keepdim=True).values
    if cap is not None:
        check_positive("weight_cap", cap)
        z = z.clamp_min(-float(cap))
    return torch.softmax(z, dim=-1)


# --------------------------------------------------------------------------------------------- losses
@dataclass
class WeightedLoss:
    """The scalar loss, per-sample losses l_i, the weights used (no grad), their ESS and the path sample."""

    loss: Tensor
    per_sample: Tensor
    weights: Tensor
    ess: Tensor
    path_sample: PathSample


class EnergyWeightedFlowMatching:
    """EFM objective (arXiv 2503.04975 eq. 4.3, Theorem 4.3).

    l_i = (1/d) || v_theta(x_t^i, t_i) - u_t(x_t^i | x_1^i) ||^2 on the given path (default: the OT /
    linear path, BrownianBridge(sigma=0), target x_1 - x_0), weighted by the normalised Boltzmann weight of
    the clean sample x_1^i. beta = 0 gives plain CFM exactly (uniform g_i = 1/B).

    Args:
        energy: callable E(x) -> (B,) on clean data; may be None if energies are passed to ``loss``.
        beta: inverse temperature >= 0.
        normalization: 'batch' | 'exact' | 'none' (module docstring).
        log_z: log E_p[exp(-beta E)] for 'exact'.
        path: a path with ``sample(x0, x1, t, generator=)`` (default linear OT path).
    """

    def __init__(
        self,
        energy: Energy | None,
        beta: float,
        *,
        normalization: str = "batch",
        log_z: float | None = None,
        path: BrownianBridge | None = None,
    ) -> None:
        self.beta = check_beta(beta)
        check_choice("normalization", normalization, NORMALIZATIONS)
        if normalization == "exact" and log_z is None:
            raise ConfigError("log_z=None is not accepted with normalization='exact'; give log E_p[exp(-beta E)]")
        self.energy, self.normalization, self.log_z = energy, normalization, log_z
        self.path = path if path is not None else BrownianBridge(0.0)

    def weights(self, x1: Tensor, energy_values: Tensor | None = None) -> Tensor:
        """Weights of the clean samples x1 (no grad)."""
        if energy_values is None:
            if self.energy is None:
                raise ConfigError("energy=None: pass energy_values to loss() or give an energy function")
            energy_values = evaluate_energy(self.energy, x1)
        return energy_weights(energy_values, self.beta, normalization=self.normalization, log_z=self.log_z)

    def loss(
        self,
        model: Callable[[Tensor, Tensor], Tensor],
        x1: Tensor,
        *,
        energy_values: Tensor | None = None,
        x0: Tensor | None = None,
        t: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> WeightedLoss:
        """Weighted CFM loss for one batch of clean data x1 (B, D); x0 ~ N(0, I) unless given."""
        if x1.dim() < 2:
            raise DataError(f"x1 has shape {tuple(x1.shape)}; accepted: (B, D) batch-first data")
        w = self.weights(x1, energy_values)
        if x0 is None:
            x0 = torch.randn(x1.shape, generator=generator, dtype=x1.dtype, device=x1.device)
        s = self.path.sample(x0, x1, t, generator=generator)
        per = per_sample_mse(model(s.xt, s.t), s.target)
        return WeightedLoss(reduce_weighted(per, w, self.normalization), per, w, effective_sample_size(w), s)


class EnergyWeightedDiffusion:
    """Energy-weighted diffusion (arXiv 2503.04975 Corollary 4.8, Algorithm 1).

    On a VP path (``agm.paths.vp.VPPath`` or any object with ``sample(x1, t, eps=, generator=)`` returning
    PathSample(xt, t, target=eps, eps) and ``sigma(t)``):

        'eps'   (lambda = sigma_t^2, default): l_i = (1/d) || eps_theta(x_t, t) - eps ||^2
        'score' (lambda = 1):                  l_i = (1/d) || eps_theta(x_t, t) - eps ||^2 / sigma_t^2

    using s_theta = -eps_theta / sigma_t, weighted by the normalised exp(-beta E(x)) of the clean sample.
    """

    def __init__(
        self,
        path,
        energy: Energy | None,
        beta: float,
        *,
        normalization: str = "batch",
        log_z: float | None = None,
        weighting: str = "eps",
    ) -> None:
        self.beta = check_beta(beta)
        check_choice("normalization", normalization, NORMALIZATIONS)
        check_choice("weighting", weighting, DIFFUSION_WEIGHTINGS)
        if normalization == "exact" and log_z is None:
            raise ConfigError("log_z=None is not accepted with normalization='exact'; give log E_p[exp(-beta E)]")
        self.path, self.energy, self.normalization, self.log_z, self.weighting = path, energy, normalization, log_z, weighting

    def loss(
        self,
        eps_model: Callable[[Tensor, Tensor], Tensor],
        x1: Tensor,
        *,
        energy_values: Tensor | None = None,
        t: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> WeightedLoss:
        """Weighted denoising loss for clean data x1 (B, D) (Algorithm 1 of the EFM paper)."""
        if energy_values is None:
            if self.energy is None:
                raise ConfigError("energy=None: pass energy_values to loss() or give an energy function")
            energy_values = evaluate_energy(self.energy, x1)
        w = energy_weights(energy_values, self.beta, normalization=self.normalization, log_z=self.log_z)
        s = self.path.sample(x1, t, generator=generator)
        per = per_sample_mse(eps_model(s.xt, s.t), s.target)
        if self.weighting == "score":
            per = per / self.path.sigma(s.t).reshape(-1).pow(2)
        return WeightedLoss(reduce_weighted(per, w, self.normalization), per, w, effective_sample_size(w), s)


# ----------------------------------------------------------------------- closed forms (test oracles)
def quadratic_energy(A: Tensor, c: Tensor) -> Energy:
    """E(x) = 1/2 (x - c)^T A (x - c) (closed form, docs/efm_qipo.md)."""

    def energy(x: Tensor) -> Tensor:
        d = x - c.to(x)
        return 0.5 * ((d @ A.to(x)) * d).sum(-1)

    return energy


def linear_energy(g: Tensor) -> Energy:
    """E(x) = g^T x (closed form, docs/efm_qipo.md)."""

    def energy(x: Tensor) -> Tensor:
        return x @ g.to(x)

    return energy


def gaussian_tilt(m: Tensor, S: Tensor, A: Tensor, c: Tensor, beta: float) -> tuple[Tensor, Tensor]:
    """q ∝ N(m, S) exp(-beta/2 (x-c)^T A (x-c)) = N(m_q, S_q) (closed form, docs/efm_qipo.md):

    S_q = (S^-1 + beta A)^-1,   m_q = S_q (S^-1 m + beta A c).
    """
    beta = check_beta(beta)
    P = torch.linalg.inv(S.double()) + beta * A.double()
    Sq = torch.linalg.inv(P)
    mq = Sq @ (torch.linalg.solve(S.double(), m.double()) + beta * A.double() @ c.double())
    return mq, Sq


def linear_tilt(m: Tensor, S: Tensor, g: Tensor, beta: float) -> tuple[Tensor, Tensor]:
    """q ∝ N(m, S) exp(-beta g^T x) = N(m - beta S g, S) (closed form, docs/efm_qipo.md)."""
    beta = check_beta(beta)
    return m.double() - beta * S.double() @ g.double(), S.double().clone()


def gmm_quadratic_tilt(
    weights: Tensor, means: Tensor, covs: Tensor, A: Tensor, c: Tensor, beta: float
) -> tuple[Tensor, Tensor, Tensor]:
    """Tilt of a Gaussian mixture by a quadratic energy: again a mixture (issue 5 item 2; derived here).

    pi_k N(x; m_k, S_k) exp(-beta E(x)) = pi_k Z_k N(x; m_k', S_k') with (S_k', m_k') from ``gaussian_tilt`` and
    log Z_k = 1/2 log|S_k'|/|S_k| - 1/2 (m_k^T S_k^-1 m_k + beta c^T A c - m_k'^T S_k'^-1 m_k'),
    so the tilted weights are pi_k' ∝ pi_k Z_k. Returns (weights', means', covs') in float64.
    """
    beta = check_beta(beta)
    A, c = A.double(), c.double()
    new_m, new_S, logw = [], [], []
    for k in range(weights.shape[0]):
        mk, Sk = means[k].double(), covs[k].double()
        mq, Sq = gaussian_tilt(mk, Sk, A, c, beta)
        logz = 0.5 * (torch.logdet(Sq) - torch.logdet(Sk)) - 0.5 * (
            mk @ torch.linalg.solve(Sk, mk) + beta * c @ A @ c - mq @ torch.linalg.solve(Sq, mq)
        )
        new_m.append(mq)
        new_S.append(Sq)
        logw.append(torch.log(weights[k].double()) + logz)
    return torch.softmax(torch.stack(logw), 0), torch.stack(new_m), torch.stack(new_S)


def gaussian_log_normalizer(m: Tensor, S: Tensor, A: Tensor, c: Tensor, beta: float) -> float:
    """log Z = log E_{N(m,S)}[exp(-beta/2 (x-c)^T A (x-c))] (the 'exact' normaliser of the Gaussian-quadratic tilt)."""
    mq, Sq = gaussian_tilt(m, S, A, c, beta)
    A, c, m, S = A.double(), c.double(), m.double(), S.double()
    return float(
        0.5 * (torch.logdet(Sq) - torch.logdet(S))
        - 0.5 * (m @ torch.linalg.solve(S, m) + beta * c @ A @ c - mq @ torch.linalg.solve(Sq, mq))
    )


def ot_gaussian_velocity(mu: Tensor, Sigma: Tensor) -> Callable[[Tensor, Tensor], Tensor]:
    """Exact marginal velocity of the OT path for x_0 ~ N(0, I), x_1 ~ N(mu, Sigma) (closed form, docs/efm_qipo.md):

    v*(x, t) = mu + (t Sigma - (1-t) I) C_t^-1 (x - t mu),   C_t = (1-t)^2 I + t^2 Sigma.
    """
    mu, Sigma = mu.double(), Sigma.double()
    eye = torch.eye(mu.shape[0], dtype=torch.float64)

    def field(x: Tensor, t: Tensor) -> Tensor:
        tt = t.double().reshape(-1, 1, 1)
        C = (1 - tt) ** 2 * eye + tt**2 * Sigma
        M = (tt * Sigma - (1 - tt) * eye) @ torch.linalg.inv(C)
        y = x.double() - expand_time(t, x.double()) * mu
        return (mu + (M @ y.unsqueeze(-1)).squeeze(-1)).to(x.dtype)

    return field


# --------------------------------------------------------- guidance baseline (auxiliary energy model)
class ContrastiveEnergyPrediction:
    """Auxiliary-model baseline: contrastive energy prediction (CEP; QGPO, Lu et al. 2023, arXiv 2304.12824).

    Trains a scalar f_phi(x_t, t) ≈ E_t(x_t) + const(t), the intermediate energy
    exp(-E_t(x)) = E_{p(x_1|x_t=x)}[exp(-beta E(x_1))] (arXiv 2503.04975 Theorem 4.1), with the contrastive loss over groups of
    K clean samples {x_1^k} noised independently at one shared t:

        L_CEP(phi) = - E sum_k softmax_k(-beta E(x_1^k)) log softmax_k(-f_phi(x_t^k, t)).

    Guidance then uses grad log q_t = grad log p_t - grad E_t (arXiv 2503.04975 Theorem 4.1). On the OT path with x_0 ~ N(0, I),
    v = (x + (1-t) s) / t, hence the guided velocity (our derivation)

        v_q(x, t) = v_p(x, t) - scale * (1-t)/t * grad_x f_phi(x, t),

    where t is floored at ``t_floor`` in the factor (our choice; the factor diverges at t = 0 where grad E_0 = 0).
    scale = 1 with f trained at the target beta is exact (CEP); training f at beta = 1 and using scale = beta
    is the CFG-like guidance, which is not exact for beta != 1 (arXiv 2503.04975 Lemma 4.10).
    """

    def __init__(self, energy_net: nn.Module, energy: Energy, beta: float, group_size: int = 16) -> None:
        self.net, self.energy, self.beta = energy_net, energy, check_beta(beta)
        check_positive("group_size", group_size, integer=True)
        if group_size < 2:
            raise ConfigError(f"group_size={group_size!r} is not accepted; it must be an integer >= 2")
        self.group_size = group_size
        self.path = BrownianBridge(0.0)

    def loss(self, x1: Tensor, *, generator: torch.Generator | None = None) -> Tensor:
        """Contrastive loss for a batch x1 (B, D) with B divisible by group_size."""
        B, K = x1.shape[0], self.group_size
        if B % K:
            raise ConfigError(f"batch size {B} is not accepted; it must be a multiple of group_size={K}")
        e = evaluate_energy(self.energy, x1).reshape(B // K, K)
        labels = torch.softmax(-self.beta * e, dim=1)
        t = self.path.sample_t(B // K, generator=generator).repeat_interleave(K)
        x0 = torch.randn(x1.shape, generator=generator, dtype=x1.dtype)
        s = self.path.sample(x0, x1, t)
        f = self.net(s.xt, s.t).reshape(B // K, K)
        return -(labels * torch.log_softmax(-f, dim=1)).sum(1).mean()

    def guided_field(
        self, base_field: Callable[[Tensor, Tensor], Tensor], scale: float = 1.0, t_floor: float = 1e-2
    ) -> Callable[[Tensor, Tensor], Tensor]:
        """v_q = v_p - scale (1-t)/max(t, t_floor) grad_x f_phi(x, t) (see class docstring)."""

        def field(x: Tensor, t: Tensor) -> Tensor:
            with torch.enable_grad():
                xg = x.detach().requires_grad_(True)
                g = torch.autograd.grad(self.net(xg, t).sum(), xg)[0]
            tb = expand_time(t, x)
            return base_field(x, t) - scale * (1 - tb) / tb.clamp_min(t_floor) * g

        return field


# ---------------------------------------------------------------------- fitting through the Trainer
class _FlowFit:
    """Trainer protocol for an EFM / ED objective: batches are rows [x, E(x)] (energy as the last column)."""

    ema_names: tuple[str, ...] = ("model",)

    def __init__(self, model: nn.Module, objective) -> None:
        self.model, self.objective = model, objective

    def networks(self) -> dict[str, nn.Module]:
        return {"model": self.model}

    def loss(self, batch: Tensor, step: int, generator: torch.Generator) -> tuple[Tensor, dict]:
        out = self.objective.loss(self.model, batch[:, :-1], energy_values=batch[:, -1], generator=generator)
        return out.loss, {"loss": out.loss.detach(), "ess": out.ess}


class _EnergyFit:
    """Trainer protocol for the CEP contrastive loss of the guidance baseline."""

    ema_names: tuple[str, ...] = ("energy",)

    def __init__(self, cep: "ContrastiveEnergyPrediction") -> None:
        self.cep = cep

    def networks(self) -> dict[str, nn.Module]:
        return {"energy": self.cep.net}

    def loss(self, batch: Tensor, step: int, generator: torch.Generator) -> tuple[Tensor, dict]:
        loss = self.cep.loss(batch, generator=generator)
        return loss, {"loss": loss.detach()}


SCHEDULES = ("cosine", "constant")


def fit_with_trainer(method, data: Tensor, *, steps: int, batch_size: int, lr: float, seed: int, schedule: str = "cosine",
                     ema_decay: float | None = None, grad_clip: float = 0.0) -> list[float]:
    """Fit ``method`` (Trainer protocol) on the rows of ``data`` with the shared :class:`agm.training.Trainer`.

    AdamW with weight decay 0 (= Adam), no gradient clipping by default, batches drawn by the Trainer's seeded
    generator. ``schedule='cosine'`` anneals the learning rate as lr (1 + cos(pi k / steps)) / 2 before step k
    (set on the Trainer's optimiser between single-step ``fit`` calls; the Trainer itself has no schedule),
    'constant' keeps it. ``ema_decay``: None keeps the final weights; a value keeps an EMA copy and loads it
    into the network at the end. Returns the loss of every step.
    """
    from agm.training import Trainer
    from agm.training.config import TrainConfig

    check_positive("steps", steps, integer=True)
    check_positive("batch_size", batch_size, integer=True)
    check_choice("schedule", schedule, SCHEDULES)
    if ema_decay is None:
        method.ema_names = ()
    cfg = TrainConfig(steps=steps, batch_size=batch_size, lr=lr, grad_clip=grad_clip, ema_decay=ema_decay or 0.0,
                      log_every=1, tensorboard=False, progress=False, device="cpu")
    trainer = Trainer(method, data, cfg, seed=seed)
    losses: list[float] = []
    for k in range(steps):
        if schedule == "cosine":
            for group in trainer.optimizer.param_groups:
                group["lr"] = lr * 0.5 * (1.0 + math.cos(math.pi * k / steps))
        losses += [r["loss"] for r in trainer.fit(k + 1)]
    for name, ema in trainer.ema.items():
        method.networks()[name].load_state_dict(ema.state_dict())
    return losses


def fit_weighted_flow(
    model: nn.Module,
    data: Tensor,
    objective: EnergyWeightedFlowMatching | EnergyWeightedDiffusion,
    *,
    steps: int = 2000,
    batch_size: int = 512,
    lr: float = 2e-3,
    seed: int = 0,
    energy_values: Tensor | None = None,
    schedule: str = "cosine",
    ema_decay: float | None = None,
) -> list[float]:
    """Minimise an EFM / ED objective over minibatches of ``data`` with the shared Trainer (``fit_with_trainer``:
    AdamW without weight decay, cosine learning rate by default). ``energy_values`` (N,) may be precomputed for
    the whole data set (else E is evaluated once on all of ``data``). Returns the loss curve."""
    if data.dim() != 2:
        raise DataError(f"data has shape {tuple(data.shape)}; accepted: (N, D)")
    if energy_values is None:
        if objective.energy is None:
            raise ConfigError("energy=None: pass energy_values or give the objective an energy function")
        energy_values = evaluate_energy(objective.energy, data)
    if energy_values.shape != (data.shape[0],):
        raise DataError(f"energy_values has shape {tuple(energy_values.shape)}; accepted: ({data.shape[0]},)")
    check_finite_energy(energy_values)
    rows = torch.cat([data, energy_values.to(data.dtype)[:, None]], dim=1)
    return fit_with_trainer(_FlowFit(model, objective), rows, steps=steps, batch_size=batch_size, lr=lr, seed=seed,
                            schedule=schedule, ema_decay=ema_decay)


def fit_energy_model(
    cep: ContrastiveEnergyPrediction,
    data: Tensor,
    *,
    steps: int = 2000,
    batch_size: int = 512,
    lr: float = 2e-3,
    seed: int = 0,
    schedule: str = "cosine",
    ema_decay: float | None = None,
) -> list[float]:
    """Minimise the CEP contrastive loss (``ContrastiveEnergyPrediction``) over random groups of ``data`` with
    the shared Trainer (``fit_with_trainer``; the auxiliary model of the guidance baseline). Returns the loss curve."""
    check_positive("batch_size", batch_size, integer=True)
    if batch_size % cep.group_size:
        raise ConfigError(f"batch_size={batch_size!r} is not accepted; it must be a multiple of group_size={cep.group_size}")
    return fit_with_trainer(_EnergyFit(cep), data, steps=steps, batch_size=batch_size, lr=lr, seed=seed,
                            schedule=schedule, ema_decay=ema_decay)
