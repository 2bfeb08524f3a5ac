"""Write every report for a set of results into one folder: report.md, report.html, summary.json, badge.svg."""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ollama_conformance.errors import UsageError
from ollama_conformance.reports import history
from ollama_conformance.reports.badge import badge_svg
from ollama_conformance.reports.html import render_html
from ollama_conformance.reports.markdown import render_markdown
from ollama_conformance.reports.results import ResultSet
from ollama_conformance.reports.summary import badge_rates, build_summary, exact_badge_rates

MARKDOWN_FILE = "report.md"
HTML_FILE = "report.html"
SUMMARY_FILE = "summary.json"
BADGE_FILE = "badge.svg"


@dataclass
class Written:
    markdown: Path
    html: Path
    summary: Path
    badge: Path | None
    summary_data: dict
    history_added: int = 0
    history_error: str = ""  # the history database could not be used: said here and in every report


def _write_atomic(path: Path, text: str) -> None:
    """Write beside the target then rename, so a reader never sees half a report."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; reports are meant to be shared
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_reports(results: ResultSet, out_dir: Path, history_db: Path | None = None, notes: list[str] | None = None) -> Written:
    """Build and write all reports; with history_db, record the results there and draw trends from it.

    `notes` are problems of the run that produced the results (a phase that failed): every report shows them.
    """
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot create the output folder {out_dir}: {exc.strerror or exc}") from exc
    summary = build_summary(results)
    summary["notes"] = list(notes or [])  # what the caller (e.g. `run`) could not do, and why
    added = 0
    charts: list[str] = []
    history_error = ""
    if history_db is not None:
        try:
            added = history.record(history_db, results)
            charts = history.trend_charts(history_db, history.keys_of(results))
        except Exception as exc:  # sqlite3.Error, OSError, a foreign file: a broken history must not lose the reports
            history_error = f"history database {history_db} is not usable: {exc}"
            summary["notes"].append(history_error)
    written = Written(
        markdown=out_dir / MARKDOWN_FILE,
        html=out_dir / HTML_FILE,
        summary=out_dir / SUMMARY_FILE,
        badge=out_dir / BADGE_FILE if summary["conformance"] else None,
        summary_data=summary,
        history_added=added,
        history_error=history_error,
    )
    _write_atomic(written.markdown, render_markdown(summary))
    _write_atomic(written.html, render_html(summary, results, charts))
    _write_atomic(written.summary, json.dumps(summary, indent=2) + "\n")
    if written.badge is not None:
        _write_atomic(written.badge, badge_svg(badge_rates(summary), exact=exact_badge_rates(summary)))
    return written
