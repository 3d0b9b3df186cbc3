"""The study view on synthetic event streams: step-rate ETAs against closed forms, counts, failed rows, the plain
mode's exact lines, the live view's one screen, and where library logs go."""
from __future__ import annotations

import io
import logging
import os
import random
import warnings
from pathlib import Path

import pytest
from rich.console import Console

from raysweep.engine.events import JobFailed, JobFinished, JobQueued, JobStarted, JobStep
from raysweep.view import LiveView, PlainView, StudyState, fmt_duration, open_view, route_logs
from raysweep.view.logs import HANDLER_NAME, LOGGERS, QUIET


def _fold(*events: object) -> StudyState:
    state = StudyState()
    for e in events:
        state.apply(e)  # type: ignore[arg-type]
    return state


def test_running_job_eta_is_remaining_steps_over_rate_measured_after_the_first_step() -> None:
    # startup (0 -> 10 s) is excluded: the rate is (30 - 10) / (20 - 10) = 2 steps/s, not 30 / 20
    state = _fold(JobStarted("vf", "tokenizer", time=0.0, total=100),
                  JobStep("vf", "tokenizer", time=10.0, step=10, total=100, metric="train/loss", value=0.5),
                  JobStep("vf", "tokenizer", time=20.0, step=30, total=100, metric="train/loss", value=0.25))
    row = state.rows["vf"]
    assert row.rate == pytest.approx(2.0)
    assert row.eta() == pytest.approx((100 - 30) / 2.0)
    assert (row.metric, row.value) == ("train/loss", 0.25)
    assert row.elapsed(25.0) == pytest.approx(25.0)


def test_study_eta_prices_queued_jobs_by_stage_and_divides_by_parallelism() -> None:
    state = _fold(JobQueued("a", "tokenizer", time=0.0, total=100), JobQueued("b", "tokenizer", time=0.0, total=40),
                  JobQueued("c", "tokenizer", time=0.0, total=60), JobQueued("m", "latent_metrics", time=0.0),
                  JobStarted("a", "tokenizer", time=0.0, total=100), JobStarted("b", "tokenizer", time=0.0, total=40),
                  JobStep("a", "tokenizer", time=1.0, step=0), JobStep("b", "tokenizer", time=1.0, step=0),
                  JobStep("a", "tokenizer", time=11.0, step=20),  # 2 steps/s -> 0.5 s/step
                  JobStep("b", "tokenizer", time=11.0, step=10))  # 1 step/s  -> 1.0 s/step
    o = state.overview()
    a_left, b_left = 80 / 2.0, 30 / 1.0
    c_left = 60 * (0.5 + 1.0) / 2  # queued: its total at the stage's mean seconds per step
    assert (o.total, o.running, o.queued, o.parallelism) == (4, 2, 2, 2)
    assert o.unpriced == 1  # the metrics job: no steps, no finished job of its stage yet -> ETA is a lower bound
    assert o.eta == pytest.approx((a_left + b_left + c_left) / 2)
    state.apply(JobStarted("m0", "latent_metrics", time=11.0))
    state.apply(JobFinished("m0", "latent_metrics", time=18.0, metric="latent/uniformity/x", value=1.0))
    o = state.overview()
    assert (o.unpriced, o.parallelism) == (0, 3)  # a, b and m0 ran at once
    assert o.eta == pytest.approx((a_left + b_left + c_left + 7.0) / 3)  # m priced at its stage's mean duration


def test_a_run_that_continues_a_shorter_one_is_priced_for_the_steps_it_trains() -> None:
    """`done`: the steps a continued run will not train (10,000 of 16,000): priced queued and before its rate."""
    state = _fold(JobQueued("a", "diffusion", time=0.0, total=16_000),
                  JobQueued("b", "diffusion", time=0.0, total=16_000, done=10_000),
                  JobStarted("a", "diffusion", time=0.0, total=16_000),
                  JobStep("a", "diffusion", time=1.0, step=1_000), JobStep("a", "diffusion", time=11.0, step=2_000))
    per_step = 10.0 / 1_000
    assert state.remaining(state.rows["b"]) == pytest.approx(6_000 * per_step)
    state.apply(JobStarted("b", "diffusion", time=12.0, total=16_000, done=10_000))
    assert state.rows["b"].step == 10_000
    assert state.remaining(state.rows["b"]) == pytest.approx(6_000 * per_step)  # no rate of its own yet


