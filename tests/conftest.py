import os

import pytest
import torch

os.environ.setdefault("MPLBACKEND", "Agg")
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


# ---- the run contract every method's CLI must keep (issue: one library) -----------------------------------
import json as _json
import signal as _signal
import subprocess as _subprocess
import sys as _sys
from pathlib import Path as _Path


def _agm(args, env_extra=None, cwd=None, check=True):
    env = dict(os.environ, PYTHONHASHSEED="0", CUDA_VISIBLE_DEVICES="")
    env.pop("AGM_KILL_AFTER_CHECKPOINT", None)
    env.update(env_extra or {})
    proc = _subprocess.run([_sys.executable, "-m", "agm.cli", *map(str, args)], capture_output=True, text=True, env=env, cwd=cwd)
    if check and proc.returncode != 0:
        raise AssertionError(f"agm {' '.join(map(str, args))} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    return proc


def _final_checkpoint_digests(run: _Path) -> dict:
    root = run / "checkpoints"
    name = (root / "latest").read_text().strip()
    state = _json.loads((root / name / "state.json").read_text())
    return {"name": name, "step": state["step"], "files": state["files"]}


@pytest.fixture
def run_cli():
    """run_cli([...]) runs `python -m agm.cli ...` in a fresh process; returns the CompletedProcess."""
    return _agm


@pytest.fixture
def kill_resume_contract(tmp_path):
    """check(train_args, sample_args=None, eval_args=None): the contract of `agm <method> train` for one method.

    ``train_args``: the train command without --out (e.g. ["bellman", "train", "train.steps=60", ...]); it must
    write at least two checkpoints. The check: (1) a run SIGKILLed right after its first checkpoint and
    resumed with --resume ends with a final checkpoint bit-identical (sha256 of every file) to an
    uninterrupted run's; (2) metrics.jsonl of both runs hold the same steps; (3) ``sample_args`` / ``eval_args``
    (e.g. ["bellman", "sample", "--n", "50"]) work on the resumed run (``--run`` and, for sample, ``--out``
    are added). Returns the two run folders.
    """

    def check(train_args, sample_args=None, eval_args=None):
        full, killed = tmp_path / "full", tmp_path / "killed"
        _agm([*train_args, "--out", full])
        proc = _agm([*train_args, "--out", killed], env_extra={"AGM_KILL_AFTER_CHECKPOINT": "1"}, check=False)
        assert proc.returncode == -_signal.SIGKILL, f"expected a SIGKILL after the first checkpoint, got {proc.returncode}: {proc.stderr}"
        first = _final_checkpoint_digests(killed)
        assert first["step"] < _final_checkpoint_digests(full)["step"], "the run must write >= 2 checkpoints for this test"
        _agm([train_args[0], "train", "--resume", killed] if train_args[0] != "train" else ["train", "--resume", killed])
        a, b = _final_checkpoint_digests(full), _final_checkpoint_digests(killed)
        assert a == b, f"resumed run differs from the uninterrupted one: {a} vs {b}"
        steps = lambda r: [_json.loads(l)["step"] for l in (r / "metrics.jsonl").read_text().splitlines() if l.strip()]  # noqa: E731
        assert steps(full) == steps(killed)
        if sample_args is not None:
            out = tmp_path / "samples.npy"
            _agm([*sample_args, "--run", killed, "--out", out])
            assert out.exists()
        if eval_args is not None:
            proc = _agm([*eval_args, "--run", killed])
            assert (killed / "eval.json").exists(), proc.stdout
        return full, killed

    return check
