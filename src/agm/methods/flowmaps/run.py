"""Flow maps' recipe: how the shared run machinery (:mod:`agm.training.recipe`) loads manifold data, builds the
flow map, samples it (checked on the manifold) and evaluates it with geodesic metrics. See docs/flowmaps.md.

    cfg = load_config(None, ["data.name=torus_wrapped", "method=progressive"])
    train(cfg, "runs/torus")                 # or resume("runs/torus")
    x = sample_run("runs/torus", 1000, steps=2)
    evaluate_run("runs/torus")
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from agm.errors import ConfigError, check_positive
from agm.manifolds import Manifold, make_manifold
from agm.methods.flowmaps.config import Config, load_config
from agm.methods.flowmaps.train import FlowMapMethod, build_flow_map, evaluate_samples, sample_flow_map, sample_mode
from agm.training import recipe as runner
from agm.training.recipe import DataBundle, Recipe

#: seeds of the built-in sets' draws: the data are the same for every run seed (the seed changes the model)
TRAIN_DATA_SEED, TEST_DATA_SEED = 0, 10_001


def manifold_from_meta(meta: dict[str, Any]) -> Manifold:
    kw = {k: meta[k] for k in ("prior_std", "head") if meta.get(k) is not None}
    return make_manifold(meta["manifold"], meta["dim"], **kw)


def load_manifold_data(cfg: Config) -> tuple[Manifold, Tensor, Tensor, dict[str, Any]]:
    """(manifold, train points, held-out points, facts for run.json) for cfg.data."""
    from agm.data.manifold import load_earth_events, load_torsion_angles, make_manifold_data
    from agm.manifolds import FlatTorus, Sphere

    d = cfg.data
    if d.path is None:
        m, train = make_manifold_data(d.name, d.n_train, seed=TRAIN_DATA_SEED)
        _, test = make_manifold_data(d.name, d.n_test, seed=TEST_DATA_SEED)
        return m, train, test, {"source": d.name}
    from agm.data.files import split

    if d.manifold == "sphere":
        x, m = load_earth_events(d.path, columns=d.columns or None), Sphere(2)
    else:
        x = load_torsion_angles(d.path, degrees=d.degrees, columns=d.columns or None)
        m = FlatTorus(x.shape[1])
    train, test = split(x, d.test_fraction, seed=cfg.seed)
    return m, train, test, {"source": str(d.path), "columns": list(d.columns)}


class FlowMapRecipe(Recipe):
    name = "flowmaps"
    config_cls = Config
    builtin_dir = None
    default_config = None
    description = ("Generalised flow maps on Riemannian manifolds (GFM, arXiv 2510.21608): few-step generation on the sphere, "
                   "the flat torus, SO(3) and the hyperbolic plane; method=rfm is the many-step Riemannian flow-matching baseline, "
                   "method=meanflow our Riemannian MeanFlow. Built-in sets: data.name=sphere_vmf|torus_wrapped|hyperbolic_mixture|"
                   "so3_mixture|earth_volcano|earth_earthquake|earth_flood|earth_fire; a user file: --data FILE "
                   "data.manifold=sphere|torus (never standardised). See docs/flowmaps.md.")
    sample_options = {
        "steps": (int, None, "network evaluations: flow-map steps (map) or Euler steps (ode) (default: the run's sample.steps)"),
        "mode": (str, None, "auto | map | ode (default: the run's sample.mode; auto = ode for rfm, map otherwise)"),
    }

    def load_config(self, source: Any = None, overrides: Any = ()) -> Config:
        return load_config(source, overrides)

    def config_from_run(self, run_dir: Path) -> Config:
        from agm.errors import CheckpointError

        path = Path(run_dir) / "config.yaml"
        if not path.exists():
            raise CheckpointError(f"run directory {run_dir} has no config.yaml")
        return load_config(path)

    def load_data(self, cfg: Config) -> DataBundle:
        if cfg.data.path is not None:
            cfg.data.path = str(Path(cfg.data.path).expanduser().resolve())  # config.yaml keeps the absolute path
        m, train, test, facts = load_manifold_data(cfg)
        m.check_point(train, "data")
        meta = {"data_shape": [m.ambient_dim], "manifold": m.name, "dim": m.dim, "prior_std": getattr(m, "prior_std", None),
                "head": getattr(m, "head", None), "n_train": int(train.shape[0]), "n_test": int(test.shape[0]), **facts}
        files = [cfg.data.path] if cfg.data.path is not None else []
        return DataBundle(train, test, meta, files)

    def build(self, cfg: Config, meta: dict[str, Any]) -> FlowMapMethod:
        return FlowMapMethod(manifold_from_meta(meta), cfg)

    def sampler_networks(self, cfg: Config, meta: dict[str, Any]) -> dict[str, nn.Module]:
        return {"flow_map": build_flow_map(manifold_from_meta(meta), cfg)}

    def run_info(self, cfg: Config, method: Any, data: DataBundle) -> dict[str, Any]:
        return {"params": sum(p.numel() for p in method.flow_map.parameters())}

    def sample(self, nets: dict[str, nn.Module], cfg: Config, meta: dict[str, Any], n: int, *, generator: torch.Generator,
               device: torch.device, steps: int | None = None, mode: str | None = None) -> Tensor:
        steps = cfg.sample.steps if steps is None else steps
        check_positive("steps", steps, integer=True)
        return sample_flow_map(nets["flow_map"], n, steps, mode=sample_mode(cfg, mode), generator=generator, device=device)

    def evaluate(self, cfg: Config, samples: Tensor, reference: Tensor, meta: dict[str, Any], seed: int = 0) -> dict[str, Any]:
        """Geodesic MMD^2 (median bandwidth of the reference, and a quarter of it) and geodesic W2 against the held-out
        split (or --data: points in ambient coordinates, as 'agm flowmaps sample' writes them)."""
        from agm.metrics.geodesic import median_geodesic_distance

        m = manifold_from_meta(meta)
        m.check_point(reference, "reference")
        h = median_geodesic_distance(m, reference, max_samples=cfg.eval.max_samples, seed=seed)
        out = evaluate_samples(m, samples, reference, bandwidth=h, seed=seed, max_samples=cfg.eval.max_samples)
        return {**out, "bandwidth": h, "n_samples": int(samples.shape[0]), "n_reference": int(reference.shape[0])}

    def eval_samples(self, cfg: Config) -> int:
        return cfg.eval.n_samples


RECIPE = FlowMapRecipe()


# ---- the API (thin wrappers over agm.training.recipe) -------------------------------------------------------
def train(cfg: Config, out_dir: str | Path, *, overwrite: bool = False) -> dict[str, Any]:
    """Train a new run into ``out_dir`` (absent or empty unless ``overwrite``); returns run.json's content."""
    return runner.train_run(RECIPE, cfg, out_dir, overwrite=overwrite)