def test_parallelism_kept_per_event_equals_the_most_rows_ever_running_at_once() -> None:
    """Random starts, steps, restarts, finishes and failures: the running count kept per event matches a recount."""
    rng = random.Random(0)
    state, most = StudyState(), 0
    for i in range(400):
        job, t = f"j{rng.randrange(30)}", float(i)
        kind = rng.choice([JobQueued, JobStarted, JobStep, JobFinished, JobFailed])
        event = (JobStep(job, "tokenizer", time=t, step=i) if kind is JobStep else
                 JobFailed(job, "tokenizer", time=t, reason="x") if kind is JobFailed else
                 kind(job, "tokenizer", time=t))
        state.apply(event)  # type: ignore[arg-type]
        most = max(most, sum(r.status == "running" for r in state.rows.values()))
        assert state.parallelism == most


def test_counts_cached_and_failed_rows() -> None:
    state = _fold(JobQueued("baseline", "tokenizer", time=0.0), JobQueued("vf", "tokenizer", time=0.0),
                  JobQueued("vf/SiT-T/0", "diffusion", time=0.0, total=10),
                  JobFinished("baseline", "tokenizer", time=1.0, metric="recon/psnr", value=24.0, cached=True),
                  JobStarted("vf", "tokenizer", time=1.0), JobFailed("vf", "tokenizer", time=4.0, reason="OOM"))
    o = state.overview()
    assert (o.total, o.finished, o.cached, o.failed, o.queued, o.running, o.done) == (3, 1, 1, 1, 1, 0, 2)
    failed = state.rows["vf"]
    assert (failed.status, failed.reason, failed.elapsed(99.0)) == ("failed", "OOM", 3.0)
    assert o.eta is None  # the diffusion job: nothing of its stage has been measured


def test_plain_mode_prints_one_line_per_state_change_and_periodic_progress() -> None:
    lines: list[str] = []
    view = PlainView(lines.append, summary_every=60.0)
    with view:
        for e in (JobQueued("baseline", "tokenizer", time=100.0, total=50),
                  JobQueued("vf", "tokenizer", time=100.0, total=50),
                  JobQueued("vf/SiT-T/0", "diffusion", time=100.0, total=200),
                  JobStarted("baseline", "tokenizer", time=105.0, total=50),
                  *(JobStep("baseline", "tokenizer", time=105.0 + s, step=s, total=50) for s in range(1, 51)),
                  JobFinished("baseline", "tokenizer", time=160.0, metric="recon/psnr", value=24.3125),
                  JobFinished("vf", "tokenizer", time=161.0, metric="recon/psnr", value=20.0, cached=True),
                  JobStarted("vf/SiT-T/0", "diffusion", time=161.0, total=200),
                  JobFailed("vf/SiT-T/0", "diffusion", time=221.0, reason="CUDA out of memory")):
            view(e)
    assert lines == [
        "[+0:00:05] started   baseline (tokenizer, 50 steps)",
        "[+0:01:00] finished  baseline (tokenizer) recon/psnr=24.31 in 0:00:55",
        # vf: 50 steps at baseline's measured 1 step/s; the diffusion job is not priced yet, so ">="
        "[+0:01:00] progress  1/3 done (0 cached), 0 running, 0 failed, 2 queued; ETA >=0:00:50",
        "[+0:01:01] cached    vf (tokenizer) recon/psnr=20",
        "[+0:01:01] started   vf/SiT-T/0 (diffusion, 200 steps)",
        "[+0:02:01] FAILED    vf/SiT-T/0 (diffusion) after 0:01:00: CUDA out of memory",
        "[+0:02:01] progress  3/3 done (1 cached), 0 running, 1 failed, 0 queued; ETA 0:00:00",  # 61 s later
    ]  # close() adds no line: the last one is already the summary
    view.close()
    assert view.lines == 7 and len(lines) == 7
    view(JobQueued("late", "analysis", time=222.0))
    view.close()
    assert lines[-1] == "[+0:02:02] progress  3/4 done (1 cached), 0 running, 1 failed, 1 queued; ETA unknown"


