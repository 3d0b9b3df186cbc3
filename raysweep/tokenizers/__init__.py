"""Visual tokenizers (KL-VAEs), their latent configs `f{down}d{ch}`, the regularizer registry and the training loop.
Plain torch: no Ray, no MLflow."""
from raysweep.tokenizers.architectures import ARCHITECTURES, build_tokenizer, load_tokenizer, save_tokenizer
from raysweep.tokenizers.latent_config import LatentConfig, parse_latent_config
from raysweep.tokenizers.losses import ReconstructionObjective
from raysweep.tokenizers.posterior import DiagonalGaussian
from raysweep.tokenizers.regularizers import REGULARIZERS, RegContext, Regularizer, build_regularizer, validate_params
from raysweep.tokenizers.tokenizer import Tokenizer
from raysweep.tokenizers.train import TokenizerTrainer, psnr

__all__ = [
    "ARCHITECTURES", "DiagonalGaussian", "LatentConfig", "REGULARIZERS", "ReconstructionObjective", "RegContext",
    "Regularizer", "Tokenizer", "TokenizerTrainer", "build_regularizer", "build_tokenizer", "load_tokenizer",
    "parse_latent_config", "psnr", "save_tokenizer", "validate_params",
]
