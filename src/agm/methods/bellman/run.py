"""Bellman Diffusion's recipe: ``agm bellman train|sample|eval`` through the shared run machinery.

    train    fit f ~ p and g ~ grad p by field matching (arXiv 2410.01796, Eqs. 8-11) on a built-in set or a
             user file (``data.path``, standardised by :func:`agm.data.files.load_user_data`), with the shared
             Trainer (checkpoints, exact resume, EMA, NaN guard, metrics.jsonl)
    sample   the Bellman Diffusion Dynamics dx = g dt + sqrt(f) dW (Eq. 13) from x0 ~ N(0, I) in standardised
             units, mapped back to data units; NaN/inf samples raise NonFiniteSampleError with their count
    eval     W2, MMD, energy distance, PRDC of the samples against the held-out split

The functions below are the Python API (thin wrappers over :mod:`agm.training.recipe`); docs/bellman.md.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from agm.errors import ConfigError
from agm.methods.bellman.config import BUILTIN_DIR, Config, load_config
from agm.training import recipe as runner
from agm.training.recipe import DataBundle, Recipe


def base_eps(cfg: Config, meta: dict[str, Any] | None = None) -> float:
    """The kernel variance of a run: ``field.eps`` (eps_rule=fixed) or Silverman's rule for the batch's n = B - 1
    partners in the kernel's dimension (d for the full kernel, 1 for the sliced one) on standardised data (var 1);
    docs/bellman.md."""
    f = cfg.field
    if f.eps_rule == "fixed":
        return float(f.eps)
    from agm.methods.bellman.fields import kernel_dim, silverman_eps

    if not meta or "data_shape" not in meta:
        raise ConfigError("field.eps_rule=silverman needs the data's dimension (run meta data_shape)")
    d = int(meta["data_shape"][0])
    n_rows = int(meta.get("n_train", cfg.train.batch_size))
    batch = min(int(cfg.train.batch_size), n_rows)
    return silverman_eps(max(batch - 1, 1), kernel_dim(f.kernel, d))


def eps_levels(cfg: Config, meta: dict[str, Any] | None = None) -> list[float]:
    """Absolute kernel variances of eps-conditioned fields (field.eps_levels times the base eps); [] for one eps."""
    base = base_eps(cfg, meta)
    return [float(m) * base for m in cfg.field.eps_levels]


def sample_levels(cfg: Config, meta: dict[str, Any] | None = None) -> list[float]:
    """The annealed sampler's kernel variances in order: sample.eps_schedule (multipliers) or every level, largest first."""
    base = base_eps(cfg, meta)
    mult = cfg.sample.eps_schedule or sorted(cfg.field.eps_levels, reverse=True)
    return [float(m) * base for m in mult]


def objective_from_config(cfg: Config, meta: dict[str, Any] | None = None):
    from agm.methods.bellman.fields import FieldMatching

    f = cfg.field
    return FieldMatching(eps=base_eps(cfg, meta), kernel=f.kernel, pairing=f.pairing, trace=f.trace, first_term=f.first_term,
                         n_slices=f.slices, n_proj=f.projections)


def sampler_from_config(cfg: Config, steps: int | None = None, rel_step: float | None = None, drift_clip: float | None = None,
                        step_size: float | None = None):
    from agm.methods.bellman.dynamics import BellmanDynamics

    s = cfg.sample
    return BellmanDynamics(steps=s.steps if steps is None else steps, rel_step=s.rel_step if rel_step is None else rel_step,
                           step_size=s.step_size if step_size is None else step_size, positivity=s.positivity,
                           drift_clip=s.drift_clip if drift_clip is None else drift_clip)


def sample_fields(nets: dict[str, nn.Module], cfg: Config, meta: dict[str, Any], x0: Tensor, *, generator: torch.Generator,
                  steps: int | None = None, rel_step: float | None = None, step_size: float | None = None,
                  drift_clip: float | None = None) -> Tensor:
    """Bellman Diffusion Dynamics from x0 (standardised units) with the fields ``nets`` ({'f', 'g'}): one eps, or the
    annealed schedule when the fields are eps-conditioned (field.eps_levels)."""
    sampler = sampler_from_config(cfg, steps, rel_step, drift_clip, step_size)
    f, g = nets["f"], nets["g"]
    if cfg.field.eps_levels:
        return sampler.sample_annealed(lambda u, e: g(u, e), x0, lambda u, e: f(u, e), sample_levels(cfg, meta), generator=generator)
    return sampler.sample(lambda u: g(u), x0, lambda u: f(u), generator=generator)


