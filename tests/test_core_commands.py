"""The core commands `agm toy` and `agm score`, through the real parser."""
import argparse
import json

import numpy as np
import pytest
import torch

from agm.data import load_array, make_toy, save_array
from agm.errors import ConfigError, DataError
from agm.metrics import evaluate


def _parser():
    from agm.cli import build_parser

    return build_parser()


def test_save_array_round_trip(tmp_path):
    x = make_toy("pinwheel", 100, seed=1)
    for ext in (".npy", ".csv"):
        back = load_array(save_array(x, tmp_path / f"sub/x{ext}"))
        assert torch.allclose(back, x, rtol=1e-6, atol=0)  # CSV keeps 9 significant digits
    with pytest.raises(DataError, match="x.txt"):
        save_array(x, tmp_path / "x.txt")


def test_toy_and_score_commands(tmp_path, capsys):
    p = _parser()
    a, b = tmp_path / "a.npy", tmp_path / "b.csv"
    for out, seed in ((a, 1), (b, 2)):
        args = p.parse_args(["toy", "--name", "moons", "--n", "300", "--seed", str(seed), "--out", str(out)])
        assert args.func(args) == 0
    assert torch.equal(load_array(a), make_toy("moons", 300, seed=1))
    js = tmp_path / "m.json"
    args = p.parse_args(["score", "--samples", str(a), "--data", str(b), "--max-samples", "200", "--out", str(js)])
    assert args.func(args) == 0
    got = json.loads(js.read_text())
    assert got == pytest.approx(evaluate(load_array(a), load_array(b), max_samples=200, seed=0), abs=1e-12)
    assert json.loads(capsys.readouterr().out.split("\n", 2)[-1]) == got


def test_toy_command_bad_name(tmp_path):
    p = _parser()
    args = p.parse_args(["toy", "--name", "mooons", "--out", str(tmp_path / "x.npy")])
    with pytest.raises(ConfigError, match="did you mean 'moons'"):
        args.func(args)
