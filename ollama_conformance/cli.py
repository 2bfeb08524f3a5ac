"""The `ollama-conformance` command: a dispatcher over the subcommands each top-level folder provides.

A subcommand module defines HELP (one line), add_arguments(parser) and run(args) -> int. Only the module of the
subcommand being run is imported (its one-line help is also kept here, tests/packaging checks they agree), so
`--help` and `validate` start in a fraction of a second and the light core never imports PyTorch. A subcommand is
listed only when its module is present: nothing is advertised that does not exist.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.machinery
import importlib.util
import os
import sys
from types import ModuleType

from ollama_conformance.errors import TargetError, UsageError

# name -> (module implementing it, its HELP line); the order is the order shown in --help
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "run": ("ollama_conformance.run_command",
            "Check and benchmark a server (default: the bundled reference backend) and write every report to one folder."),
    "check": ("ollama_conformance.conformance.cli",
              "check a server's conformance to the Ollama API (pass / fail / inconclusive / not applicable / error per feature)"),
    "bench": ("ollama_conformance.load.cli",
              "benchmark a server under load (TTFT, ITL, E2E, throughput, goodput, telemetry); --calibrate checks the harness"),
    "serve": ("ollama_conformance.reference_backend.cli",
              "run the reference backend (an Ollama-compatible server on PyTorch: gemma3:270m, all-minilm:22m)"),
    "report": ("ollama_conformance.reports.report_command",
              "Build Markdown, HTML, JSON and badge reports from check and/or bench results."),
    "compare": ("ollama_conformance.reports.compare_command",
              "Compare two runs (check and/or bench results): exit 1 on a significant regression beyond the threshold."),
    "matrix": ("ollama_conformance.reports.matrix_command",
              "Compare several check results side by side: an HTML page (offline filters) and a Markdown table."),
    "spec": ("ollama_conformance.spec.cli",
              "print the spec's coverage: routes x methods x statuses x media types per surface, and features by level"),
    "validate": ("ollama_conformance.spec.validate_command",
              "validate recorded Ollama traffic (VCR cassettes, HAR, httprr, JSON/NDJSON/SSE bodies) against the spec"),
}

EXIT_USAGE = 2
EXIT_TARGET = 3
EXIT_HARNESS = 4
EXIT_INTERRUPTED = 130


def _available() -> dict[str, tuple[str, str]]:
    """The subcommands whose module is installed, found without importing their packages."""
    found = {}
    for name, (module, help_line) in SUBCOMMANDS.items():
        package, _, leaf = module.rpartition(".")
        try:
            parent = importlib.util.find_spec(package)
        except ModuleNotFoundError:
            continue
        locations = parent.submodule_search_locations if parent is not None else None
        if locations is not None and importlib.machinery.PathFinder.find_spec(f"{package}.{leaf}", list(locations)):
            found[name] = (module, help_line)
    return found


class _VersionAction(argparse.Action):
    """`--version`, reading the installed version only when asked."""

    def __init__(self, option_strings: list[str], dest: str = argparse.SUPPRESS, **kwargs: object) -> None:
        super().__init__(option_strings, dest=dest, default=argparse.SUPPRESS, nargs=0,
                         help="show the program's version number and exit")

    def __call__(self, parser: argparse.ArgumentParser, namespace: object, values: object, option: str | None = None) -> None:
        from ollama_conformance import __version__

        print(f"ollama-conformance {__version__}")
        parser.exit()


def _chosen(argv: list[str]) -> str | None:
    """The subcommand named on the command line (the first word that is one), without importing anything."""
    for word in argv:
        if word in SUBCOMMANDS:
            return word
        if not word.startswith("-"):
            return None
    return None


def build_parser(only: str | None = None) -> tuple[argparse.ArgumentParser, dict[str, ModuleType]]:
    """The parser with every subcommand listed; the options of `only` (default: of all of them) are added,
    which imports their modules."""
    parser = argparse.ArgumentParser(
        prog="ollama-conformance",
        description="Conformance suite and benchmarking harness for the Ollama HTTP API.",
    )
    parser.add_argument("--version", action=_VersionAction)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    modules: dict[str, ModuleType] = {}
    for name, (module_name, help_line) in _available().items():
        if only is not None and name != only:
            sub.add_parser(name, help=help_line, description=help_line, add_help=False)
            continue
        module = importlib.import_module(module_name)
        modules[name] = module
        sp = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(sp)
    return parser, modules


def main(argv: list[str] | None = None) -> int:
    words = sys.argv[1:] if argv is None else argv
    chosen = _chosen(words)
    parser, modules = build_parser(only=chosen or "")
    args = parser.parse_args(words)
    if not args.command:
        parser.print_help()
        return EXIT_USAGE
    try:
        return int(modules[args.command].run(args) or 0)
    except UsageError as exc:
        print(f"ollama-conformance {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except TargetError as exc:
        print(f"ollama-conformance {args.command}: target error: {exc}", file=sys.stderr)
        return EXIT_TARGET
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:  # a bug of ours: one line, with a way to see the traceback
        if os.environ.get("OLLAMA_CONFORMANCE_DEBUG"):
            raise
        import tempfile
        import time
        import traceback

        # exit 4 (the harness broke), the traceback in a file: one line on the console, the details kept for a bug report
        path = os.path.join(tempfile.gettempdir(), f"ollama-conformance-{args.command}-traceback-{time.strftime('%Y%m%d-%H%M%S')}.txt")
        with open(path, "w", encoding="utf-8") as fh:
            fh.write("".join(traceback.format_exception(exc)))
        print(f"ollama-conformance {args.command}: internal error: {type(exc).__name__}: {str(exc)[:200]} (traceback in {path})",
              file=sys.stderr)
        return EXIT_HARNESS


if __name__ == "__main__":
    sys.exit(main())
