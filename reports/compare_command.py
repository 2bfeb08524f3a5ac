"""`ollama-conformance compare BASELINE CANDIDATE [--threshold 5%]`: exit 1 on regression, 0 otherwise, 2 on bad input."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ollama_conformance.errors import UsageError

HELP = "Compare two runs (check and/or bench results): exit 1 on a significant regression beyond the threshold."
EXIT_REGRESSION = 1


def parse_threshold(text: str) -> float:
    """'5%', '5' or '0.05' -> 0.05 (a bare number above 1 is read as percent)."""
    raw = text.strip()
    try:
        value = float(raw.rstrip("%"))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a threshold: {text!r} (e.g. 5%)") from exc
    if raw.endswith("%") or value > 1:
        value /= 100.0
    if not 0 <= value < 10:
        raise argparse.ArgumentTypeError(f"threshold out of range: {text!r}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("baseline", type=Path, help="baseline: check JSON, bench results.json or folder, or a `run` folder")
    parser.add_argument("candidate", type=Path, help="candidate, same forms as the baseline")
    parser.add_argument("--threshold", type=parse_threshold, default=0.05, help="smallest change that counts (default 5%%)")
    parser.add_argument("--json", type=Path, default=None, metavar="PATH", help="write the comparison as JSON")
    parser.add_argument("--markdown", type=Path, default=None, metavar="PATH", help="write the comparison as Markdown (a PR comment)")


def _print_console(result: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=None if sys.stdout.isatty() else 160)
    for warning in result["warnings"]:
        console.print(f"[yellow]warning:[/] {warning}", markup=True, highlight=False)
    conf = result["conformance"]
    if conf:
        console.print(
            f"conformance: {len(conf['new_failures'])} new failure(s), {len(conf['new_passes'])} new pass(es), "
            f"{len(conf['still_failing'])} still failing",
            highlight=False,
        )
        for row in conf["new_failures"]:
            console.print(f"  [red]new failure[/] {row['level']} {row['feature']}: {row['id']} ({row['baseline']} -> {row['candidate']})", highlight=False)
        for row in conf["new_passes"]:
            console.print(f"  [green]new pass[/] {row['level']} {row['feature']}: {row['id']}", highlight=False)
    perf = result["performance"]
    if perf:
        table = Table(title=f"performance: candidate / baseline, {perf['confidence'] * 100:.2f}% bootstrap interval")
        for column in ("step", "metric", "baseline", "candidate", "ratio", "interval", "verdict"):
            table.add_column(column, justify="right" if column in ("baseline", "candidate", "ratio") else "left")
        for row in perf["metrics"]:
            if row["verdict"] == "not_testable":
                table.add_row(row["step"], row["metric"], "–", "–", "–", "–", f"not testable: {row['reason']}")
                continue
            style = {"regression": "red", "improvement": "green"}.get(row["verdict"], "")
            table.add_row(
                row["step"], row["metric"], f"{row['baseline']:,.2f}", f"{row['candidate']:,.2f}", f"{row['ratio']:.3f}",
                f"[{row['ci_low']:.3f}, {row['ci_high']:.3f}]", f"[{style}]{row['verdict']}[/]" if style else row["verdict"],
            )
        console.print(table)
        for err in perf["errors"]:
            if err["regression"]:
                console.print(f"[red]regression:[/] step {err['step']} failed requests {err['baseline']:.1%} -> {err['candidate']:.1%}")
    verdict = "[red]REGRESSION[/]" if result["verdict"] == "regression" else "[green]no regression[/]"
    console.print(f"verdict: {verdict} (threshold {result['threshold'] * 100:g}%)")


def run(args: argparse.Namespace) -> int:
    from ollama_conformance.reports.compare import compare, render_compare_markdown
    from ollama_conformance.reports.results import load_paths

    baseline = load_paths([args.baseline])
    candidate = load_paths([args.candidate])
    try:
        result = compare(baseline, candidate, args.threshold)
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    try:
        if args.json:
            args.json.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
        if args.markdown:
            args.markdown.write_text(render_compare_markdown(result), encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot write the comparison: {exc}") from exc
    _print_console(result)
    return EXIT_REGRESSION if result["verdict"] == "regression" else 0
