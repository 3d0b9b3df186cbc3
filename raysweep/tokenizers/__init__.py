"""Visual tokenizers (conv and ViT KL-VAEs), their latent configs `f{down}d{ch}`, the objective (L1, perceptual,
GAN, KL), the regularizer registry and the training loop. Plain torch: no Ray, no MLflow.

Names load on first use (`raysweep.lazy`): building and training a tokenizer imports neither the regularizer
registry nor pydantic (`benchmarks/gpu_check.py` runs where pydantic is not installed)."""
from __future__ import annotations

from typing import TYPE_CHECKING

from raysweep.lazy import lazy_exports

if TYPE_CHECKING:
    from raysweep.tokenizers.adversarial import GanConfig, PatchGAN
    from raysweep.tokenizers.architectures import ARCHITECTURES, build_tokenizer, load_tokenizer, save_tokenizer
    from raysweep.tokenizers.latent_config import LatentConfig, parse_latent_config
    from raysweep.tokenizers.losses import ReconstructionObjective
    from raysweep.tokenizers.perceptual import (
        PerceptualDistance,
        domain_perceptual,
        lpips_vgg,
        perceptual_distance,
    )
    from raysweep.tokenizers.posterior import DiagonalGaussian
    from raysweep.tokenizers.regularizers.base import RegContext, Regularizer
    from raysweep.tokenizers.regularizers.registry import REGULARIZERS, build_regularizer, validate_params
    from raysweep.tokenizers.tokenizer import Tokenizer
    from raysweep.tokenizers.train import TokenizerTrainer, psnr

__all__ = [
    "ARCHITECTURES", "DiagonalGaussian", "GanConfig", "LatentConfig", "PatchGAN", "PerceptualDistance", "REGULARIZERS",
    "ReconstructionObjective", "RegContext", "Regularizer", "Tokenizer", "TokenizerTrainer", "build_regularizer",
    "build_tokenizer", "domain_perceptual", "load_tokenizer", "lpips_vgg", "parse_latent_config",
    "perceptual_distance", "psnr", "save_tokenizer", "validate_params",
]
__getattr__ = lazy_exports(__name__, __file__)
