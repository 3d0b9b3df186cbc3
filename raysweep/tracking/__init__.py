"""MLflow: the study -> tokenizer -> diffusion run tree, batched logging, reading runs back."""
from raysweep.tracking.tracker import HASH_TAG, PARENT_TAG, STAGE_TAG, Tracker

__all__ = ["HASH_TAG", "PARENT_TAG", "STAGE_TAG", "Tracker"]
