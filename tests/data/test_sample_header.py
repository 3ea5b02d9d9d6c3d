"""A table's header travels with the run: samples written as CSV carry the training table's column names."""
import numpy as np
import pytest
import torch

from agm.cli import main
from agm.data.files import load_array, save_array
from agm.data.transforms import DataTransform
from agm.errors import DataError


def test_save_array_header_round_trip(tmp_path):
    x = torch.tensor([[1.0, 2.0], [3.0, 4.5]])
    p = save_array(x, tmp_path / "a.csv", header=["price", "age"])
    assert p.read_text().splitlines()[0] == "price,age"
    assert torch.equal(load_array(p), x)
    assert p.read_text().count("\n") == 3
    with pytest.raises(DataError, match="header has 1 names for 2 columns"):
        save_array(x, tmp_path / "b.csv", header=["price"])
    assert not save_array(x, tmp_path / "c.csv").read_text().startswith("price")


def test_transform_keeps_names():
    x = torch.randn(50, 3).abs() + 1
    tr = DataTransform.fit(x, log_columns=["b"], names=["a", "b", "c"])
    assert tr.names == ["a", "b", "c"] and tr.log_columns == [1]
    again = DataTransform.from_dict(tr.to_dict())
    assert again.names == ["a", "b", "c"]
    assert DataTransform.from_dict({k: v for k, v in tr.to_dict().items() if k != "names"}).names is None  # older runs


def test_cli_samples_carry_the_header(tmp_path):
    rng = np.random.default_rng(0)
    data = tmp_path / "t.csv"
    rows = "\n".join(f"{a:.3f},{b:.3f}" for a, b in zip(np.exp(rng.normal(3, 1, 200)), rng.normal(0, 1, 200)))
    data.write_text("price,score\n" + rows + "\n")
    run = tmp_path / "run"
    assert main(["train", "--out", str(run), "--data", str(data), "train.steps=5", "train.progress=false",
                 "model.hidden=16", "data.log_columns=[price]"]) == 0
    out = tmp_path / "s.csv"
    assert main(["sample", "--run", str(run), "--n", "4", "--out", str(out), "--steps", "3"]) == 0
    assert out.read_text().splitlines()[0] == "price,score"
    assert load_array(out).shape == (4, 2)
