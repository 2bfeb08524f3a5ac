"""`ollama-conformance report RESULTS... [--out DIR] [--history]`: Markdown, HTML, JSON summary and badge."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ollama_conformance.errors import UsageError

HELP = "Build Markdown, HTML, JSON and badge reports from check and/or bench results."
DEFAULT_OUT = "ollama-conformance-report"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "results",
        nargs="+",
        type=Path,
        metavar="RESULTS",
        help="a check results JSON, a bench results.json or its folder, or a `run` folder",
    )
    parser.add_argument("--out", type=Path, default=Path(DEFAULT_OUT), help=f"folder for the reports (default ./{DEFAULT_OUT})")
    parser.add_argument(
        "--history",
        action="store_true",
        help="record these results in the history database and draw trends from it in the HTML report",
    )
    parser.add_argument("--history-db", type=Path, default=None, help="history database (default $OLLAMA_CONFORMANCE_HISTORY or ~/.local/share/ollama-conformance/history.sqlite)")


def run(args: argparse.Namespace) -> int:
    from ollama_conformance.reports import history
    from ollama_conformance.reports.badge import badge_text
    from ollama_conformance.reports.results import load_paths
    from ollama_conformance.reports.summary import badge_rates
    from ollama_conformance.reports.writer import write_reports

    results = load_paths(list(args.results))
    if results.empty():
        raise UsageError("no results in the given paths")
    db = (args.history_db or history.default_path()) if args.history else None
    written = write_reports(results, args.out, db)
    rates = badge_rates(written.summary_data)
    if rates:
        print(f"conformance: {badge_text(rates)}")
    for path in (written.markdown, written.html, written.summary, written.badge):
        if path is not None:
            print(f"wrote {path}")
    if len(results.checks) >= 2:  # several targets: also side by side (reports/matrix.py)
        from ollama_conformance.reports.matrix_command import write_matrix

        for path in write_matrix([c.path for c in results.checks], [], args.out):
            print(f"wrote {path}")
    if written.history_error:  # the reports are written all the same; the history is not
        print(f"ollama-conformance report: {written.history_error}", file=sys.stderr)
        return 1
    if db is not None:
        print(f"history: {db} ({written.history_added} new run(s) recorded)")
    return 0
