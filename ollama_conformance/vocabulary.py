"""The words every part of the project shares, defined once: feature levels, result states, results file kinds.

Cheap to import (no dependencies): the pytest plugin, the CLI and the report builders all use it.
"""

from __future__ import annotations

LEVELS = ("MUST", "SHOULD", "MAY")  # importance of a feature (spec/features.yaml), strictest first
GATES = (*LEVELS, "none")  # `--gate`: the least important level whose failures fail the run
RESULT_STATES = ("pass", "fail", "inconclusive", "not_applicable", "error")
GRADES = ("compatible", "exact")  # a real client works / the same as Ollama down to the byte

CHECK_KIND = "ollama-conformance.check"
BENCH_KIND = "ollama-conformance.bench"
SUMMARY_KIND = "ollama-conformance.summary"


def levels_down_to(level: str | None) -> tuple[str, ...]:
    """`level` and the stricter ones (all levels for None)."""
    return LEVELS if level is None else LEVELS[: LEVELS.index(level) + 1]
