"""The tidy table helpers: exclusion reasons, metric columns, perspectives, sign normalisation."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from raysweep.analysis import (
    latent_metric_columns,
    metric_columns,
    perspective_of,
    resolve_directions,
    signed_metric,
    split_excluded,
    usable_metrics,
)


def _table() -> pd.DataFrame:
    return pd.DataFrame({
        "tokenizer_id": ["a", "b", "c", "d"],
        "status": ["FINISHED", "FAILED", "FINISHED", "KILLED"],
        "latent/velocity/viv": [1.0, 2.0, 3.0, 4.0],
        "latent/spatial/srss": [0.1, 0.2, 0.3, 0.4],
        "recon/psnr": [30.0, 29.0, 28.0, 27.0],
        "traj/efficiency": [0.9, 0.8, 0.7, 0.6],
        "gen/gfid": [10.0, 11.0, np.nan, np.nan],
    })


def test_split_excluded_keeps_finished_rows_with_a_target() -> None:
    ok, excluded = split_excluded(_table())
    assert list(ok["tokenizer_id"]) == ["a"] and "reason" not in ok.columns
    reasons = dict(zip(excluded["tokenizer_id"], excluded["reason"]))
    assert reasons == {"b": "status=FAILED", "c": "gen/gfid missing", "d": "status=KILLED; gen/gfid missing"}
    assert len(ok) + len(excluded) == len(_table())


def test_split_excluded_names_a_missing_target_column() -> None:
    with pytest.raises(ValueError, match="gen/fdr"):
        split_excluded(_table(), target="gen/fdr")


def test_metric_columns_by_prefix_in_table_order() -> None:
    table = _table()
    assert latent_metric_columns(table) == ["latent/velocity/viv", "latent/spatial/srss"]
    assert metric_columns(table, ("traj/", "recon/")) == ["recon/psnr", "traj/efficiency"]
    assert metric_columns(table) == [c for c in table.columns if "/" in c]


@pytest.mark.parametrize(("name", "perspective"), [("latent/smoothness/sec@0.5", "smoothness"),
                                                   ("latent/semantic/lnc@5", "semantic"),
                                                   ("traj/straightness", "traj"), ("recon/psnr", "recon")])
def test_perspective_is_the_second_segment_of_latent_names(name: str, perspective: str) -> None:
    assert perspective_of(name) == perspective


def test_signed_metric_points_higher_is_better() -> None:
    table = _table()
    viv = table["latent/velocity/viv"].to_numpy()
    np.testing.assert_array_equal(signed_metric(table, "latent/velocity/viv", {"latent/velocity/viv": False}), -viv)
    np.testing.assert_array_equal(signed_metric(table, "latent/velocity/viv", {"latent/velocity/viv": True}), viv)
    with pytest.raises(ValueError, match="latent/velocity/viv"):
        signed_metric(table, "latent/velocity/viv", {})


def test_split_excluded_keeps_the_runs_own_failure_reason() -> None:
    table = _table().assign(reason=["", "diffusion/SiT-B/0: RuntimeError: CUDA out of memory", "", ""])
    _, excluded = split_excluded(table)
    reasons = dict(zip(excluded["tokenizer_id"], excluded["reason"]))
    assert reasons["b"] == "status=FAILED: diffusion/SiT-B/0: RuntimeError: CUDA out of memory"
    assert reasons["c"] == "gen/gfid missing"


def test_directions_cover_parameter_variants_and_usable_metrics_need_spread() -> None:
    declared = {"latent/semantic/lnc@5": True, "latent/velocity/viv": False}
    columns = ["latent/semantic/lnc@20", "latent/velocity/viv", "latent/velocity/viv_t", "latent/new/x"]
    assert resolve_directions(columns, declared) == {"latent/semantic/lnc@20": True, "latent/velocity/viv": False}
    table = _table().assign(**{"latent/spatial/srss": [0.1, 0.1, 0.1, 0.1]})
    directions = {"latent/velocity/viv": False, "latent/spatial/srss": True, "traj/efficiency": True}
    assert usable_metrics(table, directions) == ["latent/velocity/viv", "traj/efficiency"]  # srss is constant
