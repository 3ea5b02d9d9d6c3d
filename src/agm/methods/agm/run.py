"""AGM's recipe: how the shared run machinery (:mod:`agm.training.recipe`) loads its data, builds it and samples it.

The functions below are the library's high-level API for AGM and the ``agm train|sample|eval`` commands:

    cfg = load_config("toy", ["method=baseline"])
    train(cfg, "runs/base")            # or resume("runs/base")
    x = sample_run("runs/base", n=1000)
    evaluate_run("runs/base")
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from agm.errors import ConfigError
from agm.methods.agm.config import BUILTIN_DIR, Config, load_config
from agm.methods.agm.model import build_drift, build_method, generate
from agm.training import recipe as runner
from agm.training.recipe import DataBundle, Recipe


def _is_image_data(cfg: Config) -> bool:
    """Image sets: a built-in image set name, a folder, or an .npz file (see agm.data.images)."""
    from agm.data.images import IMAGE_SETS

    path = cfg.data.path
    if cfg.data.name in IMAGE_SETS:
        return True
    return path is not None and (Path(path).is_dir() or Path(path).suffix == ".npz")


class AGMRecipe(Recipe):
    name = "agm"
    config_cls = Config
    builtin_dir = BUILTIN_DIR
    default_config = "default"
    description = ("AGM (arXiv 2605.14631): bridge matching whose per-sample drift loss is re-weighted by importance weights "
                   "from a small learned potential V_phi; method=baseline is the drift-only control. See docs/agm.md.")
    sample_options = {
        "steps": (int, None, "integration steps (default: the run's sample.steps)"),
        "sampler": (str, None, "em | euler | heun (default: the run's sample.method; ODE samplers need path.sigma=0)"),
    }

    def load_config(self, source: Any = None, overrides: Any = ()) -> Config:
        return load_config(source if source is not None else self.default_config, overrides)

    def config_from_run(self, run_dir: Path) -> Config:
        from agm.errors import CheckpointError

        path = Path(run_dir) / "config.yaml"
        if not path.exists():
            raise CheckpointError(f"run directory {run_dir} has no config.yaml")
        return load_config(path)

    def load_data(self, cfg: Config) -> DataBundle:
        from agm.data.toy import make_toy

        if _is_image_data(cfg):
            from agm.data.images import load_image_data

            train_x, test_x = load_image_data(cfg.data, seed=cfg.seed)
            files = [cfg.data.path] if cfg.data.path is not None else []
            return DataBundle(train_x, test_x, {"data_shape": list(train_x.shape[1:])}, files)
        if cfg.data.name == "file" or cfg.data.path is not None:
            if cfg.data.path is None:
                raise ConfigError("data.name='file' needs data.path (a .npy or .csv file of shape (N, D))")
            d = cfg.data
            train_x, test_x, tr, names = d.load_table(cfg.seed)
            meta = {"data_shape": list(train_x.shape[1:]), "columns": names}
            return DataBundle(train_x, test_x, meta, [d.path], tr)
        train_x = make_toy(cfg.data.name, cfg.data.n_train, seed=cfg.seed)
        test_x = make_toy(cfg.data.name, cfg.data.n_test, seed=cfg.seed + 10_000)
        return DataBundle(train_x, test_x, {"data_shape": list(train_x.shape[1:])})

    def build(self, cfg: Config, meta: dict[str, Any]):
        method, _ = build_method(cfg, tuple(meta["data_shape"]))
        return method

    def lrs(self, cfg: Config) -> dict[str, float] | None:
        has_potential = cfg.method in ("agm", "time_weight", "agm_path")  # the arms with a learned scalar (V_phi or u(t))
        return {"potential": cfg.potential.lr} if (has_potential and cfg.potential.lr is not None) else None

    def run_info(self, cfg: Config, method: Any, data: DataBundle) -> dict[str, Any]:
        nets = method.networks()
        count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
        n_train = data.train.shape[0] if isinstance(data.train, Tensor) else None
        return {
            "n_train": n_train,
            "potential_param_ratio": count(nets["potential"]) / count(nets["drift"]) if "potential" in nets else None,
            "drift_params": count(nets["drift"]),
        }

    def sampler_networks(self, cfg: Config, meta: dict[str, Any]) -> dict[str, nn.Module]:
        return {"drift": build_drift(cfg, tuple(meta["data_shape"]))}  # V_phi is never built for sampling

    def sample(self, nets: dict[str, nn.Module], cfg: Config, meta: dict[str, Any], n: int, *, generator: torch.Generator,
               device: torch.device, steps: int | None = None, sampler: str | None = None) -> Tensor:
        steps = cfg.sample.steps if steps is None else steps
        if isinstance(steps, bool) or not isinstance(steps, int) or steps <= 0:
            raise ConfigError(f"steps={steps!r} must be an integer > 0")
        method = sampler or cfg.sample.method
        from agm.errors import check_choice

        check_choice("sampler", method, ("em", "euler", "heun"))
        if method != "em" and cfg.path.sigma > 0:
            raise ConfigError(
                f"sampler={method!r} integrates dx = f dt, which carries the data marginals only when path.sigma=0 "
                f"(this run has path.sigma={cfg.path.sigma}); use sampler='em'"
            )
        sigma = cfg.path.sigma if cfg.sample.sigma is None else cfg.sample.sigma
        return generate(nets["drift"], n, tuple(meta["data_shape"]), sigma=sigma, steps=steps, method=method,
                        generator=generator, device=device)


RECIPE = AGMRecipe()


# ---- the API (thin wrappers over agm.training.recipe) -------------------------------------------------------
def load_data(cfg: Config) -> tuple[Tensor, Tensor]:
    """(train, test) tensors for cfg.data, in model space (user files standardised by default)."""
    b = RECIPE.load_data(cfg)
    return b.train, b.test


def train(cfg: Config, out_dir: str | Path, *, data: tuple[Tensor, Tensor] | None = None, overwrite: bool = False) -> dict[str, Any]:
    """Train a new run into ``out_dir`` (must be empty or absent unless ``overwrite``). Returns run.json's content."""
    bundle = None
    if data is not None:
        bundle = DataBundle(data[0], data[1], {"data_shape": list(data[0].shape[1:])})
    return runner.train_run(RECIPE, cfg, out_dir, overwrite=overwrite, data=bundle)


