"""The steering commands keep the run contract (issue 15): run folders, --overwrite, kill -9 + exact resume, sample,
eval; and every `agm steering ...` line of docs/steering.md parses with the real CLI parser."""
from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[3] / "docs" / "steering.md"
TINY_BASE = ["base.steps=40", "base.hidden=16", "base.depth=2", "base.batch_size=64", "data.n_train=400", "data.n_test=100"]
TINY_SOC = [*TINY_BASE, "soc.pool=2000", "soc.steps=5", "train.steps=20", "train.ckpt_every=10", "train.log_every=5",
            "train.batch_size=8", "sample.steps=8", "eval.n_samples=64", "eval.max_samples=64", "train.progress=false"]


def test_steering_train_kill_resume_sample_eval(kill_resume_contract):
    """SOC fine-tuning (adjoint matching; base trained inside the run): 2 checkpoints, SIGKILL after the first, resume,
    bit-identical final checkpoint; sample and eval (distances to the exact tilted optimum) work on the resumed run."""
    full, killed = kill_resume_contract(["steering", "train", *TINY_SOC], ["steering", "sample", "--n", "20"], ["steering", "eval"])
    ev = json.loads((killed / "eval.json").read_text())
    assert {"w2", "energy", "mean_reward", "mean_reward_optimum"} <= set(ev)


def test_reward_and_learn_sampler_write_run_folders_and_refuse_a_non_empty_out(tmp_path, capsys):
    """`agm steering reward` / `learn-sampler` / `base` write run folders (checkpoints, metrics.jsonl), refuse a
    non-empty --out without --overwrite, and their sample / eval commands work; base.run loads a base run."""
    from agm.cli import main

    cases = {
        "reward": ["reward", *TINY_BASE, "train.steps=6", "train.ckpt_every=3", "train.batch_size=32", "steer.steps=6", "eval.n_samples=50"],
        "learn-sampler": ["learn-sampler", *TINY_BASE, "policy.iterations=2", "policy.batch=16", "policy.nfe=3", "train.ckpt_every=3", "eval.n_samples=50"],
        "base": ["base", "train.steps=6", "train.ckpt_every=3", "model.hidden=16", "data.n_train=300", "data.n_test=100", "sample.steps=5", "eval.n_samples=50"],
    }
    for name, args in cases.items():
        out = tmp_path / name
        assert main(["steering", *args, "train.progress=false", "--out", str(out)]) == 0, name
        assert (out / "run.json").exists() and (out / "metrics.jsonl").exists()
        assert len(list((out / "checkpoints").glob("step-*"))) >= 1
        capsys.readouterr()
        assert main(["steering", *args, "--out", str(out)]) == 2
        assert "--overwrite" in capsys.readouterr().err
        if name != "base":
            assert main(["steering", f"{name}-sample", "--run", str(out), "--n", "10", "--out", str(tmp_path / f"{name}.npy")]) == 0
            assert main(["steering", f"{name}-eval", "--run", str(out)]) == 0
            assert (out / "eval.json").exists()
    ft = tmp_path / "ft"
    assert main(["steering", "train", *TINY_SOC, "train.steps=4", "train.ckpt_every=2", f"base.run={tmp_path / 'base'}", "--out", str(ft)]) == 0
    info = json.loads((ft / "run.json").read_text())
    assert info["fingerprints"], "the base run's checkpoint must be fingerprinted"


def test_bad_steering_config_is_a_clear_error(tmp_path, capsys):
    from agm.cli import main

    assert main(["steering", "train", "soc.loss=adjoint", "--out", str(tmp_path / "x")]) == 2
    assert "soc.loss" in capsys.readouterr().err
    assert main(["steering", "train", "soc.los=adjoint_matching", "--out", str(tmp_path / "y")]) == 2
    assert "soc.loss" in capsys.readouterr().err


def _doc_commands() -> list[str]:
    text = DOC.read_text()
    lines = []
    for block in re.findall(r"```[a-z]*\n(.*?)```", text, flags=re.S):
        for line in block.splitlines():
            line = line.split("#", 1)[0].strip()
            if line.startswith("agm "):
                lines.append(line)
    return lines


def test_every_command_in_docs_parses_with_the_real_parser():
    from agm.cli import split_overrides, build_parser

    cmds = _doc_commands()
    assert len(cmds) >= 6
    for cmd in cmds:
        argv = shlex.split(cmd)[1:]
        rest, overrides = split_overrides(argv)
        try:
            args = build_parser(rest).parse_args(rest)
        except SystemExit as e:  # argparse error
            pytest.fail(f"docs/steering.md: {cmd!r} does not parse ({e})")
        if overrides:
            assert hasattr(args, "overrides"), cmd
