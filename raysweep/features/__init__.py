"""Feature networks (FID/IS/FD scoring, repa/vf alignment targets) from local weights only, and FD numerics."""
from raysweep.features.domain_net import DomainNet, load_domain_checkpoint, load_domain_net, save_domain_net
from raysweep.features.domain_train import train_domain_net
from raysweep.features.fidelity import (
    MIN_SCORE_SAMPLES,
    DomainFeatureExtractor,
    extract_features,
    sample_settings,
    score_images,
)
from raysweep.features.frechet import feature_frechet_distance, feature_moments, frechet_distance
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
    "FEATURE_NETWORKS", "MIN_SCORE_SAMPLES", "WEIGHTS_DIR_ENV", "DomainFeatureExtractor", "DomainNet", "FeatureLayers",
    "FeatureNetwork", "FeatureSpec", "extract_features", "feature_frechet_distance", "feature_moments",
    "feature_network", "find_weights", "frechet_distance", "load_domain_checkpoint", "load_domain_net",
    "resolve_feature_network", "sample_settings", "save_domain_net", "score_images", "train_domain_net",
    "weights_sha256",
]
