"""A time-conditioned U-Net of the DDPM++ / ADM family for images (B, C, H, W), t of shape (B,).

Architecture (Ho et al. 2020 DDPM; Song et al. 2021 DDPM++ "NCSN++/DDPM++"; Dhariwal & Nichol 2021
ADM; as used by EDM, Karras et al. 2022): a stack of resolution levels, each with ``num_res_blocks``
residual blocks

    h = Conv(SiLU(GN(x)));  h = GN(h) * (1 + scale(e)) + shift(e);  h = Conv(Dropout(SiLU(h)))
    out = (skip(x) + h) * r,     r = 1/sqrt(2) with ``skip_rescale`` (DDPM++), else 1

where e is the time embedding MLP(sinusoidal(t)) (ADM's adaptive group norm). Multi-head
self-attention (softmax(QK^T / sqrt(d)) V over the H*W positions) is placed at the feature-map sizes
in ``attn_resolutions``; down/up-sampling is a strided conv / nearest + conv (``resample='conv'``, DDPM)
or a residual block with average-pool / nearest resampling inside (``resample='resblock'``, ADM's
``resblock_updown`` / BigGAN). Skip connections concatenate encoder features into the decoder.

The AGM paper (arXiv 2605.14631) does not state its drift's architecture or size (docs/agm.md:
only the potential's budget relative to it is fixed): ``UNET_PRESETS['ddpmpp-64']`` is EDM's
DDPM++ configuration for 64x64 (FFHQ/AFHQ-64), our choice for the paper's CelebA-HQ 64 experiment.

The constructor is backward compatible with the compact default (channels=32, (1, 2, 2), one block).
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from agm.errors import ConfigError, check_choice, check_positive
from agm.nets.embeddings import SinusoidalEmbedding

RESAMPLE = ("conv", "resblock")

#: Named sizes. 'ddpmpp-64': EDM's DDPM++ for 64x64 (our choice for CelebA-HQ 64; the paper gives no size);
#: 'adm-64': ADM's ImageNet-64-style widths at reduced depth; 'small-32'/'tiny': GPU smoke runs and CPU tests.
UNET_PRESETS: dict[str, dict] = {
    "ddpmpp-64": dict(channels=128, channel_mult=(1, 2, 2, 2), num_res_blocks=4, attn_resolutions=(16,), dropout=0.05,
                      skip_rescale=True, resample="conv", head_channels=64),
    "adm-64": dict(channels=128, channel_mult=(1, 2, 3, 4), num_res_blocks=2, attn_resolutions=(32, 16, 8), dropout=0.1,
                   skip_rescale=False, resample="resblock", head_channels=64),
    "small-32": dict(channels=64, channel_mult=(1, 2, 2), num_res_blocks=2, attn_resolutions=(8,), dropout=0.0,
                     skip_rescale=True, resample="conv", head_channels=64),
    "tiny": dict(channels=16, channel_mult=(1, 2), num_res_blocks=1, attn_resolutions=(), dropout=0.0),
}


def _norm(ch: int) -> nn.GroupNorm:
    groups = math.gcd(ch, 32)
    return nn.GroupNorm(groups, ch)


def _resample(x: Tensor, mode: str | None) -> Tensor:
    if mode == "down":
        return F.avg_pool2d(x, 2)
    if mode == "up":
        return F.interpolate(x, scale_factor=2.0, mode="nearest")
    return x


class ResBlock(nn.Module):
    """GroupNorm-SiLU-Conv x2 with a time-conditioned scale/shift (ADM's adaptive GroupNorm).

    out = (skip(R(x)) + Conv(Drop(SiLU(GN(Conv(R(SiLU(GN(x))))) (1 + s) + b))) * r, R = ``resample``
    ('up' / 'down' / None, ADM's resblock_updown), r = 1/sqrt(2) when ``skip_rescale`` (DDPM++).
    """

    def __init__(self, cin: int, cout: int, emb_dim: int, dropout: float = 0.0, *, resample: str | None = None,
                 skip_rescale: bool = False) -> None:
        super().__init__()
        self.norm1 = _norm(cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.emb = nn.Linear(emb_dim, 2 * cout)
        self.norm2 = _norm(cout)
        self.drop = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()
        self.resample = resample
        self.scale_out = 1.0 / math.sqrt(2.0) if skip_rescale else 1.0

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        h = F.silu(self.norm1(x))
        if self.resample is not None:
            h, x = _resample(h, self.resample), _resample(x, self.resample)
        h = self.conv1(h)
        scale, shift = self.emb(F.silu(emb))[:, :, None, None].chunk(2, dim=1)
        h = self.norm2(h) * (1 + scale) + shift
        h = self.conv2(self.drop(F.silu(h)))
        out = self.skip(x) + h
        return out * self.scale_out if self.scale_out != 1.0 else out


class Attention(nn.Module):
    """Multi-head self-attention over spatial positions: x + proj(softmax(QK^T/sqrt(d)) V) (times r with skip_rescale).

    ``heads`` heads, or ch // head_channels heads when ``head_channels`` > 0 (ADM uses 64 channels per head).
    """

    def __init__(self, ch: int, heads: int = 4, head_channels: int = 0, skip_rescale: bool = False) -> None:
        super().__init__()
        if head_channels > 0 and ch % head_channels == 0:
            heads = ch // head_channels
        if ch % heads:
            heads = 1
        self.heads = heads
        self.norm = _norm(ch)
        self.qkv = nn.Conv2d(ch, 3 * ch, 1)
        self.proj = nn.Conv2d(ch, ch, 1)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)
        self.scale_out = 1.0 / math.sqrt(2.0) if skip_rescale else 1.0

    def forward(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(b, 3, self.heads, c // self.heads, h * w).unbind(1)
        q, k, v = (z.transpose(-1, -2) for z in (q, k, v))  # (b, heads, hw, d)
        out = F.scaled_dot_product_attention(q, k, v)
        out = out.transpose(-1, -2).reshape(b, c, h, w)
        out = x + self.proj(out)
        return out * self.scale_out if self.scale_out != 1.0 else out


class UNet(nn.Module):
    """Time-conditioned U-Net; output has the input's shape (a drift / velocity field on images).

    Args:
        in_channels: image channels.
        channels: base width.
        channel_mult: width multiplier per resolution level (len = number of levels).
        num_res_blocks: residual blocks per level.
        attn_resolutions: feature-map sizes (e.g. 16) at which self-attention is applied.
        image_size: input height (= width), used to place attention.
        dropout: dropout in residual blocks.
        heads: attention heads (used when head_channels = 0).
        head_channels: channels per attention head (ADM: 64); 0 uses ``heads``.
        resample: 'conv' (strided conv down, nearest+conv up; DDPM, the default) or 'resblock' (ADM).
        skip_rescale: multiply residual sums by 1/sqrt(2) (DDPM++); default False.
    """

    def __init__(
        self,
        in_channels: int = 3,
        channels: int = 32,
        channel_mult: Sequence[int] = (1, 2, 2),
        num_res_blocks: int = 1,
        attn_resolutions: Sequence[int] = (),
        image_size: int = 32,
        dropout: float = 0.0,
        heads: int = 4,
        *,
        head_channels: int = 0,
        resample: str = "conv",
        skip_rescale: bool = False,
    ) -> None:
        super().__init__()
        check_choice("model.resample", resample, RESAMPLE)
        check_positive("model.channels", channels, integer=True)
        check_positive("model.num_res_blocks", num_res_blocks, integer=True)
        if not channel_mult:
            raise ConfigError("model.channel_mult=[] is not accepted; give one multiplier per level, e.g. [1, 2, 2]")
        if image_size % (2 ** (len(channel_mult) - 1)):
            raise ConfigError(
                f"model.image_size={image_size} must be divisible by 2**(len(channel_mult)-1)={2 ** (len(channel_mult) - 1)}"
            )
        if channels % 2:
            raise ConfigError(f"model.channels={channels} must be even (sinusoidal time embedding)")
        self.in_channels = in_channels
        self.image_size = image_size
        emb_dim = channels * 4
        rb = dict(skip_rescale=skip_rescale)
        at = dict(heads=heads, head_channels=head_channels, skip_rescale=skip_rescale)
        self.time_embed = nn.Sequential(
            SinusoidalEmbedding(channels), nn.Linear(channels, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim)
        )
        self.inp = nn.Conv2d(in_channels, channels, 3, padding=1)
        self.down = nn.ModuleList()
        skips = [channels]
        ch, res = channels, image_size
        for level, mult in enumerate(channel_mult):
            for _ in range(num_res_blocks):
                blocks = nn.ModuleList([ResBlock(ch, channels * mult, emb_dim, dropout, **rb)])
                ch = channels * mult
                if res in attn_resolutions:
                    blocks.append(Attention(ch, **at))
                self.down.append(blocks)
                skips.append(ch)
            if level != len(channel_mult) - 1:
                if resample == "conv":
                    self.down.append(nn.ModuleList([nn.Conv2d(ch, ch, 3, stride=2, padding=1)]))
                else:
                    self.down.append(nn.ModuleList([ResBlock(ch, ch, emb_dim, dropout, resample="down", **rb)]))
                skips.append(ch)
                res //= 2
        self.mid = nn.ModuleList([ResBlock(ch, ch, emb_dim, dropout, **rb), Attention(ch, **at), ResBlock(ch, ch, emb_dim, dropout, **rb)])
        self.up = nn.ModuleList()
        self._up_concat: list[bool] = []
        for level, mult in reversed(list(enumerate(channel_mult))):
            for _ in range(num_res_blocks + 1):
                blocks = nn.ModuleList([ResBlock(ch + skips.pop(), channels * mult, emb_dim, dropout, **rb)])
                ch = channels * mult
                if res in attn_resolutions:
                    blocks.append(Attention(ch, **at))
                self.up.append(blocks)
                self._up_concat.append(True)
            if level != 0:
                if resample == "conv":
                    self.up.append(nn.ModuleList([nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(ch, ch, 3, padding=1)]))
                else:
                    self.up.append(nn.ModuleList([ResBlock(ch, ch, emb_dim, dropout, resample="up", **rb)]))
                self._up_concat.append(False)
                res *= 2
        self.out = nn.Sequential(_norm(ch), nn.SiLU(), nn.Conv2d(ch, in_channels, 3, padding=1))
        nn.init.zeros_(self.out[-1].weight)
        nn.init.zeros_(self.out[-1].bias)

    @classmethod
    def from_preset(cls, name: str, in_channels: int = 3, image_size: int = 64, **overrides) -> "UNet":
        """A U-Net of a named size (``UNET_PRESETS``), with keyword overrides."""
        check_choice("model.preset", name, UNET_PRESETS)
        kw = dict(UNET_PRESETS[name])
        kw.update(overrides)
        return cls(in_channels=in_channels, image_size=image_size, **kw)

    @staticmethod
    def _run(blocks: nn.ModuleList, h: Tensor, emb: Tensor) -> Tensor:
        for m in blocks:
            h = m(h, emb) if isinstance(m, ResBlock) else m(h)
        return h

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        if t.dim() == 0:
            t = t.expand(x.shape[0])
        emb = self.time_embed(t).to(x.dtype)
        h = self.inp(x)
        hs = [h]
        for blocks in self.down:
            h = self._run(blocks, h, emb)
            hs.append(h)
        h = self._run(self.mid, h, emb)
        for blocks, concat in zip(self.up, self._up_concat):
            if concat:
                h = torch.cat([h, hs.pop()], dim=1)
            h = self._run(blocks, h, emb)
        return self.out(h)
