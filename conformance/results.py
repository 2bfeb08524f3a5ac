"""The check results file (kind `ollama-conformance.check`, schema_version 1; docs/internals.md, "Results files").

Its JSON Schema is `conformance/results.schema.json`; every file written here is validated against it first, so
a reader can trust the shape.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

KIND = "ollama-conformance.check"
SCHEMA_VERSION = 1
SCHEMA_PATH = Path(__file__).resolve().parent / "results.schema.json"


@cache
def results_schema() -> dict[str, Any]:
    return json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))


def rfc3339(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def build_results(session: Any, *, finished: float) -> dict[str, Any]:
    """The results document of a finished `ConformanceSession` (conformance.plugin)."""
    from ollama_conformance import __version__, spec

    target = session.target
    if target is not None:
        described = target.to_json()
        target_json = {k: described[k] for k in ("url", "profile", "version", "models")}
    else:
        opt = session.config.option
        from ollama_conformance.conformance.target import redact_url

        target_json = {
            "url": redact_url(opt.target) if opt.target else "",
            "profile": opt.profile or ("local" if opt.target else "reference"),
            "version": None,
            "models": [],
        }
        if session.target_error:
            target_json["error"] = session.target_error
    return {
        "kind": KIND,
        "schema_version": SCHEMA_VERSION,
        "tool_version": __version__,
        "spec_version": spec.SPEC_VERSION,
        "started_at": rfc3339(session.started),
        "finished_at": rfc3339(finished),
        "duration_s": round(finished - session.started, 3),
        "target": target_json,
        "tests": list(session.results.values()),
        "summary": session.summary(),
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
