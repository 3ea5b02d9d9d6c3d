"""The FID Inception port (agm.metrics.fid) against pytorch-fid's network with the same random weights (issue 16, item 13).

pytorch-fid 0.3.0 imports torchvision (its FID blocks subclass torchvision's Inception blocks), and the
PyPI torchvision wheel for torch 2.13 (0.28.0) is a CUDA build whose compiled ops do not load beside the
CPU torch ("operator torchvision::nms does not exist"), so neither can be a plain test dependency here.
This test therefore runs where ``AGM_TORCHVISION_SRC`` names an unpacked torchvision wheel folder (e.g.
``pip install --no-deps --target /tmp/tv torchvision==0.28.0`` then ``AGM_TORCHVISION_SRC=/tmp/tv/torchvision``)
and pytorch-fid is installed (``pip install --no-deps pytorch-fid``): only torchvision's pure-Python
Inception module is loaded (no compiled op), under a stub ``torchvision`` package. Nothing is downloaded:
pytorch-fid's weight loader is handed our random state dict. Skipped otherwise.
"""
import importlib
import os
import sys
import types

import pytest
import torch

TV = os.environ.get("AGM_TORCHVISION_SRC")


@pytest.fixture
def pytorch_fid_inception(monkeypatch):
    if not TV or not os.path.isfile(os.path.join(TV, "models", "inception.py")):
        pytest.skip("set AGM_TORCHVISION_SRC to an unpacked torchvision wheel's torchvision/ folder (see the module docstring)")
    pytest.importorskip("pytorch_fid")
    tv = types.ModuleType("torchvision")
    tv.__path__ = [TV]
    tv.__version__ = "0.28.0"
    models = types.ModuleType("torchvision.models")
    models.__path__ = [os.path.join(TV, "models")]
    tv.models = models
    for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.") or m.startswith("pytorch_fid")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "torchvision", tv)
    monkeypatch.setitem(sys.modules, "torchvision.models", models)
    inc = importlib.import_module("torchvision.models.inception")
    models.inception, models.inception_v3 = inc, inc.inception_v3
    return importlib.import_module("pytorch_fid.inception")


def test_features_and_preprocessing_match_pytorch_fid(pytorch_fid_inception, monkeypatch):
    from agm.metrics.fid import FIDInceptionV3, inception_features

    torch.manual_seed(0)
    ours = FIDInceptionV3().eval()
    with torch.no_grad():  # random BatchNorm statistics too, so that every parameter and buffer is exercised
        for m in ours.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.1)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0, 0.1)
    state = {k: v.clone() for k, v in ours.state_dict().items()}
    monkeypatch.setattr(pytorch_fid_inception, "load_state_dict_from_url", lambda *a, **k: state)
    ref = pytorch_fid_inception.InceptionV3([pytorch_fid_inception.InceptionV3.BLOCK_INDEX_BY_DIM[2048]],
                                            resize_input=True, normalize_input=True, use_fid_inception=True).eval()
    g = torch.Generator().manual_seed(1)
    for size in (32, 64):
        x01 = torch.rand(3, 3, size, size, generator=g)  # pytorch-fid's input convention: [0, 1]
        with torch.no_grad():
            want = ref(x01)[0].flatten(1)
        got = inception_features(ours, 2 * x01 - 1)  # ours: [-1, 1]
        assert got.shape == want.shape == (3, 2048)
        rel = float((got - want).norm() / want.norm())
        assert rel < 1e-5, rel  # float32, same ops in the same order up to the [0,1] -> [-1,1] map before/after resizing
