"""Offline RL transition data sets in the D4RL layout, with loaders for local files (no download).

D4RL layout (Fu et al. 2020, "D4RL: Datasets for Deep Data-Driven RL"): flat arrays of N transitions

    observations (N, obs_dim), actions (N, act_dim), rewards (N,), next_observations (N, obs_dim),
    terminals (N,) bool (true environment termination: no bootstrap), timeouts (N,) bool (time-limit cut).

Loaders: ``.npz`` (agm's own format, the same keys plus optional ``meta_*`` entries), D4RL ``.hdf5``
(needs ``h5py``), and Minari data set folders / ``main_data.hdf5`` files (episode groups with
``observations`` of length T+1, ``actions``, ``rewards``, ``terminations``, ``truncations``; read with
``h5py``, Minari itself is not needed).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from agm.errors import DataError

REQUIRED_KEYS = ("observations", "actions", "rewards", "next_observations", "terminals", "timeouts")
D4RL_HINT = (
    "D4RL files (e.g. hopper-medium-v2.hdf5) are downloaded from the D4RL project "
    "(https://github.com/Farama-Foundation/D4RL, URLs in d4rl/infos.py) or Minari "
    "(`minari download mujoco/hopper/medium-v0`, stored under ~/.minari/datasets); agm never downloads them"
)


@dataclass
class OfflineDataset:
    """A validated D4RL-style transition set (tensors float32; terminals/timeouts bool) plus metadata."""

    observations: Tensor
    actions: Tensor
    rewards: Tensor
    next_observations: Tensor
    terminals: Tensor
    timeouts: Tensor
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        arrays = {k: getattr(self, k) for k in REQUIRED_KEYS}
        validated = validate_arrays(arrays)
        for k, v in validated.items():
            setattr(self, k, v)

    def __len__(self) -> int:
        return int(self.observations.shape[0])

    @property
    def obs_dim(self) -> int:
        return int(self.observations.shape[1])

    @property
    def act_dim(self) -> int:
        return int(self.actions.shape[1])

    def episode_returns(self) -> np.ndarray:
        """Undiscounted return of each episode (episodes end at terminals | timeouts; a trailing partial one is kept)."""
        ends = (self.terminals | self.timeouts).numpy()
        r = self.rewards.numpy().astype(np.float64)
        out, acc = [], 0.0
        for ri, e in zip(r, ends):
            acc += ri
            if e:
                out.append(acc)
                acc = 0.0
        if not ends[-1]:
            out.append(acc)
        return np.asarray(out)

    def to_dict(self) -> dict[str, np.ndarray]:
        """The six D4RL arrays as numpy."""
        return {k: getattr(self, k).numpy() for k in REQUIRED_KEYS}

    def save_npz(self, path: str | Path) -> Path:
        """Write the arrays and the metadata (JSON under key ``meta_json``) to a compressed .npz."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(path, **self.to_dict(), meta_json=np.array(json.dumps(self.meta)))
        return path


def validate_arrays(arrays: dict) -> dict[str, Tensor]:
    """Check keys, shapes, lengths and finiteness of D4RL arrays; return tensors (DataError otherwise)."""
    missing = [k for k in REQUIRED_KEYS if k not in arrays or arrays[k] is None]
    if missing:
        raise DataError(f"dataset is missing keys {missing}; accepted: a mapping with keys {list(REQUIRED_KEYS)}")
    out: dict[str, Tensor] = {}
    for k in REQUIRED_KEYS:
        v = arrays[k]
        v = torch.as_tensor(np.asarray(v.detach().cpu() if isinstance(v, Tensor) else v))
        if k in ("terminals", "timeouts"):
            if v.dim() == 2 and v.shape[1] == 1:
                v = v[:, 0]
            if v.dim() != 1:
                raise DataError(f"dataset['{k}'] has shape {tuple(v.shape)}; accepted: (N,) booleans")
            out[k] = v.bool()
            continue
        if v.dtype == torch.bool or not (v.is_floating_point() or v.dtype in (torch.int32, torch.int64, torch.int16, torch.int8, torch.uint8)):
            raise DataError(f"dataset['{k}'] has dtype {v.dtype}; accepted: real numbers")
        v = v.float()
        if k == "rewards":
            if v.dim() == 2 and v.shape[1] == 1:
                v = v[:, 0]
            if v.dim() != 1:
                raise DataError(f"dataset['rewards'] has shape {tuple(v.shape)}; accepted: (N,)")
        else:
            if v.dim() == 1:
                v = v[:, None]
            if v.dim() != 2:
                raise DataError(f"dataset['{k}'] has shape {tuple(v.shape)}; accepted: (N, dim)")
        bad = ~torch.isfinite(v)
        if bad.any():
            row = int(bad.reshape(v.shape[0], -1).any(1).nonzero()[0, 0])
            raise DataError(f"dataset['{k}'] has non-finite values (first at row {row}); accepted: finite numbers")
        out[k] = v
    lengths = {k: int(v.shape[0]) for k, v in out.items()}
    if len(set(lengths.values())) != 1:
        raise DataError(f"dataset arrays have mismatched lengths {lengths}; accepted: the same number of transitions N for every key")
    if lengths["observations"] == 0:
        raise DataError("dataset has 0 transitions; accepted: N >= 1")
    if out["observations"].shape[1] != out["next_observations"].shape[1]:
        raise DataError(
            f"dataset observations have dim {out['observations'].shape[1]} but next_observations dim "
            f"{out['next_observations'].shape[1]}; accepted: equal dims"
        )
    return out


