"""Building blocks shared by SiT, LightningDiT and the ViT-VAE: embedders, attention with QK-norm (+ optional
2-D RoPE), feed-forward layers, the adaLN-Zero block and the final layer. Tokens are `(B, T, D)`, `T = h·w`
row-major."""
from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

NormLayer = Callable[[int, bool], nn.Module]  # (dim, elementwise_affine) -> norm over the last dim
FFNLayer = Callable[[int, int], nn.Module]  # (dim, hidden) -> feed-forward (B, T, D) -> (B, T, D)


def layer_norm(dim: int, affine: bool) -> nn.Module:
    return nn.LayerNorm(dim, eps=1e-6, elementwise_affine=affine)


def rms_norm(dim: int, affine: bool) -> nn.Module:
    return nn.RMSNorm(dim, eps=1e-6, elementwise_affine=affine)


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """adaLN: per-sample affine of token features. x (B, T, D), shift/scale (B, D)."""
    return x * (1 + scale[:, None]) + shift[:, None]


def sincos_pos_embed_2d(dim: int, grid: tuple[int, int]) -> torch.Tensor:
    """Fixed 2-D sine-cosine embedding (DiT/MAE): half the channels encode the row, half the column. -> (T, dim)."""
    if dim % 4:
        raise ValueError(f"sincos position embedding needs hidden size divisible by 4, got {dim}")
    rows, cols = torch.meshgrid(torch.arange(grid[0]), torch.arange(grid[1]), indexing="ij")
    omega = 1.0 / 10000 ** (torch.arange(dim // 4, dtype=torch.float64) / (dim // 4))  # (D/4,)

    def embed(pos: torch.Tensor) -> torch.Tensor:
        angles = pos.flatten().double()[:, None] * omega[None]  # (T, D/4)
        return torch.cat([angles.sin(), angles.cos()], dim=1)  # (T, D/2)

    return torch.cat([embed(rows), embed(cols)], dim=1).float()  # (T, D)


class Rope2D(nn.Module):
    """2-D rotary embedding: the first half of each head's channel pairs rotates with the row index, the second
    half with the column index, so q·k depends on positions only through their offset."""

    def __init__(self, head_dim: int, grid: tuple[int, int], theta: float = 10000.0) -> None:
        super().__init__()
        if head_dim % 4:
            raise ValueError(f"2-D RoPE needs a head dim divisible by 4, got {head_dim}")
        quarter = head_dim // 4
        freqs = theta ** (-torch.arange(quarter, dtype=torch.float64) / quarter)  # (hd/4,)
        rows, cols = torch.meshgrid(torch.arange(grid[0]), torch.arange(grid[1]), indexing="ij")
        angles = torch.cat([rows.flatten()[:, None] * freqs, cols.flatten()[:, None] * freqs], dim=1)  # (T, hd/2)
        self.register_buffer("cos", angles.cos().float(), persistent=False)
        self.register_buffer("sin", angles.sin().float(), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, H, T, hd) -> rotated (B, H, T, hd)."""
        a, b = x.unflatten(-1, (-1, 2)).unbind(-1)  # 2 × (B, H, T, hd/2)
        cos, sin = self.cos.to(x.dtype), self.sin.to(x.dtype)  # (T, hd/2)
        return torch.stack([a * cos - b * sin, a * sin + b * cos], dim=-1).flatten(-2)  # (B, H, T, hd)


class TimestepEmbedder(nn.Module):
    """Sinusoidal features of t ∈ [0, 1] -> MLP. t is scaled by `time_scale` so that the frequencies resolve
    the unit interval as finely as DiT's integer timesteps do."""

    def __init__(self, dim: int, freq_dim: int = 256, time_scale: float = 1000.0) -> None:
        super().__init__()
        self.freq_dim = freq_dim
        self.time_scale = time_scale
        self.mlp = nn.Sequential(nn.Linear(freq_dim, dim), nn.SiLU(), nn.Linear(dim, dim))

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        half = self.freq_dim // 2
        freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
        args = self.time_scale * t.float()[:, None] * freqs[None]  # (B, F/2)
        return self.mlp(torch.cat([args.cos(), args.sin()], dim=1))  # (B, D)


class LabelEmbedder(nn.Module):
    """Class embedding with one extra row, the null class (index `num_classes`), used for label dropout in
    training and as the unconditional branch of classifier-free guidance."""

    def __init__(self, num_classes: int, dim: int, dropout: float) -> None:
        super().__init__()
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"label_dropout must be in [0, 1), got {dropout}")
        self.num_classes = num_classes
        self.dropout = dropout
        self.table = nn.Embedding(num_classes + 1, dim)

    @property
    def null_class(self) -> int:
        return self.num_classes

    def drop(self, y: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Replace each label by the null class with probability `dropout`. y (B,) -> (B,)."""
        mask = torch.rand(y.shape, generator=generator, device=generator.device) < self.dropout  # (B,)
        return torch.where(mask.to(y.device), torch.full_like(y, self.null_class), y)

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        return self.table(y)  # (B, D)


class Attention(nn.Module):
    """Multi-head self-attention with QK-norm (per head) and optional RoPE, via SDPA."""

    def __init__(self, dim: int, num_heads: int, norm_layer: NormLayer) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"hidden size {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.q_norm = norm_layer(self.head_dim, True)
        self.k_norm = norm_layer(self.head_dim, True)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, rope: Rope2D | None = None) -> torch.Tensor:
        b, n, d = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)  # 3×(B,H,T,hd)
        q, k = self.q_norm(q), self.k_norm(k)  # (B, H, T, hd)
        if rope is not None:
            q, k = rope(q), rope(k)  # (B, H, T, hd)
        q, k = q.to(v.dtype), k.to(v.dtype)  # autocast runs the norms in fp32; SDPA wants one dtype
        out = F.scaled_dot_product_attention(q, k, v)  # (B, H, T, hd)
        return self.proj(out.transpose(1, 2).reshape(b, n, d))  # (B, T, D)


class Mlp(nn.Module):
    """SiT's feed-forward: Linear -> GELU(tanh) -> Linear."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU(approximate="tanh")
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))  # (B, T, D)


