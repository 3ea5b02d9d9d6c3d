"""Where a result came from: the machine description every results JSON carries."""
from __future__ import annotations

import json
import os
import platform
from pathlib import Path

import torch


def machine_info() -> dict:
    """platform, processor, CPU count, Python and torch versions, torch threads, and the GPU if one is visible."""
    info = {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
    }
    if torch.cuda.is_available():
        info["device"] = _gpu_name()
    return info


def _gpu_name() -> str:
    """The GPU's name without initialising CUDA in this process when it is not yet (torch.cuda.get_device_name would,
    and a process that forks workers after that breaks their CUDA): nvidia-smi's answer, else a plain 'cuda'."""
    if torch.cuda.is_initialized():
        return torch.cuda.get_device_name()
    import subprocess

    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True, text=True,
                             timeout=20, check=True).stdout.strip().splitlines()
        return out[0].strip() if out else "cuda"
    except (OSError, subprocess.SubprocessError):
        return "cuda (name not read: CUDA not initialised and no nvidia-smi)"


def write_result(path: str | os.PathLike, record: dict) -> Path:
    """Write a results record as indented JSON at ``path``, atomically (temp file + rename), parents created.

    Adds ``record['machine'] = machine_info()`` when the record has no 'machine' entry, so every results
    JSON names where it was measured. Returns the path written.
    """
    from agm.training.checkpoint import atomic_write_text

    record.setdefault("machine", machine_info())
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(record, indent=1))
    return path


def seed_summary(values, *, paired_with=None) -> dict:
    """Mean ± std over seeds in one place: {'n', 'mean', 'std', 'ci95': [lo, hi], 'values'} (Student-t interval).

    With ``paired_with`` (the control's values, same seeds in the same order) the summary is of the paired
    differences ``values - paired_with`` and adds the paired t-test p-value and the number of seeds where the
    difference is negative ('lower').
    """
    import math

    from scipy import stats

    vals = [float(v) for v in values]
    if paired_with is not None:
        ctrl = [float(v) for v in paired_with]
        if len(ctrl) != len(vals):
            raise ValueError(f"paired_with has {len(ctrl)} values, values has {len(vals)}")
        vals = [a - b for a, b in zip(vals, ctrl)]
    n = len(vals)
    if n == 0:
        raise ValueError("seed_summary needs at least one value")
    mean = sum(vals) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in vals) / (n - 1)) if n > 1 else float("nan")
    half = float(stats.t.ppf(0.975, n - 1)) * std / math.sqrt(n) if n > 1 else float("nan")
    out = {"n": n, "mean": mean, "std": std, "ci95": [mean - half, mean + half], "values": vals}
    if paired_with is not None:
        out["lower"] = sum(v < 0 for v in vals)
        out["p_paired_t"] = float(stats.ttest_1samp(vals, 0.0).pvalue) if n > 1 and std > 0 else float("nan")
    return out