def load_run_config(run_dir: str | Path) -> Config:
    runner.read_run(run_dir, RECIPE)
    return RECIPE.config_from_run(Path(run_dir))


def resume(run_dir: str | Path, steps: int | None = None) -> int:
    """Continue a run from its newest checkpoint to cfg.train.steps (or ``steps``); exact on the CPU."""
    return runner.resume_run(RECIPE, run_dir, steps)


def load_sampler_drift(run_dir: str | Path, device: str = "cpu", *, step: int | None = None) -> tuple[nn.Module, Config, list[int]]:
    """The EMA drift of a run (V_phi is neither loaded nor built), its config and data shape; ``step`` picks a kept
    checkpoint other than the newest."""
    nets, cfg, meta = runner.load_networks(RECIPE, run_dir, device, step=step)
    return nets["drift"], cfg, list(meta["data_shape"])


def sample_run(run_dir: str | Path, n: int, *, steps: int | None = None, method: str | None = None, seed: int = 0,
               device: str = "auto") -> Tensor:
    """n samples from a run's EMA drift (Euler-Maruyama, or an ODE sampler for sigma = 0), in data units."""
    return runner.sample_run(RECIPE, run_dir, n, seed=seed, device=device, steps=steps, sampler=method)


def evaluate_run(run_dir: str | Path, data_path: str | None = None, *, n: int | None = None, seed: int = 0,
                 device: str = "auto") -> dict[str, float]:
    """Metrics of the run's samples against held-out data (or a given file); writes eval.json in the run."""
    return runner.evaluate_run(RECIPE, run_dir, data_path, n=n, seed=seed, device=device)
