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
        info["device"] = torch.cuda.get_device_name()
    return info


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
