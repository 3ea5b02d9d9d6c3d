"""The `agm` command line contract: train / resume / sample / eval, help text, bad input."""
import json

import numpy as np
import pytest

from agm.cli import build_parser, main
from agm.methods.agm.config import all_keys

SMALL = ["train.steps=30", "train.batch_size=64", "train.log_every=5", "train.ckpt_every=10", "train.progress=false",
         "model.hidden=32", "model.depth=2", "data.n_train=500", "data.n_test=300", "eval.n_samples=300",
         "eval.max_samples=300", "sample.steps=20"]


def test_help_lists_every_option(capsys):
    parser = build_parser()
    with pytest.raises(SystemExit):
        main(["--help"])
    top = capsys.readouterr().out
    for cmd in ("demo", "train", "sample", "eval"):
        assert cmd in top
    for cmd, opts in {"demo": ["--out", "--dataset", "--steps", "--seed"], "train": ["--config", "--out", "--data", "--resume"],
                      "sample": ["--run", "--n", "--steps", "--out"], "eval": ["--run", "--data"]}.items():
        with pytest.raises(SystemExit):
            main([cmd, "--help"])
        text = capsys.readouterr().out
        for o in opts:
            assert o in text, (cmd, o)
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = capsys.readouterr().out.replace("\n", " ")
    for key in ("potential.objective", "train.steps", "path.sigma"):
        assert key in text


def test_top_level_help_imports_no_method_and_lists_what_methods_register():
    """`agm --help` lists every command from agm.cli._METHOD_COMMANDS without importing a method or torch;
    each listed line is the help its method's cli.register gives, and each method command is in the table."""
    import argparse
    import subprocess
    import sys

    from agm.cli import _METHOD_COMMANDS

    code = ("import sys\nfrom agm.cli import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            "print(sorted(m for m in sys.modules if m == 'torch' or m.startswith('agm.methods.')))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert r.stdout.splitlines()[-1] == "[]", r.stdout
    top = r.stdout.replace("\n", " ")
    full = build_parser()
    choices = next(a for a in full._actions if isinstance(a, argparse._SubParsersAction))
    registered = {a.dest: a.help for a in choices._choices_actions}
    assert {cmd: text for cmd, (_, text) in _METHOD_COMMANDS.items()} == {c: h for c, h in registered.items() if c not in ("toy", "score")}
    for cmd in registered:
        assert f" {cmd} " in top, cmd
    for cmd, (method, _) in _METHOD_COMMANDS.items():  # built from its own method alone, not a placeholder
        lazy = build_parser([cmd, "--help"])
        sub = next(a for a in lazy._actions if isinstance(a, argparse._SubParsersAction))
        assert sub.choices[cmd].format_help() == choices.choices[cmd].format_help(), cmd


def test_train_resume_sample_eval(tmp_path, capsys, monkeypatch):
    run = tmp_path / "run"
    assert main(["train", "--config", "toy", "--out", str(run), *SMALL]) == 0
    lines = (run / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(l)["step"] for l in lines] == [5, 10, 15, 20, 25, 30]
    # resume to more steps
    cfg = (run / "config.yaml").read_text().replace("steps: 30", "steps: 40")
    (run / "config.yaml").write_text(cfg)
    assert main(["train", "--resume", str(run)]) == 0
    assert json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])["step"] == 40
    # sampling never builds or loads V_phi
    import agm.methods.agm.model as am

    monkeypatch.setattr(am, "build_potential", lambda *a, **k: (_ for _ in ()).throw(AssertionError("V_phi built")))
    ckpt = run / "checkpoints" / (run / "checkpoints" / "latest").read_text().strip()
    (ckpt / "networks.safetensors").unlink()  # only ema.safetensors is needed to sample
    out = tmp_path / "x.npy"
    assert main(["sample", "--run", str(run), "--n", "123", "--steps", "10", "--out", str(out)]) == 0
    x = np.load(out)
    assert x.shape == (123, 2) and np.isfinite(x).all()
    capsys.readouterr()
    assert main(["eval", "--run", str(run)]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert {"w2", "mmd", "energy", "precision", "recall", "density", "coverage"} <= set(metrics)
    assert json.loads((run / "eval.json").read_text()) == metrics


def test_user_data_file(tmp_path):
    rng = np.random.default_rng(0)
    np.save(tmp_path / "d.npy", rng.normal(size=(400, 3)).astype(np.float32))
    run = tmp_path / "run"
    assert main(["train", "--out", str(run), "--data", str(tmp_path / "d.npy"), "method=baseline", *SMALL]) == 0
    assert json.loads((run / "run.json").read_text())["data_shape"] == [3]


@pytest.mark.parametrize(
    "argv,needle",
    [
        (["train", "--config", "toy", "--out", "{tmp}/r", "train.step=5"], "did you mean 'train.steps'"),
        (["train", "--config", "toy", "--out", "{tmp}/r", "train.batch_size=0"], "train.batch_size"),
        (["train", "--config", "toy", "--out", "{tmp}/r", "data.name=moon"], "data.name"),
        (["train", "--resume", "{tmp}/missing"], "does not exist"),
        (["train", "--resume", "{tmp}"], "not an agm run directory"),
        (["sample", "--run", "{tmp}", "--n", "5", "--out", "{tmp}/x.npy"], "not an agm run directory"),
        (["eval", "--run", "{tmp}/missing"], "does not exist"),
        (["train", "--config", "toy", "--out", "{tmp}/r", "--data", "{tmp}/nan.npy"], "NaN"),
        (["train", "--config", "toy", "--out", "{tmp}/r", "--data", "{tmp}/str.npy"], "dtype"),
        (["train", "--config", "toy", "--out", "{tmp}/r", "--data", "{tmp}/cube.npy"], "shape"),
    ],
)
def test_bad_input_gives_clear_error(tmp_path, capsys, argv, needle):
    np.save(tmp_path / "nan.npy", np.array([[0.0, 1.0], [np.nan, 2.0], [1.0, 1.0]], dtype=np.float32))
    np.save(tmp_path / "str.npy", np.array([["a", "b"], ["c", "d"]]))
    np.save(tmp_path / "cube.npy", np.zeros((4, 2, 2), dtype=np.float32))
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert needle.lower() in err.lower(), err


def test_sample_rejects_bad_counts(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--config", "toy", "--out", str(run), "method=baseline", *SMALL]) == 0
    for argv, needle in ((["--n", "0"], "n=0"), (["--n", "5", "--steps", "0"], "steps=0")):
        assert main(["sample", "--run", str(run), *argv, "--out", str(tmp_path / "x.npy")]) == 2
        assert needle in capsys.readouterr().err
