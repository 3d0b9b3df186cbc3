"""raysweep: which latent spaces do diffusion models learn best? Tokenizer x diffusion studies on Ray + MLflow."""
__version__ = "0.1.0"
