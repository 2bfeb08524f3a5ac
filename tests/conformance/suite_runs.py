"""Helpers for the project's tests that run the conformance suite in a child pytest and read its results."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from ollama_conformance.conformance.plugin import SUITE_DIR


def run_suite(target: str, tmp: Path, selection: list[str] | None = None, *extra: str, timeout_s: float = 900) -> tuple[int, dict[str, Any], str]:
    """Run the suite (or node ids under conformance/suite, e.g. 'test_chat.py::test_x') against `target`.

    Returns (pytest exit status, the results JSON, the combined output).
    """
    out = tmp / "results.json"
    args = [str(SUITE_DIR / s) for s in selection] if selection else [str(SUITE_DIR)]
    # as `check` runs it (conformance/runner.py): without schemathesis's pytest plugin, which the suite never uses
    cmd = [sys.executable, "-m", "pytest", *args, "-p", "no:cacheprovider", "-p", "no:schemathesis", "-o", "addopts=", "-q",
           "--ollama-target", target, "--ollama-json", str(out), "--ollama-timeout", "120", *extra]
    if selection and not any(s.startswith("test_properties.py") for s in selection):
        # hypothesis's pytest plugin imports hypothesis (half a second of CPU at each start); only the property
        # tests use it, and most of these runs (one per defect, variant, dodge) select a few other tests
        cmd += ["-p", "no:hypothesispytest"]
    proc = subprocess.run(cmd, cwd=tmp, capture_output=True, text=True, timeout=timeout_s)
    output = proc.stdout + proc.stderr
    results = json.loads(out.read_text(encoding="utf-8")) if out.exists() else {}
    return proc.returncode, results, output


def statuses(results: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Test id (conformance/suite/<module>::<test>) -> its result entry."""
    return {entry["id"]: entry for entry in results.get("tests", [])}
