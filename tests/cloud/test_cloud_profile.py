"""The suite's cloud profile, proven offline: `ollama-conformance check --profile cloud` against `serve --cloud`.

This is the same command a user runs against https://ollama.com with OLLAMA_API_KEY; here the target is the
reference backend in cloud mode on loopback, so CI exercises every cloud check without the network.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from ollama_conformance.conformance.cloud_profile import RequestBudget, preferred_cloud_model

DAEMON_ONLY = {"cloud.routing.suffix", "server.status", "cloud.disabled", "cloud.errors.shape"}


def check(target: str, tmp_path: Path, *extra: str, key: str | None, profile: str = "cloud") -> tuple[int, str, dict | None]:
    out = tmp_path / "check.json"
    env = {k: v for k, v in os.environ.items() if k != "OLLAMA_API_KEY"}
    if key is not None:
        env["OLLAMA_API_KEY"] = key
    cmd = [sys.executable, "-m", "ollama_conformance", "check", "--profile", profile, "--target", target,
           "-k", "test_cloud", "--json", str(out), "-q", *extra]  # fmt: skip
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=540, check=False)
    results = json.loads(out.read_text(encoding="utf-8")) if out.exists() else None
    return done.returncode, done.stdout + done.stderr, results


def test_cloud_profile_passes_against_the_cloud_mode(cloud_url: str, cloud_key: str, tmp_path: Path) -> None:
    status, output, results = check(cloud_url, tmp_path, key=cloud_key)
    assert results is not None, output[-3000:]
    assert status == 0, output[-3000:]
    assert results["target"]["profile"] == "cloud"
    by_feature: dict[str, set[str]] = {}
    for test in results["tests"]:
        by_feature.setdefault(test["feature"], set()).add(test["status"])
    for feature in ("cloud.auth.missing", "cloud.auth.bearer", "cloud.tags", "cloud.web_search", "cloud.web_fetch",
                    "anthropic.errors.shape", "routing.not_found"):  # fmt: skip
        assert by_feature.get(feature) == {"pass"}, f"{feature}: {by_feature.get(feature)}"
    for feature in DAEMON_ONLY:
        assert by_feature.get(feature) == {"not_applicable"}, f"{feature}: {by_feature.get(feature)}"
    assert not [t["id"] for t in results["tests"] if t["status"] in ("fail", "error")]
    # the key never reaches the output or the results file
    assert cloud_key not in output
    assert cloud_key not in json.dumps(results)


def test_request_budget_caps_a_run(cloud_url: str, cloud_key: str, tmp_path: Path) -> None:
    status, output, results = check(cloud_url, tmp_path, "--max-requests", "3", key=cloud_key)
    assert results is not None and status == 0, output[-3000:]
    spent = [t for t in results["tests"] if "request budget of 3 is spent" in t["message"]]
    passed = [t for t in results["tests"] if t["status"] == "pass"]
    assert spent and all(t["status"] == "not_applicable" for t in spent)
    assert len(passed) <= 3


def test_cloud_profile_without_key_is_not_applicable(tmp_path: Path) -> None:
    """No key: every test is not applicable with the reason, the results are written, exit 0, and nothing is sent.
    The target is a port that nobody listens on, so any request (discovery included) would turn into an error."""
    closed = f"http://127.0.0.1:{_closed_port()}"
    junit = tmp_path / "check.xml"
    status, output, results = check(closed, tmp_path, "--junit", str(junit), key=None)
    assert results is not None and status == 0, output[-3000:]
    assert results["tests"] and "error" not in results["target"]
    assert {t["status"] for t in results["tests"]} == {"not_applicable"}
    assert all(t["message"].startswith("no API key: set OLLAMA_API_KEY") for t in results["tests"])
    assert results["summary"]["total"]["not_applicable"] == len(results["tests"])
    assert "not contacted" in output and "Traceback" not in output
    assert junit.exists() and "no API key" in junit.read_text(encoding="utf-8")
    # --api-key-env naming an unset variable is the same case, and says which variable
    status, output, results = check(closed, tmp_path, "--api-key-env", "CONFORMANCE_UNSET_KEY", key=None)
    assert results is not None and status == 0, output[-3000:]
    assert all(t["status"] == "not_applicable" and "CONFORMANCE_UNSET_KEY" in t["message"] for t in results["tests"])


def _closed_port() -> int:
    import socket

    with socket.socket() as sock:  # bound, then closed: nothing listens there afterwards
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_budget_and_default_model_rules() -> None:
    budget = RequestBudget(2)
    request = httpx.Request("POST", "http://127.0.0.1/api/chat")
    budget.spend(request)
    budget.spend(request)
    with pytest.raises(pytest.skip.Exception, match="request budget of 2 is spent"):
        budget.spend(request)
    unlimited = RequestBudget(None)
    for _ in range(100):
        unlimited.spend(request)
    with pytest.raises(ValueError, match="at least 1"):
        RequestBudget(0)
    assert preferred_cloud_model(["deepseek-v4-flash", "gpt-oss:120b", "gpt-oss:20b"]) == "gpt-oss:20b"
    assert preferred_cloud_model(["kimi-k2.6", None]) is None


def test_daemon_side_checks_pass_against_a_no_cloud_daemon(no_cloud_url: str, tmp_path: Path) -> None:
    """The same module on a daemon profile: routing rules and the OLLAMA_NO_CLOUD refusals pass, cloud-only tests
    are not applicable with the reason."""
    status, output, results = check(no_cloud_url, tmp_path, key=None, profile="local")
    assert results is not None and status == 0, output[-3000:]
    states: dict[str, set[str]] = {}
    for test in results["tests"]:
        states.setdefault(test["feature"], set()).add(test["status"])
    for feature in DAEMON_ONLY:
        assert states.get(feature) == {"pass"}, f"{feature}: {states.get(feature)}"
    cloud_only = [t for t in results["tests"] if t["feature"] in ("cloud.auth.bearer", "cloud.web_search", "cloud.tags")]
    assert cloud_only and all(t["status"] == "not_applicable" and "--profile cloud" in t["message"] for t in cloud_only)
