"""The diffusion-transformer skeleton SiT and LightningDiT share: patchify -> condition -> adaLN-Zero blocks ->
final layer -> unpatchify. The two differ only in the norm, the feed-forward and the position encoding."""
from __future__ import annotations

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from raysweep.nn.blocks import (
    AdaLNZeroBlock,
    FFNLayer,
    FinalLayer,
    LabelEmbedder,
    NormLayer,
    Rope2D,
    TimestepEmbedder,
    sincos_pos_embed_2d,
)


class FlowTransformer(nn.Module):
    """Class-conditional velocity model `v_θ(x_t, t, y)` on latents `(B, C, H, W)`.

    `rope=False` adds a fixed 2-D sincos embedding to the tokens (SiT); `rope=True` rotates queries and keys
    instead (LightningDiT). Label dropout lives here (`drop_labels`) so the null class and its rate travel with
    the model; randomness comes from the caller's generator, which keeps training exactly resumable.
    """

    def __init__(self, *, in_channels: int, input_size: int | tuple[int, int], num_classes: int, depth: int,
                 hidden_size: int, num_heads: int, norm_layer: NormLayer, ffn_layer: FFNLayer, rope: bool,
                 patch_size: int = 1, mlp_ratio: float = 4.0, label_dropout: float = 0.1) -> None:
        super().__init__()
        height, width = (input_size, input_size) if isinstance(input_size, int) else input_size
        if height % patch_size or width % patch_size:
            raise ValueError(f"input size {(height, width)} is not divisible by patch_size {patch_size}")
        self.in_channels = in_channels
        self.patch_size = patch_size
        self.grid = (height // patch_size, width // patch_size)
        self.grad_checkpointing = False  # recompute block activations in backward; set by DiffusionTrainer
        self.x_embedder = nn.Conv2d(in_channels, hidden_size, kernel_size=patch_size, stride=patch_size)
        self.t_embedder = TimestepEmbedder(hidden_size)
        self.y_embedder = LabelEmbedder(num_classes, hidden_size, label_dropout)
        self.register_buffer("pos_embed", None if rope else sincos_pos_embed_2d(hidden_size, self.grid)[None],
                             persistent=False)
        self.rope = Rope2D(hidden_size // num_heads, self.grid) if rope else None
        self.blocks = nn.ModuleList(
            AdaLNZeroBlock(hidden_size, num_heads, mlp_ratio, norm_layer, ffn_layer) for _ in range(depth))
        self.final_layer = FinalLayer(hidden_size, patch_size * patch_size * in_channels, norm_layer)
        self._init_weights()

    @property
    def num_classes(self) -> int:
        return self.y_embedder.num_classes

    @property
    def null_class(self) -> int:
        return self.y_embedder.null_class

    def drop_labels(self, y: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Training-time label dropout to the null class (rate `label_dropout`). y (B,) -> (B,)."""
        return self.y_embedder.drop(y, generator)

    def _init_weights(self) -> None:
        """DiT's initialisation: xavier linears, N(0, 0.02) embeddings, zero adaLN and output layers."""
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)
        nn.init.xavier_uniform_(self.x_embedder.weight.view(self.x_embedder.weight.shape[0], -1))
        nn.init.zeros_(self.x_embedder.get_parameter("bias"))
        nn.init.normal_(self.y_embedder.table.weight, std=0.02)
        for layer in _linears(self.t_embedder.mlp[0], self.t_embedder.mlp[2]):
            nn.init.normal_(layer.weight, std=0.02)
        adaln = [block.adaLN_modulation[-1] for block in self.blocks if isinstance(block, AdaLNZeroBlock)]
        for layer in _linears(*adaln, self.final_layer.adaLN_modulation[-1], self.final_layer.linear):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def unpatchify(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, p·p·C) -> (B, C, H, W)."""
        (h, w), p, c = self.grid, self.patch_size, self.in_channels
        x = x.reshape(x.shape[0], h, w, p, p, c)  # (B, h, w, p, p, C)
        return torch.einsum("bhwpqc->bchpwq", x).reshape(x.shape[0], c, h * p, w * p)  # (B, C, H, W)

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """x (B, C, H, W) at flow time t (B,) ∈ [0, 1] (1 = data), labels y (B,) -> velocity (B, C, H, W)."""
        tokens = self.x_embedder(x).flatten(2).transpose(1, 2)  # (B, T, D)
        if self.pos_embed is not None:
            tokens = tokens + self.pos_embed  # (B, T, D)
        c = self.t_embedder(t) + self.y_embedder(y)  # (B, D)
        for block in self.blocks:
            if self.grad_checkpointing and self.training and torch.is_grad_enabled():
                tokens = checkpoint(block, tokens, c, self.rope, use_reentrant=False)  # (B, T, D)
            else:
                tokens = block(tokens, c, self.rope)  # (B, T, D)
        return self.unpatchify(self.final_layer(tokens, c))  # (B, C, H, W)


def _linears(*modules: nn.Module) -> list[nn.Linear]:
    """The given sub-modules, checked to be linear layers (the initialisation above addresses them by position)."""
    if not all(isinstance(m, nn.Linear) for m in modules):
        raise TypeError("expected linear layers: the block layout changed, update FlowTransformer._init_weights")
    return [m for m in modules if isinstance(m, nn.Linear)]
