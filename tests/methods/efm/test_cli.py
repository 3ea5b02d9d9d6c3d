"""`agm efm train|sample|eval` and `agm qipo data|inspect|train|eval` through the real CLI: help, run folders,
kill -9 and resume (bit-identical end), the non-empty --out rule, bad input, and every command in docs/efm_qipo.md."""
from __future__ import annotations

import json
import re
import shlex
import signal
from pathlib import Path

import pytest

from agm.cli import main

ROOT = Path(__file__).resolve().parents[3]
EFM_SMALL = ["train.steps=60", "train.ckpt_every=20", "train.log_every=10", "train.batch_size=64", "model.hidden=16",
             "data.n_train=512", "data.n_test=256", "sample.steps=5", "eval.n_samples=200", "eval.max_samples=200"]
QIPO_SMALL = ["behaviour_steps=16", "q_steps=16", "improve_steps=24", "renew_every=10", "support_size=2", "q_support_size=2",
              "policy_hidden=16", "q_hidden=16", "support_states=64", "train.batch_size=32", "improve_batch_size=16",
              "train.ckpt_every=8", "train.log_every=8", "sampler_steps=3", "freeze_q=false", "eval.episodes=1"]


def test_help_lists_every_config_key(capsys):
    for cmd, opts in {("qipo", "data"): ["--env", "--n-transitions", "--mixture", "--out"],
                      ("qipo", "inspect"): ["path", "--env"],
                      # issue 16 item 4: depth/width, the sampler's steps and the threads are config keys of the CLI
                      ("qipo", "train"): ["--data", "--env", "--out", "--overwrite", "--resume", "--config", "qipo_v1",
                                          "beta ", "support_size",
                                          "renew_every", "improve_steps", "policy_depth", "policy_hidden", "q_depth",
                                          "q_hidden", "sampler_steps", "train.threads", "train.progress", "best_of"],
                      ("qipo", "eval"): ["--run", "--episodes", "--best-of"],
                      ("efm", "train"): ["--data", "--out", "--resume", "energy.beta", "energy.A", "energy.normalization",
                                         "data.path", "model.hidden", "sample.steps"],
                      ("efm", "sample"): ["--run", "--n", "--steps"],
                      ("efm", "eval"): ["--run", "--n"]}.items():
        with pytest.raises(SystemExit):
            main([*cmd, "--help"])
        text = capsys.readouterr().out
        for o in opts:
            assert o in text, (cmd, o)


def test_efm_kill_resume_sample_eval(kill_resume_contract, tmp_path):
    full, killed = kill_resume_contract(["efm", "train", "energy.beta=2", *EFM_SMALL], ["efm", "sample", "--n", "20"],
                                        ["efm", "eval", "--n", "200"])
    ev = json.loads((killed / "eval.json").read_text())
    assert ev["reference"].startswith("exact samples") and {"w2", "mean_err", "cov_err_fro"} <= set(ev)


def test_efm_train_matches_closed_form(tmp_path, capsys):
    """A short EFM run on gauss2d at beta = 2: the closed-form tilt moves the first coordinate's mean from 1.0 to
    -0.40 (gaussian_tilt). Tolerance: sampling SE of the mean ~ sd_q / sqrt(2000) = 0.01, plus an explicit 0.15
    allowance for a 400-step (under-trained) fit, far below the 1.40 shift an unweighted model would leave."""
    run = tmp_path / "r"
    assert main(["efm", "train", "--out", str(run), "energy.beta=2", "train.steps=400", "train.ckpt_every=400",
                 "data.n_train=4000", "train.progress=false"]) == 0
    capsys.readouterr()
    assert main(["efm", "eval", "--run", str(run), "--n", "2000"]) == 0
    ev = json.loads(capsys.readouterr().out)
    assert ev["mean_err"] < 0.15 + 4 * 0.01, ev


def test_efm_user_file_and_nonempty_out(tmp_path, capsys):
    import numpy as np

    rng = np.random.default_rng(0)
    f = tmp_path / "x.csv"
    np.savetxt(f, np.c_[rng.normal(100.0, 10.0, 600), rng.normal(0.0, 0.01, 600)], delimiter=",", header="a,b", comments="")
    run = tmp_path / "u"
    args = ["efm", "train", "--data", str(f), "--out", str(run), "energy.kind=linear", "energy.g=[0.1, 0.0]", "train.steps=20",
            "train.ckpt_every=20", "model.hidden=8", "train.progress=false"]
    assert main(args) == 0
    assert json.loads((run / "run.json").read_text())["fingerprints"][0]["path"] == str(f.resolve())
    capsys.readouterr()
    assert main(args) == 2 and "--overwrite" in capsys.readouterr().err
    assert main([*args, "--overwrite"]) == 0
    capsys.readouterr()
    assert main(["efm", "eval", "--run", str(run), "--n", "100"]) == 0
    assert json.loads(capsys.readouterr().out)["reference"].startswith("held-out rows resampled")
    assert main(["efm", "train", "--out", str(tmp_path / "v"), "data.name=moons"]) == 2
    assert "energy.A" in capsys.readouterr().err


