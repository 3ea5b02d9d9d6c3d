"""Issue 16, items 7-9, through the real CLI: nothing of the user's is lost or mixed, no dead end after a crash.

Runs that must be killed or run concurrently go through ``python -m agm.cli`` in a subprocess (the
``run_cli`` fixture); the contract itself is docs/runs.md.
"""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

TINY = ["train.log_every=10", "train.batch_size=32", "model.hidden=16", "model.depth=2", "data.n_train=256",
        "data.n_test=64", "sample.steps=5", "eval.n_samples=64", "eval.max_samples=64", "train.progress=false"]


def agm(args, capsys=None):
    """`agm ARGS` through the real entry point in this process: (exit code, stderr)."""
    from agm.cli import main

    if capsys is not None:
        capsys.readouterr()
    code = main([str(a) for a in args])
    return code, (capsys.readouterr().err if capsys is not None else "")


def _digests(run: Path) -> dict:
    root = run / "checkpoints"
    name = (root / "latest").read_text().strip()
    state = json.loads((root / name / "state.json").read_text())
    return {"name": name, "step": state["step"], "files": state["files"]}


def _steps(run: Path) -> list[int]:
    return [json.loads(l)["step"] for l in (run / "metrics.jsonl").read_text().splitlines() if l.strip()]


