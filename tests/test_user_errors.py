"""Issue 16, items 10-11, through the real CLI: one clear line for ordinary mistakes; progress, --version, help."""
import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from agm.cli import main

TINY = ["train.log_every=10", "train.batch_size=32", "model.hidden=16", "model.depth=2", "data.n_train=256",
        "data.n_test=64", "sample.steps=5", "eval.n_samples=64", "eval.max_samples=64", "train.progress=false"]


def agm(args, capsys):
    capsys.readouterr()
    code = main([str(a) for a in args])
    return code, capsys.readouterr().err


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    run = tmp_path_factory.mktemp("trained") / "run"
    assert main(["train", "--config", "toy", "--out", str(run), "train.steps=20", "train.ckpt_every=10", *TINY]) == 0
    return run


def _one_line(code, err, cmd, needle):
    assert code == 2, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert err.startswith(f"agm {cmd}: error: "), err
    assert needle in err, err


def test_train_mistakes(tmp_path, capsys, monkeypatch):
    np.save(tmp_path / "empty.npy", np.zeros((0, 2), dtype=np.float32))
    (tmp_path / "afile").write_text("x")
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # the same answer on a GPU machine
    cases = [
        (["--data", tmp_path / "empty.npy"], "has N=0 rows"),
        (["--out", tmp_path / "afile"], "is a file, not a folder"),
        (["--out", tmp_path / "dangling"], "is a dangling symbolic link"),
        (["train.device=cuda"], "train.device='cuda' but CUDA is not available"),
        (["--device", "cuda"], "train.device='cuda' but CUDA is not available"),
        (["train.device=cpux"], "train.device='cpux' is not a device"),
        (["model.channel_mult=[a,b]"], "model.channel_mult[0]='a' must be an integer"),
        (["train.lr=fast"], "train.lr='fast' must be a number"),
    ]
    for extra, needle in cases:
        out = [] if "--out" in extra else ["--out", tmp_path / "r"]
        code, err = agm(["train", "--config", "toy", *out, *extra, "train.steps=5", *TINY], capsys)
        _one_line(code, err, "train", needle)
        assert not (tmp_path / "r" / "checkpoints").exists()
    assert (tmp_path / "afile").read_text() == "x" and (tmp_path / "dangling").is_symlink()
    # YAML 1.1 reads 3e-3 as a string; a float key accepts it as the number it is
    assert agm(["train", "--config", "toy", "--out", tmp_path / "ok", "train.lr=3e-3", "train.steps=5", *TINY], capsys)[0] == 0
    assert "lr: 0.003" in (tmp_path / "ok" / "config.yaml").read_text()


def test_sample_and_eval_mistakes(trained, tmp_path, capsys, monkeypatch):
    import agm.training.recipe as recipe

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    code, err = agm(["sample", "--run", trained, "--n", "5", "--out", tmp_path / "s.npy", "--device", "cuda"], capsys)
    _one_line(code, err, "sample", "--device='cuda' but CUDA is not available")
    code, err = agm(["eval", "--run", trained, "--n", "0"], capsys)
    _one_line(code, err, "eval", "--n=0 must be an integer > 0")
    # refused before any sampling: the sampler is never reached
    monkeypatch.setattr(recipe, "sample_run", lambda *a, **k: pytest.fail("sampled before the output was checked"))
    code, err = agm(["sample", "--run", trained, "--n", "5", "--out", tmp_path / "x.txt"], capsys)
    _one_line(code, err, "sample", "must end in one of ['.npy', '.csv']")
    assert not (tmp_path / "x.txt").exists()
    # a run without checkpoints is reported as such, not as a config mismatch
    bare = tmp_path / "bare"
    shutil.copytree(trained, bare)
    shutil.rmtree(bare / "checkpoints")
    monkeypatch.undo()
    code, err = agm(["sample", "--run", bare, "--n", "5", "--out", tmp_path / "y.npy"], capsys)
    _one_line(code, err, "sample", "has no checkpoint yet")
    assert "does not match" not in err


