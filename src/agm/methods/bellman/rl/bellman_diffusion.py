"""Bellman Diffusion distributional RL agent: return-density fields f(z | s, a) ~ p_{s,a}(z) and
g(z | s, a) ~ d/dz p_{s,a}(z) learned with the distributional Bellman update on the fields.

Bellman Diffusion (Li et al., arXiv 2410.01796) Eqs. (1)-(3) and sec. 5 (App. D, the algorithm, is
missing from our copy); the explicit forms are docs/bellman.md and the loop
sec. 5.3, both **reconstructed** (tag [R]). For Z(s, a) = R + gamma Z(S', A'), in return units
normalised by z~ = (z - c)/kappa (which keeps gamma and maps r to r~ = (r - c(1 - gamma))/kappa):

    p_{s,a}(z)  = E_{r,s'} [ gamma^-1 p_{s',a*}((z - r)/gamma) ]               (Eq. 1, explicit gamma form)
    dp_{s,a}(z) = E_{r,s'} [ gamma^-2 (dp_{s',a*})((z - r)/gamma) ]            (Eq. 3)
    terminal:     p = N(z - r; 0, eps_T),  dp = -(z - r)/eps_T N(z - r; 0, eps_T)  (delta replaced by a kernel)

The map (f', g') -> (y_f, y_g) is linear, so regressing f(s, z)_a and g(s, z)_a with MSE onto
targets built from single sampled transitions converges to the mixture over (r, s') (docs/bellman.md).
Choices (config options): evaluation points 'uniform' on [V_min, V_max] (default) or 'target'
(half of the points drawn from the target's own law r + gamma Z', closer to the p-weighted
divergence); a* by the target net's mean ('target', C51 style) or Double-DQN ('double');
hard target sync every C steps; Q by grid quadrature of f+ = max(f, 0). Next-state fields are read
as 0 outside the normalised return range [-1 - margin, 1 + margin] (our choice; C51 clips to the range instead).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from agm.errors import ConfigError, check_choice, check_positive
from agm.methods.bellman.fields import gaussian_pdf
from agm.methods.bellman.rl.c51 import mlp_trunk
from agm.methods.bellman.rl.envs import check_returns

POINTS = ("uniform", "target")
ACTION_SELECTION = ("target", "double")
TARGET_EVAL = ("grid", "exact")


def bellman_field_targets(
    f_next: Tensor, g_next: Tensor, z: Tensor, rewards: Tensor, terminated: Tensor, gamma: float, eps_T: float,
    terminal_returns: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """Distributional Bellman targets for the fields (Bellman Diffusion Eqs. 1, 3; docs/bellman.md).

    f_next, g_next: (B, M) next-state fields evaluated at u = (z - r)/gamma; z: (B, M); rewards,
    terminated: (B,). Returns (y_f, y_g), each (B, M):
        y_f = term N(z - r_T; eps_T) + (1 - term) f_next / gamma
        y_g = term (-(z - r_T)/eps_T) N(z - r_T; eps_T) + (1 - term) g_next / gamma^2
    r_T = ``terminal_returns`` (default: ``rewards``) is the return of a terminal transition in the units of z.
    With affinely normalised returns z~ = (z - c)/kappa it is (r - c)/kappa, NOT the bootstrap reward
    r~ = (r - c(1 - gamma))/kappa (the two differ by c gamma / kappa).
    """
    check_returns(rewards.detach().cpu().numpy(), "rewards")
    check_positive("bd.eps_T", eps_T)
    r, term = rewards[:, None], terminated[:, None]
    rt = r if terminal_returns is None else terminal_returns[:, None]
    dz = z - rt
    k = gaussian_pdf(dz, eps_T)
    y_f = term * k + (1.0 - term) * f_next / gamma
    y_g = term * (-dz / eps_T) * k + (1.0 - term) * g_next / gamma**2
    return y_f, y_g


class ReturnField(nn.Module):
    """A field over (s, z) -> one value per action, shape (B, |A|): F(s, z)_a = w_a^T (phi(s) * psi(z)) + b_a.

    phi is an MLP state trunk (widths ``hidden``, ReLU), psi(z) = SiLU(W [cos(w_k z~), sin(w_k z~)]_{k=1..n_cos}),
    w_k = pi k / 2, a Fourier embedding of the normalised return (as IQN embeds quantile levels; Dabney et al.
    2018). Both cos and sin are needed: a cosine-only embedding is even in z~, so every field would be
    symmetric about the centre of the return range and all Q-values would equal that centre. The
    product form (our choice) separates state and return: phi is computed once per state and psi once per
    return point, so a field at M points shared by a batch costs B + M trunk passes and one (B, H) x (H, M)
    product per action (:meth:`at_action`, :meth:`all_actions`), instead of B x M embedding passes.
    """

    def __init__(self, obs_dim: int, n_actions: int, hidden: tuple[int, ...] = (120, 84), n_cos: int = 64) -> None:
        super().__init__()
        h = hidden[-1]
        self.phi = nn.Sequential(mlp_trunk(obs_dim, hidden[:-1], h), nn.ReLU())
        self.psi = nn.Sequential(nn.Linear(2 * n_cos, h), nn.SiLU())
        self.head = nn.Linear(h, n_actions)
        self.register_buffer("freqs", math.pi * torch.arange(1, n_cos + 1, dtype=torch.float32) / 2.0)
        self._grid_cache: tuple | None = None

    def embed_z(self, z: Tensor) -> Tensor:
        """psi(z), shape (*z.shape, H); z in normalised units (|z| <~ 2)."""
        arg = z[..., None] * self.freqs
        return self.psi(torch.cat([torch.cos(arg), torch.sin(arg)], dim=-1))

    def at_action(self, ph: Tensor, psi: Tensor, actions: Tensor) -> Tensor:
        """F(s_b, z_m)_{a_b} from state features ph (B, H), return features psi (M, H) shared by the batch or
        (B, M, H) per transition, and one action per row (B,): shape (B, M)."""
        wa = self.head.weight[actions] * ph  # (B, H)
        if psi.dim() == 2:
            out = wa @ psi.T
        else:
            out = (wa[:, None, :] * psi).sum(-1)
        return out + self.head.bias[actions][:, None]

    def all_actions(self, ph: Tensor, psi: Tensor) -> Tensor:
        """F(s_b, z_k)_a for every action from ph (B, H) and shared psi (K, H): shape (B, K, |A|), one product."""
        wa = ph[:, None, :] * self.head.weight[None]  # (B, A, H)
        return (wa @ psi.T).transpose(1, 2) + self.head.bias

    def forward(self, obs: Tensor, z: Tensor) -> Tensor:
        """obs (B, D), z (B,) -> (B, |A|); or z (B, M) -> (B, M, |A|)."""
        ph = self.phi(obs)
        if z.dim() == 2:
            return self.head(ph[:, None, :] * self.embed_z(z))
        return self.head(ph * self.embed_z(z))

    def grid_embedding(self, grid: Tensor) -> Tensor:
        """psi(grid) (K, H); without autograd it is cached until psi's parameters change (in-place Adam steps and
        load_state_dict bump their version counters), so acting costs one trunk pass per step."""
        if torch.is_grad_enabled():
            return self.embed_z(grid)
        key = (grid.data_ptr(), grid.shape, *(p._version for p in self.psi.parameters()), *(id(p) for p in self.psi.parameters()))
        if self._grid_cache is None or self._grid_cache[0] != key:
            self._grid_cache = (key, self.embed_z(grid))
        return self._grid_cache[1]

    def on_grid(self, obs: Tensor, grid: Tensor) -> Tensor:
        """Field values for every obs at every grid point: (B, K, |A|)."""
        return self.all_actions(self.phi(obs), self.grid_embedding(grid))


def interp_on_grid(values: Tensor, u: Tensor, lo: float, hi: float) -> Tensor:
    """Linear interpolation of ``values`` (B, K), given on K uniform points of [lo, hi], at u (B, M); 0 outside [lo, hi]."""
    k = values.shape[1]
    pos = (u - lo) * ((k - 1) / (hi - lo))
    i0 = pos.floor().clamp(0, k - 2)
    w = (pos - i0).clamp(0.0, 1.0)
    i0 = i0.long()
    out = values.gather(1, i0) * (1.0 - w) + values.gather(1, i0 + 1) * w
    return out * ((u >= lo) & (u <= hi)).to(out.dtype)


@dataclass
class BDConfig:
    """Bellman Diffusion agent settings (docs/bellman.md). Returns are normalised to
    z~ = (z - c)/kappa with c = (v_max + v_min)/2, kappa = (v_max - v_min)/2; eps_T is a variance
    in normalised units (default sigma_T = 0.05).

    Cost options (docs/bellman.md, "one update's cost"): ``shared_points`` draws the M evaluation points once per
    batch (stratified: one uniform draw in each of M equal cells of [lo, hi]) instead of M per transition, so
    the return embedding runs on M points, not B x M; ``target_eval='grid'`` reads the target fields at
    u = (z - r)/gamma by linear interpolation from the grid that the greedy a* needs anyway (one target
    forward for all actions), 'exact' evaluates the target networks at u (the former update; with
    ``shared_points=False`` it is the update of commit d19f6a4). ``adam_eps`` is Adam's epsilon."""

    v_min: float = -10.0
    v_max: float = 110.0
    gamma: float = 0.99
    lr: float = 5e-4
    hidden: tuple[int, ...] = (120, 84)
    grid_size: int = 101
    n_points: int = 32
    eps_T: float = 0.05**2
    grad_weight: float = 0.1
    points: str = "uniform"
    action_selection: str = "target"
    margin: float = 0.1
    shared_points: bool = True
    target_eval: str = "grid"
    adam_eps: float = 1e-8

    def __post_init__(self) -> None:
        if not self.v_max > self.v_min:
            raise ConfigError(f"bd.v_max={self.v_max!r} must be > bd.v_min={self.v_min!r}")
        if not 0.0 < self.gamma <= 1.0:
            raise ConfigError(f"bd.gamma={self.gamma!r} is not accepted; it must lie in (0, 1]")
        check_positive("bd.lr", self.lr)
        check_positive("bd.grid_size", self.grid_size, integer=True)
        check_positive("bd.n_points", self.n_points, integer=True)
        check_positive("bd.eps_T", self.eps_T)
        check_positive("bd.grad_weight", self.grad_weight, allow_zero=True)
        check_positive("bd.margin", self.margin, allow_zero=True)
        check_choice("bd.points", self.points, POINTS)
        check_choice("bd.action_selection", self.action_selection, ACTION_SELECTION)
        check_choice("bd.target_eval", self.target_eval, TARGET_EVAL)
        check_positive("bd.adam_eps", self.adam_eps)
        if self.grid_size < 2:
            raise ConfigError(f"bd.grid_size={self.grid_size!r} is not accepted; it must be >= 2")

    @property
    def center(self) -> float:
        return 0.5 * (self.v_max + self.v_min)

    @property
    def scale(self) -> float:
        return 0.5 * (self.v_max - self.v_min)


