"""`ollama-conformance spec`: the coverage printout (text and JSON), and a clear error for bad input."""

from __future__ import annotations

import json
import subprocess
import sys

from ollama_conformance import spec


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ollama_conformance", "spec", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_json_coverage_matches_the_documents() -> None:
    proc = _run("--json")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["spec_version"] == spec.SPEC_VERSION
    assert set(data["surfaces"]) == set(spec.SURFACES)
    assert data["totals"]["operations"] == len(spec.operations())
    for surface, block in data["surfaces"].items():
        rows = {(r["method"], r["path"]): r for r in block["operations"]}
        assert set(rows) == {(op.method, op.path) for op in spec.operations() if op.surface == surface}
        for (method, path), row in rows.items():
            assert list(row["statuses"]) == spec.declared_statuses(method, path)
    chat = {(r["method"], r["path"]): r for r in data["surfaces"]["native"]["operations"]}[("POST", "/api/chat")]
    assert chat["statuses"]["200"] == ["application/json", "application/x-ndjson"]
    assert chat["request_media_types"] == ["application/json"]
    levels = data["features"]["by_level"]
    assert sum(levels.values()) == data["features"]["total"] == len(spec.features())
    assert all(levels[level] > 0 for level in ("MUST", "SHOULD", "MAY"))


def test_text_coverage() -> None:
    proc = _run()
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert f"Ollama {spec.SPEC_VERSION}" in out
    assert "POST   /api/chat stream" in out
    assert "POST   /api/web_search cloud-only" in out
    assert "[anthropic]" in out and "[openai]" in out
    assert "Features:" in out and "MUST" in out and "SHOULD" in out and "MAY" in out


def test_surface_filter() -> None:
    proc = _run("--json", "--surface", "anthropic")
    assert proc.returncode == 0, proc.stderr
    assert list(json.loads(proc.stdout)["surfaces"]) == ["anthropic"]


def test_unknown_surface_is_a_usage_error() -> None:
    proc = _run("--surface", "grpc")
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "ollama-conformance spec: error: unknown surface 'grpc'; choose from native, openai, anthropic"
    ]
    assert "Traceback" not in proc.stderr