def _make_read_only(path: Path) -> bool:
    """Read-only for this process: chmod for a normal user; as root (bits do not bind root) the immutable flag."""
    if os.geteuid() != 0:
        path.chmod(0o555)
        return True
    return shutil.which("chattr") is not None and subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode == 0


def _undo_read_only(path: Path) -> None:
    if os.geteuid() == 0:
        subprocess.run(["chattr", "-i", str(path)], capture_output=True)
    path.chmod(0o755)


def test_read_only_output_folders(trained, tmp_path, capsys, monkeypatch):
    import agm.training.recipe as recipe

    ro_run = tmp_path / "ro_run"
    shutil.copytree(trained, ro_run)
    parent = tmp_path / "ro"
    parent.mkdir()
    if not (_make_read_only(ro_run) and _make_read_only(parent)):
        pytest.skip("cannot make a folder read-only here (root without chattr +i)")
    try:
        # eval: refused before anything is computed (sampling would fail this test)
        monkeypatch.setattr(recipe, "sample_run", lambda *a, **k: pytest.fail("computed before the write check"))
        code, err = agm(["eval", "--run", ro_run], capsys)
        _one_line(code, err, "eval", "is not writable")
        assert "nothing was computed" in err
        monkeypatch.undo()
        code, err = agm(["train", "--config", "toy", "--out", parent / "run", "train.steps=5", *TINY], capsys)
        _one_line(code, err, "train", "cannot be created")
        code, err = agm(["sample", "--run", trained, "--n", "5", "--out", parent / "x.npy"], capsys)
        _one_line(code, err, "sample", "is not writable")
    finally:
        _undo_read_only(ro_run)
        _undo_read_only(parent)
    assert not (ro_run / "eval.json").exists()


# ---- item 11 ------------------------------------------------------------------------------------------------
def test_version_and_help_list_every_key(capsys):
    from importlib.metadata import version

    from agm.methods.agm.config import Config
    from agm.training.config import key_table

    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"agm {version('agm-potentials')}"
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = capsys.readouterr().out
    lines = {ln.split()[0]: ln for ln in text.splitlines() if ln.startswith("  ") and "default:" in ln}
    for key, tp, default in key_table(Config()):
        assert key in lines, key
        assert tp in lines[key] and f"default: {json.dumps(default)}" in lines[key], lines[key]


def test_plain_progress_keeps_logs_small_and_tensorboard_by_default(tmp_path, run_cli):
    pytest.importorskip("tensorboard")
    run = tmp_path / "run"
    args = ["train", "--config", "toy", "--out", run, *[a for a in TINY if not a.startswith("train.progress")],
            "train.steps=200", "train.log_every=5", "train.ckpt_every=200"]
    proc = run_cli(args)  # stderr is a pipe, not a terminal
    lines = proc.stderr.strip().splitlines()
    assert "\r" not in proc.stderr and all(ln.startswith("train step ") for ln in lines), proc.stderr[:500]
    assert 10 <= len(lines) <= 21 and len(proc.stderr) < 2000  # about every 5% of the run, never a bar
    assert lines[-1].startswith("train step 200/200 loss")
    assert list((run / "tb").glob("events.out.tfevents.*")), "tensorboard is on by default when installed"


def test_a_terminal_gets_a_progress_bar(tmp_path):
    import pty
    import sys

    import fcntl
    import struct
    import termios

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))  # a real terminal's size (a new pty has 0 columns)
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="")
    args = ["train", "--config", "toy", "--out", str(tmp_path / "run"), *[a for a in TINY if not a.startswith("train.progress")],
            "train.steps=50", "train.ckpt_every=50"]
    proc = subprocess.Popen([sys.executable, "-m", "agm.cli", *args], stdout=subprocess.DEVNULL, stderr=slave, env=env)
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 4096)
        except OSError:  # the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    assert proc.wait() == 0
    os.close(master)
    text = b"".join(chunks).decode(errors="replace")
    assert "\r" in text and "train" in text and "train step 50/50" not in text, text[-300:]  # a tqdm bar, not plain lines
