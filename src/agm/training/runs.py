"""The run-folder contract shared by every method (docs/runs.md).

A run folder holds::

    run.json            marker: format, method, data shape/meta, data fingerprints, world size, machine
    config.yaml         the resolved config (the method's dataclass)
    metrics.jsonl       one JSON object per logged step
    data_transform.json the affine/log/quantile transform fitted on user data (inverted at sampling)
    test_data.safetensors   held-out rows (transformed space), when the method has them
    checkpoints/        atomic safetensors checkpoints (agm.training.checkpoint)
    .lock               held (fcntl) by the one process that writes the folder

Rules, the same for every command:
  * a new run refuses a non-empty output folder unless ``overwrite=True`` (``--overwrite``);
  * one writer at a time: a second process on the same folder gets :class:`RunInUseError`;
  * a resume checks every data file against its stored size and sha256 (:func:`check_fingerprints`);
  * a run killed before its first checkpoint resumes from step 0; a cut-off last line of
    ``metrics.jsonl`` is dropped (with a warning); ``.tmp-step-*`` leftovers are removed; a corrupt
    newest checkpoint falls back to the previous intact one (see ``Trainer.resume``).
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import warnings
from pathlib import Path
from typing import Any, Iterable

from agm.training.checkpoint import sha256_file
from agm.errors import AGMError, CheckpointError, ConfigError, DataError


class RunInUseError(CheckpointError):
    """Another process holds the run folder's lock."""


def check_out_dir(out: str | Path, *, overwrite: bool = False, field: str = "--out") -> Path:
    """Validate a new run's output folder before anything is computed; returns it (created, empty).

    ConfigError when ``out`` is a file or a dangling symlink, when it is non-empty and ``overwrite`` is
    false, or when it cannot be written. With ``overwrite`` the folder's contents are removed (only after
    its lock could be taken, so a running process's folder is never cleared).
    """
    out = Path(out)
    if out.is_symlink() and not out.exists():
        raise ConfigError(f"{field} {out} is a dangling symbolic link; give a folder path")
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{field} {out} is a file, not a folder; give a new or empty folder")
    if out.exists() and any(child.name != ".lock" for child in out.iterdir()):
        if (out / ".lock").exists():  # a folder a process is writing: RunInUseError naming it, whatever the flags
            RunLock(out).acquire().release()
        if not overwrite:
            resume = f", --resume {out} to continue the run there," if (out / "run.json").exists() else ""
            raise ConfigError(
                f"{field} {out} already exists and is not empty; pass --overwrite to replace its contents{resume} "
                f"or choose a new folder (nothing was changed)"
            )
        with RunLock(out):
            for child in out.iterdir():
                if child.name == ".lock":
                    continue
                if child.is_dir() and not child.is_symlink():
                    shutil.rmtree(child)
                else:
                    child.unlink()
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigError(f"{field} {out} cannot be created ({e.strerror or e}); choose a writable folder") from None
    return check_writable_dir(out, field)


def check_writable_dir(folder: str | Path, field: str = "--out") -> Path:
    """ConfigError unless a file can really be created in ``folder`` (a probe file is written and removed:
    permission bits alone say nothing for root, read-only mounts or immutable folders)."""
    folder = Path(folder)
    probe = folder / f".agm-write-probe-{os.getpid()}"
    try:
        probe.write_text("")
        probe.unlink()
    except OSError as e:
        raise ConfigError(f"{field} {folder} is not writable ({e.strerror or e}); choose a writable folder") from None
    return folder


def check_writable_file(path: str | Path, field: str, *, suffixes: Iterable[str] | None = None) -> Path:
    """Check, before any work, that a result file can be written at ``path`` (its suffix, its folder)."""
    path = Path(path)
    if suffixes is not None:
        suffixes = tuple(suffixes)
        if path.suffix.lower() not in suffixes:
            raise ConfigError(f"{field} {path} must end in one of {list(suffixes)}")
    if path.is_dir():
        raise ConfigError(f"{field} {path} is a folder; give a file path")
    parent = path.parent if str(path.parent) else Path(".")
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigError(f"{field} {path}: its folder cannot be created ({e.strerror or e})") from None
    if path.exists() and not os.access(path, os.W_OK):
        raise ConfigError(f"{field} {path} exists and is not writable")
    check_writable_dir(parent, f"{field} {path}: its folder")
    return path


