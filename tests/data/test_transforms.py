"""Per-column transforms of user data (agm.data.transforms): exact round trips, header names, bad specs."""
import json

import numpy as np
import pytest
import torch

from agm.data.files import csv_header, load_user_data
from agm.data.transforms import DataTransform, heavy_tail_score
from agm.errors import ConfigError


def _table(n=400, seed=0):
    g = torch.Generator().manual_seed(seed)
    size = 1.5 + 0.3 * torch.randn(n, generator=g, dtype=torch.float64)  # metres
    price = 1e4 * torch.exp(torch.randn(n, generator=g, dtype=torch.float64))  # dollars, heavy right tail
    signed = torch.randn(n, generator=g, dtype=torch.float64) ** 3 * 50  # heavy tails on both sides
    return torch.stack([size, price, signed], 1)


@pytest.mark.parametrize("logs,quants", [((), ()), ((1, 2), ()), ((), (1, 2)), ((2,), (1,)), ((), (0, 1, 2))])
@pytest.mark.parametrize("standardise", [True, False])
def test_round_trip_is_exact(logs, quants, standardise):
    x = _table()
    tr = DataTransform.fit(x, standardise=standardise, log_columns=logs, quantile_columns=quants)
    y = tr.forward(x)
    assert torch.isfinite(y).all()
    back = tr.inverse(y)
    # float64 throughout: exact up to rounding (relative 1e-9 of each column's scale)
    scale = x.abs().max(0).values
    assert ((back - x).abs() / scale).max() < 1e-9
    # stored and reloaded (JSON, as in the run folder): the same maps
    tr2 = DataTransform.from_dict(json.loads(json.dumps(tr.to_dict())))
    assert torch.equal(tr2.forward(x), y) and torch.equal(tr2.inverse(y), back)
    if standardise:  # model space is standardised
        assert torch.allclose(y.mean(0), torch.zeros(3, dtype=y.dtype), atol=1e-9)
        assert torch.allclose(y.std(0), torch.ones(3, dtype=y.dtype), atol=1e-9)


def test_quantile_columns_are_gaussian_and_clamped_outside_the_range():
    x = _table(2000)
    tr = DataTransform.fit(x, standardise=False, quantile_columns=[1])
    y = tr.forward(x)[:, 1]
    # Phi^{-1} of (nearly) uniform ranks: mean 0, std 1 to within the sampling error of 2000 rows (4 sigma)
    assert abs(float(y.mean())) < 4 / 2000**0.5 and abs(float(y.std()) - 1) < 0.05
    far = tr.inverse(torch.tensor([[0.0, 40.0, 0.0], [0.0, -40.0, 0.0]], dtype=torch.float64))
    assert float(far[0, 1]) == pytest.approx(float(x[:, 1].max())) and float(far[1, 1]) == pytest.approx(float(x[:, 1].min()))
    assert heavy_tail_score(x)[1] > 3 > abs(heavy_tail_score(x)[0])  # the lognormal column is flagged, the normal one not


def test_header_names_select_columns(tmp_path):
    x = _table(300).numpy()
    p = tmp_path / "houses.csv"
    np.savetxt(p, x, delimiter=",", header="size_m,price_usd,signed", comments="")
    assert csv_header(p) == ["size_m", "price_usd", "signed"]
    train, test, tr, names = load_user_data(p, test_fraction=0.2, seed=0, log_columns=["price_usd"], quantile_columns=["signed"])
    assert names == ["size_m", "price_usd", "signed"] and tr.log_columns == [1] and tr.quantile_columns == [2]
    assert train.shape == (240, 3) and test.shape == (60, 3)
    # by index, the same transform
    _, _, tr_idx, _ = load_user_data(p, test_fraction=0.2, seed=0, log_columns=[1], quantile_columns=[-1])
    assert tr_idx.to_dict() == tr.to_dict()
    # opting out of everything: the data as is, no transform stored
    raw_train, _, none, _ = load_user_data(p, test_fraction=0.2, seed=0, standardise=False)
    assert none is None and float(raw_train[:, 1].abs().max()) > 1e3


@pytest.mark.parametrize(
    "kw,needle",
    [
        ({"log_columns": ["prices_usd"]}, "data.log_columns entry 'prices_usd' is not a column name"),
        ({"log_columns": ["prices_usd"]}, "did you mean 'price_usd'"),
        ({"quantile_columns": [3]}, "data.quantile_columns entry 3 is out of range"),
        ({"quantile_columns": [True]}, "data.quantile_columns entry True"),
        ({"log_columns": [1.5]}, "data.log_columns entry 1.5"),
        ({"log_columns": [1], "quantile_columns": ["price_usd"]}, "in both data.log_columns and data.quantile_columns"),
    ],
)
def test_bad_column_specs_name_the_key(tmp_path, kw, needle):
    p = tmp_path / "houses.csv"
    np.savetxt(p, _table(50).numpy(), delimiter=",", header="size_m,price_usd,signed", comments="")
    with pytest.raises(ConfigError) as e:
        load_user_data(p, test_fraction=0.2, seed=0, **kw)
    assert needle in str(e.value)


def test_names_need_a_header(tmp_path):
    p = tmp_path / "plain.csv"
    np.savetxt(p, _table(50).numpy(), delimiter=",")
    with pytest.raises(ConfigError, match=r"data.log_columns entry 'price_usd' is not a column name; columns: \[\]"):
        load_user_data(p, test_fraction=0.2, seed=0, log_columns=["price_usd"])