def test_qipo_kill_resume_in_every_phase(kill_resume_contract, run_cli, tmp_path):
    """`agm qipo train` (3 phases, one Trainer): SIGKILL after the 1st checkpoint (behaviour phase, by the contract
    fixture), the 3rd (Q phase: its next-state support is re-drawn on resume) and the 5th (phase 3 between two
    renewals: the support table comes from the checkpoint); every resume ends bit-identical to the uninterrupted run."""
    data = tmp_path / "p.npz"
    assert main(["qipo", "data", "--n-transitions", "200", "--out", str(data)]) == 0
    train = ["qipo", "train", "--data", data, *QIPO_SMALL]
    full, _ = kill_resume_contract(train, None, ["qipo", "eval"])
    state_of = lambda r: (r / "checkpoints" / (r / "checkpoints" / "latest").read_text().strip() / "state.json").read_text()  # noqa: E731
    final = json.loads(state_of(full))
    assert final["step"] == 56
    for n in (3, 5):
        killed = tmp_path / f"k{n}"
        proc = run_cli([*train, "--out", killed], env_extra={"AGM_KILL_AFTER_CHECKPOINT": str(n)}, check=False)
        assert proc.returncode == -signal.SIGKILL, proc.stderr
        assert json.loads(state_of(killed))["step"] == 8 * n
        run_cli(["qipo", "train", "--resume", killed])
        assert json.loads(state_of(killed))["files"] == final["files"], n


def test_qipo_data_inspect_and_bad_input(tmp_path, capsys):
    out = tmp_path / "p.npz"
    assert main(["qipo", "data", "--env", "Pendulum-v1", "--n-transitions", "300", "--out", str(out)]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["transitions"] == 300 and info["episodes"] == 2
    assert main(["qipo", "data", "--n-transitions", "50", "--out", str(out)]) == 2  # never overwritten
    assert "already exists" in capsys.readouterr().err
    assert main(["qipo", "inspect", str(out), "--env", "Pendulum-v1"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["obs_dim"] == 3 and info["act_dim"] == 1 and info["timeouts"] == 2
    assert main(["qipo", "data", "--n-transitions", "50", "--out", str(tmp_path / "q.npz"), "--mixture", "{bad"]) == 2
    assert "--mixture" in capsys.readouterr().err
    assert main(["qipo", "inspect", str(out), "--env", "MountainCarContinuous-v0"]) == 2
    assert "observations have shape (N, 3)" in capsys.readouterr().err
    assert main(["qipo", "inspect", str(tmp_path / "missing.hdf5")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["qipo", "train", "--data", str(out), "--out", str(tmp_path / "r"), "beta=-2"]) == 2
    assert "beta" in capsys.readouterr().err
    assert main(["qipo", "train", "--out", str(tmp_path / "r2")]) == 2
    assert "data.path" in capsys.readouterr().err
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "mine.txt").write_text("keep")
    assert main(["qipo", "train", "--data", str(out), "--out", str(tmp_path / "busy")]) == 2
    assert "--overwrite" in capsys.readouterr().err and (tmp_path / "busy" / "mine.txt").exists()
    assert main(["efm", "train", "--out", str(tmp_path / "e"), "energy.beta=-1"]) == 2
    assert "energy.beta" in capsys.readouterr().err


def _doc_commands() -> list[str]:
    text = (ROOT / "docs" / "efm_qipo.md").read_text()
    cmds = []
    for block in re.findall(r"```(?:bash|sh)?\n(.*?)```", text, flags=re.S):
        for line in block.splitlines():
            line = line.split("  #")[0].strip()
            if line.startswith("agm "):
                cmds.append(line)
    cmds += [m for m in re.findall(r"`(agm [^`]+)`", text) if "|" not in m]  # "train|sample|eval" is grammar, not a line
    return cmds


def test_every_command_in_the_docs_parses():
    """Every `agm ...` line of docs/efm_qipo.md parses with the real parser (agm.cli.build_parser)."""
    from agm.cli import split_overrides, build_parser

    cmds = _doc_commands()
    assert len(cmds) >= 8
    parser = build_parser()
    for cmd in cmds:
        rest, _ = split_overrides(shlex.split(cmd)[1:])
        try:
            parser.parse_args(rest)
        except SystemExit as e:  # --help exits with 0
            if e.code == 0:
                continue
            raise AssertionError(f"docs/efm_qipo.md: {cmd!r} does not parse") from e
