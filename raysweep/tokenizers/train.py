"""Tokenizer training, pure torch: reconstruction objective + regularizer, seeded minibatches, exactly resumable.

    model = build_tokenizer("conv-tiny", "f4d4", 32)
    trainer = TokenizerTrainer(model, build_regularizer("lcr", {}), lr=2e-4, seed=0)
    history = trainer.fit(images, steps=300)              # images: float32 [N, 3, 32, 32] in [-1, 1]
    latents = trainer.encode(images)                      # [N, 4, 8, 8] posterior means, un-normalised

One CPU generator drives every random choice (minibatch indices, posterior noise, regularizer draws), and it is
part of `state_dict()` together with the discriminator and its optimizer (when `gan` is on), so a run restored
from a checkpoint continues the very same sequence. Paper eq. 12 in full: `perceptual_weight=1.0` with an LPIPS
`perceptual_fn` (`perceptual.py`) and `gan=GanConfig(weight=0.5, start=...)`.

On CUDA the step runs under bf16 autocast (`precision.backbone_autocast`; float32 on the CPU, unchanged): the
encoder, the decoder, the perceptual network's convolutions, the frozen feature network and the discriminator's
forward in the generator term. Kept float32: the posterior (mean, log-variance, the sample and the KL), L1, the
regularizer's loss (its statistics vary by regularizer: Gram matrices, cosines, mixtures) and the discriminator's
own update (`Adversarial.discriminator_step` runs backward inside the call, which PyTorch advises against under
autocast). `mixed_precision=False` keeps CUDA in float32 (the benchmark's baseline).

Data-parallel (`shard`, in a Ray Train worker): every rank draws the same global minibatch indices from the shared
generator and trains on its shard; gradients of the autoencoder, the regularizer and the discriminator are averaged
over the ranks as backward produces them. Posterior noise and regularizer draws come from a generator seeded by
(seed, step, rank), so ranks draw independent noise and a resumed run repeats it; unlike the diffusion trainer this
matches single-process training in distribution, not draw for draw, and the GAN's adaptive weight is each rank's own.
"""
from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import torch

from raysweep.diffusion.precision import backbone_autocast
from raysweep.nn.distributed import Shard, average_gradients
from raysweep.tokenizers.adversarial import Adversarial, GanConfig
from raysweep.tokenizers.losses import PerceptualFn, ReconstructionObjective
from raysweep.tokenizers.posterior import DiagonalGaussian
from raysweep.tokenizers.regularizers import RegContext, Regularizer
from raysweep.tokenizers.tokenizer import Tokenizer

FeatureFn = Callable[[torch.Tensor], torch.Tensor]  # images (B, 3, H, W) in [-1, 1] -> patch tokens (B, D, h', w')
OnLog = Callable[[int, dict[str, float]], None]
ADAM_BETAS = (0.5, 0.9)  # LDM / VA-VAE autoencoder optimizer


def psnr(x: torch.Tensor, x_hat: torch.Tensor) -> float:
    """Mean per-image PSNR in dB of images (N, 3, H, W) in [-1, 1], measured on the [0, 1] scale."""
    mse = ((x.clamp(-1, 1) - x_hat.clamp(-1, 1)) / 2).square().flatten(1).mean(1)  # (N,)
    return float((-10 * torch.log10(mse.clamp_min(1e-12))).mean())


