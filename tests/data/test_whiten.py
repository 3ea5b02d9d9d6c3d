"""data.whiten: PCA whitening of the standardised columns (agm.data.transforms), the same key in every method."""
import numpy as np
import pytest
import torch

from agm.cli import main
from agm.data.files import load_array
from agm.data.transforms import DataTransform
from agm.errors import ConfigError


def _collinear(n=400, seed=0):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, 2, generator=g, dtype=torch.float64)
    # four columns in mixed units, two of them nearly collinear with the first
    return torch.stack([1000 * z[:, 0], 2 * z[:, 0] + 1e-3 * z[:, 1], z[:, 1], 50 + 0.1 * z[:, 0]], 1)


def test_whitened_training_rows_have_identity_covariance_and_invert_exactly():
    x = _collinear()
    tr = DataTransform.fit(x, whiten=True)
    y = tr.forward(x)
    cov = torch.cov(y.T)
    # the near-singular direction is regularised by delta = 1e-6 max(lambda), so its variance is lambda / (lambda + delta)
    lam = torch.linalg.eigvalsh(torch.cov(((x - x.mean(0)) / x.std(0)).T))
    expect = torch.diag((lam / (lam + 1e-6 * lam.max())).sort().values)
    torch.testing.assert_close(torch.diag(torch.linalg.eigvalsh(cov)), expect, atol=1e-8, rtol=1e-8)
    torch.testing.assert_close(tr.inverse(y), x, atol=1e-9 * 1000, rtol=1e-9)
    again = DataTransform.from_dict(tr.to_dict())
    torch.testing.assert_close(again.forward(x), y)
    plain = DataTransform.fit(x)
    assert plain.whiten is None and not torch.allclose(torch.cov(plain.forward(x).T), torch.eye(4, dtype=x.dtype), atol=0.1)


def test_whiten_needs_standardise():
    with pytest.raises(ConfigError, match="data.whiten=true needs data.standardise=true"):
        DataTransform.fit(_collinear(), whiten=True, standardise=False)


@pytest.mark.parametrize("cmd", [["agm"], ["bellman"], ["efm"], ["steering"]])
def test_every_method_has_the_key_and_checks_it(cmd, capsys):
    with pytest.raises(SystemExit) as e:
        main([*cmd, "train", "--help"])
    assert e.value.code == 0
    assert "data.whiten" in capsys.readouterr().out
    assert main([*cmd, "train", "--out", "/tmp/never_written_agm_whiten", "data.whiten=true", "data.standardise=false"]) != 0
    assert "data.whiten=true needs data.standardise=true" in capsys.readouterr().err


def test_agm_trains_and_samples_in_data_units_with_whitening(tmp_path):
    x = _collinear(300).numpy()
    data = tmp_path / "t.csv"
    data.write_text("a,b,c,d\n" + "\n".join(",".join(f"{v:.6f}" for v in row) for row in x) + "\n")
    run = tmp_path / "run"
    assert main(["train", "--out", str(run), "--data", str(data), "data.whiten=true", "train.steps=5",
                 "train.progress=false", "model.hidden=16"]) == 0
    out = tmp_path / "s.csv"
    assert main(["sample", "--run", str(run), "--n", "200", "--out", str(out), "--steps", "5"]) == 0
    s = load_array(out).numpy()
    # samples come back in data units: the scale of the first column (std 1000) is restored, not ~1
    assert s.shape == (200, 4) and 100 < s[:, 0].std() < 1e4 and np.isfinite(s).all()
