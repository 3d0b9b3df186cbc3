"""Blocks shared by the tokenizers and the diffusion backbones (neither imports the other): transformer blocks, and
the torch.distributed helpers of data-parallel training (`distributed`)."""
