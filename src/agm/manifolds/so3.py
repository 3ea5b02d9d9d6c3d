"""The rotation group SO(3) = {R in R^(3x3): R^T R = I, det R = 1} with its bi-invariant metric (docs/flowmaps.md).

Points and tangent vectors are 3x3 matrices flattened row-major to 9 ambient coordinates. A tangent vector at R
is V = R hat(w), w in R^3, hat(w) the skew matrix with hat(w) y = w x y. The metric is half the Frobenius
product, g_R(U, V) = tr(U^T V) / 2, so that ||R hat(w)||_g = |w| and the geodesic distance is the rotation angle:

    exp_R(V)  = R Exp(R^T V),   Exp(hat w) = I + sinc(th) hat(w) + (1 - cos th)/th^2 hat(w)^2,  th = |w|  (Rodrigues)
    log_R(S)  = R hat(Log(R^T S)),  Log(M) = th a,  th = atan2(|vee(M - M^T)| / 2, (tr M - 1) / 2)
                (axis a from the skew part, and from the symmetric part (M + M^T)/2 - cos th I = (1 - cos th) a a^T
                 when th > pi/2, where the skew part is too small to give it accurately)
    d(R, S)   = angle of R^T S in [0, pi]
    proj_R(V) = R skew(R^T V),   projx(A) = U diag(1, 1, det(U V^T)) V^T  (A = U S V^T: the nearest rotation)
Prior: the uniform (Haar) law, drawn as the rotation of a uniform unit quaternion; its angle has density
(1 - cos th)/pi on [0, pi] and the volume of SO(3) in this metric is 8 pi^2. The cut locus of R is the set of
rotations at angle pi from it; there log picks one of the two opposite axes.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from agm.errors import check_positive
from agm.manifolds.base import TINY, Manifold, safe_norm


def hat(w: Tensor) -> Tensor:
    """(..., 3) -> (..., 3, 3) skew matrices with hat(w) y = w x y."""
    z = torch.zeros_like(w[..., 0])
    return torch.stack([
        torch.stack([z, -w[..., 2], w[..., 1]], -1),
        torch.stack([w[..., 2], z, -w[..., 0]], -1),
        torch.stack([-w[..., 1], w[..., 0], z], -1),
    ], -2)


def vee(m: Tensor) -> Tensor:
    """(..., 3, 3) -> (..., 3): the vector of the skew part of m, vee(hat(w)) = w."""
    return 0.5 * torch.stack([m[..., 2, 1] - m[..., 1, 2], m[..., 0, 2] - m[..., 2, 0], m[..., 1, 0] - m[..., 0, 1]], -1)


def _sinc_and_cosc(th: Tensor) -> tuple[Tensor, Tensor]:
    """sin(th)/th and (1 - cos th)/th^2 with Taylor branches below th = 1e-2 (smooth, JVP-safe)."""
    small = th < 1e-2
    ts = torch.where(small, torch.ones_like(th), th)
    t2 = th * th
    a = torch.where(small, 1 - t2 / 6 + t2 * t2 / 120, torch.sin(ts) / ts)
    b = torch.where(small, 0.5 - t2 / 24 + t2 * t2 / 720, (1 - torch.cos(ts)) / (ts * ts))
    return a, b


def so3_exp(w: Tensor) -> Tensor:
    """Exp(hat w) by Rodrigues' formula, (..., 3) -> (..., 3, 3)."""
    th = safe_norm(w, keepdim=False)[..., None, None]
    k = hat(w)
    a, b = _sinc_and_cosc(th)
    eye = torch.eye(3, dtype=w.dtype, device=w.device).expand(k.shape)
    return eye + a * k + b * (k @ k)


def so3_log(m: Tensor) -> Tensor:
    """The rotation vector w (|w| in [0, pi]) with Exp(hat w) = m, (..., 3, 3) -> (..., 3)."""
    s = vee(m)  # = sin(th) a
    c = ((m[..., 0, 0] + m[..., 1, 1] + m[..., 2, 2] - 1) / 2).clamp(-1.0, 1.0)
    ns = safe_norm(s, keepdim=False)
    th = torch.atan2(ns, c)
    # near 0 (and generally for th <= pi/2): w = th s / |s| = s th / sin th
    small = ns < 1e-4
    ratio = torch.where(small, 1 + ns * ns / 6, th / torch.where(small, torch.ones_like(ns), ns))
    w_skew = ratio[..., None] * s
    # near pi: a a^T = (sym - c I) / (1 - c); the column with the largest diagonal, its sign from s
    sym = 0.5 * (m + m.transpose(-1, -2))
    aat = (sym - c[..., None, None] * torch.eye(3, dtype=m.dtype, device=m.device)) / (1 - c).clamp_min(1e-6)[..., None, None]
    diag = torch.diagonal(aat, dim1=-2, dim2=-1)
    idx = diag.argmax(-1)
    col = torch.gather(aat, -1, idx[..., None, None].expand(*aat.shape[:-1], 1)).squeeze(-1)
    a = col / safe_norm(col)
    sign = torch.where((a * s).sum(-1, keepdim=True) < 0, -1.0, 1.0).to(m.dtype)
    w_sym = th[..., None] * sign * a
    return torch.where((c < 0)[..., None], w_sym, w_skew)


