"""User data files: .npy/.csv loading, validation errors, and the train/test split (agm.data.files)."""
import numpy as np
import pytest
import torch

from agm.data.files import load_array, split, subsample, validate_array
from agm.errors import ConfigError, DataError


@pytest.fixture
def arr():
    return np.random.default_rng(0).normal(size=(50, 3))


def test_npy_round_trip(tmp_path, arr):
    p = tmp_path / "x.npy"
    np.save(p, arr)
    x = load_array(p)
    assert x.dtype == torch.float32 and x.shape == (50, 3)
    assert torch.equal(x, torch.from_numpy(arr.astype(np.float32)))
    np.save(p, arr[:, 0])  # (N,) -> (N, 1)
    assert load_array(str(p)).shape == (50, 1)
    np.save(p, np.arange(12, dtype=np.int64).reshape(6, 2))  # integers are accepted
    assert torch.equal(load_array(p), torch.arange(12, dtype=torch.float32).reshape(6, 2))


def test_csv_round_trip_with_and_without_header(tmp_path, arr):
    p = tmp_path / "x.csv"
    np.savetxt(p, arr, delimiter=",")
    assert torch.allclose(load_array(p), torch.from_numpy(arr).float(), rtol=0, atol=1e-6)
    np.savetxt(p, arr, delimiter=",", header="a,b,c", comments="")
    x = load_array(p)
    assert x.shape == (50, 3)
    assert torch.allclose(x, torch.from_numpy(arr).float(), rtol=0, atol=1e-6)
    p.write_text("v\n1\n2\n3\n")  # single column with header
    assert load_array(p).tolist() == [[1.0], [2.0], [3.0]]


def _write_npy(tmp_path, a, name="bad.npy"):
    p = tmp_path / name
    np.save(p, a, allow_pickle=True)
    return p


@pytest.mark.parametrize("bad,needle", [
    (np.array([[1, "a"], [2, 3]], dtype=object), "numeric"),
    (np.ones((4, 2), dtype=bool), "bool"),
    (np.ones((4, 2), dtype=complex), "complex"),
    (np.array([["a", "b"], ["c", "d"]]), "str"),
    (np.zeros((4, 2, 2)), "ndim=3"),
    (np.zeros(()), "ndim=0"),
    (np.zeros((1, 3)), "N=1"),
    (np.zeros((5, 0)), "D=0"),
])
def test_npy_bad_inputs(tmp_path, bad, needle):
    p = _write_npy(tmp_path, bad)
    with pytest.raises(DataError) as e:
        load_array(p)
    assert str(p) in str(e.value) and needle in str(e.value)


def test_nonfinite_rows_reported(tmp_path, arr):
    a = arr.copy()
    a[7, 1] = np.nan
    a[9, 0] = np.inf
    a[30, 2] = -np.inf
    with pytest.raises(DataError) as e:
        load_array(_write_npy(tmp_path, a))
    msg = str(e.value)
    assert "3 of 50 rows" in msg and "first bad row index: 7" in msg and "bad.npy" in msg
    # finite in float64 but beyond float32's range -> inf after the cast: also rejected
    b = arr.copy()
    b[4, 0] = 1e300
    with pytest.raises(DataError, match="first bad row index: 4"):
        validate_array(b, field="train")


def test_validate_array_field_and_shapes():
    with pytest.raises(DataError, match=r"^samples has shape \(2, 2, 2\)") as e:
        validate_array(torch.zeros(2, 2, 2), field="samples")
    assert "accepted shapes: (N, D) or (N,)" in str(e.value)
    assert validate_array(torch.zeros(3, 2, 2), flatten=True).shape == (3, 4)
    assert validate_array(torch.arange(4)).shape == (4, 1)
    with pytest.raises(DataError, match="torch.bool"):
        validate_array(torch.zeros(3, 2, dtype=torch.bool))
    with pytest.raises(DataError, match="complex"):
        validate_array(torch.zeros(3, 2, dtype=torch.complex64))
    with pytest.raises(DataError, match="list"):
        validate_array([[1.0, 2.0]])
    with pytest.raises(DataError, match="N=0"):
        validate_array(np.zeros((0, 2)))
    x64 = validate_array(np.ones((3, 2)), dtype=torch.float64)
    assert x64.dtype == torch.float64


@pytest.mark.parametrize("text,needle", [
    ("1,2\n3\n4,5\n", "line 2 has 1 columns"),
    ("1,2\n3,x\n", "line 2 has a non-numeric value"),
    ("", "empty CSV"),
    ("a,b\n", "no data rows"),
    ("a,b\n1,2\n", "N=1"),
    ("1,nan\n2,3\n", "first bad row index: 0"),
])
def test_csv_bad_inputs(tmp_path, text, needle):
    p = tmp_path / "bad.csv"
    p.write_text(text)
    with pytest.raises(DataError) as e:
        load_array(p)
    assert str(p) in str(e.value) and needle in str(e.value)


def test_missing_file_and_bad_extension(tmp_path):
    with pytest.raises(DataError) as e:
        load_array(tmp_path / "none.npy")
    assert "none.npy" in str(e.value) and "does not exist" in str(e.value)
    p = tmp_path / "x.txt"
    p.write_text("1,2\n")
    with pytest.raises(DataError) as e:
        load_array(p)
    assert "x.txt" in str(e.value) and "'.npy'" in str(e.value) and "'.csv'" in str(e.value)


def test_split_partition_and_determinism(arr):
    x = torch.from_numpy(arr).float()
    tr, te = split(x, 0.2, seed=1)
    assert tr.shape == (40, 3) and te.shape == (10, 3)
    both = torch.cat([tr, te])
    # the two parts are a partition of the rows
    assert torch.equal(both[both[:, 0].argsort()], x[x[:, 0].argsort()])
    tr2, te2 = split(x, 0.2, seed=1)
    assert torch.equal(tr, tr2) and torch.equal(te, te2)
    assert not torch.equal(te, split(x, 0.2, seed=2)[1])
    tr3, te3 = split(x[:2], 0.01)  # both parts keep at least one row
    assert len(tr3) == 1 and len(te3) == 1


@pytest.mark.parametrize("frac", [0, 1, 1.5, -0.1, "0.1", True])
def test_split_bad_fraction(arr, frac):
    with pytest.raises(ConfigError, match="data.test_fraction"):
        split(arr, frac)


def test_subsample():
    x = torch.arange(10.0)[:, None]
    assert subsample(x, None) is x and subsample(x, 20) is x
    s = subsample(x, 4, seed=3)
    assert s.shape == (4, 1) and len(set(s[:, 0].tolist())) == 4
    assert torch.equal(s, subsample(x, 4, seed=3))
