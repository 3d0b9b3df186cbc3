"""torch-fidelity glue: the DomainNet as a registered feature extractor, and `score_images`, which runs
`torch_fidelity.calculate_metrics` offline (local weights, no dataset download, no cache) with settings that stay
defined for the small sample counts of CPU studies.

Sample-count rules (torch-fidelity's own defaults assume ~50k images):
- every input needs >= MIN_SCORE_SAMPLES images: FID needs a covariance (N >= 2), PRC a k+1-th neighbour (k = 3),
  KID subsets of >= 2; below that torch-fidelity fails with NaNs or index errors, so we refuse.
- IS: torch-fidelity averages over `isc_splits` chunks (default 10); chunks below ~50 images estimate the
  marginal badly, so splits = clamp(N // 50, 1, 10) (500 images -> the standard 10; 64 -> 1, std 0).
- KID: subsets of min(1000, N1, N2) images (default 1000 would fail for N < 1000), 100 subsets.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset
from torch_fidelity import (
    KEY_METRIC_F_SCORE,
    KEY_METRIC_FID,
    KEY_METRIC_ISC_MEAN,
    KEY_METRIC_ISC_STD,
    KEY_METRIC_KID_MEAN,
    KEY_METRIC_KID_STD,
    KEY_METRIC_PRECISION,
    KEY_METRIC_RECALL,
    FeatureExtractorBase,
    calculate_metrics,
    register_feature_extractor,
)
from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY
from torch_fidelity.utils import create_feature_extractor, get_featuresdict_from_dataset

from raysweep.features.autoencoder import DomainAutoencoder
from raysweep.features.domain_net import DomainNet, load_domain_checkpoint
from raysweep.features.registry import AUTOENCODER_EXTRACTOR, DOMAIN_EXTRACTOR, FEATURE_NETWORKS, FeatureSpec

MIN_SCORE_SAMPLES = 8
ISC_MIN_SPLIT_SIZE, ISC_MAX_SPLITS = 50, 10
KID_MAX_SUBSET_SIZE, KID_SUBSETS = 1000, 100

# our metric name (also torch-fidelity's flag) -> {torch-fidelity result key: our result key}
RESULT_KEYS: dict[str, dict[str, str]] = {
    "fid": {KEY_METRIC_FID: "fid"},
    "isc": {KEY_METRIC_ISC_MEAN: "is_mean", KEY_METRIC_ISC_STD: "is_std"},
    "kid": {KEY_METRIC_KID_MEAN: "kid_mean", KEY_METRIC_KID_STD: "kid_std"},
    "prc": {KEY_METRIC_PRECISION: "precision", KEY_METRIC_RECALL: "recall", KEY_METRIC_F_SCORE: "f_score"},
}
_DTYPES = {None: torch.float32, "float32": torch.float32, "float64": torch.float64}


class DomainFeatureExtractor(FeatureExtractorBase):
    """torch-fidelity extractor around a saved DomainNet. Input uint8 [B,3,H,W] (H, W >= 16); provides
    "pool" [B, D] (FID/KID/PRC/FD) and "logits" [B, num_classes] (IS: the net's own class posterior, bias included)."""

    network: str = "domain"
    network_class: type[DomainNet | DomainAutoencoder] = DomainNet

    def __init__(self, name: str, features_list: list[str], feature_extractor_weights_path: str | None = None,
                 feature_extractor_internal_dtype: str | None = None, **kwargs: object) -> None:
        super().__init__(name, features_list)
        if feature_extractor_weights_path is None:
            raise ValueError(f"feature extractor '{name}' needs feature_extractor_weights_path (a saved DomainNet); "
                             "raysweep never downloads weights")
        if feature_extractor_internal_dtype not in _DTYPES:
            raise ValueError(f"feature_extractor_internal_dtype {feature_extractor_internal_dtype!r}; allowed: "
                             f"{', '.join(map(str, _DTYPES))}")
        self.dtype = _DTYPES[feature_extractor_internal_dtype]
        self.net = load_domain_checkpoint(feature_extractor_weights_path, self.network_class)[0].to(self.dtype)
        self.requires_grad_(False)
        self.eval()

    @classmethod
    def get_provided_features_list(cls) -> tuple[str, ...]:
        layers = FEATURE_NETWORKS[cls.network].layers
        return (layers.fid, *([layers.isc] if layers.isc else []))

    @classmethod
    def get_default_feature_layer_for_metric(cls, metric: str) -> str | None:
        layers = FEATURE_NETWORKS[cls.network].layers
        return {"isc": layers.isc, "fid": layers.fid, "kid": layers.fid, "prc": layers.fid}[metric]

    @staticmethod
    def can_be_compiled() -> bool:
        return False

    @staticmethod
    def get_dummy_input_for_compile() -> torch.Tensor:
        return torch.zeros(1, 3, 16, 16, dtype=torch.uint8)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        if not torch.is_tensor(x) or x.dtype != torch.uint8 or x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"expected uint8 images [B,3,H,W], got {getattr(x, 'dtype', type(x))} "
                             f"{tuple(getattr(x, 'shape', ()))}")
        out = self.views(x.to(self.dtype) / 127.5 - 1.0)
        return tuple(out[name].float() for name in self.features_list)

    def views(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Images float [B,3,H,W] in [-1, 1] -> {layer: [B, F]}."""
        pooled, logits = self.net.features_and_logits(x)  # (B, D), (B, K)
        return {"pool": pooled, "logits": logits}


class DomainAutoencoderExtractor(DomainFeatureExtractor):
    """torch-fidelity extractor around a saved DomainAutoencoder: "pool" [B, D] only (no classifier, so no IS)."""

    network, network_class = "domain-ae", DomainAutoencoder

    def views(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"pool": self.net.features(x)}


for _name, _extractor in ((DOMAIN_EXTRACTOR, DomainFeatureExtractor),
                          (AUTOENCODER_EXTRACTOR, DomainAutoencoderExtractor)):
    if _name not in FEATURE_EXTRACTORS_REGISTRY:  # torch-fidelity refuses a second registration
        register_feature_extractor(_name, _extractor)


class UInt8Images(Dataset):
    """uint8 [N,3,H,W] -> items [3,H,W], the input torch-fidelity expects."""

    def __init__(self, images: torch.Tensor | np.ndarray, label: str = "images") -> None:
        images = torch.as_tensor(images)
        if images.dtype != torch.uint8 or images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"{label} must be uint8 [N,3,H,W], got {images.dtype} {tuple(images.shape)}")
        self.images = images.cpu()

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.images[i]


def sample_settings(n_generated: int, n_reference: int) -> dict[str, int]:
    """torch-fidelity settings that are defined for these sample counts (see the module docstring)."""
    for label, n in (("generated", n_generated), ("reference", n_reference)):
        if n < MIN_SCORE_SAMPLES:
            raise ValueError(f"{label} has {n} images; generation scores need at least {MIN_SCORE_SAMPLES} per input")
    return {"isc_splits": min(ISC_MAX_SPLITS, max(1, n_generated // ISC_MIN_SPLIT_SIZE)),
            "kid_subsets": KID_SUBSETS, "kid_subset_size": min(KID_MAX_SUBSET_SIZE, n_generated, n_reference)}


def _offline_kwargs(spec: FeatureSpec, batch_size: int) -> dict[str, object]:
    """The calculate_metrics / create_feature_extractor options shared by every call: local weights, no
    download, no cache, in-process data loading (no DataLoader workers inside Ray actors), quiet."""
    return {"feature_extractor": spec.extractor, "feature_extractor_weights_path": str(spec.weights_path),
            "cuda": torch.cuda.is_available(), "batch_size": batch_size, "datasets_download": False,
            "cache": False, "save_cpu_ram": True, "verbose": False}


def score_images(generated: torch.Tensor | np.ndarray, reference: torch.Tensor | np.ndarray,
                 feature_network: FeatureSpec, metrics: Sequence[str] = ("fid", "isc"), batch_size: int = 64,
                 seed: int = 2020) -> dict[str, float]:
    """Generation scores of uint8 [N,3,H,W] images against a uint8 reference set, through torch-fidelity.

    metrics: any of fid, isc, kid, prc. Returns the requested keys of fid, is_mean, is_std, kid_mean, kid_std,
    precision, recall, f_score. IS is computed on `generated`; PRC precision is generated-in-reference."""
    unknown = [m for m in metrics if m not in RESULT_KEYS]
    if unknown or not metrics:
        raise ValueError(f"metrics must be a non-empty subset of {', '.join(RESULT_KEYS)}; got {list(metrics)}")
    layers = feature_network.layers
    if "isc" in metrics and layers.isc is None:
        raise ValueError(f"feature network '{feature_network.name}' has no classifier layer, so no IS; "
                         f"use one of {[n for n, net in FEATURE_NETWORKS.items() if net.layers.isc]}")
    gen, ref = UInt8Images(generated, "generated"), UInt8Images(reference, "reference")
    raw = calculate_metrics(
        input1=gen, input2=ref, **{m: m in metrics for m in RESULT_KEYS}, rng_seed=seed,
        feature_layer_fid=layers.fid, feature_layer_kid=layers.fid, feature_layer_prc=layers.fid,
        **({"feature_layer_isc": layers.isc} if "isc" in metrics else {}),
        **sample_settings(len(gen), len(ref)), **_offline_kwargs(feature_network, batch_size))
    return {ours: float(raw[theirs]) for m in metrics for theirs, ours in RESULT_KEYS[m].items()}


def extract_features(images: torch.Tensor | np.ndarray, feature_network: FeatureSpec,
                     layers: Sequence[str] | None = None, batch_size: int = 64) -> dict[str, torch.Tensor]:
    """Features of uint8 [N,3,H,W] images through the network's torch-fidelity extractor, the exact path
    `score_images` takes: {layer: float32 [N, F]}; layers default to the FID layer. Feed these to
    `frechet.py` for FD / FDr on any registered network."""
    layers = list(layers or [feature_network.layers.fid])
    options = _offline_kwargs(feature_network, batch_size)
    extractor = create_feature_extractor(feature_network.extractor, layers, **options)
    return get_featuresdict_from_dataset(UInt8Images(images), extractor, batch_size, options["cuda"],
                                         save_cpu_ram=True, verbose=False)
