"""Transformer building blocks shared by the ViT tokenizer and the diffusion backbones (neither imports the other)."""