class SO3(Manifold):
    """The rotation group SO(3) (dim 3) embedded in R^9 (row-major flattened 3x3 matrices), bi-invariant metric
    tr(U^T V)/2 (geodesic distance = rotation angle)."""

    name = "so3"

    def __init__(self, dim: int = 3) -> None:
        check_positive("manifold.dim", dim, integer=True)
        if dim != 3:
            from agm.errors import ConfigError

            raise ConfigError(f"manifold.dim={dim!r} is not accepted for so3; SO(3) has dimension 3")
        self.dim = 3
        self.ambient_dim = 9

    @staticmethod
    def mat(x: Tensor) -> Tensor:
        """(B, 9) -> (B, 3, 3)."""
        return x.reshape(*x.shape[:-1], 3, 3)

    @staticmethod
    def flat(m: Tensor) -> Tensor:
        """(B, 3, 3) -> (B, 9)."""
        return m.reshape(*m.shape[:-2], 9)

    def expmap(self, x: Tensor, u: Tensor) -> Tensor:
        """exp_R(V) = R Exp(R^T V) (the skew part of R^T V is used)."""
        r = self.mat(x)
        return self.flat(r @ so3_exp(vee(r.transpose(-1, -2) @ self.mat(u))))

    def logmap(self, x: Tensor, y: Tensor) -> Tensor:
        """log_R(S) = R hat(Log(R^T S))."""
        r = self.mat(x)
        return self.flat(r @ hat(so3_log(r.transpose(-1, -2) @ self.mat(y))))

    def sqdist(self, x: Tensor, y: Tensor) -> Tensor:
        """th^2, th = atan2(|vee(M - M^T)|/2, (tr M - 1)/2), M = R^T S (gradient-stable near th = 0)."""
        m = self.mat(x).transpose(-1, -2) @ self.mat(y)
        c = (m[..., 0, 0] + m[..., 1, 1] + m[..., 2, 2] - 1) / 2
        return torch.atan2(safe_norm(vee(m), keepdim=False), c) ** 2

    def pairwise_dist(self, x: Tensor, y: Tensor) -> Tensor:
        """Angle of R_i^T S_j: from tr(R_i^T S_j) = <R_i, S_j>_F (clamped arccos; exact to ~1e-4 rad in float32 near 0)."""
        tr = x @ y.transpose(0, 1)
        c = ((tr - 1) / 2).clamp(-1.0, 1.0)
        return torch.arccos(c)

    def projx(self, x: Tensor) -> Tensor:
        """The nearest rotation (in Frobenius norm): U diag(1, 1, det(U V^T)) V^T from the SVD."""
        u, _, vh = torch.linalg.svd(self.mat(x))
        d = torch.det(u @ vh)
        fix = torch.ones(*d.shape, 3, dtype=x.dtype, device=x.device)
        fix[..., 2] = d
        return self.flat(u @ (fix[..., :, None] * vh))

    def proju(self, x: Tensor, u: Tensor) -> Tensor:
        """R skew(R^T V), skew(A) = (A - A^T)/2."""
        r = self.mat(x)
        a = r.transpose(-1, -2) @ self.mat(u)
        return self.flat(r @ (0.5 * (a - a.transpose(-1, -2))))

    def inner(self, x: Tensor, u: Tensor, v: Tensor) -> Tensor:
        """g_R(U, V) = tr(U^T V) / 2."""
        return 0.5 * (u * v).sum(-1)

    def tangent_frame(self, x: Tensor) -> Tensor:
        """The g-orthonormal frame R hat(e_k), k = 1..3, shape (B, 3, 9)."""
        r = self.mat(x)
        e = hat(torch.eye(3, dtype=x.dtype, device=x.device))  # (3, 3, 3)
        return self.flat(r[:, None] @ e[None])

    def constraint_error(self, x: Tensor) -> Tensor:
        """max(|R^T R - I|_max, |det R - 1|)."""
        r = self.mat(x)
        eye = torch.eye(3, dtype=x.dtype, device=x.device)
        orth = (r.transpose(-1, -2) @ r - eye).abs().amax((-1, -2))
        return torch.maximum(orth, (torch.det(r) - 1).abs())

    def constraint(self) -> str:
        return "points must be rotation matrices (R^T R = I, det R = 1), flattened row-major to 9 numbers"

    def random_base(self, n: int, *, generator: torch.Generator | None = None, dtype=torch.float32) -> Tensor:
        """Uniform (Haar): the rotation of q = g/|g|, g ~ N(0, I_4) (a uniform unit quaternion)."""
        check_positive("n", n, integer=True)
        q = torch.randn(n, 4, generator=generator, dtype=torch.float64)
        q = q / q.norm(dim=-1, keepdim=True).clamp_min(math.sqrt(TINY))
        return self.flat(quaternion_to_matrix(q)).to(dtype)

    def log_volume(self) -> float:
        """log vol SO(3) = log(8 pi^2) in the metric tr(U^T V)/2."""
        return math.log(8 * math.pi**2)


def quaternion_to_matrix(q: Tensor) -> Tensor:
    """Unit quaternions (w, x, y, z) (scalar first), shape (..., 4) -> rotation matrices (..., 3, 3)."""
    w, x, y, z = q.unbind(-1)
    return torch.stack([
        torch.stack([1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)], -1),
        torch.stack([2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)], -1),
        torch.stack([2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)], -1),
    ], -2)


def rotation_angle(x: Tensor) -> Tensor:
    """The rotation angle in [0, pi] of each row of x (flattened rotations), shape (B,)."""
    return SO3().sqdist(SO3.flat(torch.eye(3, dtype=x.dtype, device=x.device).expand(x.shape[0], 3, 3)), x).sqrt()
