"""Server basics: the root, the version, routing of unknown paths and wrong methods."""

from __future__ import annotations

import re

import pytest

from ollama_conformance.conformance.checks import Api


@pytest.mark.feature("server.root")
def test_root_says_running(api: Api) -> None:
    got = api.get("/")
    assert got.status == 200, f"GET / answered {got.status}"
    assert got.media_type == "text/plain", f"GET / Content-Type {got.headers.get('content-type')!r}, expected text/plain"
    assert got.text == "Ollama is running", f"GET / body {got.text[:80]!r}"


@pytest.mark.feature("server.version")
def test_version_is_semver(api: Api) -> None:
    got = api.get("/api/version")
    (body,) = api.contract("GET", "/api/version", got)
    # Clients (VS Code Copilot, Open WebUI) parse the numbers: x.y.z with an optional pre-release.
    assert re.fullmatch(r"\d+\.\d+\.\d+(-[0-9A-Za-z.-]+)?", body["version"]), f"version {body['version']!r} is not semver"


@pytest.mark.feature("routing.not_found")
def test_unknown_path_is_404(api: Api) -> None:
    got = api.get("/api/no-such-endpoint")
    assert got.status == 404, f"unknown path answered {got.status}"


@pytest.mark.feature("routing.method_not_allowed")
def test_wrong_method_is_405(api: Api) -> None:
    got = api.get("/api/chat")
    assert got.status == 405, f"GET /api/chat answered {got.status}, expected 405"
    assert "POST" in got.headers.get("allow", ""), f"405 without an Allow header naming POST: {dict(got.headers)}"