class SwiGLU(nn.Module):
    """LightningDiT's feed-forward: SiLU-gated linear unit; inner width 2/3 of `hidden` keeps the parameter
    count of an MLP of width `hidden`."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        inner = int(2 * hidden / 3)
        self.w12 = nn.Linear(dim, 2 * inner)
        self.w3 = nn.Linear(inner, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, value = self.w12(x).chunk(2, dim=-1)  # 2 × (B, T, inner)
        return self.w3(F.silu(gate) * value)  # (B, T, D)


class AdaLNZeroBlock(nn.Module):
    """Transformer block conditioned by adaLN-Zero: shift/scale/gate from the condition, gates zero-initialised
    so that every block starts as the identity."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, norm_layer: NormLayer,
                 ffn_layer: FFNLayer) -> None:
        super().__init__()
        self.norm1 = norm_layer(dim, False)  # affine comes from adaLN
        self.attn = Attention(dim, num_heads, norm_layer)
        self.norm2 = norm_layer(dim, False)
        self.ffn = ffn_layer(dim, int(dim * mlp_ratio))
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(dim, 6 * dim))

    def forward(self, x: torch.Tensor, c: torch.Tensor, rope: Rope2D | None = None) -> torch.Tensor:
        shift_a, scale_a, gate_a, shift_f, scale_f, gate_f = self.adaLN_modulation(c).chunk(6, dim=1)  # 6×(B,D)
        x = x + gate_a[:, None] * self.attn(modulate(self.norm1(x), shift_a, scale_a), rope)  # (B, T, D)
        return x + gate_f[:, None] * self.ffn(modulate(self.norm2(x), shift_f, scale_f))  # (B, T, D)


class FinalLayer(nn.Module):
    """adaLN-modulated norm + linear projection to patch pixels; zero-initialised so the model starts at v = 0."""

    def __init__(self, dim: int, out_dim: int, norm_layer: NormLayer) -> None:
        super().__init__()
        self.norm = norm_layer(dim, False)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(dim, 2 * dim))
        self.linear = nn.Linear(dim, out_dim)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        shift, scale = self.adaLN_modulation(c).chunk(2, dim=1)  # 2 × (B, D)
        return self.linear(modulate(self.norm(x), shift, scale))  # (B, T, p·p·C)
