"""Evaluation cards: every generation / reconstruction score carries the protocol that produced it.

Reproduction disputes come from unrecorded settings (ODE vs SDE, 50 vs 250 steps, CFG grid, 10k vs 50k samples,
train vs val references, resize, fp32 vs bf16). A card lists them; its hash goes on the MLflow run as the tag
`raysweep.eval_card_hash` and every field as a param `card.<field>`, so the analysis can refuse to compare scores
whose cards differ and say which fields do. Both names are a contract with `raysweep.analysis`.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Literal

from raysweep.features.generation import FD_PROTOCOL
from raysweep.features.registry import DOMAIN_EXTRACTOR, FeatureSpec, feature_network
from raysweep.hashing import config_hash

CARD_TAG = "raysweep.eval_card_hash"
CARD_PARAM_PREFIX = "card."
CARD_HASH_LENGTH = 16
PREPROCESSING = "float [-1,1] -> uint8 round((x+1)*127.5)"  # what `to_uint8` does to decoded images
PRC_PROTOCOL = "torch-fidelity kNN (Kynkaanniemi 2019), k=3, seeded reference subset of the generated count"
Kind = Literal["generation", "reconstruction"]


@dataclass(frozen=True)
class EvalCard:
    """The evaluation protocol of one run's scores. Plain str/int/float fields, so params and hash are stable."""

    kind: Kind
    feature_network: str          # the FID / IS network (gfid, rfid)
    feature_weights_sha256: str
    fd_networks: str              # "name:sha256[:12],..." every network FD / FDr averaged over
    fd_protocol: str
    reference_dataset: str        # dataset config hash
    reference_split: str
    reference_size: int
    preprocessing: str
    resize_crop: str              # what the FID network's extractor does to the uint8 input
    num_samples: int
    class_balancing: str
    sampler: str
    steps: int
    cfg_scales: str               # the swept grid, "1,1.5,2"; "" without sampling
    guidance_interval: str
    timestep_shift: float
    seed: int
    precision: str
    prc: str
    feature_check: str            # the gFID validity check of the FID network: FD(blurred real, real) vs real halves
    extra_scorers: str = ""       # "name:sha256[:12]; name skipped: reason" of evaluation.scorers (generation only)

    def hash(self) -> str:
        """Hashes `extra_scorers` only when set, so cards without extra scorers (every reconstruction card, and
        those written before extra scorers existed) keep their hash."""
        fields = asdict(self)
        if not self.extra_scorers:
            del fields["extra_scorers"]
        return config_hash(fields, CARD_HASH_LENGTH)

    def params(self) -> dict[str, str]:
        """MLflow params `card.<field>` (MLflow stores params as strings)."""
        return {f"{CARD_PARAM_PREFIX}{k}": str(v) for k, v in asdict(self).items()}

    def tags(self) -> dict[str, str]:
        return {CARD_TAG: self.hash()}


def network_list(networks: Sequence[FeatureSpec]) -> str:
    """"name:sha12,..." in the given order: which weights FD / FDr used."""
    return ",".join(f"{n.name}:{n.weights_sha256[:12]}" for n in networks)


def feature_check(network: FeatureSpec) -> str:
    """The blur check recorded with a domain network's weights (`domain_train.blur_check`), as card text."""
    if network.extractor != DOMAIN_EXTRACTOR:
        return "not run (a published network)"
    from raysweep.features.domain_net import load_domain_checkpoint

    meta = load_domain_checkpoint(network.weights_path)[1]
    if "check_fd_blurred" not in meta:
        return "not recorded with these weights"
    text = (f"FD(blur sigma={meta['check_blur_sigma']:g} of real, real) = {meta['check_fd_blurred']:.4g} vs "
            f"FD(real halves) = {meta['check_fd_real_halves']:.4g}")
    if "check_kid_real_halves" not in meta:  # weights trained before KID was recorded: the card they had
        return text
    return (f"{text}, {meta['check_half_size']:.0f} vs {meta['check_half_size']:.0f} images (FD at this N is mostly "
            f"sample-size bias; KID, unbiased: blurred {meta['check_kid_blurred']:.3g} vs halves "
            f"{meta['check_kid_real_halves']:.3g})")


def reconstruction_card(network: FeatureSpec, dataset_key: str, split: str, size: int,
                        precision: str = "float32") -> EvalCard:
    """rFID: reconstructions of a split scored against that split's own images (same count, its own labels)."""
    return EvalCard(
        kind="reconstruction", feature_network=network.name, feature_weights_sha256=network.weights_sha256,
        fd_networks=network_list([network]), fd_protocol=FD_PROTOCOL, reference_dataset=dataset_key,
        reference_split=split, reference_size=size, preprocessing=PREPROCESSING,
        resize_crop=feature_network(network.name).resize, num_samples=size,
        class_balancing=f"the {split} split's own labels", sampler="none (posterior mean)", steps=0,
        cfg_scales="", guidance_interval="none", timestep_shift=1.0, seed=0, precision=precision, prc="",
        feature_check=feature_check(network))


def generation_card(network: FeatureSpec, fd_networks: Sequence[FeatureSpec], dataset_key: str, split: str,
                    reference_size: int, num_samples: int, sampler: str, steps: int, cfg_scales: Sequence[float],
                    guidance_interval: tuple[float, float] | None, timestep_shift: float, seed: int,
                    precision: str, class_balancing: str, extra_scorers: str = "") -> EvalCard:
    return EvalCard(
        kind="generation", feature_network=network.name, feature_weights_sha256=network.weights_sha256,
        fd_networks=network_list(fd_networks), fd_protocol=FD_PROTOCOL, reference_dataset=dataset_key,
        reference_split=split, reference_size=reference_size, preprocessing=PREPROCESSING,
        resize_crop=feature_network(network.name).resize, num_samples=num_samples, class_balancing=class_balancing,
        sampler=sampler, steps=steps, cfg_scales=",".join(f"{s:g}" for s in cfg_scales),
        guidance_interval="none" if guidance_interval is None else f"{guidance_interval[0]:g}-{guidance_interval[1]:g}",
        timestep_shift=timestep_shift, seed=seed, precision=precision, prc=PRC_PROTOCOL,
        feature_check=feature_check(network), extra_scorers=extra_scorers)
