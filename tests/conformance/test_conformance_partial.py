"""Partial servers, judged fairly: the reference backend with some surfaces switched off (`serve --surfaces`)
stands in for a /v1-only server (llama-server) and an /api-only one (a native-only proxy).

What must hold (issue 11): each surface discovered on its own; an absent surface's tests fail with one cause,
shown once; every other surface is checked in full, with no *error* state; unknown capabilities run the test
(flagged) instead of skipping it; a cross-surface test is not applicable without both surfaces; the gate decides
the exit status and exit 3 is only for a URL where nothing answers HTTP.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ollama_conformance.conformance.results import validate_results

pytestmark = pytest.mark.slow

# Wide timeouts: the shared 2-core machine may be busy; the first request of a fresh backend loads the model.
TIMEOUTS = ["--timeout", "300", "--discovery-timeout", "900"]


@pytest.fixture(scope="module")
def v1_only() -> Iterator[str]:
    from ollama_conformance.reference_backend.launcher import ReferenceBackend

    with ReferenceBackend(args=["--surfaces", "openai,anthropic"], quiet=True) as backend:
        yield backend.url


@pytest.fixture(scope="module")
def api_only() -> Iterator[str]:
    from ollama_conformance.reference_backend.launcher import ReferenceBackend

    with ReferenceBackend(args=["--surfaces", "native"], quiet=True) as backend:
        yield backend.url


def check(tmp: Path, url: str, *args: str) -> tuple[int, dict[str, Any], str]:
    """`ollama-conformance check` as a user runs it: exit status, results JSON, console output."""
    out = tmp / "check.json"
    proc = subprocess.run([sys.executable, "-m", "ollama_conformance", "check", "--target", url, "--json", str(out),
                           "--junit", str(tmp / "junit.xml"), *TIMEOUTS, *args],
                          capture_output=True, text=True, timeout=3000, cwd=tmp)
    results = json.loads(out.read_text(encoding="utf-8")) if out.exists() else {}
    return proc.returncode, results, proc.stdout + proc.stderr


def by_surface(results: dict[str, Any], surface: str) -> list[dict[str, Any]]:
    return [t for t in results["tests"] if t["surface"] == surface]


def test_v1_only_server(v1_only: str, tmp_path: Path) -> None:
    code, results, output = check(tmp_path, v1_only, "--feature", "server.*", "--feature", "show.capabilities",
                                  "--feature", "v1.*", "--feature", "anthropic.*", "--model", "gemma3:270m")
    assert results, output[-3000:]
    assert validate_results(results) == []
    surfaces = results["surfaces"]
    assert surfaces["native"]["state"] == "absent", surfaces
    assert surfaces["native"]["evidence"]["request"] == "GET /api/version"
    assert surfaces["native"]["evidence"]["status"] == 404
    assert surfaces["openai"]["state"] == "present" and surfaces["anthropic"]["state"] == "present", surfaces
    assert not [t["id"] for t in results["tests"] if t["status"] == "error"], output[-3000:]
    # the absent surface: every test fails with the same one cause, and the console shows it once
    native = by_surface(results, "native")
    assert native and {t["status"] for t in native} == {"fail"}
    (cause,) = {t["message"] for t in native}
    assert cause.startswith("native surface absent: GET /api/version → 404"), cause
    assert output.count("native surface absent") == 2, output[-3000:]  # the surface line and the grouped failures
    # the present surfaces are checked in full: nothing there fails for the absent one
    for surface in ("openai", "anthropic"):
        tests = by_surface(results, surface)
        assert tests and not [t for t in tests if t["status"] == "fail" and "surface absent" in t["message"]]
        assert {t["status"] for t in tests} <= {"pass", "fail", "inconclusive", "not_applicable"}
    # no /api/show: capabilities are unknown, so completion tests run (flagged) rather than not apply
    completion = [t for t in by_surface(results, "openai") if t["feature"] in ("v1.chat.basic", "v1.chat.stream")]
    assert completion and all(t["status"] == "pass" and t["capability_unknown"] for t in completion), completion
    # a cross-surface test is not applicable, naming the missing surface
    (cross,) = [t for t in results["tests"] if t["feature"] == "v1.chat.usage_matches_native"]
    assert cross["status"] == "not_applicable" and "native surface" in cross["message"], cross
    # the absent surface holds MUST tests: the default gate fails, the exit is 1 (not 3: the URL answers HTTP)
    assert code == 1, output[-3000:]
    junit = (tmp_path / "junit.xml").read_text(encoding="utf-8")
    assert junit.count("<failure") == sum(t["status"] == "fail" for t in results["tests"])
    assert "<error" not in junit


def test_v1_only_server_checked_on_its_surfaces_passes_the_gate(v1_only: str, tmp_path: Path) -> None:
    code, results, output = check(tmp_path, v1_only, "--surface", "openai,anthropic", "--level", "MUST",
                                  "--model", "gemma3:270m")
    assert results["surfaces"]["native"]["state"] == "not_selected"
    assert results["surfaces"]["openai"]["state"] == "present"
    failing = [(t["id"], t["message"][:200]) for t in results["tests"] if t["status"] != "pass" and t["status"] != "not_applicable"]
    assert code == 0, (failing, output[-3000:])


def test_api_only_server(api_only: str, tmp_path: Path) -> None:
    code, results, output = check(tmp_path, api_only, "--feature", "server.*", "--feature", "show.*",
                                  "--feature", "chat.basic", "--feature", "v1.models.list", "--feature", "v1.chat.basic",
                                  "--feature", "anthropic.messages.basic", "--gate", "none")
    assert results, output[-3000:]
    surfaces = results["surfaces"]
    assert surfaces["native"]["state"] == "present", surfaces
    assert surfaces["openai"]["state"] == "absent" and surfaces["openai"]["evidence"]["status"] == 404, surfaces
    assert surfaces["anthropic"]["state"] == "absent", surfaces
    assert surfaces["anthropic"]["evidence"]["request"] == "POST /v1/messages"
    assert not [t["id"] for t in results["tests"] if t["status"] == "error"], output[-3000:]
    for surface in ("openai", "anthropic"):
        tests = by_surface(results, surface)
        assert tests and all(t["status"] == "fail" and t["message"].startswith(f"{surface} surface absent: ") for t in tests)
    native = by_surface(results, "native")
    assert native and all(t["status"] == "pass" and not t["capability_unknown"] for t in native
                          if t["feature"] in ("chat.basic", "show.capabilities", "server.version")), native
    assert code == 0, "--gate none: failures are reported, the exit is 0"
