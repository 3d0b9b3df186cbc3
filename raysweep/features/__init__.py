"""Feature networks (FID/IS/FD scoring, repa/vf alignment targets) from local weights only, FD numerics, cached
reference statistics, generation scores and evaluation cards.

Names load on first use (`raysweep.lazy`): the config layer checks feature-network names against the registry
here, which must not import torch-fidelity and torchvision."""
from __future__ import annotations

from typing import TYPE_CHECKING

from raysweep.lazy import lazy_exports

if TYPE_CHECKING:
    from raysweep.features.autoencoder import DomainAutoencoder, train_domain_autoencoder
    from raysweep.features.card import CARD_PARAM_PREFIX, CARD_TAG, EvalCard, generation_card, reconstruction_card
    from raysweep.features.domain_net import DomainNet, load_domain_checkpoint, load_domain_net, save_domain_net
    from raysweep.features.domain_train import train_domain_net
    from raysweep.features.fidelity import (
        MIN_SCORE_SAMPLES,
        DomainFeatureExtractor,
        extract_features,
        sample_settings,
        score_images,
    )
    from raysweep.features.frechet import (
        feature_frechet_distance,
        feature_moments,
        frechet_distance,
        sample_moments,
        shrink_covariance,
    )
    from raysweep.features.generation import (
        FD_PROTOCOL,
        NetworkReference,
        fd_to_reference,
        generation_scores,
        inception_score,
        network_reference,
        precision_recall,
    )
    from raysweep.features.reference_stats import ReferenceStats, cached_reference_stats, reference_key
    from raysweep.features.registry import (
        FEATURE_NETWORKS,
        FeatureLayers,
        FeatureNetwork,
        FeatureSpec,
        feature_network,
        resolve_feature_network,
    )
    from raysweep.features.weights import WEIGHTS_DIR_ENV, find_weights, weights_sha256

__all__ = [
    "CARD_PARAM_PREFIX", "CARD_TAG", "FD_PROTOCOL", "FEATURE_NETWORKS", "MIN_SCORE_SAMPLES", "WEIGHTS_DIR_ENV",
    "DomainAutoencoder", "DomainFeatureExtractor", "DomainNet", "EvalCard", "FeatureLayers", "FeatureNetwork",
    "FeatureSpec", "NetworkReference", "ReferenceStats", "cached_reference_stats", "extract_features",
    "fd_to_reference", "feature_frechet_distance", "feature_moments", "feature_network", "find_weights",
    "frechet_distance", "generation_card", "generation_scores", "inception_score", "load_domain_checkpoint",
    "load_domain_net", "network_reference", "precision_recall", "reconstruction_card", "reference_key",
    "resolve_feature_network", "sample_moments", "sample_settings", "save_domain_net", "score_images",
    "shrink_covariance", "train_domain_autoencoder", "train_domain_net", "weights_sha256",
]
__getattr__ = lazy_exports(__name__, __file__)
