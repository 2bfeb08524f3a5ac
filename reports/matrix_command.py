"""`ollama-conformance matrix RESULTS... [--label L]... [--out DIR] [--docs FILE]`: features × targets, side by side."""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path

from ollama_conformance.errors import UsageError

HELP = "Compare several check results side by side: an HTML page (offline filters) and a Markdown table."
DEFAULT_OUT = "ollama-conformance-matrix"
HTML_FILE = "matrix.html"
MARKDOWN_FILE = "matrix.md"
JSON_FILE = "matrix.json"
DEFAULT_TITLE = "ollama-conformance compatibility matrix"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("results", nargs="+", type=Path, metavar="RESULTS", help="check results JSON files (or `run` folders), one per target")
    parser.add_argument("--label", action="append", default=[], metavar="NAME",
                        help="name of a target, in the order of RESULTS (repeatable; default: URL and /api/version)")
    parser.add_argument("--out", type=Path, default=Path(DEFAULT_OUT), help=f"folder for matrix.html, matrix.md, matrix.json (default ./{DEFAULT_OUT})")
    parser.add_argument("--docs", type=Path, metavar="FILE",
                        help="also write the Markdown matrix into FILE between <!-- matrix:begin --> and <!-- matrix:end -->")
    parser.add_argument("--title", default=DEFAULT_TITLE, help="page title")


def _write(path: Path, text: str) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc.strerror or exc}") from exc


def write_matrix(results: list[Path], labels: list[str], out: Path, title: str = DEFAULT_TITLE) -> list[Path]:
    """matrix.html, matrix.md and matrix.json of these check results in `out`; the paths written."""
    from ollama_conformance.reports import matrix

    built = matrix.build_matrix(results, labels)
    _write(out / HTML_FILE, matrix.render_html(built, title))
    _write(out / MARKDOWN_FILE, f"# {title}\n\n{matrix.render_markdown(built)}")
    _write(out / JSON_FILE, matrix.dump_json(built))
    return [out / HTML_FILE, out / MARKDOWN_FILE, out / JSON_FILE]


def run(args: argparse.Namespace) -> int:
    from ollama_conformance.reports import matrix

    built = matrix.build_matrix(list(args.results), list(args.label))
    markdown = matrix.render_markdown(built)
    written = write_matrix(list(args.results), list(args.label), args.out, args.title)
    for i, target in enumerate(built.targets):
        print(f"{i + 1}. {target.label}: {matrix.grade_line(built, i)}")
    if args.docs is not None:
        existing = args.docs.read_text(encoding="utf-8") if args.docs.is_file() else ""
        words = [str(p) for p in args.results] + [w for label in args.label for w in ("--label", label)] + ["--docs", str(args.docs)]
        command = "ollama-conformance matrix " + " ".join(shlex.quote(w) for w in words)
        _write(args.docs, matrix.splice_docs(existing, markdown, command))
        print(f"wrote {args.docs}")
    for path in written:
        print(f"wrote {path}")
    return 0