class BellmanDiffusionAgent:
    """Distributional agent with return-density fields f and g (two networks, each with a target copy)."""

    def __init__(self, obs_dim: int, n_actions: int, cfg: BDConfig) -> None:
        self.cfg, self.n_actions = cfg, n_actions
        lo, hi = -1.0 - cfg.margin, 1.0 + cfg.margin
        self.lo, self.hi = lo, hi
        self.grid = torch.linspace(lo, hi, cfg.grid_size)  # normalised returns
        self.f, self.g = ReturnField(obs_dim, n_actions, cfg.hidden), ReturnField(obs_dim, n_actions, cfg.hidden)
        self.f_tgt, self.g_tgt = ReturnField(obs_dim, n_actions, cfg.hidden), ReturnField(obs_dim, n_actions, cfg.hidden)
        self.sync_target()
        self.opt = torch.optim.Adam(list(self.f.parameters()) + list(self.g.parameters()), lr=cfg.lr, eps=cfg.adam_eps)

    # --- return units ---------------------------------------------------------------------------
    def normalise_reward(self, r: Tensor) -> Tensor:
        """r~ = (r - c (1 - gamma)) / kappa (docs/bellman.md)."""
        return (r - self.cfg.center * (1.0 - self.cfg.gamma)) / self.cfg.scale

    def q_from_fields(self, f_grid: Tensor) -> Tensor:
        """Q = c + kappa sum_k z_k f+_k / sum_k f+_k from (B, K, |A|) grid values (docs/bellman.md)."""
        fp = f_grid.clamp_min(0.0)
        mean = (fp * self.grid[None, :, None]).sum(1) / fp.sum(1).clamp_min(1e-8)
        return self.cfg.center + self.cfg.scale * mean

    def q_values(self, obs: Tensor, target: bool = False) -> Tensor:
        """Q(s, a) in raw return units by grid quadrature, shape (B, |A|)."""
        net = self.f_tgt if target else self.f
        return self.q_from_fields(net.on_grid(obs, self.grid))

    @torch.no_grad()
    def act(self, obs: Tensor) -> int:
        """Greedy action for one observation."""
        return int(self.q_values(obs[None]).argmax(-1))

    # --- learning -------------------------------------------------------------------------------
    def update(self, batch: dict[str, Tensor]) -> float:
        """One Adam step on MSE(f, y_f) + grad_weight MSE(g, y_g) at M evaluation points per transition."""
        cfg = self.cfg
        obs, nobs, a = batch["obs"], batch["next_obs"], batch["actions"]
        r = self.normalise_reward(batch["rewards"])
        r_term = (batch["rewards"] - cfg.center) / cfg.scale  # normalised return of a terminal transition
        term = batch["terminated"]
        B, M = obs.shape[0], cfg.n_points
        idx = torch.arange(B)
        with torch.no_grad():
            ph_f, ph_g = self.f_tgt.phi(nobs), self.g_tgt.phi(nobs)
            f_next_grid = self.f_tgt.all_actions(ph_f, self.f_tgt.grid_embedding(self.grid))  # (B, K, A): all actions at once
            if cfg.action_selection == "double":
                a_star = self.q_from_fields(self.f.on_grid(nobs, self.grid)).argmax(-1)
            else:
                a_star = self.q_from_fields(f_next_grid).argmax(-1)
            per_transition = cfg.points == "target" or not cfg.shared_points
            if per_transition:
                z = self.lo + (self.hi - self.lo) * torch.rand(B, M)
            else:  # M stratified points shared by the batch
                z = self.lo + (self.hi - self.lo) * (torch.arange(M) + torch.rand(M)) / M
            if cfg.points == "target":
                # half the points from the target law r + gamma Z' (terminal: r + N(0, eps_T))
                w = f_next_grid[idx, :, a_star].clamp_min(0.0) + 1e-12
                j = torch.multinomial(w, M // 2, replacement=True)
                dz = self.grid[1] - self.grid[0]
                zs = self.grid[j] + dz * (torch.rand(B, M // 2) - 0.5)
                zt = torch.where(term[:, None] > 0, r_term[:, None] + math.sqrt(cfg.eps_T) * torch.randn(B, M // 2), r[:, None] + cfg.gamma * zs)
                z = torch.cat([z[:, : M - M // 2], zt], dim=1)
            zb = z if z.dim() == 2 else z.expand(B, M)
            u = (zb - r[:, None]) / cfg.gamma
            # the fields live on [lo, hi]; outside it the return density is taken as 0 (the Fourier embedding is
            # periodic with period 4, so a network value there would be a wrapped-around copy, not an extrapolation)
            if cfg.target_eval == "grid":
                f_next = interp_on_grid(f_next_grid[idx, :, a_star], u, self.lo, self.hi)
                g_grid = self.g_tgt.at_action(ph_g, self.g_tgt.grid_embedding(self.grid), a_star)
                g_next = interp_on_grid(g_grid, u, self.lo, self.hi)
            else:
                inside = ((u >= self.lo) & (u <= self.hi)).to(u.dtype)
                f_next = self.f_tgt.at_action(ph_f, self.f_tgt.embed_z(u), a_star) * inside
                g_next = self.g_tgt.at_action(ph_g, self.g_tgt.embed_z(u), a_star) * inside
            y_f, y_g = bellman_field_targets(f_next, g_next, zb, r, term, cfg.gamma, cfg.eps_T, terminal_returns=r_term)
        pf = self.f.at_action(self.f.phi(obs), self.f.embed_z(z), a)
        pg = self.g.at_action(self.g.phi(obs), self.g.embed_z(z), a)
        loss = (pf - y_f).pow(2).mean() + cfg.grad_weight * (pg - y_g).pow(2).mean()
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        return loss.item()

    def sync_target(self) -> None:
        """Hard copy online -> target for both fields."""
        self.f_tgt.load_state_dict(self.f.state_dict())
        self.g_tgt.load_state_dict(self.g.state_dict())

    @torch.no_grad()
    def return_density(self, obs: Tensor, action: int) -> tuple[Tensor, Tensor]:
        """(raw return grid, density in raw units f / kappa) for plotting."""
        fz = self.f.on_grid(obs[None], self.grid)[0, :, action]
        return self.cfg.center + self.cfg.scale * self.grid, fz / self.cfg.scale

    @torch.no_grad()
    def sample_returns(self, obs: Tensor, action: int, n: int = 1000, steps: int = 500, generator=None) -> Tensor:
        """Return samples by Bellman Diffusion Dynamics in z~ (docs/bellman.md, option for risk measures), raw units."""
        from agm.methods.bellman.dynamics import BellmanDynamics

        o = obs[None].expand(n, -1)
        f = lambda z: self.f(o, z[:, 0])[:, action]
        g = lambda z: self.g(o, z[:, 0])[:, action : action + 1]  # d/dz-field in normalised units
        z0 = (torch.rand(n, 1, generator=generator) * 2 - 1)
        z = BellmanDynamics(steps=steps, rel_step=0.02, drift_clip=10.0).sample(g, z0, f, generator=generator)
        return self.cfg.center + self.cfg.scale * z[:, 0]
