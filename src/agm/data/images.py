"""Image data: a built-in tiny set (scikit-learn's digits), folders of image files, ``.npz``/``.npy`` arrays.

Every loader returns float32 tensors of shape (N, C, H, W) scaled to [-1, 1]
(x = 2 * pixel / max - 1: uint8 pixels are divided by 255, digits' 0..16 grey levels by 16), which
is the data end (t = 1) of AGM's bridge (docs/agm.md). Nothing is downloaded.

Built-in set ``digits``: the 1797 8x8 grey-scale hand-written digits that ship inside scikit-learn
(``sklearn.datasets.load_digits``), upsampled bilinearly to ``data.image_size`` (e.g. 16 or 32).
It is TINY (1797 images of 10 classes): good for tests, CPU demos and GPU smoke runs, not a
substitute for CelebA-HQ.

CelebA-HQ 64x64 (the AGM paper's set) is not shipped and cannot be downloaded at run time: prepare a
folder of its images locally (docs/images.md) and pass ``data.path=/path/to/folder data.image_size=64``.

Bad input raises :class:`agm.errors.DataError` naming the path, the bad value and what is accepted:
an empty folder, a corrupt/unreadable file, images of mixed channel counts, images of mixed sizes
when no ``image_size`` is given, arrays of the wrong rank or value range.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from agm.errors import ConfigError, DataError, check_positive

IMAGE_SETS = ("digits",)
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff", ".gif")
ARRAY_EXTENSIONS = (".npz", ".npy")
NPZ_KEYS = ("images", "x", "arr_0", "data")


# ---- resizing / scaling -------------------------------------------------------------------------
def resize_images(x: Tensor, size: int) -> Tensor:
    """Bilinear resize of (N, C, H, W) to (N, C, size, size) (antialiased when shrinking); identity if equal."""
    check_positive("data.image_size", size, integer=True)
    if x.shape[-2:] == (size, size):
        return x
    shrink = size < min(x.shape[-2:])
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=shrink)


def center_crop_square(x: Tensor) -> Tensor:
    """Central square crop of (..., H, W) to side min(H, W)."""
    h, w = x.shape[-2:]
    s = min(h, w)
    top, left = (h - s) // 2, (w - s) // 2
    return x[..., top : top + s, left : left + s]


def to_unit_range(arr: np.ndarray, field: str) -> Tensor:
    """Scale an image array to [-1, 1]: uint8 -> x/127.5 - 1; floats in [0, 1] -> 2x - 1; floats in [-1, 1] kept.

    Raises DataError for other dtypes, non-finite values or floats outside [-1, 1].
    """
    if arr.dtype == np.uint8:
        return torch.from_numpy(arr.astype(np.float32) / 127.5 - 1.0)
    if arr.dtype.kind not in "f":
        raise DataError(f"{field} has dtype {arr.dtype}; accepted: uint8 in [0, 255] or float in [0, 1] or [-1, 1]")
    x = torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32))
    if not torch.isfinite(x).all():
        raise DataError(f"{field} contains NaN/inf values; accepted: finite pixel values")
    lo, hi = float(x.min()), float(x.max())
    if lo >= 0.0 and hi <= 1.0:
        return 2.0 * x - 1.0
    if lo >= -1.0 and hi <= 1.0:
        return x
    raise DataError(f"{field} has float values in [{lo:.4g}, {hi:.4g}]; accepted: uint8 [0, 255], float [0, 1] or float [-1, 1]")


def _to_nchw(x: Tensor, field: str) -> Tensor:
    """(N, H, W) -> (N, 1, H, W); (N, H, W, C) -> (N, C, H, W) for C in {1, 3, 4}.

    When both axes 1 and 3 could be channels, the layout whose images are square wins, else NHWC.
    """
    if x.ndim == 3:
        return x[:, None]
    if x.ndim != 4:
        raise DataError(f"{field} has shape {tuple(x.shape)}; accepted: (N, H, W), (N, H, W, C) or (N, C, H, W) with C in 1, 3, 4")
    nchw, nhwc = x.shape[1] in (1, 3, 4), x.shape[-1] in (1, 3, 4)
    if nchw and nhwc:  # ambiguous, e.g. (N, 4, 4, 3): take the layout with square images, else NHWC (numpy's)
        nchw = x.shape[2] == x.shape[3] and x.shape[1] != x.shape[2]
        nhwc = not nchw
    if nchw:
        return x
    if nhwc:
        return x.permute(0, 3, 1, 2).contiguous()
    raise DataError(f"{field} has shape {tuple(x.shape)}; no channel axis of size 1, 3 or 4 found (accepted: NCHW or NHWC)")


# ---- sources ------------------------------------------------------------------------------------
def digits_dataset(image_size: int = 0) -> tuple[Tensor, Tensor]:
    """scikit-learn's 1797 digits as (x, y): x (N, 1, S, S) in [-1, 1] (S = image_size or 8), y (N,) int64 labels."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.from_numpy(d.images.astype(np.float32) / 16.0 * 2.0 - 1.0)[:, None]
    if image_size:
        x = resize_images(x, image_size).clamp(-1.0, 1.0)
    return x.contiguous(), torch.from_numpy(d.target.astype(np.int64))


