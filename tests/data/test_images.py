"""Image loaders (agm.data.images): scaling to [-1, 1], shapes, resizing, grids, and clear errors on bad input."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from agm.data.images import (
    center_crop_square, digits_dataset, image_grid, load_image_array, load_image_folder, load_images, resize_images,
    save_image_grid, split_images, to_unit_range,
)
from agm.errors import ConfigError, DataError


def _write(path, arr):
    Image.fromarray(arr).save(path)


def test_uint8_scaling_is_exact_affine_map():
    arr = np.array([[0, 255, 127]], dtype=np.uint8)
    x = to_unit_range(arr, "f")
    # ground truth: x = p / 127.5 - 1
    assert torch.allclose(x, torch.tensor([[-1.0, 1.0, 127 / 127.5 - 1]]))
    assert torch.allclose(to_unit_range(np.array([0.0, 0.5, 1.0], np.float32), "f"), torch.tensor([-1.0, 0.0, 1.0]))
    with pytest.raises(DataError, match=r"float values in \[-3, 2\]"):
        to_unit_range(np.array([-3.0, 2.0], np.float32), "f")
    with pytest.raises(DataError, match="NaN"):
        to_unit_range(np.array([np.nan], np.float32), "f")


def test_folder_roundtrip_pixels_and_order(tmp_path):
    rng = np.random.default_rng(0)
    imgs = [rng.integers(0, 256, (8, 8, 3), dtype=np.uint8) for _ in range(3)]
    for i, a in enumerate(imgs):
        _write(tmp_path / f"{i}.png", a)  # PNG is lossless: pixels must come back exactly
    x = load_image_folder(tmp_path)
    assert x.shape == (3, 3, 8, 8)
    for i, a in enumerate(imgs):
        assert torch.allclose(x[i], torch.from_numpy(a).permute(2, 0, 1).float() / 127.5 - 1)


def test_folder_resize_and_crop(tmp_path):
    _write(tmp_path / "a.png", np.full((10, 20, 3), 200, np.uint8))
    _write(tmp_path / "b.png", np.full((12, 12, 3), 50, np.uint8))
    x = load_image_folder(tmp_path, image_size=6)
    assert x.shape == (2, 3, 6, 6)
    # constant images stay constant under crop + bilinear resize
    assert torch.allclose(x[0], torch.full((3, 6, 6), 200 / 127.5 - 1), atol=1e-6)
    assert torch.allclose(x[1], torch.full((3, 6, 6), 50 / 127.5 - 1), atol=1e-6)


def test_bad_folders(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match="holds no image files"):
        load_image_folder(empty)
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    _write(mixed / "a.png", np.zeros((8, 8, 3), np.uint8))
    _write(mixed / "b.png", np.zeros((9, 9, 3), np.uint8))
    with pytest.raises(DataError, match=r"mixed sizes.*data.image_size"):
        load_image_folder(mixed)
    assert load_image_folder(mixed, image_size=8).shape == (2, 3, 8, 8)
    chans = tmp_path / "chans"
    chans.mkdir()
    _write(chans / "a.png", np.zeros((8, 8, 3), np.uint8))
    _write(chans / "b.png", np.zeros((8, 8), np.uint8))
    with pytest.raises(DataError, match="mixed channel counts"):
        load_image_folder(chans, image_size=8)
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    _write(corrupt / "a.png", np.zeros((8, 8, 3), np.uint8))
    (corrupt / "b.png").write_bytes(b"not a png at all")
    with pytest.raises(DataError, match=r"b.png.*corrupt"):
        load_image_folder(corrupt)


def test_arrays(tmp_path):
    a = np.random.default_rng(1).integers(0, 256, (5, 4, 4, 3), dtype=np.uint8)  # NHWC
    np.savez(tmp_path / "d.npz", images=a)
    x = load_image_array(tmp_path / "d.npz")
    assert x.shape == (5, 3, 4, 4)
    assert torch.allclose(x, torch.from_numpy(a).permute(0, 3, 1, 2).float() / 127.5 - 1)
    np.save(tmp_path / "d.npy", a[:, :, :, 0])  # (N, H, W) grey
    assert load_images(path=tmp_path / "d.npy", image_size=8).shape == (5, 1, 8, 8)
    np.save(tmp_path / "bad.npy", np.zeros((5, 5, 4, 7), np.uint8))
    with pytest.raises(DataError, match="no channel axis"):
        load_image_array(tmp_path / "bad.npy")
    (tmp_path / "corrupt.npz").write_bytes(b"garbage")
    with pytest.raises(DataError, match="not a readable .npz"):
        load_image_array(tmp_path / "corrupt.npz")
    with pytest.raises(DataError, match="does not exist"):
        load_image_array(tmp_path / "missing.npz")
    with pytest.raises(ConfigError, match="data.name='cifar'"):
        load_images("cifar")


def test_digits_builtin_and_split():
    x, y = digits_dataset(16)
    assert x.shape == (1797, 1, 16, 16) and y.shape == (1797,)
    assert float(x.min()) >= -1 and float(x.max()) <= 1
    tr, te = split_images(x, 0.1, seed=0)
    assert te.shape[0] == 180 and tr.shape[0] == 1617  # ceil(0.1 * 1797) = 180
    with pytest.raises(ConfigError, match="data.test_fraction"):
        split_images(x, 1.5)


def test_resize_crop_and_grid(tmp_path):
    x = torch.arange(2 * 3 * 4 * 6, dtype=torch.float32).reshape(2, 3, 4, 6)
    assert center_crop_square(x).shape == (2, 3, 4, 4)
    assert torch.equal(center_crop_square(x), x[..., :, 1:5])
    assert resize_images(x[..., :4], 4) is not None and torch.equal(resize_images(x[..., :4], 4), x[..., :4])
    imgs = torch.full((5, 1, 3, 3), 1.0)
    g = image_grid(imgs, nrow=2, pad=1)
    assert g.shape == (3 * 4 + 1, 2 * 4 + 1) and g.max() == 255 and g[0, 0] == 0
    p = save_image_grid(imgs, tmp_path / "g.png", nrow=2, upscale=2)
    assert Image.open(p).size == (2 * (2 * 4 + 1), 2 * (3 * 4 + 1))
