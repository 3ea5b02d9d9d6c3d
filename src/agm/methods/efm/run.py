"""``agm efm train|sample|eval``: energy-weighted flow matching through the shared run machinery.

EFM (arXiv 2503.04975, eq. 4.3, Theorem 4.3) fits a velocity whose flow carries N(0, I) to the tilted law
q ∝ p exp(-beta E), with p known only through samples (a built-in set or the user's file ``data.path``) and a
configured energy E (``energy.*``, written in data units). The rows of the training tensor are [x, E(x)]: the
energy of every training point is evaluated once, in data units, before training (user data are standardised
for the network; E sees the original units). Evaluation compares samples with exact samples of q where q is
known in closed form (``data.name`` gauss2d / mixture1d), otherwise with the held-out rows of p resampled in
proportion to exp(-beta E) (a self-normalised importance resample; its ESS is reported). docs/efm_qipo.md.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from agm.errors import ConfigError, DataError
from agm.methods.efm.config import BUILTIN_DIR, TILT_SETS, EFMConfig
from agm.methods.efm.efm import EnergyWeightedFlowMatching, effective_sample_size, evaluate_energy, linear_energy, quadratic_energy
from agm.training.recipe import DataBundle, Recipe

# the built-in tilt problems: p and its energy (docs/efm_qipo.md, "Closed forms")
GAUSS2D = {"m": [1.0, -0.5], "S": [[1.0, 0.3], [0.3, 0.5]], "A": [[1.5, 0.0], [0.0, 0.5]], "c": [-1.0, 1.0]}
MIXTURE1D = {"weights": [0.5, 0.5], "means": [[-2.0], [2.0]], "covs": [[[0.25]], [[0.25]]], "A": [[0.5]], "c": [1.0]}


def sample_builtin(name: str, n: int, generator: torch.Generator) -> Tensor:
    """n samples of p for a built-in tilt set (gauss2d: N(m, S); mixture1d: 1/2 N(-2, 0.5^2) + 1/2 N(2, 0.5^2))."""
    if name == "gauss2d":
        m, S = torch.tensor(GAUSS2D["m"]), torch.tensor(GAUSS2D["S"])
        return m + torch.randn(n, 2, generator=generator) @ torch.linalg.cholesky(S).T
    comp = torch.randint(0, 2, (n,), generator=generator)
    return torch.tensor(MIXTURE1D["means"])[comp] + 0.5 * torch.randn(n, 1, generator=generator)


def exact_tilt_samples(name: str, beta: float, n: int, generator: torch.Generator) -> Tensor:
    """n exact samples of q ∝ p exp(-beta E) for a built-in tilt set (closed forms of agm.methods.efm.efm)."""
    from agm.methods.efm.efm import gaussian_tilt, gmm_quadratic_tilt

    if name == "gauss2d":
        mq, Sq = gaussian_tilt(torch.tensor(GAUSS2D["m"]), torch.tensor(GAUSS2D["S"]), torch.tensor(GAUSS2D["A"]),
                               torch.tensor(GAUSS2D["c"]), beta)
        return (mq + torch.randn(n, 2, generator=generator, dtype=torch.float64) @ torch.linalg.cholesky(Sq).T).float()
    wq, mq, Sq = gmm_quadratic_tilt(torch.tensor(MIXTURE1D["weights"]), torch.tensor(MIXTURE1D["means"]),
                                    torch.tensor(MIXTURE1D["covs"]), torch.tensor(MIXTURE1D["A"]), torch.tensor(MIXTURE1D["c"]), beta)
    comp = torch.multinomial(wq, n, replacement=True, generator=generator)
    return (mq[comp] + Sq[comp, :, 0].sqrt() * torch.randn(n, 1, generator=generator, dtype=torch.float64)).float()


def build_energy(cfg: EFMConfig, dim: int):
    """The configured energy E(x) (data units); the built-in tilt sets supply A and c when they are null."""
    e = cfg.energy
    if e.kind == "linear":
        g = torch.tensor(e.g, dtype=torch.float32).reshape(-1)
        if g.shape != (dim,):
            raise ConfigError(f"energy.g has {g.numel()} entries; the data have D={dim} columns")
        return linear_energy(g)
    builtin = GAUSS2D if cfg.data.name == "gauss2d" else MIXTURE1D if cfg.data.name == "mixture1d" else {}
    A = torch.tensor(e.A if e.A is not None else builtin["A"], dtype=torch.float32)
    c = torch.tensor(e.c if e.c is not None else builtin["c"], dtype=torch.float32).reshape(-1)
    if A.dim() == 1:
        A = torch.diag(A)
    if A.shape != (dim, dim) or c.shape != (dim,):
        raise ConfigError(f"energy.A has shape {tuple(A.shape)} and energy.c {tuple(c.shape)}; the data have D={dim} "
                          f"columns, so accepted: a {dim}x{dim} matrix (or {dim} diagonal entries) and {dim} entries")
    return quadratic_energy(A, c)


class EFMMethod:
    """Trainer protocol: networks {'velocity'}, EMA of it (sampled from), loss = the EFM loss of eq. 4.3 on rows [x, E]."""

    ema_names = ("velocity",)

    def __init__(self, cfg: EFMConfig, dim: int) -> None:
        from agm.nets import TimeMLP

        self.velocity = TimeMLP(dim, hidden=cfg.model.hidden, depth=cfg.model.depth)
        self.objective = EnergyWeightedFlowMatching(None, cfg.energy.beta, normalization=cfg.energy.normalization)

    def networks(self) -> dict[str, nn.Module]:
        return {"velocity": self.velocity}

    def loss(self, batch: Tensor, step: int, generator: torch.Generator) -> tuple[Tensor, dict]:
        out = self.objective.loss(self.velocity, batch[:, :-1], energy_values=batch[:, -1], generator=generator)
        return out.loss, {"loss": out.loss.detach(), "ess": out.ess}


class EFMRecipe(Recipe):
    name = "efm"
    config_cls = EFMConfig
    builtin_dir = BUILTIN_DIR
    default_config = None
    description = ("Energy-weighted flow matching (arXiv 2503.04975, eq. 4.3): flow matching towards q ∝ p exp(-beta E) "
                   "from samples of p (a built-in set or data.path) and a configured energy. See docs/efm_qipo.md.")
    sample_options = {
        "steps": (int, None, "ODE steps (default: the run's sample.steps)"),
        "sampler": (str, None, "euler | heun (default: the run's sample.method)"),
    }

    def load_data(self, cfg: EFMConfig) -> DataBundle:
        d, tr, files = cfg.data, None, []
        if d.name == "file":
            train_x, test_x, tr, names = d.load_table(cfg.seed)
            files = [d.path]
        elif d.name in TILT_SETS:
            g = torch.Generator().manual_seed(cfg.seed)
            train_x, test_x = sample_builtin(d.name, d.n_train, g), sample_builtin(d.name, d.n_test, g)
        else:
            from agm.data.toy import make_toy

            train_x, test_x = make_toy(d.name, d.n_train, seed=cfg.seed), make_toy(d.name, d.n_test, seed=cfg.seed + 10_000)
        if train_x.dim() != 2:
            raise DataError(f"EFM needs tabular data of shape (N, D); got {tuple(train_x.shape)}")
        energy = build_energy(cfg, train_x.shape[1])
        units = tr.inverse(train_x) if tr is not None else train_x
        e = evaluate_energy(energy, units)
        ess = float(effective_sample_size(torch.softmax(-cfg.energy.beta * e.double(), 0)))
        meta = {"data_shape": [train_x.shape[1]], "train_ess": ess, "n_train": int(train_x.shape[0])}
        return DataBundle(torch.cat([train_x, e[:, None].to(train_x.dtype)], 1), test_x, meta, files, tr)

    def build(self, cfg: EFMConfig, meta: dict[str, Any]) -> EFMMethod:
        return EFMMethod(cfg, int(meta["data_shape"][0]))

    def run_info(self, cfg: EFMConfig, method: EFMMethod, data: DataBundle) -> dict[str, Any]:
        return {"params": sum(p.numel() for p in method.velocity.parameters())}

    def sample(self, nets: dict[str, nn.Module], cfg: EFMConfig, meta: dict[str, Any], n: int, *, generator: torch.Generator,
               device: torch.device, steps: int | None = None, sampler: str | None = None) -> Tensor:
        from agm.errors import check_choice
        from agm.samplers import ODESampler

        steps = cfg.sample.steps if steps is None else steps
        if isinstance(steps, bool) or not isinstance(steps, int) or steps <= 0:
            raise ConfigError(f"steps={steps!r} must be an integer > 0")
        method = sampler or cfg.sample.method
        check_choice("sampler", method, ("euler", "heun"))
        net = nets["velocity"]
        x0 = torch.randn(n, int(meta["data_shape"][0]), generator=generator, device=device)
        return ODESampler(steps, method).sample(lambda x, t: net(x, t), x0)

    def evaluate(self, cfg: EFMConfig, samples: Tensor, reference: Tensor, meta: dict[str, Any], seed: int = 0) -> dict[str, float]:
        """Metrics (agm.metrics.evaluate) against exact samples of q (built-in tilt sets) or the reference rows of p
        resampled in proportion to exp(-beta E) (self-normalised importance resampling); all in data units."""
        from agm.metrics import evaluate

        g = torch.Generator().manual_seed(seed + 77)
        n_ref = max(samples.shape[0], cfg.eval.max_samples)
        if cfg.data.name in TILT_SETS:
            ref = exact_tilt_samples(cfg.data.name, cfg.energy.beta, n_ref, g)
            out = {"reference": f"exact samples of the tilted law ({cfg.data.name}, beta={cfg.energy.beta:g})"}
            if cfg.data.name == "gauss2d":
                from agm.methods.efm.efm import gaussian_tilt

                mq, Sq = gaussian_tilt(torch.tensor(GAUSS2D["m"]), torch.tensor(GAUSS2D["S"]), torch.tensor(GAUSS2D["A"]),
                                       torch.tensor(GAUSS2D["c"]), cfg.energy.beta)
                x = samples.double()
                out["mean_err"] = float((x.mean(0) - mq).norm())
                out["cov_err_fro"] = float((torch.cov(x.T) - Sq).norm())
        else:
            e = evaluate_energy(build_energy(cfg, reference.shape[1]), reference)
            w = torch.softmax(-cfg.energy.beta * e.double(), 0)
            ref = reference[torch.multinomial(w, n_ref, replacement=True, generator=g)]
            out = {"reference": "held-out rows resampled in proportion to exp(-beta E)",
                   "reference_ess": float(effective_sample_size(w))}
        out.update(evaluate(samples, ref, max_samples=cfg.eval.max_samples, seed=seed))
        return out


RECIPE = EFMRecipe()

__all__ = ["RECIPE", "EFMRecipe", "EFMMethod", "build_energy", "exact_tilt_samples", "sample_builtin"]
