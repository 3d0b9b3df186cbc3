"""The KL-VAE posterior q(z|x): a diagonal Gaussian per latent element (shared by every tokenizer architecture)."""
from __future__ import annotations

import torch

LOGVAR_RANGE = (-30.0, 20.0)  # as in LDM: keeps exp(logvar) finite in float32


class DiagonalGaussian:
    """q(z|x) = N(mean, exp(logvar)) from encoder moments (B, 2C, h, w), split channel-wise into mean and logvar."""

    def __init__(self, moments: torch.Tensor) -> None:
        mean, logvar = moments.chunk(2, dim=1)
        self.mean = mean  # (B, C, h, w)
        self.logvar = logvar.clamp(*LOGVAR_RANGE)  # (B, C, h, w)
        self.std = torch.exp(0.5 * self.logvar)

    def sample(self, generator: torch.Generator | None = None) -> torch.Tensor:
        """Reparameterised sample mean + std * eps (B, C, h, w); eps is drawn on the generator's device (the trainer's
        CPU generator, also when the model runs on a GPU) and moved to the model's."""
        device = self.mean.device if generator is None else generator.device
        eps = torch.randn(self.mean.shape, generator=generator, device=device, dtype=self.mean.dtype)
        return self.mean + self.std * eps.to(self.mean.device)

    def mode(self) -> torch.Tensor:
        return self.mean

    def kl(self) -> torch.Tensor:
        """KL(q || N(0, I)) summed over latent elements, averaged over the batch (LDM's convention); scalar."""
        return 0.5 * (self.mean.square() + self.std.square() - 1.0 - self.logvar).flatten(1).sum(1).mean()
