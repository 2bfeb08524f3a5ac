"""The `ollama-conformance` command: a dispatcher over the subcommands each top-level folder provides.

A subcommand module defines HELP (one line), add_arguments(parser) and run(args) -> int. Modules are imported
lazily by name so `--help` stays fast and the light core never imports PyTorch. A subcommand is listed only when
its module is present: nothing is advertised that does not exist.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import os
import sys
from types import ModuleType

from ollama_conformance import __version__
from ollama_conformance.errors import TargetError, UsageError

# name -> module implementing it (order is the order shown in --help)
SUBCOMMANDS: dict[str, str] = {
    "run": "ollama_conformance.run_command",
    "check": "ollama_conformance.conformance.cli",
    "bench": "ollama_conformance.load.cli",
    "serve": "ollama_conformance.reference_backend.cli",
    "report": "ollama_conformance.reports.report_command",
    "compare": "ollama_conformance.reports.compare_command",
    "matrix": "ollama_conformance.reports.matrix_command",
    "spec": "ollama_conformance.spec.cli",
    "validate": "ollama_conformance.spec.validate_command",
}

EXIT_USAGE = 2
EXIT_TARGET = 3
EXIT_HARNESS = 4
EXIT_INTERRUPTED = 130


def _available() -> dict[str, str]:
    found = {}
    for name, module in SUBCOMMANDS.items():
        try:
            if importlib.util.find_spec(module) is not None:
                found[name] = module
        except ModuleNotFoundError:
            continue
    return found


def build_parser() -> tuple[argparse.ArgumentParser, dict[str, ModuleType]]:
    parser = argparse.ArgumentParser(
        prog="ollama-conformance",
        description="Conformance suite and benchmarking harness for the Ollama HTTP API.",
    )
    parser.add_argument("--version", action="version", version=f"ollama-conformance {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    modules: dict[str, ModuleType] = {}
    for name, module_name in _available().items():
        module = importlib.import_module(module_name)
        modules[name] = module
        sp = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(sp)
    return parser, modules


def main(argv: list[str] | None = None) -> int:
    parser, modules = build_parser()
    args = parser.parse_args(argv)
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
