"""Experiment sweeps: a list of jobs run in worker processes, resumable through a runs JSONL.

The one mechanism of the scripts under experiments/ that run many (data set, method, seed) jobs. Every job has a
stable key (a string naming what it computes). With ``runs_jsonl``, each finished record is appended there as one
line ``{"key": KEY, "row": RECORD}`` the moment it finishes (so a killed sweep keeps its finished work), and a later
sweep with the same file reuses the records whose key is already there instead of running those jobs again.
"""
from __future__ import annotations

import json
import multiprocessing
import warnings
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any, Callable, Sequence

from agm.errors import AGMError


class SweepJobError(AGMError, RuntimeError):
    """A job of a sweep raised; the message names the job's key (the worker's error is the cause)."""


def read_runs(path: str | Path) -> dict[str, Any]:
    """{key: record} of a runs JSONL (later lines win); a cut-off or corrupt line (a kill mid-write) is dropped with a warning."""
    done: dict[str, Any] = {}
    bad = 0
    for line in Path(path).read_text().splitlines() if Path(path).exists() else []:
        if line.strip():
            try:
                rec = json.loads(line)
                done[rec["key"]] = rec["row"]
            except (ValueError, KeyError, TypeError):
                bad += 1
    if bad:
        warnings.warn(f"{path}: dropped {bad} cut-off or corrupt line(s)", RuntimeWarning, stacklevel=2)
    return done


def _append_run(path: Path, key: str, row: Any) -> None:
    """Append one record as one line (one write, flushed on close); after a cut-off last line, start a new line."""
    with open(path, "a+b") as f:
        f.seek(0, 2)
        start = b""
        if f.tell():
            f.seek(-1, 2)
            start = b"" if f.read(1) == b"\n" else b"\n"
        f.write(start + (json.dumps({"key": key, "row": row}) + "\n").encode())


def run_sweep(jobs: Sequence[Any], worker: Callable[[Any], Any], *, key: Callable[[Any], str], workers: int = 1,
              runs_jsonl: str | Path | None = None, on_record: Callable[[Any, Any], None] | None = None) -> list[Any]:
    """Run ``worker(job)`` for every job whose ``key(job)`` is not yet in ``runs_jsonl``; return every record in job order.

    ``worker`` must be a top-level (picklable) function and the jobs picklable: with ``workers`` > 1 they run in a pool
    of that many spawned processes (each job in whichever process is free); with ``workers`` <= 1 in this process, in
    order. Each new record is appended to ``runs_jsonl`` (when given) and passed to ``on_record(job, record)`` as it
    finishes (in finishing order). A job that raises stops the sweep with :class:`SweepJobError` naming its key: in a
    pool, after the jobs already running have finished and been recorded (jobs not started are cancelled).
    """
    keys = [key(j) for j in jobs]
    done = read_runs(runs_jsonl) if runs_jsonl else {}
    todo = [i for i, k in enumerate(keys) if k not in done]
    rows: dict[int, Any] = {}

    def finish(i: int, row: Any) -> None:
        rows[i] = row
        if runs_jsonl:
            _append_run(Path(runs_jsonl), keys[i], row)
        if on_record is not None:
            on_record(jobs[i], row)

    def failed(i: int, e: BaseException) -> SweepJobError:
        return SweepJobError(f"sweep job {keys[i]} failed: {type(e).__name__}: {e}")

    if workers <= 1:
        for i in todo:
            try:
                row = worker(jobs[i])
            except Exception as e:
                raise failed(i, e) from e
            finish(i, row)
    elif todo:
        first_error: tuple[int, Exception] | None = None
        with ProcessPoolExecutor(min(workers, len(todo)), mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = {pool.submit(worker, jobs[i]): i for i in todo}
            for fut in as_completed(futures):
                if fut.cancelled():
                    continue
                try:
                    row = fut.result()
                except Exception as e:
                    if first_error is None:
                        first_error = futures[fut], e
                        for other in futures:  # jobs not started yet; the running ones finish and are recorded
                            other.cancel()
                    continue
                finish(futures[fut], row)
        if first_error is not None:
            raise failed(*first_error) from first_error[1]
    return [rows[i] if i in rows else done[keys[i]] for i in range(len(jobs))]


__all__ = ["SweepJobError", "read_runs", "run_sweep"]
