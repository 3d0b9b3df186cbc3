"""Study files: validation, one-line errors, search-space resolution, the validate/plan commands."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from raysweep.config import ConfigError, load_study, parse_study
from raysweep.config.search import resolve, to_tune

ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = ROOT / "experiments" / "quickstart.yaml"


def write(tmp_path: Path, data: dict, name: str = "study.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data))
    return path


def test_quickstart_resolves_six_distinct_tokenizers() -> None:
    study = load_study(QUICKSTART)
    ids = [t.id for t in study.tokenizer_trials]
    assert len(ids) >= 6 and len(set(ids)) == len(ids)
    assert len({t.key() for t in study.tokenizer_trials}) == len(ids)
    assert len({t.regularizer for t in study.tokenizer_trials}) >= 5
    assert {t.tags()["family"].split("-")[0] for t in study.tokenizer_trials} == {"conv", "vit"}  # two families
    assert study.tracking_uri.startswith("sqlite:///") and study.tracking_uri.endswith("mlflow.db")



def test_quickstart_diffusion_keeps_its_settings_and_fills_the_rest_from_the_cpu_recipe() -> None:
    """The values the quickstart trained with when they were literal defaults: SiT-T's CPU recipe now supplies them."""
    (trial,) = load_study(QUICKSTART).diffusion_trials
    assert trial.model_dump() == {
        "backbone": "SiT-T", "patch_size": 2, "steps": 300, "batch_size": 64, "lr": 1e-3, "beta1": 0.9,
        "beta2": 0.999, "weight_decay": 0.0, "ema_decay": 0.98, "ema_warmup": True, "timestep_sampler": "uniform",
        "sampler_params": {}, "loss": "mse", "grad_clip": 1.0, "compile": False, "grad_checkpointing": False,
        "label_dropout": 0.1}
    lightning = parse_study({"name": "s", "diffusion": {"backbone": "LightningDiT-T"}}).diffusion_trials[0]
    assert (lightning.timestep_sampler, lightning.loss, lightning.beta2) == ("logit_normal", "mse+cos", 0.95)

@pytest.mark.parametrize("data, path, needle", [
    ({"name": "s", "tokenizers": {"variants": [{"regularizr": "eq"}]}}, "tokenizers.variants[0]", "regularizr"),
    ({"name": "s", "dataset": {"imagesize": 32}}, "dataset.imagesize", "image_size"),
    ({"name": "s", "tokenizers": {"regularizer": "nope"}}, "tokenizers", "baseline"),
    ({"name": "s", "diffusion": {"backbone": "SiT-Q"}}, "diffusion", "SiT-T"),
    ({"name": "s", "metrics": {"names": ["vivv"]}}, "metrics", "viv"),
    ({"name": "s", "dataset": {"name": "cifar"}}, "dataset.name", "shapes"),
    ({"name": "s", "tokenizers": {"lr": {"loguniform": [0, 1]}}}, "tokenizers.lr", "positive"),
    ({"name": "s", "tokenizers": {"latent": "f3d4"}}, "tokenizers", "power of two"),
    ({"name": "s", "tokenizers": {"regularizer": "lcr", "params": {"wieght": 1}}}, "tokenizers", "weight"),
    ({"name": "s", "diffusion": {"seeds": []}}, "diffusion.seeds", "non-empty"),
    ({"name": "s", "diffusion": {"backbone": "LightningDiT-T", "grad_clip": 0}}, "diffusion.grad_clip", "than 0"),
    ({"name": "s", "analysis": {"methods": ["pearsn"]}}, "analysis.methods", "kendall, pearson, spearman"),
    ({"name": "s", "analysis": {"n_boot": 5}}, "analysis.n_boot", "10"),
    ({"name": "s", "analysis": {"allow_mixed": True}}, "analysis.allow_mixed", "allow_mixed_cards"),
])
def test_bad_values_give_one_line_with_path_and_allowed_values(tmp_path: Path, data: dict, path: str,
                                                               needle: str) -> None:
    source = write(tmp_path, data)
    with pytest.raises(ConfigError) as info:
        load_study(source)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"{source}: {path}")
    assert needle in message


def test_search_spaces_map_to_tune_and_resolve_deterministically() -> None:
    from ray.tune.search.sample import Float

    space = to_tune({"lr": {"loguniform": [1e-4, 1e-2]}, "reg": {"grid": ["a", "b"]}})
    assert isinstance(space["lr"], Float)
    first = resolve({"lr": {"loguniform": [1e-4, 1e-2]}, "reg": {"grid": ["a", "b"]}}, num_samples=3, seed=7)
    again = resolve({"lr": {"loguniform": [1e-4, 1e-2]}, "reg": {"grid": ["a", "b"]}}, num_samples=3, seed=7)
    assert first == again and len(first) == 6
    assert all(1e-4 <= r["lr"] <= 1e-2 for r in first)
    assert resolve({"lr": {"loguniform": [1e-4, 1e-2]}}, 3, seed=8) != resolve({"lr": {"loguniform": [1e-4, 1e-2]}},
                                                                               3, seed=7)