def resume(run_dir: str | Path, steps: int | None = None) -> int:
    """Continue a run from its newest checkpoint to cfg.train.steps (or ``steps``); exact on the CPU."""
    return runner.resume_run(RECIPE, run_dir, steps)


def sample_run(run_dir: str | Path, n: int, *, steps: int | None = None, mode: str | None = None, seed: int = 0,
               device: str = "auto") -> Tensor:
    """n samples (ambient coordinates, each checked on the manifold) of a run's EMA flow map."""
    return runner.sample_run(RECIPE, run_dir, n, seed=seed, device=device, steps=steps, mode=mode)


def evaluate_run(run_dir: str | Path, data_path: str | None = None, *, n: int | None = None, steps: int | None = None,
                 mode: str | None = None, seed: int = 0, device: str = "auto") -> dict[str, Any]:
    """Geodesic metrics of the run's samples against its held-out split (or ``data_path``); writes eval.json."""
    opts = {k: v for k, v in (("steps", steps), ("mode", mode)) if v is not None}
    return runner.evaluate_run(RECIPE, run_dir, data_path, n=n, seed=seed, device=device, **opts)


def load_flow_map(run_dir: str | Path, device: str = "cpu"):
    """The EMA flow map of a run (eval mode)."""
    nets, _, _ = runner.load_networks(RECIPE, run_dir, device)
    return nets["flow_map"]


__all__ = ["RECIPE", "FlowMapRecipe", "load_config", "train", "resume", "sample_run", "evaluate_run", "load_flow_map",
           "load_manifold_data", "manifold_from_meta", "ConfigError"]