def _stream(n_jobs: int, steps: int) -> list[object]:
    events: list[object] = [JobQueued(f"job{i}", "tokenizer", time=0.0, total=steps) for i in range(n_jobs)]
    for i in range(n_jobs):
        events += [JobStarted(f"job{i}", "tokenizer", time=float(i), total=steps),
                   *(JobStep(f"job{i}", "tokenizer", time=i + s / steps, step=s, total=steps) for s in range(steps))]
        if i < n_jobs - 1:
            events.append(JobFinished(f"job{i}", "tokenizer", time=i + 1.0, metric="recon/psnr", value=20.0 + i))
    return events


def test_live_view_keeps_one_screen_with_running_and_failed_rows_first() -> None:
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=120, height=12, color_system=None)
    view = LiveView(console, clock=lambda: 0.0)
    for e in _stream(30, 5):
        view(e)  # type: ignore[arg-type]
    view(JobFailed("job3", "tokenizer", time=40.0, reason="boom"))
    console.print(view.render())
    screen = out.getvalue().splitlines()
    assert len(screen) <= console.height
    text = out.getvalue()
    assert "job29" in text and "running" in text  # the one running job survives the cut
    assert "job3 " in text and "boom" in text  # so does the failed one
    assert "more jobs not shown" in text
    assert "29/30 done (0 cached), 1 running, 1 failed, 0 queued" in text  # job3 counts once, as failed


def test_open_view_picks_plain_lines_when_not_a_tty() -> None:
    out = io.StringIO()
    view = open_view(out)
    assert isinstance(view, PlainView)
    view(JobStarted("vf", "diffusion", time=0.0, total=3))
    assert out.getvalue() == "[+0:00:00] started   vf (diffusion, 3 steps)\n"
    assert fmt_duration(3725.4) == "1:02:05"


@pytest.fixture
def restore_logging(monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    for key in ("RAY_DATA_LOGGING_CONFIG", "RAY_DATA_DISABLE_PROGRESS_BARS"):
        monkeypatch.setenv(key, os.environ.get(key, ""))
    saved = {n: (list(logging.getLogger(n).handlers), logging.getLogger(n).propagate) for n in LOGGERS}
    yield
    logging.captureWarnings(False)
    for name, (handlers, propagate) in saved.items():
        logger = logging.getLogger(name)
        for h in logger.handlers:
            h.removeFilter(QUIET)
            if h.get_name() == HANDLER_NAME:
                h.close()
        logger.handlers[:] = handlers
        logger.propagate = propagate


@pytest.mark.usefixtures("restore_logging")
def test_route_logs_sends_ray_data_and_mlflow_to_the_study_file_and_v_brings_them_back(
        tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    with route_logs(tmp_path, verbose=False) as path:
        assert path == tmp_path / "logs" / "raysweep.log"
        import ray.data  # configures `ray.data` from RAY_DATA_LOGGING_CONFIG (at import or again here)

        assert os.environ["RAY_DATA_DISABLE_PROGRESS_BARS"] == "1"
        assert not ray.data.DataContext.get_current().enable_progress_bars
        logging.getLogger("ray.data").info("data-quiet")
        logging.getLogger("ray.tune").warning("tune-quiet")
        logging.getLogger("mlflow.store").warning("mlflow-quiet")
        with warnings.catch_warnings():
            warnings.simplefilter("always")
            warnings.warn("warn-quiet", stacklevel=1)
        captured = capfd.readouterr()
        assert "quiet" not in captured.out + captured.err
        logged = path.read_text()
        for word in ("data-quiet", "tune-quiet", "mlflow-quiet", "warn-quiet"):
            assert word in logged
    logging.getLogger("mlflow").warning("mlflow-after")  # closed: back to the terminal, not the file
    assert "mlflow-after" not in path.read_text() and "mlflow-after" in capfd.readouterr().err
    with route_logs(tmp_path, verbose=True):  # -v: the file still gets everything, the terminal too
        logging.getLogger("ray.data").warning("data-loud")
        logging.getLogger("mlflow").warning("mlflow-loud")
        assert "data-loud" in path.read_text()
        assert sum(h.get_name() == HANDLER_NAME for h in logging.getLogger("ray").handlers) == 1
        assert "mlflow-loud" in capfd.readouterr().err
        # Ray's own console handler may have been replaced by an earlier test's Ray; what -v owes: no filter left
        assert not any(QUIET in h.filters for name in LOGGERS for h in logging.getLogger(name).handlers)
