"""FID: the Fréchet distance in the pool3 features (2048-d) of the standard FID Inception-v3.

FID (Heusel et al. 2017) = d^2(N(mu_r, S_r), N(mu_g, S_g)) of ``agm.metrics.frechet.frechet_distance``
(||mu_r - mu_g||^2 + Tr(S_r + S_g - 2 (S_r^{1/2} S_g S_r^{1/2})^{1/2})) over Inception pool3 features.
The AGM paper's CelebA-HQ 64 numbers (FID 28.53 -> 25.47; docs/images.md) are FIDs.

``FIDInceptionV3`` is the network of the TensorFlow FID graph 'pt_inception-2015-12-05' as ported to
PyTorch by pytorch-fid (Seitzer, 2020): Inception-v3 with 1008 logits, average pools that exclude
padding in the A/C/E blocks and a max pool in the last E block. Its parameter names follow
torchvision's ``Inception3`` so the pytorch-fid weights file loads directly. Written here from the
published architecture (no torchvision dependency); nothing is downloaded: the weights are read
from a LOCAL file given by path, ``pt_inception-2015-12-05-6726825d.pth`` (get it once, on a machine with
network, from https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/pt_inception-2015-12-05-6726825d.pth).
A ``.safetensors`` file with the same keys is accepted too. Loading never unpickles code
(``torch.load(weights_only=True)``).

Pre-processing (pytorch-fid's): images in [-1, 1] (agm's convention; equal to pytorch-fid's 2x - 1 of [0, 1]
inputs), RGB (grey images are repeated to 3 channels), bilinearly resized to 299 x 299.
Checked against pytorch-fid 0.3.0's own network with the same random weights (every parameter and BatchNorm
statistic): pool3 features of 32x32 and 64x64 inputs agree to relative 1e-5 in float32, which checks the
architecture and the pre-processing (range map, bilinear resize to 299); tests/metrics/test_fid_reference.py,
run where an unpacked torchvision wheel is available (pytorch-fid needs torchvision, which does not import
beside the CPU torch of this project's CI; the test says how). The absolute FID values with the real weights
have not been compared (the weights file is not reachable offline).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from agm.errors import DataError

FID_WEIGHTS_NAME = "pt_inception-2015-12-05-6726825d.pth"
FID_WEIGHTS_URL = "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/" + FID_WEIGHTS_NAME


class BasicConv2d(nn.Module):
    """conv (no bias) -> BatchNorm(eps=1e-3) -> ReLU."""

    def __init__(self, cin: int, cout: int, kernel_size, stride=1, padding=0) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel_size, stride=stride, padding=padding, bias=False)
        self.bn = nn.BatchNorm2d(cout, eps=0.001)

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(self.bn(self.conv(x)))


def _avg3(x: Tensor) -> Tensor:
    return F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)


class InceptionA(nn.Module):
    def __init__(self, cin: int, pool_features: int) -> None:
        super().__init__()
        self.branch1x1 = BasicConv2d(cin, 64, 1)
        self.branch5x5_1 = BasicConv2d(cin, 48, 1)
        self.branch5x5_2 = BasicConv2d(48, 64, 5, padding=2)
        self.branch3x3dbl_1 = BasicConv2d(cin, 64, 1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, 3, padding=1)
        self.branch_pool = BasicConv2d(cin, pool_features, 1)

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([
            self.branch1x1(x),
            self.branch5x5_2(self.branch5x5_1(x)),
            self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
            self.branch_pool(_avg3(x)),
        ], 1)


class InceptionB(nn.Module):
    def __init__(self, cin: int) -> None:
        super().__init__()
        self.branch3x3 = BasicConv2d(cin, 384, 3, stride=2)
        self.branch3x3dbl_1 = BasicConv2d(cin, 64, 1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, 3, stride=2)

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([
            self.branch3x3(x),
            self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
            F.max_pool2d(x, 3, stride=2),
        ], 1)


class InceptionC(nn.Module):
    def __init__(self, cin: int, c7: int) -> None:
        super().__init__()
        self.branch1x1 = BasicConv2d(cin, 192, 1)
        self.branch7x7_1 = BasicConv2d(cin, c7, 1)
        self.branch7x7_2 = BasicConv2d(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7_3 = BasicConv2d(c7, 192, (7, 1), padding=(3, 0))
        self.branch7x7dbl_1 = BasicConv2d(cin, c7, 1)
        self.branch7x7dbl_2 = BasicConv2d(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_3 = BasicConv2d(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7dbl_4 = BasicConv2d(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_5 = BasicConv2d(c7, 192, (1, 7), padding=(0, 3))
        self.branch_pool = BasicConv2d(cin, 192, 1)

    def forward(self, x: Tensor) -> Tensor:
        d = x
        for m in (self.branch7x7dbl_1, self.branch7x7dbl_2, self.branch7x7dbl_3, self.branch7x7dbl_4, self.branch7x7dbl_5):
            d = m(d)
        return torch.cat([
            self.branch1x1(x),
            self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x))),
            d,
            self.branch_pool(_avg3(x)),
        ], 1)


class InceptionD(nn.Module):
    def __init__(self, cin: int) -> None:
        super().__init__()
        self.branch3x3_1 = BasicConv2d(cin, 192, 1)
        self.branch3x3_2 = BasicConv2d(192, 320, 3, stride=2)
        self.branch7x7x3_1 = BasicConv2d(cin, 192, 1)
        self.branch7x7x3_2 = BasicConv2d(192, 192, (1, 7), padding=(0, 3))
        self.branch7x7x3_3 = BasicConv2d(192, 192, (7, 1), padding=(3, 0))
        self.branch7x7x3_4 = BasicConv2d(192, 192, 3, stride=2)

    def forward(self, x: Tensor) -> Tensor:
        b = self.branch7x7x3_4(self.branch7x7x3_3(self.branch7x7x3_2(self.branch7x7x3_1(x))))
        return torch.cat([self.branch3x3_2(self.branch3x3_1(x)), b, F.max_pool2d(x, 3, stride=2)], 1)


class InceptionE(nn.Module):
    """E block; ``pool='avg'`` (Mixed_7b, padding excluded from the average) or 'max' (Mixed_7c), as in the TF FID graph."""

    def __init__(self, cin: int, pool: str) -> None:
        super().__init__()
        self.pool = pool
        self.branch1x1 = BasicConv2d(cin, 320, 1)
        self.branch3x3_1 = BasicConv2d(cin, 384, 1)
        self.branch3x3_2a = BasicConv2d(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3_2b = BasicConv2d(384, 384, (3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = BasicConv2d(cin, 448, 1)
        self.branch3x3dbl_2 = BasicConv2d(448, 384, 3, padding=1)
        self.branch3x3dbl_3a = BasicConv2d(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = BasicConv2d(384, 384, (3, 1), padding=(1, 0))
        self.branch_pool = BasicConv2d(cin, 192, 1)

    def forward(self, x: Tensor) -> Tensor:
        b = self.branch3x3_1(x)
        d = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        p = _avg3(x) if self.pool == "avg" else F.max_pool2d(x, 3, stride=1, padding=1)
        return torch.cat([
            self.branch1x1(x),
            torch.cat([self.branch3x3_2a(b), self.branch3x3_2b(b)], 1),
            torch.cat([self.branch3x3dbl_3a(d), self.branch3x3dbl_3b(d)], 1),
            self.branch_pool(p),
        ], 1)


class FIDInceptionV3(nn.Module):
    """Inception-v3 of the FID graph; ``forward`` returns the (N, 2048) pool3 features of images in [-1, 1]."""

    def __init__(self, resize: int = 299) -> None:
        super().__init__()
        self.resize = resize  # FID uses 299; smaller sizes (>= 75) only for fast architecture tests
        self.Conv2d_1a_3x3 = BasicConv2d(3, 32, 3, stride=2)
        self.Conv2d_2a_3x3 = BasicConv2d(32, 32, 3)
        self.Conv2d_2b_3x3 = BasicConv2d(32, 64, 3, padding=1)
        self.Conv2d_3b_1x1 = BasicConv2d(64, 80, 1)
        self.Conv2d_4a_3x3 = BasicConv2d(80, 192, 3)
        self.Mixed_5b = InceptionA(192, 32)
        self.Mixed_5c = InceptionA(256, 64)
        self.Mixed_5d = InceptionA(288, 64)
        self.Mixed_6a = InceptionB(288)
        self.Mixed_6b = InceptionC(768, 128)
        self.Mixed_6c = InceptionC(768, 160)
        self.Mixed_6d = InceptionC(768, 160)
        self.Mixed_6e = InceptionC(768, 192)
        self.Mixed_7a = InceptionD(768)
        self.Mixed_7b = InceptionE(1280, "avg")
        self.Mixed_7c = InceptionE(2048, "max")
        self.fc = nn.Linear(2048, 1008)  # the logits are unused by FID; kept so the weights file loads strictly

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim != 4 or x.shape[1] not in (1, 3):
            raise DataError(f"FID images have shape {tuple(x.shape)}; accepted: (N, 1 or 3, H, W) in [-1, 1]")
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        x = F.interpolate(x, size=(self.resize, self.resize), mode="bilinear", align_corners=False)
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
        x = F.max_pool2d(x, 3, stride=2)
        x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x))
        x = F.max_pool2d(x, 3, stride=2)
        for name in ("Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a", "Mixed_6b", "Mixed_6c", "Mixed_6d", "Mixed_6e",
                     "Mixed_7a", "Mixed_7b", "Mixed_7c"):
            x = getattr(self, name)(x)
        return x.mean(dim=(2, 3))


def load_fid_inception(path: str | Path, device: str | torch.device = "cpu") -> FIDInceptionV3:
    """FIDInceptionV3 with weights read from the local file ``path`` (.pth/.pt state dict or .safetensors).

    DataError naming the file when it is absent, unreadable, or holds other parameters.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(
            f"FID weights file {str(path)!r} does not exist; download {FID_WEIGHTS_NAME} once from {FID_WEIGHTS_URL} "
            "and pass its local path (nothing is downloaded at run time)"
        )
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # corrupt zip / header / a pickle that is not a plain state dict
        raise DataError(f"FID weights file {str(path)!r} is not a readable state dict ({type(e).__name__}: {e})") from None
    if not isinstance(state, dict):
        raise DataError(f"FID weights file {str(path)!r} holds a {type(state).__name__}; accepted: a state dict of tensors")
    net = FIDInceptionV3()
    own = net.state_dict()
    missing = [k for k in own if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in own]
    bad_shape = [k for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or bad_shape:
        raise DataError(
            f"FID weights file {str(path)!r} does not match the FID Inception-v3 ({len(missing)} missing, "
            f"{len(unexpected)} unexpected, {len(bad_shape)} mis-shaped parameters; e.g. "
            f"{(missing + unexpected + bad_shape)[:3]}); accepted: pytorch-fid's {FID_WEIGHTS_NAME}"
        )
    net.load_state_dict(state, strict=False)
    return net.eval().requires_grad_(False).to(device)


@torch.no_grad()
def inception_features(net: FIDInceptionV3, x: Tensor, batch_size: int = 200) -> Tensor:
    """(N, 2048) pool3 features of images (N, C, H, W) in [-1, 1], on the CPU in float32."""
    dev = next(net.parameters()).device
    return torch.cat([net(x[i : i + batch_size].to(dev).float()).cpu() for i in range(0, x.shape[0], batch_size)])


def fid(net: FIDInceptionV3, generated: Tensor, reference: Tensor | tuple[np.ndarray, np.ndarray]) -> float:
    """FID of generated images vs reference images (or precomputed reference (mu, sigma))."""
    from agm.metrics.frechet import feature_statistics, frechet_distance

    mu_g, s_g = feature_statistics(inception_features(net, generated))
    mu_r, s_r = reference if isinstance(reference, tuple) else feature_statistics(inception_features(net, reference))
    return frechet_distance(mu_r, s_r, mu_g, s_g)
