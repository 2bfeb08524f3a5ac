"""The check results file (kind `ollama-conformance.check`, schema_version 2; docs/internals.md, "Results files").

Its JSON Schema is `conformance/results.schema.json`; every file written here is validated against it first, so
a reader can trust the shape. `gate_exit_code` is the one exit rule of `check` and `run` (`--gate`).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

from ollama_conformance.vocabulary import CHECK_KIND, GATES, LEVELS, RESULT_STATES

KIND = CHECK_KIND
SCHEMA_VERSION = 2
SCHEMA_PATH = Path(__file__).resolve().parent / "results.schema.json"
# Result states, best first. `status` is the compatible grade (what gates), `exact_status` the Ollama-exact one.
STATES = RESULT_STATES
# States that count as "not passed" at the gate: a test the gate covers must pass or not apply.
NOT_PASSED = ("fail", "inconclusive", "error")
DEFAULT_GATE = "MUST"
SURFACE_STATES = ("present", "absent", "not_selected")
EXIT_PASS, EXIT_FAIL, EXIT_USAGE, EXIT_TARGET, EXIT_HARNESS = 0, 1, 2, 3, 4


@cache
def results_schema() -> dict[str, Any]:
    return json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))


def rfc3339(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def gated_levels(gate: str) -> tuple[str, ...]:
    """The levels a gate covers: MUST -> (MUST,), SHOULD -> (MUST, SHOULD), MAY -> all, none -> ()."""
    if gate not in GATES:
        raise ValueError(f"unknown gate {gate!r}; choose from {', '.join(GATES)}")
    return () if gate == "none" else LEVELS[: LEVELS.index(gate) + 1]


def gate_exit_code(results: dict[str, Any], gate: str = DEFAULT_GATE) -> int:
    """The exit status of `check`/`run` for a results document: 3 when nothing at the URL answered HTTP,
    1 when a test at or above the gate failed, errored or was inconclusive, else 0."""
    if results.get("target", {}).get("error"):
        return EXIT_TARGET
    levels = gated_levels(gate)
    for test in results.get("tests", []):
        if test.get("level") in levels and test.get("status") in NOT_PASSED:
            return EXIT_FAIL
    return EXIT_PASS


def gate_failures(results: dict[str, Any], gate: str = DEFAULT_GATE) -> list[dict[str, Any]]:
    """The tests that make the gate fail (for a one-line explanation of exit status 1)."""
    levels = gated_levels(gate)
    return [t for t in results.get("tests", []) if t.get("level") in levels and t.get("status") in NOT_PASSED]


def empty_counts() -> dict[str, int]:
    return dict.fromkeys(STATES, 0)


def summarise(tests: list[dict[str, Any]]) -> dict[str, Any]:
    """Counts per state: total, by level, by surface (compatible grade) and by level for the exact grade."""
    total = empty_counts()
    by_level: dict[str, dict[str, int]] = {level: empty_counts() for level in LEVELS}
    by_surface: dict[str, dict[str, int]] = {}
    exact_total = empty_counts()
    exact_by_level: dict[str, dict[str, int]] = {level: empty_counts() for level in LEVELS}
    for entry in tests:
        status = entry["status"]
        exact = entry.get("exact_status", status)
        total[status] += 1
        by_level.setdefault(entry["level"], empty_counts())[status] += 1
        by_surface.setdefault(entry["surface"], empty_counts())[status] += 1
        exact_total[exact] += 1
        exact_by_level.setdefault(entry["level"], empty_counts())[exact] += 1
    return {"total": total, "by_level": by_level, "by_surface": by_surface,
            "exact": {"total": exact_total, "by_level": exact_by_level}}


def build_results(session: Any, *, finished: float) -> dict[str, Any]:
    """The results document of a finished `ConformanceSession` (conformance.session)."""
    from ollama_conformance import __version__, spec

    target = session.target
    if target is not None:
        described = target.to_json()
        target_json = {k: described[k] for k in ("url", "profile", "version", "models")}
        surfaces = target.surface_states()
    else:
        from ollama_conformance.conformance.target import redact_url

        url = session.option("target")
        target_json = {
            "url": redact_url(url) if url else "",
            "profile": session.option("profile") or ("local" if url else "reference"),
            "version": None,
            "models": [],
        }
        if session.target_error:
            target_json["error"] = session.target_error
        surfaces = session.undiscovered_surfaces()
    tests = list(session.results.values())
    return {
        "kind": KIND,
        "schema_version": SCHEMA_VERSION,
        "tool_version": __version__,
        "spec_version": spec.SPEC_VERSION,
        "started_at": rfc3339(session.started),
        "finished_at": rfc3339(finished),
        "duration_s": round(finished - session.started, 3),
        "target": target_json,
        "surfaces": surfaces,
        "gate": session.option("gate") or DEFAULT_GATE,
        "tests": tests,
        "summary": summarise(tests),
    }


def validate_results(data: Any) -> list[str]:
    from ollama_conformance import spec

    return spec.validate(data, results_schema())


def write_results(path: Path, data: dict[str, Any]) -> None:
    problems = validate_results(data)
    if problems:  # a bug of ours: never write a file the readers would refuse
        raise ValueError("results do not match conformance/results.schema.json: " + "; ".join(problems[:5]))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    tmp.replace(path)