def _popen(args, cwd=None):
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="")
    env.pop("AGM_KILL_AFTER_CHECKPOINT", None)
    return subprocess.Popen([sys.executable, "-m", "agm.cli", *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, cwd=cwd)


def _wait_for(path: Path, proc, timeout=120.0):
    t0 = time.time()
    while not (path.exists() and path.stat().st_size > 0):
        if proc.poll() is not None:
            raise AssertionError(f"the run ended before {path} appeared: {proc.communicate()}")
        if time.time() - t0 > timeout:
            raise AssertionError(f"{path} did not appear in {timeout} s")
        time.sleep(0.05)


# ---- item 7: nothing of the user's is lost -------------------------------------------------------------------
def test_demo_refuses_a_folder_with_user_files(tmp_path, capsys, monkeypatch):
    out = tmp_path / "mine"
    (out / "agm").mkdir(parents=True)
    (out / "agm" / "thesis.tex").write_text("my thesis")
    (out / "notes.txt").write_text("my notes")
    before = sorted(p.relative_to(out).as_posix() for p in out.rglob("*"))
    code, err = agm(["demo", "--out", out, "--steps", "20", "--no-plots"], capsys)
    assert code == 2, err
    assert err.startswith("agm demo: error:") and "--overwrite" in err and len(err.strip().splitlines()) == 1
    assert "--resume" not in err  # not a run folder: no advice to resume it
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*")) == before  # not even a lock file added
    assert (out / "agm" / "thesis.tex").read_text() == "my thesis"
    # told --overwrite, the demo clears the folder before it trains (the training itself is the demo's own test)
    import agm.methods.agm.demo as demo
    from agm.training.runs import check_out_dir

    seen = {}

    def fake_demo(out, overwrite=False, **kw):
        seen.update(kw, overwrite=overwrite)
        check_out_dir(out, overwrite=overwrite)  # what run_demo does first
        (Path(out) / "metrics.json").write_text("{}")

    monkeypatch.setattr(demo, "run_demo", fake_demo)
    code, err = agm(["demo", "--out", out, "--steps", "20", "--no-plots", "--overwrite"], capsys)
    assert code == 0 and seen["overwrite"] is True, err
    assert sorted(p.name for p in out.iterdir()) == [".lock", "metrics.json"]  # the lock taken while clearing stays
    # the same rule for a run folder: refused, then replaced with --overwrite
    run = tmp_path / "run"
    (run).mkdir()
    (run / "keep.txt").write_text("mine")
    assert agm(["train", "--config", "toy", "--out", run, "train.steps=10", *TINY], capsys)[0] == 2
    assert (run / "keep.txt").exists()
    assert agm(["train", "--config", "toy", "--out", run, "--overwrite", "train.steps=10", *TINY], capsys)[0] == 0
    assert not (run / "keep.txt").exists() and _digests(run)["step"] == 10


def test_two_concurrent_trains_second_is_refused(tmp_path, capsys):
    run = tmp_path / "X"
    first = _popen(["train", "--config", "toy", "--out", run, "train.steps=1000000", "train.ckpt_every=1000000", *TINY])
    try:
        _wait_for(run / "metrics.jsonl", first)
        for extra in ([], ["--overwrite"]):
            code, err = agm(["train", "--config", "toy", "--out", run, *extra, "train.steps=10", *TINY], capsys)
            assert code == 2 and f"is in use by another process (pid {first.pid})" in err, err
        code, err = agm(["train", "--resume", run], capsys)
        assert code == 2 and f"pid {first.pid}" in err, err
        assert (run / "run.json").exists()  # --overwrite did not clear a running run
        assert first.poll() is None
    finally:
        first.kill()
        first.communicate()
    steps = _steps(run)
    assert steps == sorted(set(steps))  # one writer: no step logged twice


# ---- item 8: resume is safe against a changed world --------------------------------------------------------
def _user_table(path, seed):
    np.savetxt(path, np.random.default_rng(seed).normal(size=(300, 2)), delimiter=",", header="a,b", comments="")


def test_resume_from_elsewhere_and_a_swapped_data_file(tmp_path, run_cli, capsys, monkeypatch):
    work, elsewhere = tmp_path / "work", tmp_path / "elsewhere"
    work.mkdir()
    elsewhere.mkdir()
    data = work / "table.csv"
    _user_table(data, 0)
    args = ["train", "--data", "table.csv", "--out", "run", "train.steps=40", "train.ckpt_every=20", *TINY]
    proc = run_cli(args, cwd=work, env_extra={"AGM_KILL_AFTER_CHECKPOINT": "1"}, check=False)
    assert proc.returncode == -signal.SIGKILL
    run = work / "run"
    assert f"path: {data}" in (run / "config.yaml").read_text()  # stored absolute, though typed relative
    assert json.loads((run / "run.json").read_text())["fingerprints"][0]["path"] == str(data)
    before = _digests(run)
    monkeypatch.chdir(elsewhere)
    saved = data.read_bytes()
    _user_table(data, 1)  # another data set under the same name
    code, err = agm(["train", "--resume", run], capsys)
    assert code == 2 and f"data file {data} changed since the run started" in err, err
    assert _digests(run) == before  # nothing trained on the mix
    data.unlink()
    code, err = agm(["train", "--resume", run], capsys)
    assert code == 2 and f"data file {data} used by this run is missing" in err, err
    data.write_bytes(saved)  # the original file back: the resume from another directory works
    code, err = agm(["train", "--resume", run], capsys)
    assert code == 0, err
    assert _digests(run)["step"] == 40


# ---- item 9: no dead ends after a crash --------------------------------------------------------------------
def test_killed_before_the_first_checkpoint_resumes_from_step_0(tmp_path, capsys):
    run = tmp_path / "run"
    proc = _popen(["train", "--config", "toy", "--out", run, "train.steps=1000000", "train.ckpt_every=1000000", *TINY])
    try:
        _wait_for(run / "metrics.jsonl", proc)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
    assert not (run / "checkpoints" / "latest").exists()
    # a fresh train into it is refused (it is a run, and the message says how to continue it)
    code, err = agm(["train", "--config", "toy", "--out", run, *TINY], capsys)
    assert code == 2 and f"--resume {run}" in err
    cfg = run / "config.yaml"
    cfg.write_text(cfg.read_text().replace("steps: 1000000", "steps: 30").replace("ckpt_every: 1000000", "ckpt_every: 10"))
    code, err = agm(["train", "--resume", run], capsys)
    assert code == 0, err
    assert _steps(run) == [10, 20, 30] and _digests(run)["step"] == 30


def test_cut_off_metrics_tmp_folders_and_corrupt_newest_checkpoint(tmp_path, run_cli, capsys):
    args = ["train", "--config", "toy", "train.steps=60", "train.ckpt_every=20", "train.keep_checkpoints=3", *TINY]
    full, killed = tmp_path / "full", tmp_path / "killed"
    proc = run_cli([*args, "--out", killed], env_extra={"AGM_KILL_AFTER_CHECKPOINT": "2"}, check=False)
    assert proc.returncode == -signal.SIGKILL and _digests(killed)["step"] == 40
    assert agm([*args, "--out", full])[0] == 0
    # the damage a crash leaves: a cut-off metrics line, a half-written checkpoint folder, a corrupt newest checkpoint
    with open(killed / "metrics.jsonl", "a") as f:
        f.write('{"step": 50, "loss": 1.2')
    tmp = killed / "checkpoints" / ".tmp-step-000060-x"
    tmp.mkdir()
    (tmp / "networks.safetensors").write_bytes(b"half")
    newest = killed / "checkpoints" / _digests(killed)["name"] / "networks.safetensors"
    blob = bytearray(newest.read_bytes())
    blob[-1] ^= 0xFF
    newest.write_bytes(bytes(blob))
    with pytest.warns(RuntimeWarning) as record:
        code, err = agm(["train", "--resume", killed], capsys)
    assert code == 0, err
    said = " ".join(str(w.message) for w in record)
    assert "dropped 1 cut-off or corrupt line" in said and "fell back to the intact" in said, said
    assert not tmp.exists()
    # resumed from the intact step-20 checkpoint: exactly the uninterrupted run
    assert _digests(killed) == _digests(full)
    assert _steps(killed) == _steps(full)
