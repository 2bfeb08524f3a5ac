"""The SQLite history: each run appended once, trends drawn per metric and per level."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from ollama_conformance.cli import main
from ollama_conformance.reports import history
from ollama_conformance.reports.results import load_paths


def test_default_path_is_configurable(private_history: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert history.default_path() == private_history
    monkeypatch.delenv("OLLAMA_CONFORMANCE_HISTORY")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    assert history.default_path() == tmp_path / "data" / "ollama-conformance" / "history.sqlite"


def test_runs_are_recorded_once(results_dir: Path, private_history: Path) -> None:
    results = load_paths([results_dir / "check_baseline.json", results_dir / "bench_baseline"])
    assert history.record(private_history, results) == 2
    assert history.record(private_history, results) == 0  # same files again: nothing new
    assert history.record(private_history, load_paths([results_dir / "bench_noise"])) == 1
    with sqlite3.connect(private_history) as conn:
        assert conn.execute("SELECT count(*) FROM runs").fetchone()[0] == 3
        rate = conn.execute("SELECT rate FROM level_results WHERE level = 'SHOULD'").fetchone()[0]
        assert rate == pytest.approx(0.5)
        p50 = conn.execute(
            "SELECT value FROM metrics WHERE step = 'concurrency=1' AND metric = 'ttft_ms p50' ORDER BY run_id"
        ).fetchall()
        assert len(p50) == 2


def test_report_history_draws_trends(results_dir: Path, private_history: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    for check, bench in (("check_baseline.json", "bench_baseline"), ("check_candidate.json", "bench_noise"), ("check_candidate.json", "bench_regressed")):
        assert main(["report", str(results_dir / check), str(results_dir / bench), "--out", str(out), "--history"]) == 0
    html = (out / "report.html").read_text()
    assert "<h2>History</h2>" in html
    assert "Pass rate by level over runs (reference)" in html
    assert "TTFT p50 (ms) over runs (reference)" in html
    charts = history.trend_charts(private_history, ["reference"])
    assert len(charts) == 5  # levels + 4 metrics
    assert charts[0].count("<circle") == 2 * 3  # two check runs (the candidate twice is recorded once) x 3 levels


def test_broken_history_db_is_reported_and_the_reports_are_written(results_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "broken.sqlite"
    db.write_text("this is not a database")
    out = tmp_path / "o"
    code = main(["report", str(results_dir / "check_baseline.json"), "--out", str(out), "--history", "--history-db", str(db)])
    assert code == 1
    assert "history database" in capsys.readouterr().err
    for name in ("report.md", "report.html", "summary.json", "badge.svg"):
        assert (out / name).stat().st_size > 0, name
    assert any("history database" in note for note in json.loads((out / "summary.json").read_text())["notes"])
    assert db.read_text() == "this is not a database"  # left as it was
