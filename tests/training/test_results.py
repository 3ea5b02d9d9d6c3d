import json
import math

import pytest

from agm.training.results import seed_summary, write_result


def test_write_result_is_atomic_json_with_machine(tmp_path):
    p = write_result(tmp_path / "a" / "r.json", {"x": 1})
    rec = json.loads(p.read_text())
    assert rec["x"] == 1 and "torch" in rec["machine"]


def test_seed_summary_matches_hand_computation():
    s = seed_summary([1.0, 2.0, 3.0, 4.0])
    assert s["mean"] == 2.5 and s["std"] == pytest.approx(math.sqrt(5 / 3))
    half = 3.182446305284263 * math.sqrt(5 / 3) / 2  # t_{0.975, 3}
    assert s["ci95"] == pytest.approx([2.5 - half, 2.5 + half])


def test_seed_summary_paired():
    s = seed_summary([1.0, 2.0, 2.5], paired_with=[1.5, 2.2, 3.5])
    assert s["values"] == pytest.approx([-0.5, -0.2, -1.0]) and s["lower"] == 3
    assert 0 < s["p_paired_t"] < 0.2
    with pytest.raises(ValueError):
        seed_summary([1.0], paired_with=[1.0, 2.0])


def test_written_results_are_readable_by_others(tmp_path):
    """Atomic writes go through mkstemp (mode 0600); the result must get the usual umask-based mode."""
    import os

    from agm.training.results import write_result

    p = write_result(tmp_path / "r.json", {"a": 1, "machine": {}})
    umask = os.umask(0)
    os.umask(umask)
    assert (p.stat().st_mode & 0o777) == (0o666 & ~umask)


def test_machine_info_does_not_initialise_cuda(monkeypatch):
    """Forked worker pools break when the parent initialised CUDA just to name the GPU."""
    import torch

    from agm.training import results

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: False)

    def boom(*a, **k):
        raise AssertionError("get_device_name initialises CUDA")

    monkeypatch.setattr(torch.cuda, "get_device_name", boom)
    info = results.machine_info()
    assert isinstance(info["device"], str) and info["device"]
