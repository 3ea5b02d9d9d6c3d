"""`agm bellman ...` CLI: every option has help, a tiny fit writes its files, bad input gives a clear error."""
import json

import numpy as np
import pytest

from agm.cli import main


def test_help_lists_options(capsys):
    for cmd, opts in {"fit": ["--data", "--out", "--eps", "--kernel", "--slices", "--sample-steps"],
                      "rl": ["--env", "--agent", "--steps", "--sigma-t", "--out"]}.items():
        with pytest.raises(SystemExit):
            main(["bellman", cmd, "--help"])
        text = capsys.readouterr().out
        for o in opts:
            assert o in text, (cmd, o)
    # argparse prints "help: None"-free lines only if every option has help text
    from agm.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command").choices["bellman"]
    for name, sp in next(a for a in sub._actions if a.dest == "bellman_cmd").choices.items():
        for act in sp._actions:
            if act.dest != "help":
                assert act.help, (name, act.dest)


def test_fit_tiny_uniform3(tmp_path, capsys):
    out = tmp_path / "run"
    rc = main(["bellman", "fit", "--data", "uniform3", "--out", str(out), "--n-train", "2000", "--steps", "60",
               "--batch-size", "128", "--hidden", "32", "--depth", "2", "--n-samples", "300", "--sample-steps", "50",
               "--kernel", "full", "--trace", "exact"])
    assert rc == 0
    x = np.load(out / "samples.npy")
    assert x.shape == (300, 1) and np.isfinite(x).all()
    m = json.loads((out / "metrics.json").read_text())
    assert m["dim"] == 1 and m["finite_fraction"] == 1.0
    assert (out / "fields.safetensors").is_file()


@pytest.mark.parametrize("argv, needle", [
    (["bellman", "fit", "--data", "moons", "--out", "X", "--eps", "0"], "eps"),
    (["bellman", "fit", "--data", "moons", "--out", "X", "--slices", "0"], "n_slices"),
    (["bellman", "fit", "--data", "moonz", "--out", "X"], "moons"),
    (["bellman", "rl", "--env", "Pendulum-v1", "--out", "x.json", "--steps", "10"], "action_space"),
    (["bellman", "rl", "--out", "x.json", "--sigma-t", "0", "--steps", "10"], "eps_T"),
])
def test_bad_input(argv, needle, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    assert needle in capsys.readouterr().err
