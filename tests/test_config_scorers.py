"""`evaluation.scorers`: its defaults, one-line errors naming file, key and allowed values, and the keys it enters:
only the diffusion evaluation key, so adding a scorer re-scores saved diffusion models and retrains nothing."""
from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml
from test_complete_keys import _finished, _stale, _unfinished
from test_e2e_study import micro_study

from raysweep.config import load_study, parse_study
from raysweep.config.errors import ConfigError
from raysweep.config.plan import StudyPlan, reference_key, scorer_key
from raysweep.config.spec import ScorerSpec


def test_every_study_scores_with_the_autoencoder_and_asks_for_inception_by_default() -> None:
    scorers = parse_study({"name": "s"}).evaluation.scorers
    assert scorers == [ScorerSpec(name="domain-ae"), ScorerSpec(name="inception-v3-compat")]
    assert scorers[1].weights_path is None  # skipped at run time, with the reason, unless a local file is given
    bare = parse_study({"name": "s", "evaluation": {"scorers": ["domain-ae"]}}).evaluation.scorers
    assert bare == [ScorerSpec(name="domain-ae")]


@pytest.mark.parametrize(("scorers", "key", "message"), [
    ([{"name": "dino"}], "evaluation.scorers[0].name",
     "unknown scorer 'dino'; allowed: domain-ae, inception-v3-compat, vgg16"),
    (["domain-ae", "domain"], "evaluation.scorers[1].name", "unknown scorer 'domain'; allowed: domain-ae,"),
    (["vgg16", {"name": "vgg16"}], "evaluation.scorers", "scorer 'vgg16' is listed twice (entries 0 and 1)"),
    ([{"name": "domain-ae", "weights_path": "/w.pt"}], "evaluation.scorers[0]",
     "weights_path is for published networks; 'domain-ae' is trained by stage 0"),
    ([{"name": "domain-ae", "train_steps": 0}], "evaluation.scorers[0].train_steps", "greater than or equal to 1"),
])
def test_a_bad_scorer_is_one_line_naming_file_key_and_allowed_values(tmp_path: Path, scorers: list, key: str,
                                                                     message: str) -> None:
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump({"name": "s", "evaluation": {"scorers": scorers}}))
    with pytest.raises(ConfigError) as err:
        load_study(path)
    assert str(err.value).startswith(f"{path}: {key}: ") and message in str(err.value)
    assert "\n" not in str(err.value)


def test_a_scorer_enters_only_the_diffusion_evaluation_key(tmp_path: Path) -> None:
    base = micro_study(tmp_path / "study")
    _finished(base)
    for edit in ([], ["domain-ae"], [{"name": "domain-ae", "train_steps": 50}],
                 ["domain-ae", {"name": "inception-v3-compat", "weights_path": "/weights/pt_inception.pth"}]):
        edited = copy.deepcopy(base)
        edited["evaluation"]["scorers"] = edit
        assert _unfinished(edited) == {"diffusion": ["baseline/SiT-T/0", "lcr/SiT-T/0"]}  # re-scored, nothing more
        assert _stale(edited)[("diffusion", "lcr/SiT-T/0")] == ["evaluation.scorers"]
        before, after = (StudyPlan.from_spec(parse_study(d)) for d in (base, edited))
        assert [t.key for t in before.tokenizers] == [t.key for t in after.tokenizers]
        assert [d.key for d in before.diffusion] == [d.key for d in after.diffusion]  # training keys
        assert all(b.evaluation_key != a.evaluation_key for b, a in zip(before.diffusion, after.diffusion))

    study = parse_study(base)  # the study-trained scorer's own stage-0 key: its settings and the dataset
    ae = study.evaluation.scorers[0]
    assert scorer_key(ae, "d1") != scorer_key(ae, "d2") != reference_key(study.reference, "d2")
    assert scorer_key(ae, "d1") != scorer_key(ae.model_copy(update={"train_steps": ae.train_steps + 1}), "d1")