def row_moments(x: Tensor) -> dict[str, Any]:
    """n_train, and the mean and covariance of the (standardised) training rows, for ``sample.init=data_gaussian``."""
    x64 = x.double()
    cov = torch.cov(x64.T).reshape(x.shape[1], x.shape[1]) if x.shape[0] > 1 else torch.eye(x.shape[1], dtype=torch.float64)
    return {"n_train": int(x.shape[0]), "train_mean": x64.mean(0).tolist(), "train_cov": cov.tolist()}


def initial_points(cfg: Config, meta: dict[str, Any], n: int, *, generator: torch.Generator, device: Any = "cpu") -> Tensor:
    """x0 of the dynamics: N(0, I) (sample.init=normal) or N(mean, cov) of the training rows (data_gaussian; a small
    ridge 1e-6 I keeps the Cholesky factor defined for rank-deficient tables)."""
    dim = int(meta["data_shape"][0])
    x0 = torch.randn(n, dim, generator=generator, device=device)
    if cfg.sample.init == "normal":
        return x0
    if "train_cov" not in meta:
        raise ConfigError("sample.init=data_gaussian needs the training rows' moments in the run (trained before this option existed); "
                          "use sample.init=normal")
    cov = torch.tensor(meta["train_cov"], dtype=torch.float64) + 1e-6 * torch.eye(dim, dtype=torch.float64)
    chol = torch.linalg.cholesky(cov).to(x0)
    return torch.tensor(meta["train_mean"]).to(x0) + x0 @ chol.T


def fit_fields(cfg: Config, train_x: Tensor, *, device: str = "cpu") -> tuple[dict[str, nn.Module], dict[str, Any], list[dict]]:
    """Train the fields of ``cfg`` on in-memory rows ``train_x`` (already standardised) with the shared Trainer, no run
    folder (experiments). Returns ({'f', 'g'} EMA networks, meta, log records); sample with :func:`sample_fields`."""
    import dataclasses

    from agm.methods.bellman.fields import RowBatches
    from agm.training.trainer import Trainer

    meta = {"data_shape": [int(train_x.shape[1])], **row_moments(train_x)}
    batches = RowBatches(train_x, cfg.train.batch_size)
    torch.manual_seed(cfg.seed)
    method = RECIPE.build(cfg, meta).to(device)
    tcfg = dataclasses.replace(cfg.train, device=device, tensorboard=False, progress=False, ckpt_every=cfg.train.steps,
                               log_every=min(cfg.train.log_every, cfg.train.steps))
    trainer = Trainer(method, batches, tcfg, seed=cfg.seed)
    log = trainer.fit()
    nets = {k: (trainer.ema[k].model if k in trainer.ema else v) for k, v in method.networks().items()}
    return {k: v.eval() for k, v in nets.items()}, meta, log


