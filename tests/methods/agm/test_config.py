import pytest

from agm.methods.agm.config import all_keys, builtin_configs, load_config
from agm.training.config import parse_override
from agm.errors import ConfigError


def test_builtin_and_overrides():
    cfg = load_config("toy", ["train.steps=50", "method=baseline", "potential.clip=null", "path.sigma=0"])
    assert cfg.train.steps == 50 and cfg.method == "baseline" and cfg.potential.clip is None and cfg.path.sigma == 0.0
    assert "toy" in builtin_configs() and "default" in builtin_configs()


def test_unknown_key_suggests_closest():
    with pytest.raises(ConfigError, match=r"unknown config key 'train.step'.*did you mean 'train.steps'"):
        load_config(None, ["train.step=10"])
    with pytest.raises(ConfigError, match=r"did you mean 'potential.temperature'"):
        load_config({"potential": {"temprature": 2.0}})


@pytest.mark.parametrize(
    "override,field",
    [
        ("train.steps=0", "train.steps"),
        ("train.batch_size=-4", "train.batch_size"),
        ("sample.steps=0", "sample.steps"),
        ("train.steps=abc", "train.steps"),
        ("method=diffusion", "method"),
        ("potential.objective=mse", "potential.objective"),
        ("train.lr=0", "train.lr"),
        ("path.sigma=-0.1", "path.sigma"),
        ("train.ema_decay=1.0", "train.ema_decay"),
        ("sample.method=heun", "sample.method"),  # ODE sampling needs path.sigma = 0
    ],
)
def test_bad_values_name_the_field(override, field):
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        load_config("toy", [override])


def test_bad_sources(tmp_path):
    with pytest.raises(ConfigError, match="neither a file nor a built-in"):
        load_config("no-such-config")
    p = tmp_path / "c.yaml"
    p.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(p)
    with pytest.raises(ConfigError, match="key=value"):
        parse_override("train.steps", all_keys())


def test_every_key_is_settable():
    for key in all_keys():
        assert key.count(".") <= 1
