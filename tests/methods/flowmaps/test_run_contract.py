"""`agm flowmaps train|sample|eval` keep the run contract of every method (kill -9 after the first checkpoint,
resume, bit-identical end; sample and eval on the resumed run), read a user's latitude/longitude CSV by its header,
never standardise manifold data, and refuse samples off the manifold."""
import json

import numpy as np
import pytest
import torch

from agm.errors import ConfigError, DataError

SMALL = ["train.steps=40", "train.ckpt_every=20", "train.log_every=10", "train.batch_size=32", "model.hidden=16",
         "model.depth=2", "data.n_train=256", "data.n_test=64", "eval.n_samples=64", "eval.max_samples=64"]


def test_flowmaps_kill_resume_sample_eval(kill_resume_contract):
    full, killed = kill_resume_contract(["flowmaps", "train", "data.name=torus_wrapped", "method=progressive", *SMALL],
                                        ["flowmaps", "sample", "--n", "20", "--steps", "2"], ["flowmaps", "eval", "--steps", "2"])
    ev = json.loads((killed / "eval.json").read_text())
    assert ev["on_manifold"] is True and ev["n_samples"] == 64 and ev["w2"] > 0


def test_user_csv_with_a_header_through_the_cli(tmp_path, run_cli):
    """Columns found by name (any case, any order, extra columns ignored); the held-out split is the user's rows
    mapped to S^2 exactly as latitude, longitude in degrees; samples are on S^2; config.yaml stores the absolute path."""
    from agm.data.manifold import latlon_to_sphere

    g = np.random.default_rng(0)
    lat, lon = g.uniform(-80, 80, 200), g.uniform(-180, 180, 200)
    p = tmp_path / "events.csv"
    p.write_text("Magnitude,LONGITUDE,Lat\n" + "\n".join(f"{m:.2f},{b:.6f},{a:.6f}" for m, a, b in zip(g.uniform(0, 9, 200), lat, lon)))
    run = tmp_path / "run"
    run_cli(["flowmaps", "train", "--data", p, "data.manifold=sphere", "--out", run, "train.steps=4", "train.ckpt_every=4",
             "model.hidden=8", "model.depth=1", "train.batch_size=16"])
    from safetensors.torch import load_file

    test = load_file(str(run / "test_data.safetensors"))["test"].double()
    want = latlon_to_sphere(torch.from_numpy(np.stack([lat, lon], 1)))
    # every held-out point is one of the user's points (distance to the nearest < float32 round-off)
    assert torch.cdist(test, want).min(1).values.max() < 1e-6 and test.shape == (20, 3)
    assert str(p.resolve()) in (run / "config.yaml").read_text()
    out = tmp_path / "s.npy"
    run_cli(["flowmaps", "sample", "--run", run, "--n", "30", "--out", out])
    x = torch.from_numpy(np.load(out)).double()
    assert x.shape == (30, 3) and (x.norm(dim=1) - 1).abs().max() < 1e-5


def test_latlon_columns_by_header_by_option_and_without_header(tmp_path):
    from agm.data.manifold import load_earth_events, sphere_to_latlon

    ll = np.array([[10.0, 20.0], [-45.0, 170.0], [60.0, -120.0]])
    with_header = tmp_path / "h.csv"
    with_header.write_text("lng,id,LATITUDE\n" + "\n".join(f"{b},{i},{a}" for i, (a, b) in enumerate(ll)))
    got = sphere_to_latlon(load_earth_events(with_header).double()).numpy()
    assert np.allclose(got, ll, atol=1e-4)
    no_header = tmp_path / "n.csv"  # no header: (latitude, longitude) in degrees, the first two columns
    no_header.write_text("\n".join(f"{a},{b},7" for a, b in ll))
    assert np.allclose(sphere_to_latlon(load_earth_events(no_header).double()).numpy(), ll, atol=1e-4)
    swapped = tmp_path / "s.csv"  # no header, longitude first: name the columns by index
    swapped.write_text("\n".join(f"{b},{a}" for a, b in ll))
    assert np.allclose(sphere_to_latlon(load_earth_events(swapped, columns=[1, 0]).double()).numpy(), ll, atol=1e-4)
    named = tmp_path / "c.csv"  # unusual names: the option names them
    named.write_text("y_deg,x_deg\n" + "\n".join(f"{a},{b}" for a, b in ll))
    with pytest.raises(DataError, match="no latitude column .*data.columns"):
        load_earth_events(named)
    assert np.allclose(sphere_to_latlon(load_earth_events(named, columns=["Y_DEG", "x_deg"]).double()).numpy(), ll, atol=1e-4)
    with pytest.raises(DataError, match="not in the header"):
        load_earth_events(named, columns=["lat", "lon"])
    with pytest.raises(DataError, match="has no header row"):
        load_earth_events(no_header, columns=["lat", "lon"])
    both = tmp_path / "b.csv"
    both.write_text("lat,latitude,lon\n1,2,3\n4,5,6\n")
    with pytest.raises(DataError, match="more than one latitude"):
        load_earth_events(both)


def test_manifold_data_is_never_standardised():
    from agm.methods.flowmaps.config import load_config

    with pytest.raises(ConfigError, match="data.standardise=true is not accepted by flow maps"):
        load_config(None, ["data.standardise=true"])
    with pytest.raises(ConfigError, match="data.manifold=None is not accepted"):
        load_config(None, ["data.path=x.csv"])
    assert load_config(None, ["data.path=x.csv", "data.manifold=torus"]).data.name == "file"


def test_samples_off_the_manifold_are_an_error(monkeypatch):
    from agm.manifolds import Sphere
    from agm.methods.flowmaps import sampler as sampler_mod
    from agm.methods.flowmaps.nets import FlowMap, FlowMapMLP
    from agm.methods.flowmaps.train import sample_flow_map

    m = Sphere(2)
    fm = FlowMap(m, FlowMapMLP(m, 8, 1))
    assert m.belongs(sample_flow_map(fm, 10, 2, mode="map")).all()
    monkeypatch.setattr(sampler_mod.FlowMapSampler, "sample", lambda self, f, x0: 1.5 * x0)
    with pytest.raises(DataError, match="10 of 10 samples are not on Sphere"):
        sample_flow_map(fm, 10, 2, mode="map")