class RunLock:
    """An exclusive, non-blocking lock on ``run_dir/.lock`` (fcntl.flock), held while a process writes.

    Released when the process exits, even on SIGKILL (the kernel drops flock locks), so a killed run
    can be resumed at once. Raises :class:`RunInUseError` naming the holder's pid when taken.
    """

    def __init__(self, run_dir: str | Path) -> None:
        self.path = Path(run_dir) / ".lock"
        self._fd: int | None = None

    def acquire(self) -> "RunLock":
        import fcntl

        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            try:
                holder = os.read(fd, 64).decode().strip() or "unknown"
            finally:
                os.close(fd)
            raise RunInUseError(
                f"run folder {self.path.parent} is in use by another process (pid {holder}); wait for it to finish or stop it"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            import fcntl

            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc: Any) -> None:
        self.release()


# ---- data fingerprints ------------------------------------------------------------------------------
def fingerprint(path: str | Path) -> dict[str, Any]:
    """{'path': absolute path, 'size': bytes, 'sha256': hex hash} of a data file or folder (all files, sorted)."""
    p = Path(path).expanduser().resolve()
    if not p.exists():
        raise DataError(f"data path {path} does not exist")
    if p.is_dir():
        h = hashlib.sha256()
        size = 0
        for f in sorted(q for q in p.rglob("*") if q.is_file()):
            rel = f.relative_to(p).as_posix()
            h.update(rel.encode() + b"\0" + sha256_file(f).encode())
            size += f.stat().st_size
        return {"path": str(p), "size": size, "sha256": h.hexdigest()}
    return {"path": str(p), "size": p.stat().st_size, "sha256": sha256_file(p)}


def check_fingerprints(saved: Iterable[dict[str, Any]]) -> None:
    """DataError naming the first data file that is missing or changed since the run started."""
    for fp in saved:
        p = Path(fp["path"])
        if not p.exists():
            raise DataError(f"data file {p} used by this run is missing; restore it to resume (the run refuses other data)")
        now = fingerprint(p)
        if now["size"] != fp["size"] or now["sha256"] != fp["sha256"]:
            raise DataError(
                f"data file {p} changed since the run started (size {fp['size']} -> {now['size']}, sha256 "
                f"{fp['sha256'][:12]}... -> {now['sha256'][:12]}...); resuming would mix two data sets. Restore the "
                f"original file or start a new run"
            )


# ---- metrics.jsonl -----------------------------------------------------------------------------------
def read_metrics(path: str | Path, *, repair: bool = False, upto_step: int | None = None) -> list[dict[str, Any]]:
    """The records of a metrics.jsonl. A cut-off or corrupt line (a crash mid-append) is dropped with a warning;
    with ``repair`` the file is rewritten without it (and without records after ``upto_step``)."""
    from agm.training.checkpoint import atomic_write_text

    path = Path(path)
    if not path.exists():
        return []
    good: list[dict[str, Any]] = []
    bad = 0
    for ln in path.read_text().splitlines():
        if not ln.strip():
            continue
        try:
            rec = json.loads(ln)
            if not isinstance(rec, dict) or "step" not in rec:
                raise ValueError
        except ValueError:
            bad += 1
            continue
        if upto_step is None or rec["step"] <= upto_step:
            good.append(rec)
    if bad:
        warnings.warn(f"{path}: dropped {bad} cut-off or corrupt line(s)", RuntimeWarning, stacklevel=2)
    if repair:
        atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in good))
    return good


def clean_partial_checkpoints(run_dir: str | Path) -> list[str]:
    """Remove ``checkpoints/.tmp-*`` folders left by a kill mid-write; returns their names."""
    root = Path(run_dir) / "checkpoints"
    removed = []
    if root.is_dir():
        for p in root.glob(".tmp-*"):
            shutil.rmtree(p, ignore_errors=True)
            removed.append(p.name)
    return removed


__all__ = ["AGMError", "RunInUseError", "RunLock", "check_out_dir", "check_writable_dir", "check_writable_file", "fingerprint",
           "check_fingerprints", "read_metrics", "clean_partial_checkpoints"]
