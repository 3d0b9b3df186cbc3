"""The Python face end to end on the micro study: load, plan, run, status, table, analyze_table, and the notebook
example (experiments/notebook.py) as a user runs it; `import raysweep` itself stays light."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from test_e2e_study import micro_study

REPO = Path(__file__).resolve().parents[1]


def test_import_raysweep_loads_no_heavy_library() -> None:
    code = ("import sys, raysweep; raysweep.__all__; "
            "print(sorted(m for m in ('ray', 'mlflow', 'pyarrow', 'pydantic', 'torch') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.e2e
def test_python_face_and_notebook_on_the_micro_study(tmp_path: Path) -> None:
    """The notebook example runs the study (real Ray, MLflow, torch-fidelity); the API then sees it finished, and
    `analyze_table` on the tidy table gives the correlations `raysweep analyze` computed for the same runs."""
    data = micro_study(tmp_path / "study")
    data["metrics"] = {"names": ["viv", "sec"], "actors": 1, "batch_size": 32}
    study_file = tmp_path / "micro.yaml"
    study_file.write_text(yaml.safe_dump(data))
    out = subprocess.run([sys.executable, str(REPO / "experiments" / "notebook.py"), str(study_file),
                          str(tmp_path / "nb")], capture_output=True, text=True, cwd=tmp_path, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "0 failed" in out.stdout and (tmp_path / "nb" / "gfid_vs_viv.png").stat().st_size > 0

    import raysweep
    from raysweep.analysis import best_cfg_rows, split_excluded

    study = raysweep.load(study_file)
    plan = raysweep.plan(study)
    assert len(plan.tokenizers) == 2 and len(plan.diffusion) == 2
    status = raysweep.status(study)
    assert not status["stale"] and all(t["trained"] for t in status["tokenizers"])
    table = raysweep.table(study)
    assert set(table["tokenizer_id"]) == {t.id for t in plan.tokenizers}
    best = best_cfg_rows(split_excluded(table)[0])
    analysis = raysweep.analyze_table(best, id="tokenizer_id", target="gen/gfid", out_dir=tmp_path / "again",
                                      metrics=["latent/velocity/viv"])
    (viv,) = analysis.correlations.query("metric == 'latent/velocity/viv' and method == 'pearson' "
                                         "and group == 'all'")["r"].head(1)
    assert -1 <= viv <= 1 and (tmp_path / "again" / "report.html").is_file()
