"""The command starts at once: `--help` of every subcommand imports only what that subcommand's options need.

Measured in a fresh interpreter, in imported modules (what the start-up costs, stable on a busy machine) against
`python -c pass`'s own count, and by naming the heavy packages that must stay out; no wall-clock assertion
(the timings are printed by `python tests/packaging/test_start_time.py`).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ollama_conformance.cli import SUBCOMMANDS

# each costs from a tenth of a second (yaml, rich) to seconds (torch): none is needed to print options
HEAVY = ("torch", "numpy", "httpx", "jsonschema", "locust", "rich", "pytest", "starlette", "transformers", "yaml",
         "schemathesis", "hypothesis", "openai", "anthropic", "ollama")
# modules a subcommand's --help may import beyond the bare interpreter's (argparse, the dispatcher, its module)
HELP_BUDGET = 120
PROBE = """
import contextlib, io, json, sys
before = set(sys.modules)
from ollama_conformance.cli import main
with contextlib.redirect_stdout(io.StringIO()) as out:
    try:
        code = main(sys.argv[1:])
    except SystemExit as exc:
        code = exc.code
added = set(sys.modules) - before
print(json.dumps({"code": code, "added": len(added), "heavy": sorted(m for m in added if m.split('.')[0] in HEAVY),
                  "out": out.getvalue()[:200]}))
"""


def probe(*argv: str) -> dict:
    code = f"HEAVY = {HEAVY!r}\n{PROBE}"
    done = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, timeout=120, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("argv", [["--help"], *([name, "--help"] for name in SUBCOMMANDS)], ids=" ".join)
def test_help_imports_nothing_heavy(argv: list[str]) -> None:
    got = probe(*argv)
    assert got["code"] == 0, got
    assert got["out"].startswith("usage: ollama-conformance"), got
    heavy = sorted({m.split(".")[0] for m in got["heavy"]})
    assert not heavy, f"`ollama-conformance {' '.join(argv)}` imports {heavy}"
    assert got["added"] <= HELP_BUDGET, f"`{' '.join(argv)}` imports {got['added']} modules (budget {HELP_BUDGET})"


def test_top_level_help_lists_every_subcommand_without_importing_them() -> None:
    got = probe("--help")
    assert not [m for m in got["heavy"]], got
    done = subprocess.run([sys.executable, "-m", "ollama_conformance", "--help"], capture_output=True, text=True,
                          timeout=120, check=True)
    for name in SUBCOMMANDS:
        assert f"    {name}" in done.stdout, f"{name} missing from --help"


def test_help_lines_kept_in_the_dispatcher_are_the_modules_own() -> None:
    """The dispatcher keeps each subcommand's HELP so `--help` imports none of them: they must not drift apart."""
    import importlib

    for name, (module, help_line) in SUBCOMMANDS.items():
        assert help_line == importlib.import_module(module).HELP, name


def _seconds(argv: list[str], repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        subprocess.run(argv, capture_output=True, timeout=120, check=False)
        best = min(best, time.perf_counter() - started)
    return best


if __name__ == "__main__":  # the figures: best of 3, and relative to `python -c pass`
    import os

    bare = _seconds([sys.executable, "-c", "pass"])
    print(f"load average {os.getloadavg()[0]:.2f}; python -c pass {bare:.3f} s")
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        small = Path(folder) / "version.json"
        small.write_text('{"version": "0.12.3"}')
        runs = (["--help"], *([name, "--help"] for name in SUBCOMMANDS), ["validate", str(small)])
        for argv in runs:
            took = _seconds([sys.executable, "-m", "ollama_conformance", *argv])
            shown = " ".join(argv).replace(str(small), "one-small-file.json")
            print(f"{shown:30} {took:.3f} s ({took / bare:.1f}x python -c pass)")
