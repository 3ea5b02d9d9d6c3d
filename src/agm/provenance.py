"""Where a result came from: the machine description every results JSON carries."""
from __future__ import annotations

import os
import platform

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
