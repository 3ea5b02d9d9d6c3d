"""A time-conditioned U-Net of the DDPM++/ADM family for images (B, C, H, W), t of shape (B,).

Residual blocks with GroupNorm + SiLU, time embedding added as a per-channel shift (or scale-shift),
self-attention at chosen resolutions, down/up-sampling by strided conv / nearest + conv, skip
connections. Width (``channels``), depth (``channel_mult``, ``num_res_blocks``) and attention
resolutions are configurable; defaults give a compact network for tests and CPU demos.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from agm.errors import ConfigError
from agm.nets.embeddings import SinusoidalEmbedding


def _norm(ch: int) -> nn.GroupNorm:
    groups = math.gcd(ch, 32)
    return nn.GroupNorm(groups, ch)


class ResBlock(nn.Module):
    """GroupNorm-SiLU-Conv x2 with a time-conditioned scale/shift (ADM's adaptive GroupNorm)."""

    def __init__(self, cin: int, cout: int, emb_dim: int, dropout: float = 0.0) -> None:
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

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        scale, shift = self.emb(F.silu(emb))[:, :, None, None].chunk(2, dim=1)
        h = self.norm2(h) * (1 + scale) + shift
        h = self.conv2(self.drop(F.silu(h)))
        return self.skip(x) + h


class Attention(nn.Module):
    """Multi-head self-attention over spatial positions (scaled_dot_product_attention)."""

    def __init__(self, ch: int, heads: int = 4) -> None:
        super().__init__()
        if ch % heads:
            heads = 1
        self.heads = heads
        self.norm = _norm(ch)
        self.qkv = nn.Conv2d(ch, 3 * ch, 1)
        self.proj = nn.Conv2d(ch, ch, 1)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(b, 3, self.heads, c // self.heads, h * w).unbind(1)
        q, k, v = (z.transpose(-1, -2) for z in (q, k, v))  # (b, heads, hw, d)
        out = F.scaled_dot_product_attention(q, k, v)
        out = out.transpose(-1, -2).reshape(b, c, h, w)
        return x + self.proj(out)


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
    ) -> None:
        super().__init__()
        if image_size % (2 ** (len(channel_mult) - 1)):
            raise ConfigError(
                f"model.image_size={image_size} must be divisible by 2**(len(channel_mult)-1)={2 ** (len(channel_mult) - 1)}"
            )
        self.in_channels = in_channels
        self.image_size = image_size
        emb_dim = channels * 4
        self.time_embed = nn.Sequential(
            SinusoidalEmbedding(channels), nn.Linear(channels, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim)
        )
        self.inp = nn.Conv2d(in_channels, channels, 3, padding=1)
        self.down = nn.ModuleList()
        skips = [channels]
        ch, res = channels, image_size
        for level, mult in enumerate(channel_mult):
            for _ in range(num_res_blocks):
                blocks = nn.ModuleList([ResBlock(ch, channels * mult, emb_dim, dropout)])
                ch = channels * mult
                if res in attn_resolutions:
                    blocks.append(Attention(ch, heads))
                self.down.append(blocks)
                skips.append(ch)
            if level != len(channel_mult) - 1:
                self.down.append(nn.ModuleList([nn.Conv2d(ch, ch, 3, stride=2, padding=1)]))
                skips.append(ch)
                res //= 2
        self.mid = nn.ModuleList([ResBlock(ch, ch, emb_dim, dropout), Attention(ch, heads), ResBlock(ch, ch, emb_dim, dropout)])
        self.up = nn.ModuleList()
        for level, mult in reversed(list(enumerate(channel_mult))):
            for _ in range(num_res_blocks + 1):
                blocks = nn.ModuleList([ResBlock(ch + skips.pop(), channels * mult, emb_dim, dropout)])
                ch = channels * mult
                if res in attn_resolutions:
                    blocks.append(Attention(ch, heads))
                self.up.append(blocks)
            if level != 0:
                self.up.append(nn.ModuleList([nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(ch, ch, 3, padding=1)]))
                res *= 2
        self.out = nn.Sequential(_norm(ch), nn.SiLU(), nn.Conv2d(ch, in_channels, 3, padding=1))
        nn.init.zeros_(self.out[-1].weight)
        nn.init.zeros_(self.out[-1].bias)

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
        for blocks in self.up:
            if isinstance(blocks[0], ResBlock):
                h = torch.cat([h, hs.pop()], dim=1)
            h = self._run(blocks, h, emb)
        return self.out(h)