def load_image_array(path: str | Path, image_size: int = 0) -> Tensor:
    """Images from an ``.npz`` (key 'images', 'x', 'arr_0' or 'data', or its only array) or ``.npy`` file."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"data.path={str(path)!r} does not exist; accepted: a folder of images, an .npz or .npy file")
    try:
        if path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as z:
                keys = list(z.keys())
                key = next((k for k in NPZ_KEYS if k in keys), keys[0] if len(keys) == 1 else None)
                if key is None:
                    raise DataError(f"data.path={str(path)!r} holds arrays {keys}; accepted: one array, or one named {list(NPZ_KEYS)}")
                arr = z[key]
        elif path.suffix == ".npy":
            arr = np.load(path, allow_pickle=False)
        else:
            raise DataError(f"data.path={str(path)!r} has extension {path.suffix!r}; accepted: {list(ARRAY_EXTENSIONS)} or a folder")
    except DataError:
        raise
    except Exception as e:  # zip / header errors of a corrupt file
        raise DataError(f"data.path={str(path)!r} is not a readable {path.suffix} file ({type(e).__name__}: {e})") from None
    x = _to_nchw(to_unit_range(arr, f"data.path={str(path)!r}"), f"data.path={str(path)!r}")
    if x.shape[0] < 2:
        raise DataError(f"data.path={str(path)!r} holds {x.shape[0]} image(s); accepted: at least 2")
    if image_size:
        x = resize_images(center_crop_square(x), image_size).clamp(-1.0, 1.0)
    return x.contiguous()


def load_image_folder(path: str | Path, image_size: int = 0, *, max_images: int | None = None) -> Tensor:
    """All images under a folder (recursively, sorted by path) as (N, C, H, W) in [-1, 1].

    With ``image_size`` > 0 each image is centre-cropped to a square and resized to image_size; with
    image_size = 0 all images must already share one size. Images must share one mode: grey-scale
    ('L'), RGB or RGBA (palette images are converted to RGB); mixing channel counts is an error.
    """
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.is_dir():
        raise DataError(f"data.path={str(path)!r} is not a folder")
    files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
    if not files:
        raise DataError(f"data.path={str(path)!r} holds no image files; accepted extensions: {list(IMAGE_EXTENSIONS)}")
    if max_images is not None:
        files = files[:max_images]
    out, first = [], None
    for f in files:
        try:
            with Image.open(f) as im:
                im.load()
                if im.mode in ("P", "CMYK", "YCbCr", "LA", "I", "I;16", "F", "1"):
                    im = im.convert("L" if im.mode in ("LA", "I", "I;16", "F", "1") else "RGB")
                arr = np.asarray(im, dtype=np.uint8)
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
            raise DataError(f"image file {str(f)!r} is corrupt or unreadable ({type(e).__name__}: {e})") from None
        x = torch.from_numpy(arr.astype(np.float32) / 127.5 - 1.0)
        x = x[None] if x.ndim == 2 else x.permute(2, 0, 1)
        if first is None:
            first = (f, tuple(x.shape))
        if x.shape[0] != first[1][0]:
            raise DataError(
                f"images have mixed channel counts: {str(first[0])!r} has {first[1][0]}, {str(f)!r} has {x.shape[0]}; "
                "accepted: all grey-scale, all RGB or all RGBA (convert them first)"
            )
        if image_size:
            x = resize_images(center_crop_square(x)[None], image_size)[0].clamp(-1.0, 1.0)
        elif tuple(x.shape) != first[1]:
            raise DataError(
                f"images have mixed sizes: {str(first[0])!r} is {first[1][1]}x{first[1][2]}, {str(f)!r} is "
                f"{x.shape[1]}x{x.shape[2]}; set data.image_size to resize them all (e.g. data.image_size=64)"
            )
        out.append(x)
    if len(out) < 2:
        raise DataError(f"data.path={str(path)!r} holds {len(out)} image; accepted: at least 2")
    return torch.stack(out).contiguous()


def load_images(name: str = "digits", path: str | Path | None = None, image_size: int = 0) -> Tensor:
    """All images of a built-in set (``name`` in IMAGE_SETS) or of ``path`` (folder / .npz / .npy)."""
    check_positive("data.image_size", image_size, integer=True, allow_zero=True)
    if path is not None:
        p = Path(path)
        if p.is_dir():
            return load_image_folder(p, image_size)
        return load_image_array(p, image_size)
    if name == "digits":
        return digits_dataset(image_size)[0]
    raise ConfigError(f"data.name={name!r} is not a built-in image set; accepted: {list(IMAGE_SETS)} or data.path=<folder|.npz|.npy>")


def split_images(x: Tensor, test_fraction: float, seed: int = 0) -> tuple[Tensor, Tensor]:
    """Random (train, test) split by ``seed``; the test part has ceil(test_fraction * N) >= 1 images."""
    from agm.data.files import check_test_fraction

    check_test_fraction(test_fraction)
    n = x.shape[0]
    n_test = min(max(1, math.ceil(test_fraction * n)), n - 1)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return x[perm[n_test:]].contiguous(), x[perm[:n_test]].contiguous()


def load_image_data(data_cfg: Any, seed: int = 0) -> tuple[Tensor, Tensor]:
    """(train, test) for a DataConfig (``agm.methods.agm.config.DataConfig``): name/path, image_size, test_fraction."""
    x = load_images(data_cfg.name, data_cfg.path, data_cfg.image_size)
    return split_images(x, data_cfg.test_fraction, seed)


# ---- sample grids -------------------------------------------------------------------------------
def image_grid(x: Tensor, nrow: int = 8, pad: int = 1) -> np.ndarray:
    """Tile (N, C, H, W) images in [-1, 1] into one uint8 array (H', W') or (H', W', C)."""
    if x.ndim != 4:
        raise DataError(f"images have shape {tuple(x.shape)}; accepted: (N, C, H, W)")
    x = ((x.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    n, c, h, w = x.shape
    ncol = min(nrow, n)
    nrows = math.ceil(n / ncol)
    grid = torch.zeros(c, nrows * (h + pad) + pad, ncol * (w + pad) + pad, dtype=torch.uint8)
    for i in range(n):
        r, k = divmod(i, ncol)
        grid[:, pad + r * (h + pad) : pad + r * (h + pad) + h, pad + k * (w + pad) : pad + k * (w + pad) + w] = x[i]
    arr = grid.permute(1, 2, 0).numpy()
    return arr[..., 0] if c == 1 else arr


def save_image_grid(x: Tensor, path: str | Path, nrow: int = 8, upscale: int = 1) -> Path:
    """Write a PNG grid of images in [-1, 1] (``upscale``: integer nearest-neighbour zoom for tiny images)."""
    from PIL import Image

    arr = image_grid(x, nrow)
    im = Image.fromarray(arr)
    if upscale > 1:
        im = im.resize((im.width * upscale, im.height * upscale), Image.NEAREST)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    im.save(path)
    return path


__all__: Sequence[str] = (
    "IMAGE_SETS", "digits_dataset", "load_image_array", "load_image_folder", "load_images", "split_images",
    "load_image_data", "image_grid", "save_image_grid", "resize_images", "center_crop_square", "to_unit_range",
)