def _read_meta(z) -> dict:
    if "meta_json" in z.files:
        return json.loads(str(z["meta_json"]))
    return {}


def load_npz(path: str | Path) -> OfflineDataset:
    """Load agm's .npz format (the six D4RL keys, optional ``meta_json``)."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"dataset path {str(path)!r} does not exist; accepted: an existing .npz/.hdf5 file or Minari folder. {D4RL_HINT}")
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in REQUIRED_KEYS if k in z.files}
        meta = _read_meta(z)
    return OfflineDataset(**_complete(arrays, path), meta=meta)


def _complete(arrays: dict, path: Path) -> dict:
    missing = [k for k in REQUIRED_KEYS if k not in arrays]
    if missing:
        raise DataError(f"dataset file {str(path)!r} is missing keys {missing}; accepted: a file with keys {list(REQUIRED_KEYS)}")
    return arrays


def _h5py():
    try:
        import h5py  # noqa: F401
    except ImportError as err:  # pragma: no cover - h5py is installed in the dev venv
        raise DataError("reading .hdf5 files needs the h5py package (pip install h5py)") from err
    import h5py

    return h5py


def load_d4rl_hdf5(path: str | Path) -> OfflineDataset:
    """Load a D4RL .hdf5 file (flat arrays; ``next_observations`` is rebuilt from ``observations`` if absent,
    as in ``d4rl.qlearning_dataset``: a transition whose successor lies in the next episode is dropped)."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"dataset path {str(path)!r} does not exist. {D4RL_HINT}")
    h5py = _h5py()
    with h5py.File(path, "r") as f:
        arrays = {k: np.asarray(f[k]) for k in REQUIRED_KEYS if k in f}
    if "next_observations" not in arrays and "observations" in arrays:
        obs = arrays["observations"]
        n = obs.shape[0]
        term = arrays.get("terminals", np.zeros(n, bool)).astype(bool)
        tout = arrays.get("timeouts", np.zeros(n, bool)).astype(bool)
        keep = np.arange(n - 1)[~tout[:-1]]  # drop time-limit ends: their successor is a reset state
        arrays = {
            "observations": obs[keep], "actions": arrays["actions"][keep], "rewards": arrays["rewards"][keep],
            "next_observations": obs[keep + 1], "terminals": term[keep], "timeouts": np.zeros(len(keep), bool),
        }
    if "timeouts" not in arrays and "terminals" in arrays:
        arrays["timeouts"] = np.zeros_like(np.asarray(arrays["terminals"]), dtype=bool)
    return OfflineDataset(**_complete(arrays, path), meta={"source": str(path), "format": "d4rl"})