class TokenizerTrainer:
    """Owns model, regularizer, optimizer and RNG for one tokenizer training run."""

    def __init__(self, model: Tokenizer, regularizer: Regularizer[Any], lr: float = 2e-4, weight_decay: float = 0.0,
                 batch_size: int = 32, seed: int = 0, feature_fn: FeatureFn | None = None, kl_weight: float = 1e-6,
                 reg_weight: float = 1.0, perceptual_weight: float = 0.0,
                 perceptual_fn: PerceptualFn | None = None, gan: GanConfig | None = None,
                 shard: Shard | None = None, mixed_precision: bool = True) -> None:
        if regularizer.needs_features and feature_fn is None:
            raise ValueError(f"regularizer {regularizer.name!r} needs a feature network: pass feature_fn")
        self.model = model
        self.regularizer = regularizer
        self.feature_fn = feature_fn if regularizer.needs_features else None
        self.batch_size = batch_size
        self.reg_weight = reg_weight
        self.objective = ReconstructionObjective(kl_weight, perceptual_weight, perceptual_fn)
        self.device = next(model.parameters()).device
        self.generator = torch.Generator().manual_seed(seed)
        self.seed = seed
        self.shard = shard
        self.mixed_precision = mixed_precision  # False: float32 on CUDA too (gpu_check's baseline)
        self.step = 0
        with torch.random.fork_rng(devices=[]):  # projector / mask token / discriminator: seeded, global RNG untouched
            torch.manual_seed(seed)
            regularizer.bind(model.latent_channels, self._feature_dim())
            self.adversarial = None if gan is None else Adversarial(gan, model.image_size, lr, self.device)
        regularizer.to(self.device)
        self.optimizer = torch.optim.AdamW([*model.parameters(), *regularizer.parameters()], lr=lr,
                                           weight_decay=weight_decay, betas=ADAM_BETAS)
        if shard is not None:
            discriminator = [] if self.adversarial is None else list(self.adversarial.discriminator.parameters())
            average_gradients([*model.parameters(), *regularizer.parameters(), *discriminator], shard)

    def _feature_dim(self) -> int | None:
        if self.feature_fn is None:
            return None
        with torch.no_grad():
            probe = torch.zeros(1, 3, self.model.image_size, self.model.image_size, device=self.device)
            return int(self.feature_fn(probe).shape[1])

    def train_step(self, images: torch.Tensor) -> dict[str, float]:
        """One optimizer step on a batch (B, 3, H, W); returns float logs (loss, l1, kl, reg, regularizer's own)."""
        self.model.train()
        self.regularizer.train()
        images = images.to(self.device)
        generator = self._noise_generator()
        with self._autocast():
            posterior = _float32(self.model.encode(images))
        z = posterior.sample(generator)  # (B, C, h, w)
        with self._autocast():
            recon = self.model.decode(z).float()  # (B, 3, H, W)
            recon_loss, logs = self.objective(images, recon, posterior)
        features = None
        if self.feature_fn is not None:
            with torch.no_grad(), self._autocast():
                features = self.feature_fn(images).float()  # (B, D, h', w')
        ctx = RegContext(images, posterior, z, self.model, features, generator, recon_loss)
        reg, reg_logs = self.regularizer.loss(ctx)
        loss = recon_loss + self.reg_weight * reg
        gan = self.adversarial if self.adversarial is not None and self.adversarial.active(self.step) else None
        if gan is not None:
            with self._autocast():
                gan_loss, gan_logs = gan.generator_loss(recon, recon_loss, self.model.decoder_output_layer)
            loss = loss + gan_loss
            logs.update(gan_logs)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        if gan is not None:
            logs.update(gan.discriminator_step(images, recon))
        self.step += 1
        logs = {"loss": loss.item(), **logs, "reg": reg.item(), **reg_logs}
        if self.shard is None:
            return logs
        mean = self.shard.mean({k: torch.tensor(v, device=self.device) for k, v in logs.items()})
        return {k: float(v) for k, v in mean.items()}

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        return backbone_autocast(self.device) if self.mixed_precision else contextlib.nullcontext()

    def _noise_generator(self) -> torch.Generator:
        """The trainer's generator; in a data-parallel rank one seeded by (seed, step, rank): independent per rank,
        repeated by a resumed run without extra state."""
        if self.shard is None:
            return self.generator
        return torch.Generator().manual_seed(hash((self.seed, self.step, self.shard.rank)) % 2**63)

    def fit(self, images: torch.Tensor, steps: int, batch_size: int | None = None,
            on_log: OnLog | None = None) -> list[dict[str, float]]:
        """`steps` steps on minibatches drawn with replacement from `images` (N, 3, H, W); per-step logs.
        A data-parallel rank trains on its shard of each global minibatch (logs averaged over the ranks)."""
        size = batch_size or self.batch_size
        rows = slice(None) if self.shard is None else self.shard.of(size)
        history = []
        for _ in range(steps):
            idx = torch.randint(len(images), (size,), generator=self.generator)[rows]
            logs = self.train_step(images[idx])
            history.append(logs)
            if on_log is not None:
                on_log(self.step, logs)
        return history

    @torch.no_grad()
    def encode(self, images: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
        """Posterior means (N, C, h, w) on the CPU, un-normalised: the latents diffusion trains on."""
        self.model.eval()
        return torch.cat([self.model.encode(images[i:i + batch_size].to(self.device)).mode().cpu()
                          for i in range(0, len(images), batch_size)])

    @torch.no_grad()
    def reconstruct(self, images: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
        """Dec(posterior mean) (N, 3, H, W) on the CPU."""
        self.model.eval()
        return torch.cat([self.model.decode(self.model.encode(images[i:i + batch_size].to(self.device)).mode()).cpu()
                          for i in range(0, len(images), batch_size)])

    def state_dict(self) -> dict[str, Any]:
        """A plain dict of tensors and python scalars (loadable with `torch.load(weights_only=True)`)."""
        return {"model": self.model.state_dict(), "regularizer": self.regularizer.state_dict(),
                "optimizer": self.optimizer.state_dict(), "step": self.step,
                "generator": self.generator.get_state(),
                **({} if self.adversarial is None else {"adversarial": self.adversarial.state_dict()})}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.regularizer.load_state_dict(state["regularizer"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.step = int(state["step"])
        self.generator.set_state(state["generator"])
        if self.adversarial is not None:
            self.adversarial.load_state_dict(state["adversarial"])


def _float32(posterior: DiagonalGaussian) -> DiagonalGaussian:
    """The posterior in float32 (from a bf16 encoder: its sample, KL and the regularizers stay full precision)."""
    if posterior.mean.dtype == torch.float32:
        return posterior
    return DiagonalGaussian(torch.cat([posterior.mean, posterior.logvar], dim=1).float())
