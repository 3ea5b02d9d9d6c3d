"""`agm bellman train|sample|eval|rl`: the run contract (kill -9, resume, bit-identical), loud non-finite samples,
held-out evaluation, user files through the shared loader, every documented command line parses."""
import json
import re
import shlex
from pathlib import Path

import numpy as np
import pytest
import torch

from agm.cli import main

ROOT = Path(__file__).resolve().parents[3]
SMALL = ["data.name=moons", "data.n_train=300", "data.n_test=100", "train.steps=40", "train.ckpt_every=20", "train.log_every=10",
         "train.batch_size=32", "field.hidden=16", "field.depth=2", "sample.steps=20", "eval.n_samples=100", "eval.max_samples=100"]
RL_SMALL = ["loop.total_steps=500", "loop.learning_starts=100", "loop.batch_size=16", "loop.buffer_size=400", "loop.target_frequency=50",
            "model.hidden=[16]", "model.n_points=4", "model.grid_size=21", "model.n_atoms=11", "ckpt_every=150", "progress=false"]


def test_bellman_train_kill_resume_sample_eval(kill_resume_contract):
    full, killed = kill_resume_contract(["bellman", "train", *SMALL], ["bellman", "sample", "--n", "30"], ["bellman", "eval"])
    # eval is against the held-out split kept in the run (built-in sets: n_test fresh points), not the training rows
    from safetensors.torch import load_file

    assert load_file(str(killed / "test_data.safetensors"))["test"].shape == (100, 2)
    assert set(json.loads((killed / "eval.json").read_text())) >= {"w2", "mmd", "energy"}


def test_bellman_rl_sigkill_resume_exact(tmp_path, run_cli):
    """agm bellman rl: SIGKILL right after the first checkpoint, --resume, the same final checkpoint and metrics."""
    import signal

    args = ["bellman", "rl", "agent=bd", *RL_SMALL]
    full, killed = tmp_path / "full", tmp_path / "killed"
    run_cli([*args, "--out", full])
    proc = run_cli([*args, "--out", killed], env_extra={"AGM_KILL_AFTER_CHECKPOINT": "1"}, check=False)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    first = _latest(killed)
    run_cli(["bellman", "rl", "--resume", killed])
    _assert_same_run(full, killed, first)


def _latest(run):
    return (run / "checkpoints" / "latest").read_text().strip()


def _assert_same_run(full, killed, first):
    assert _latest(full) == _latest(killed) == "step-000000500" and first < _latest(full)
    state = lambda r: json.loads((r / "checkpoints" / _latest(r) / "state.json").read_text())  # noqa: E731
    assert state(full)["files"] == state(killed)["files"]
    assert (full / "metrics.jsonl").read_text() == (killed / "metrics.jsonl").read_text()
    assert json.loads((full / "record.json").read_text()) == json.loads((killed / "record.json").read_text())


class _Stop(Exception):
    pass


def test_c51_rl_interrupt_resume_exact_in_process(tmp_path, monkeypatch):
    """The same contract for C51, in-process (an exception right after the first checkpoint stands in for the kill;
    every RNG is restored from the checkpoint, not from the process)."""
    import agm.training.trainer as trainer_mod
    from agm.methods.bellman.config import load_rl_config
    from agm.methods.bellman.rl.train import resume_rl_run, train_rl_run

    cfg = lambda: load_rl_config(None, ["agent=c51", *RL_SMALL])  # noqa: E731
    train_rl_run(cfg(), tmp_path / "full")

    def stop():
        raise _Stop

    monkeypatch.setattr(trainer_mod, "crash_test_hook", stop)
    with pytest.raises(_Stop):
        train_rl_run(cfg(), tmp_path / "killed")
    monkeypatch.undo()
    first = _latest(tmp_path / "killed")
    torch.manual_seed(123)  # the resumed run must not depend on the process's RNG
    np.random.seed(7)
    resume_rl_run(tmp_path / "killed")
    _assert_same_run(tmp_path / "full", tmp_path / "killed", first)


def test_non_finite_samples_fail_loudly_with_the_count(tmp_path, capsys):
    run = tmp_path / "r"
    assert main(["bellman", "train", "--out", str(run), *SMALL]) == 0
    out = tmp_path / "s.npy"
    assert main(["bellman", "sample", "--run", str(run), "--n", "200", "--out", str(out), "--step-size", "1e8", "--steps", "100"]) == 2
    err = capsys.readouterr().err
    assert re.search(r"\d+ of 200 samples are NaN/inf", err), err
    assert not out.exists()
    assert main(["bellman", "eval", "--run", str(run), "--step-size", "1e8", "--steps", "100"]) == 2
    assert not (run / "eval.json").exists()


