"""Images per class in a study's validation split, known without reading it where the dataset fixes them: the
denominators of the chance levels of label metrics (LNC, linear probe)."""
from __future__ import annotations


def val_class_counts(name: str, val_size: int, num_classes: int) -> list[int] | None:
    """shapes: a shuffled round-robin over the classes; mnist: val_size // num_classes of each class
    (`raysweep/data/mnist.py`); None where only the files know (imagefolder)."""
    if name == "shapes":
        return [len(range(k, val_size, num_classes)) for k in range(num_classes)]
    if name == "mnist":
        return [val_size // num_classes] * num_classes
    return None