def load_minari(path: str | Path) -> OfflineDataset:
    """Load a Minari data set from its folder (``<folder>/data/main_data.hdf5``) or the .hdf5 file itself.

    Each episode group holds observations (T+1, obs_dim), actions (T, act_dim), rewards (T,),
    terminations (T,), truncations (T,); converted to D4RL transitions (timeouts = truncations).
    """
    path = Path(path)
    file = path / "data" / "main_data.hdf5" if path.is_dir() else path
    if not file.exists():
        raise DataError(f"Minari data file {str(file)!r} does not exist. {D4RL_HINT}")
    h5py = _h5py()
    cols: dict[str, list] = {k: [] for k in REQUIRED_KEYS}
    with h5py.File(file, "r") as f:
        names = sorted((k for k in f.keys() if k.startswith("episode_")), key=lambda s: int(s.split("_")[1]))
        if not names:
            raise DataError(f"Minari file {str(file)!r} has no 'episode_<i>' groups; accepted: a Minari main_data.hdf5")
        for name in names:
            ep = f[name]
            need = ("observations", "actions", "rewards", "terminations", "truncations")
            miss = [k for k in need if k not in ep]
            if miss:
                raise DataError(f"Minari episode {name!r} in {str(file)!r} is missing keys {miss}; accepted keys: {list(need)}")
            if not isinstance(ep["observations"], h5py.Dataset):
                raise DataError(f"Minari episode {name!r} has dict observations; accepted: a flat Box observation array")
            obs = np.asarray(ep["observations"])
            T = np.asarray(ep["actions"]).shape[0]
            if obs.shape[0] != T + 1:
                raise DataError(f"Minari episode {name!r} has {obs.shape[0]} observations for {T} actions; accepted: T+1 observations")
            cols["observations"].append(obs[:-1])
            cols["next_observations"].append(obs[1:])
            cols["actions"].append(np.asarray(ep["actions"]))
            cols["rewards"].append(np.asarray(ep["rewards"]))
            cols["terminals"].append(np.asarray(ep["terminations"]).astype(bool))
            cols["timeouts"].append(np.asarray(ep["truncations"]).astype(bool))
        root_attrs = {k: f.attrs[k] for k in f.attrs}
    arrays = {k: np.concatenate(v, 0) for k, v in cols.items()}
    meta = {"source": str(file), "format": "minari", "episodes": len(names)}
    env_id = _minari_env_id(file, root_attrs)
    if env_id is not None:
        meta["env_id"] = env_id
    return OfflineDataset(**arrays, meta=meta)


def _minari_env_id(file: Path, root_attrs: dict) -> str | None:
    """The gymnasium id in a Minari data set's ``env_spec`` (a JSON string): from ``metadata.json`` beside the data
    folder (Minari >= 0.4 writes <dataset>/metadata.json or <dataset>/data/metadata.json) or the HDF5 root attributes
    (older Minari). None when absent or unreadable."""
    candidates = [file.parent / "metadata.json", file.parent.parent / "metadata.json"]
    sources = [root_attrs] + [json.loads(c.read_text()) for c in candidates if c.exists()]
    for src in sources:
        spec = src.get("env_spec")
        if isinstance(spec, bytes):
            spec = spec.decode()
        if isinstance(spec, str):
            try:
                spec = json.loads(spec)
            except json.JSONDecodeError:
                continue
        if isinstance(spec, dict) and isinstance(spec.get("id"), str):
            return spec["id"]
    return None


def load_offline_dataset(path: str | Path) -> OfflineDataset:
    """Load by file type: .npz (agm), .hdf5/.h5 (D4RL flat arrays or a Minari main_data.hdf5), a Minari folder."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"dataset path {str(path)!r} does not exist; accepted: an existing .npz/.hdf5 file or Minari folder. {D4RL_HINT}")
    if path.is_dir():
        return load_minari(path)
    suffix = path.suffix.lower()
    if suffix == ".npz":
        return load_npz(path)
    if suffix in (".hdf5", ".h5"):
        h5py = _h5py()
        with h5py.File(path, "r") as f:
            minari = any(k.startswith("episode_") for k in f.keys())
        return load_minari(path) if minari else load_d4rl_hdf5(path)
    raise DataError(f"dataset path {str(path)!r} has suffix {suffix!r}; accepted: .npz, .hdf5, .h5 or a Minari folder")


def check_env_compatible(dataset: OfflineDataset, env) -> None:
    """Raise DataError unless the data's observation/action dims equal the environment's Box spaces,
    and the actions lie within the action bounds (with a 1e-4 slack)."""
    obs_shape = tuple(env.observation_space.shape)
    act_shape = tuple(env.action_space.shape)
    if (dataset.obs_dim,) != obs_shape:
        raise DataError(f"dataset observations have shape (N, {dataset.obs_dim}) but the environment expects {obs_shape}; accepted: (N, {obs_shape[0] if obs_shape else '?'})")
    if (dataset.act_dim,) != act_shape:
        raise DataError(f"dataset actions have shape (N, {dataset.act_dim}) but the environment expects {act_shape}; accepted: (N, {act_shape[0] if act_shape else '?'})")
    low = torch.as_tensor(env.action_space.low, dtype=torch.float32)
    high = torch.as_tensor(env.action_space.high, dtype=torch.float32)
    a = dataset.actions
    if ((a < low - 1e-4) | (a > high + 1e-4)).any():
        raise DataError(
            f"dataset actions span [{float(a.min()):.4g}, {float(a.max()):.4g}] outside the environment bounds "
            f"[{low.tolist()}, {high.tolist()}]; accepted: actions within the bounds"
        )