def test_user_file_goes_through_the_shared_loader(tmp_path):
    """A raw-units CSV with a header (one column 1e4 times the other): standardised by load_user_data, the transform
    kept in the run and inverted at sampling, the held-out split kept for eval (the same as `agm train`)."""
    from agm.data.files import load_user_data
    from agm.methods.bellman.run import RECIPE, sample_run

    g = torch.Generator().manual_seed(0)
    x = torch.randn(400, 2, generator=g) * torch.tensor([1.0, 1e4]) + torch.tensor([5.0, 3e4])
    path = tmp_path / "table.csv"
    path.write_text("size_mm,price\n" + "\n".join(f"{a:.6f},{b:.6f}" for a, b in x.tolist()))
    run = tmp_path / "r"
    overrides = [o for o in SMALL if not o.startswith("data.")]
    assert main(["bellman", "train", "--out", str(run), "--data", str(path), *overrides, "sample.steps=100"]) == 0
    tr, te, transform, names = load_user_data(path, test_fraction=0.1, seed=0)
    b = RECIPE.load_data(RECIPE.load_config(None, [f"data.path={path}"]))
    assert names == ["size_mm", "price"] and b.meta["columns"] == names
    assert torch.equal(b.test, te) and b.meta["n_train"] == tr.shape[0] == 360
    assert (run / "data_transform.json").exists()
    s = sample_run(run, 300, device="cpu")
    assert torch.isfinite(s).all()
    # back in data units: the price column (std 1e4) is again ~1e4 times as spread as the size column (std 1)
    ratio = float(s[:, 1].std() / s[:, 0].std())
    assert 1e3 < ratio < 1e5, ratio


def _doc_commands(text: str) -> list[list[str]]:
    """Command lines of a page: every `agm bellman ...` line of a fenced block, and every inline `agm bellman ...`
    span that carries options (a bare `agm bellman train` in prose names a command, it is not a command line)."""
    cmds, fenced = [], False
    for line in text.splitlines():
        if line.strip().startswith("```"):
            fenced = not fenced
            continue
        if fenced:
            m = re.search(r"\bagm (bellman .*)", line)
            if m:
                cmds.append(shlex.split(m.group(1).split("#")[0]))
        else:
            for span in re.findall(r"`(?:\.venv/bin/)?agm (bellman [^`]*)`", line):
                if "--" in span or "=" in span:
                    cmds.append(shlex.split(span))
    return cmds


def test_every_command_in_docs_parses_with_the_real_parser(capsys):
    from agm.cli import split_overrides, build_parser

    parser = build_parser()
    cmds = _doc_commands((ROOT / "docs" / "bellman.md").read_text())
    assert len(cmds) >= 5
    for argv in cmds:
        rest, overrides = split_overrides(argv)
        if "--help" in rest:
            with pytest.raises(SystemExit) as e:
                parser.parse_args(rest)
            assert e.value.code == 0, argv
            continue
        args = parser.parse_args(rest)  # SystemExit (a failed test) on an unknown command or option
        if overrides:
            from agm.methods.bellman.config import Config, RLConfig
            from agm.training.config import build_config

            build_config(RLConfig if args.bellman_command == "rl" else Config, None, overrides)  # ConfigError on a bad key


def test_help_lists_every_config_key(capsys):
    for cmd, keys in {"train": ["field.eps", "field.kernel", "field.slices", "field.trace", "field.head", "sample.drift_clip",
                                "sample.rel_step", "sample.steps", "data.path", "data.standardise"],
                      "rl": ["agent", "env", "loop.total_steps", "model.sigma_t", "ckpt_every"]}.items():
        with pytest.raises(SystemExit):
            main(["bellman", cmd, "--help"])
        text = capsys.readouterr().out
        for k in keys:
            assert k in text, (cmd, k)


@pytest.mark.parametrize("argv, needle", [
    (["bellman", "train", "--out", "X", "field.eps=0"], "field.eps"),
    (["bellman", "train", "--out", "X", "field.slices=0"], "field.slices"),
    (["bellman", "train", "--out", "X", "field.kernal=full"], "field.kernel"),
    (["bellman", "train", "--out", "X", "data.name=moonz"], "moons"),
    (["bellman", "rl", "--out", "X", "env=Pendulum-v1", "loop.total_steps=10"], "action_space"),
    (["bellman", "rl", "--out", "X", "model.sigma_t=0"], "sigma_t"),
])
def test_bad_input(argv, needle, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    assert needle in capsys.readouterr().err
