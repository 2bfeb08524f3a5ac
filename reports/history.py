"""The run history: every check and bench result appended to one SQLite database, and trend charts drawn from it.

Default path: $OLLAMA_CONFORMANCE_HISTORY, else $XDG_DATA_HOME/ollama-conformance/history.sqlite
(~/.local/share/...). A results file is recorded once: recording it again (same kind, start time and target) is
a no-op, so `report --history` can be re-run on the same files. Trends are drawn per target: the reference
backend binds a new port each run, so its runs are grouped by profile, any other target by its URL.
"""

from __future__ import annotations

import os
import sqlite3
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ollama_conformance.reports.results import BenchResults, CheckResults, ResultSet, finite
from ollama_conformance.reports.summary import counts, pass_rate
from ollama_conformance.reports.svgplot import Chart, Series, render
from ollama_conformance.vocabulary import LEVELS

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
  id INTEGER PRIMARY KEY,
  kind TEXT NOT NULL,              -- check | bench
  started_at TEXT NOT NULL,
  recorded_at TEXT NOT NULL,
  target_key TEXT NOT NULL,        -- what trends group by
  target_url TEXT,
  target_version TEXT,
  model TEXT,
  model_digest TEXT,
  source TEXT,
  UNIQUE (kind, started_at, target_key, target_url)
);
CREATE TABLE IF NOT EXISTS level_results (
  run_id INTEGER NOT NULL REFERENCES runs(id), level TEXT NOT NULL,
  pass INTEGER, fail INTEGER, not_applicable INTEGER, error INTEGER, rate REAL,
  PRIMARY KEY (run_id, level)
);
CREATE TABLE IF NOT EXISTS metrics (
  run_id INTEGER NOT NULL REFERENCES runs(id), step TEXT NOT NULL, metric TEXT NOT NULL, value REAL,
  PRIMARY KEY (run_id, step, metric)
);
"""
# (results.json metric key, DIST field or None for a scalar) -> name stored
RECORDED_METRICS = (
    ("ttft_ms", "p50"),
    ("ttft_ms", "p90"),
    ("ttft_ms", "p99"),
    ("itl_ms", "p50"),
    ("itl_ms", "p90"),
    ("e2e_ms", "p50"),
    ("e2e_ms", "p90"),
    ("output_tokens_per_s", None),
    ("requests_per_s", None),
)
TREND_CHARTS = (
    ("ttft_ms p50", "TTFT p50 (ms)"),
    ("itl_ms p50", "ITL p50 (ms)"),
    ("e2e_ms p50", "E2E p50 (ms)"),
    ("output_tokens_per_s", "Output tokens/s"),
)
MAX_RUNS = 200


def default_path() -> Path:
    configured = os.environ.get("OLLAMA_CONFORMANCE_HISTORY")
    if configured:
        return Path(configured)
    data_home = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(data_home) / "ollama-conformance" / "history.sqlite"


def connect(path: Path) -> sqlite3.Connection:
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, timeout=30)
    conn.executescript(SCHEMA)
    return conn


def target_key(target: dict[str, Any]) -> str:
    profile = str(target.get("profile") or "")
    return "reference" if profile == "reference" else str(target.get("url") or profile or "?")


def _insert_run(conn: sqlite3.Connection, kind: str, started_at: str, target: dict[str, Any], model: str | None, digest: str | None, source: Path) -> int | None:
    cur = conn.execute(
        "INSERT OR IGNORE INTO runs (kind, started_at, recorded_at, target_key, target_url, target_version, model, model_digest, source)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            kind,
            started_at,
            datetime.now(UTC).isoformat(timespec="seconds"),
            target_key(target),
            str(target.get("url") or ""),
            target.get("version"),
            model,
            digest,
            str(source),
        ),
    )
    return cur.lastrowid if cur.rowcount else None


def record_check(conn: sqlite3.Connection, check: CheckResults) -> bool:
    models = check.target.get("models") or []
    first = models[0] if models and isinstance(models[0], dict) else {}
    run_id = _insert_run(conn, "check", check.started_at, check.target, first.get("name"), first.get("digest"), check.path)
    if run_id is None:
        return False
    for level in LEVELS:
        c = counts([t for t in check.tests if t.get("level") == level])
        conn.execute(
            "INSERT INTO level_results VALUES (?, ?, ?, ?, ?, ?, ?)",
            (run_id, level, c["pass"], c["fail"], c["not_applicable"], c["error"], pass_rate(c)),
        )
    return True


def record_bench(conn: sqlite3.Connection, bench: BenchResults) -> bool:
    model = bench.raw.get("model") or {}
    run_id = _insert_run(conn, "bench", bench.started_at, bench.target, model.get("name"), model.get("digest"), bench.path)
    if run_id is None:
        return False
    for step in bench.steps:
        metrics = step.get("metrics") or {}
        for key, field in RECORDED_METRICS:
            raw = metrics.get(key)
            value = finite((raw or {}).get(field)) if field and isinstance(raw, dict) else finite(raw)
            name = f"{key} {field}" if field else key
            conn.execute("INSERT INTO metrics VALUES (?, ?, ?, ?)", (run_id, str(step.get("name")), name, value))
    return True


def record(path: Path, results: ResultSet) -> int:
    """Append every results file to the history; returns how many were new."""
    with closing(connect(path)) as conn, conn:
        added = sum(record_check(conn, c) for c in results.checks)
        added += sum(record_bench(conn, b) for b in results.benches)
    return added


def _series(name: str, points: list[tuple[int, float]]) -> Series:
    """One line of a trend chart: (run number, value) points, oldest first."""
    return Series(name, [x for x, _ in points], [y for _, y in points], markers=True)


def trend_charts(path: Path, keys: list[str]) -> list[str]:
    """Per-level pass rate and per-step key metrics over the recorded runs of the given targets."""
    if not path.exists():
        return []
    charts = []
    with closing(sqlite3.connect(path)) as conn:
        for key in keys:
            level_rows = conn.execute(
                "SELECT r.id, l.level, l.rate FROM runs r JOIN level_results l ON l.run_id = r.id"
                " WHERE r.kind = 'check' AND r.target_key = ? ORDER BY r.started_at, r.id",
                (key,),
            ).fetchall()
            run_ids = _ordered_ids(level_rows)
            if run_ids:
                series = []
                for level in LEVELS:
                    points = [(run_ids[rid], rate * 100) for rid, lvl, rate in level_rows if rid in run_ids and lvl == level and rate is not None]
                    series.append(_series(level, points))
                charts.append(render(Chart(f"Pass rate by level over runs ({key})", "run (oldest → newest)", "pass rate (%)", series, x_integer=True)))
            metric_rows = conn.execute(
                "SELECT r.id, m.step, m.metric, m.value FROM runs r JOIN metrics m ON m.run_id = r.id"
                " WHERE r.kind = 'bench' AND r.target_key = ? ORDER BY r.started_at, r.id",
                (key,),
            ).fetchall()
            run_ids = _ordered_ids(metric_rows)
            for metric, label in TREND_CHARTS:
                steps = list(dict.fromkeys(step for _, step, m, _ in metric_rows if m == metric))
                series = []
                for step in steps:
                    points = [(run_ids[rid], v) for rid, s, m, v in metric_rows if rid in run_ids and m == metric and s == step and v is not None]
                    series.append(_series(step, points))
                if series:
                    charts.append(render(Chart(f"{label} over runs ({key})", "run (oldest → newest)", label, series, x_integer=True)))
    return charts


def _ordered_ids(rows: list[tuple[Any, ...]]) -> dict[int, int]:
    """run id -> 1-based position, keeping only the latest MAX_RUNS runs."""
    ids = list(dict.fromkeys(row[0] for row in rows))[-MAX_RUNS:]
    return {rid: i + 1 for i, rid in enumerate(ids)}


def keys_of(results: ResultSet) -> list[str]:
    return list(dict.fromkeys([target_key(c.target) for c in results.checks] + [target_key(b.target) for b in results.benches]))