class BellmanRecipe(Recipe):
    name = "bellman"
    config_cls = Config
    builtin_dir = BUILTIN_DIR
    default_config = None
    description = ("Bellman Diffusion (arXiv 2410.01796): a scalar field f ~ p and a gradient field g ~ grad p fitted by "
                   "field matching (Eqs. 8-11), sampled with the Bellman Diffusion Dynamics dx = g dt + sqrt(f) dW (Eq. 13). "
                   "See docs/bellman.md. Distributional RL: 'agm bellman rl'.")
    sample_options = {
        "steps": (int, None, "Euler-Maruyama steps of the dynamics (default: the run's sample.steps)"),
        "rel_step": (float, None, "step size eta = rel_step / max f(x0) (default: the run's sample.rel_step)"),
        "step_size": (float, None, "a fixed step size eta instead of rel_step (default: the run's sample.step_size)"),
        "drift_clip": (float, None, "bound on ||g|| per particle and step, standardised units (default: the run's sample.drift_clip)"),
    }

    def load_config(self, source: Any = None, overrides: Any = ()) -> Config:
        return load_config(source, overrides)

    def load_data(self, cfg: Config) -> DataBundle:
        """Train/test rows in standardised units; the training rows are drawn without replacement per batch
        (:class:`agm.methods.bellman.fields.RowBatches`)."""
        from agm.methods.bellman.fields import RowBatches

        b = self._load_rows(cfg)
        b.meta.update(row_moments(b.train))
        b.train = RowBatches(b.train, cfg.train.batch_size)
        return b

    def _load_rows(self, cfg: Config) -> DataBundle:
        from agm.data.toy import make_toy
        from agm.data.transforms import DataTransform

        d = cfg.data
        if d.name == "file" or d.path is not None:
            if d.path is None:
                raise ConfigError("data.name='file' needs data.path (a .npy or .csv file of shape (N, D))")
            train_x, test_x, tr, names = d.load_table(cfg.seed)
            return DataBundle(train_x, test_x, {"data_shape": list(train_x.shape[1:]), "columns": names}, [d.path], tr)
        train_x = make_toy(d.name, d.n_train, seed=cfg.seed)
        test_x = make_toy(d.name, d.n_test, seed=cfg.seed + 10_000)
        # built-in sets are standardised too (eps is a variance in standardised units), the transform kept in the run
        tr = DataTransform.fit(train_x, standardise=d.standardise, whiten=d.whiten)
        if tr.is_identity:
            return DataBundle(train_x, test_x, {"data_shape": list(train_x.shape[1:])})
        return DataBundle(tr.forward(train_x), tr.forward(test_x), {"data_shape": list(train_x.shape[1:])}, [], tr)

    def build(self, cfg: Config, meta: dict[str, Any]):
        from agm.methods.bellman.fields import FieldMethod

        return FieldMethod(int(meta["data_shape"][0]), objective_from_config(cfg, meta), hidden=cfg.field.hidden, depth=cfg.field.depth,
                           head=cfg.field.head, eps_levels=eps_levels(cfg, meta), scale=cfg.field.scale,
                           level_noise=cfg.field.level_noise)

    def run_info(self, cfg: Config, method: Any, data: DataBundle) -> dict[str, Any]:
        nets = method.networks()
        return {"params": {k: sum(p.numel() for p in v.parameters()) for k, v in nets.items()},
                "eps": base_eps(cfg, data.meta), "eps_levels": eps_levels(cfg, data.meta)}

    def sample(self, nets: dict[str, nn.Module], cfg: Config, meta: dict[str, Any], n: int, *, generator: torch.Generator,
               device: torch.device, steps: int | None = None, rel_step: float | None = None, step_size: float | None = None,
               drift_clip: float | None = None) -> Tensor:
        x0 = initial_points(cfg, meta, n, generator=generator, device=device)
        return sample_fields(nets, cfg, meta, x0, generator=generator, steps=steps, rel_step=rel_step, step_size=step_size,
                             drift_clip=drift_clip)


RECIPE = BellmanRecipe()


# ---- the API ----------------------------------------------------------------------------------------------------
def train(cfg: Config, out_dir: str | Path, *, overwrite: bool = False) -> dict[str, Any]:
    """Train a new run into ``out_dir``; returns run.json's content."""
    return runner.train_run(RECIPE, cfg, out_dir, overwrite=overwrite)


def resume(run_dir: str | Path, steps: int | None = None) -> int:
    """Continue a run from its newest checkpoint (exact on the CPU)."""
    return runner.resume_run(RECIPE, run_dir, steps)


def sample_run(run_dir: str | Path, n: int, *, seed: int = 0, device: str = "auto", **options: Any) -> Tensor:
    """n samples of a run's EMA fields in data units; NonFiniteSampleError when any sample is NaN/inf."""
    return runner.sample_run(RECIPE, run_dir, n, seed=seed, device=device, **options)


def evaluate_run(run_dir: str | Path, data_path: str | None = None, *, n: int | None = None, seed: int = 0, device: str = "auto",
                 **options: Any) -> dict[str, float]:
    """Metrics of a run's samples against its held-out split (or ``data_path``); writes eval.json."""
    return runner.evaluate_run(RECIPE, run_dir, data_path, n=n, seed=seed, device=device, **options)


__all__ = ["RECIPE", "BellmanRecipe", "train", "resume", "sample_run", "evaluate_run", "objective_from_config", "sampler_from_config",
           "base_eps", "eps_levels", "sample_levels", "sample_fields", "fit_fields", "initial_points", "row_moments"]
