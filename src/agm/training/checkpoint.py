"""Checkpoints as safetensors + JSON, written atomically; never pickle (loading must not run code).

Layout of a run directory:
    run.json                      marker: {"format": "agm-run", "version": 1, "data_shape": [...], ...}
    config.yaml                   resolved config
    metrics.jsonl                 one JSON object per logged step
    checkpoints/step-000123/      one complete checkpoint per directory
        networks.safetensors      trained networks, keys '<name>.<param>' (drift, potential, ...)
        ema.safetensors           EMA networks, keys '<name>.<param>' (sampling loads only this file)
        trainer.safetensors       optimiser tensors and RNG states
        state.json                step, optimiser param groups, sha256 of each file above
    checkpoints/latest            name of the newest complete checkpoint directory

A checkpoint directory is written under a temporary name and renamed into place (atomic on POSIX);
``latest`` is replaced atomically afterwards, so a crash at any point leaves the previous checkpoint
intact and pointed to. Files are verified against their sha256 on load.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from agm.errors import CheckpointError

RUN_FORMAT = "agm-run"
RUN_VERSION = 1


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file's bytes (read in 1 MiB chunks)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def atomic_write_text(path: Path, text: str) -> None:
    """Write text to a temp file in the same directory, fsync, then os.replace onto ``path`` (mode 0666 less the
    umask, as open() would give, not mkstemp's 0600)."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _flat(prefix: str, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {f"{prefix}.{k}": v.detach().contiguous().cpu() for k, v in state.items()}


def _unflat(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    n = len(prefix) + 1
    return {k[n:]: v for k, v in tensors.items() if k.startswith(prefix + ".")}


def optimizer_to_tensors(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split an optimiser state into tensors (for safetensors) and JSON-able metadata."""
    sd = opt.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for pid, st in sd["state"].items():
        for k, v in st.items():
            if torch.is_tensor(v):
                tensors[f"optim.{pid}.{k}"] = v.detach().contiguous().cpu()
            else:
                scalars.setdefault(str(pid), {})[k] = v
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def optimizer_from_tensors(opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    state: dict[int, dict[str, Any]] = {}
    for key, v in tensors.items():
        if not key.startswith("optim."):
            continue
        _, pid, k = key.split(".", 2)
        state.setdefault(int(pid), {})[k] = v
    for pid, sc in meta.get("scalars", {}).items():
        state.setdefault(int(pid), {}).update(sc)
    opt.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


def save_checkpoint(
    ckpt_root: Path,
    step: int,
    networks: dict[str, dict[str, torch.Tensor]],
    ema: dict[str, dict[str, torch.Tensor]],
    trainer_tensors: dict[str, torch.Tensor],
    state: dict[str, Any],
    keep: int = 2,
) -> Path:
    """Write one checkpoint atomically and point ``latest`` at it; keep the newest ``keep`` checkpoints."""
    ckpt_root = Path(ckpt_root)
    ckpt_root.mkdir(parents=True, exist_ok=True)
    name = f"step-{step:09d}"
    final = ckpt_root / name
    tmp = Path(tempfile.mkdtemp(dir=ckpt_root, prefix=f".tmp-{name}-"))
    try:
        files = {
            "networks.safetensors": {k: v for n, sd in networks.items() for k, v in _flat(n, sd).items()},
            "ema.safetensors": {k: v for n, sd in ema.items() for k, v in _flat(n, sd).items()},
            "trainer.safetensors": {k: v.detach().contiguous().cpu() for k, v in trainer_tensors.items()},
        }
        hashes = {}
        for fname, tensors in files.items():
            save_file(tensors, str(tmp / fname))
            hashes[fname] = sha256_file(tmp / fname)
        meta = dict(state, step=step, files=hashes, format=RUN_FORMAT, version=RUN_VERSION)
        (tmp / "state.json").write_text(json.dumps(meta, indent=1))
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    atomic_write_text(ckpt_root / "latest", name)
    done = sorted(p for p in ckpt_root.glob("step-*") if p.is_dir())
    for old in done[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def latest_checkpoint(run_dir: Path) -> Path:
    """The newest complete checkpoint directory of a run; CheckpointError if there is none."""
    check_run_dir(run_dir)
    root = Path(run_dir) / "checkpoints"
    pointer = root / "latest"
    if not pointer.exists():
        raise CheckpointError(f"run directory {run_dir} has no checkpoint yet (missing {pointer})")
    ckpt = root / pointer.read_text().strip()
    if not ckpt.is_dir():
        raise CheckpointError(f"checkpoint {ckpt} named by {pointer} is missing")
    return ckpt


def checkpoint_candidates(run_dir: Path) -> list[Path]:
    """Complete checkpoint folders of a run, newest first: the one ``latest`` names, then the others by step."""
    check_run_dir(run_dir)
    root = Path(run_dir) / "checkpoints"
    found = sorted((p for p in root.glob("step-*") if p.is_dir()), reverse=True) if root.is_dir() else []
    pointer = root / "latest"
    if pointer.exists():
        named = root / pointer.read_text().strip()
        if named in found:
            found.remove(named)
            found.insert(0, named)
    return found


def check_run_dir(run_dir: Path) -> dict[str, Any]:
    """Validate that ``run_dir`` is an agm run directory; returns its run.json."""
    run_dir = Path(run_dir)
    if not run_dir.exists():
        raise CheckpointError(f"run directory {run_dir} does not exist")
    if not run_dir.is_dir():
        raise CheckpointError(f"run directory {run_dir} is not a directory")
    marker = run_dir / "run.json"
    if not marker.exists():
        raise CheckpointError(f"{run_dir} is not an agm run directory (no run.json); pass a directory written by 'agm train --out'")
    try:
        info = json.loads(marker.read_text())
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{marker} is corrupt (not JSON: {e})") from None
    if not isinstance(info, dict) or info.get("format") != RUN_FORMAT:
        raise CheckpointError(f"{run_dir} is not an agm run directory (run.json format={info.get('format') if isinstance(info, dict) else None!r}, expected {RUN_FORMAT!r})")
    return info


def _load_verified(ckpt: Path, fname: str, hashes: dict[str, str]) -> dict[str, torch.Tensor]:
    path = ckpt / fname
    if not path.exists():
        raise CheckpointError(f"checkpoint file {path} is missing")
    if fname in hashes and sha256_file(path) != hashes[fname]:
        raise CheckpointError(f"checkpoint file {path} is corrupt (sha256 does not match state.json)")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"checkpoint file {path} is corrupt: {e}") from None


def read_state(ckpt: Path) -> dict[str, Any]:
    path = Path(ckpt) / "state.json"
    if not path.exists():
        raise CheckpointError(f"checkpoint {ckpt} is incomplete: missing state.json")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{path} is corrupt (not JSON: {e})") from None


def load_checkpoint(ckpt: Path, parts: tuple[str, ...] = ("networks", "ema", "trainer")) -> tuple[dict[str, Any], dict[str, dict[str, torch.Tensor]]]:
    """Load a checkpoint's state.json and the requested safetensors files, verified by sha256."""
    ckpt = Path(ckpt)
    state = read_state(ckpt)
    hashes = state.get("files", {})
    out = {part: _load_verified(ckpt, f"{part}.safetensors", hashes) for part in parts}
    return state, out


def load_ema_network(run_dir: Path, name: str = "drift") -> dict[str, torch.Tensor]:
    """State dict of the EMA network ``name`` from a run's latest checkpoint (reads only ema.safetensors)."""
    ckpt = latest_checkpoint(run_dir)
    _, files = load_checkpoint(ckpt, parts=("ema",))
    sd = _unflat(files["ema"], name)
    if not sd:
        raise CheckpointError(f"checkpoint {ckpt} has no EMA network '{name}'")
    return sd


unflatten = _unflat
