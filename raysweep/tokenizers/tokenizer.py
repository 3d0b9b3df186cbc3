"""The tokenizer interface: trainer and regularizers see only this, so a ViT VAE slots in beside the conv one."""
from __future__ import annotations

import torch
from torch import nn

from raysweep.tokenizers.latent_config import LatentConfig
from raysweep.tokenizers.posterior import DiagonalGaussian


class Tokenizer(nn.Module):
    """A KL-VAE for square images in [-1, 1]: `encode` (B, 3, H, W) -> q(z|x) over (B, C, H/f, W/f), `decode` back."""

    def __init__(self, latent: LatentConfig, image_size: int) -> None:
        super().__init__()
        latent.latent_shape(image_size)  # raises unless the image size fits the downsampling factor
        self.latent = latent
        self.image_size = image_size

    @property
    def latent_channels(self) -> int:
        return self.latent.channels

    @property
    def encoder_output_layer(self) -> torch.Tensor:
        """Weight of the encoder's last layer: where VA-VAE-style adaptive weights compare gradient norms."""
        raise NotImplementedError

    @property
    def decoder_output_layer(self) -> torch.Tensor:
        """Weight of the decoder's last layer: where the GAN's adaptive weight compares gradient norms (taming/LDM)."""
        raise NotImplementedError

    def encode(self, x: torch.Tensor) -> DiagonalGaussian:
        raise NotImplementedError

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor, sample: bool = True) -> tuple[torch.Tensor, DiagonalGaussian]:
        """(reconstruction (B, 3, H, W), posterior); decodes a posterior sample, or its mean if `sample=False`."""
        posterior = self.encode(x)
        z = posterior.sample() if sample else posterior.mode()
        return self.decode(z), posterior