def test_random_tokenizer_search_draws_num_samples_trials() -> None:
    study = parse_study({"name": "s", "tokenizers": {"num_samples": 4, "lr": {"uniform": [1e-4, 1e-3]}}})
    assert len(study.tokenizer_trials) == 4
    assert len({t.lr for t in study.tokenizer_trials}) == 4


def test_search_takes_the_regularizers_declared_space() -> None:
    from raysweep.tokenizers.regularizers import regularizer_class

    declared = regularizer_class("lcr").search_space
    study = parse_study({"name": "s", "tokenizers": {"num_samples": 6, "variants": [
        {"regularizer": "lcr", "params": "search"},
        {"regularizer": "lcr", "params": {"weight": 0.03, "threshold": "search"}}]}})
    everything, one = study.tokenizer_trials[:6], study.tokenizer_trials[6:]
    assert len(everything) == len(one) == 6
    lo, hi = declared["threshold"]["uniform"]
    assert all(t.params["weight"] in declared["weight"]["choice"] and lo <= t.params["threshold"] <= hi
               for t in everything)
    assert len({t.params["threshold"] for t in everything}) == 6
    assert {t.params["weight"] for t in one} == {0.03}  # explicit values stay
    assert all(lo <= t.params["threshold"] <= hi for t in one) and len({t.params["threshold"] for t in one}) == 6


@pytest.mark.parametrize("variant, where", [
    ({"regularizer": "lcr", "params": {"gamma": "search"}}, "params.gamma"),
    ({"regularizer": "baseline", "params": "search"}, "params"),
])
def test_search_without_a_declared_space_names_what_is_declared(variant: dict, where: str) -> None:
    with pytest.raises(ConfigError, match=f"variants\\[0\\].{where}.*declares") as err:
        parse_study({"name": "s", "tokenizers": {"variants": [variant]}})
    assert "\n" not in str(err.value)


def test_duplicate_tokenizers_are_rejected() -> None:
    with pytest.raises(ConfigError, match="same configuration"):
        parse_study({"name": "s", "tokenizers": {"variants": [{"regularizer": "eq"}, {"regularizer": "eq"}]}})


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "raysweep.cli", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=120)


def test_cli_bad_study_exits_2_without_traceback_and_writes_nothing(tmp_path: Path) -> None:
    study = write(tmp_path, {"name": "s", "storage": {"root": str(tmp_path / "out")},
                             "tokenizers": {"regularizer": "nope"}})
    for command in ("validate", "plan", "run"):
        proc = run_cli(command, str(study), cwd=tmp_path)
        assert proc.returncode == 2, proc.stderr
        assert "Traceback" not in proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1
        assert "unknown regularizer 'nope'" in proc.stderr
    assert not (tmp_path / "out").exists()


def test_cli_plan_json_counts_trials(tmp_path: Path) -> None:
    proc = run_cli("plan", str(QUICKSTART), "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    plan = json.loads(proc.stdout)
    study = load_study(QUICKSTART)
    assert len(plan["tokenizer_trials"]) == len(study.tokenizer_trials)
    assert len(plan["diffusion_trials"]) == len(study.tokenizer_trials) * len(study.diffusion_seeds)


def test_cluster_environment_sets_storage_and_tracking_defaults(monkeypatch: pytest.MonkeyPatch,
                                                                tmp_path: Path) -> None:
    """On a cluster node RAYSWEEP_STORAGE (shared NFS) and MLFLOW_TRACKING_URI (the head's server) apply unless the
    study names its own; Tune storage may be an object-store URI."""
    monkeypatch.setenv("RAYSWEEP_STORAGE", str(tmp_path / "nfs"))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://10.0.0.10:5000")
    study = parse_study({"name": "s", "storage": {"tune": "s3://bucket/tune"}})
    assert study.root == tmp_path / "nfs" / "s"
    assert study.tracking_uri == "http://10.0.0.10:5000" and study.tune_storage == "s3://bucket/tune"
    own = parse_study({"name": "s", "storage": {"root": str(tmp_path / "own")}, "tracking": {"uri": "sqlite:///x.db"}})
    assert own.root == tmp_path / "own" and own.tracking_uri == "sqlite:///x.db"
    assert own.tune_storage == str(tmp_path / "own" / "tune")


def test_cli_plan_json_shows_the_proxy_estimate_beside_brute_force(tmp_path: Path) -> None:
    data = yaml.safe_load(QUICKSTART.read_text())
    data["storage"] = {**data.get("storage", {}), "root": str(tmp_path / "out")}
    data["diffusion"]["allocation"] = {"mode": "proxy", "budget": {"trials": 0.5}}
    proc = run_cli("plan", str(write(tmp_path, data)), "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    plan = json.loads(proc.stdout)
    brute, proxy = plan["proxy_estimate"]["brute_force"], plan["proxy_estimate"]["proxy"]
    assert brute["gpu_hours"] == pytest.approx(plan["estimate"]["gpu_hours"])
    assert 0 < proxy["diffusion_trials"] <= brute["diffusion_trials"] / 2
    assert proxy["gpu_hours"] < brute["gpu_hours"]
    plain = json.loads(run_cli("plan", str(QUICKSTART), "--json", cwd=tmp_path).stdout)
    assert "proxy_estimate" not in plain  # allocation: all (the default) shows the brute-force estimate only
