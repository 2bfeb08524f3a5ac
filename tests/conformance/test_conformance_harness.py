"""The harness around the suite, without models: inert plugin, result states, results file, CLI errors, stalls."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import jsonschema
import pytest
from ollama_conformance.conformance.results import SCHEMA_PATH, validate_results
from ollama_conformance.conformance.runner import CheckOptions, run_check
from suite_runs import run_suite, statuses

REPO = Path(__file__).resolve().parents[2]


def test_results_schema_is_valid_and_accepts_the_shared_fixture() -> None:
    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator.check_schema(schema)
    fixture = REPO / "fixtures" / "results" / "check_baseline.json"
    if fixture.exists():  # the reports part's sample of what `check` writes
        assert validate_results(json.loads(fixture.read_text(encoding="utf-8"))) == []


def test_plugin_is_inert_outside_the_suite(tmp_path: Path) -> None:
    (tmp_path / "test_plain.py").write_text("def test_ok():\n    assert True\n", encoding="utf-8")
    proc = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", str(tmp_path)],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Ollama conformance" not in proc.stdout
    plugins = subprocess.run([sys.executable, "-m", "pytest", "--version", "--version"],
                             capture_output=True, text=True, timeout=60).stdout
    assert "conformance/plugin.py" in plugins, "the plugin is registered through the pytest11 entry point"


def test_unreachable_target_is_an_error_for_every_test(tmp_path: Path) -> None:
    code, results, output = run_suite("http://127.0.0.1:9", tmp_path, ["test_server.py", "test_errors.py"])
    assert code == 1, output[-2000:]
    assert validate_results(results) == []
    assert "cannot reach the target" in results["target"]["error"]
    found = statuses(results)
    assert found and {e["status"] for e in found.values()} == {"error"}
    assert all("cannot reach the target" in e["message"] for e in found.values())
    assert results["summary"]["total"]["error"] == len(found)
    assert "target unusable" in output


def test_check_exit_status_for_an_unusable_target(tmp_path: Path) -> None:
    out = tmp_path / "check.json"
    junit = tmp_path / "junit.xml"
    code = run_check(CheckOptions(target="http://127.0.0.1:9", features=["server.*"], json=out, junit=junit, quiet=True))
    assert code == 3
    assert json.loads(out.read_text())["kind"] == "ollama-conformance.check"
    assert "<testsuite" in junit.read_text()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--surface", "bogus"], "unknown surface"),
        (["--target", "not a url"], "--target must be an http(s) URL"),
        (["--timeout", "0"], "--timeout must be a positive"),
        (["--discovery-timeout", "-1"], "--discovery-timeout must be a positive"),
    ],
)
def test_check_usage_errors(tmp_path: Path, args: list[str], message: str) -> None:
    proc = subprocess.run([sys.executable, "-m", "ollama_conformance", "check", *args, "--json", str(tmp_path / "x.json")],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert message in proc.stderr or message in proc.stdout
    assert "Traceback" not in proc.stderr


@pytest.fixture
def stalling_server() -> Iterator[str]:
    """Accepts connections and never answers."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        sock.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(sock.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    stop.set()
    thread.join(timeout=5)
    for conn in held:
        conn.close()
    sock.close()


def test_stalling_target_is_an_error_not_a_hang(tmp_path: Path, stalling_server: str) -> None:
    code, results, output = run_suite(stalling_server, tmp_path, ["test_server.py::test_root_says_running"],
                                      "--conformance-timeout", "3", timeout_s=120)
    assert code == 1, output[-2000:]
    (entry,) = statuses(results).values()
    assert entry["status"] == "error"
    assert "no answer within" in entry["message"] or "did not finish within its timeout" in entry["message"]


def test_discovery_timeout_is_its_own_and_says_how_to_raise_it(tmp_path: Path, stalling_server: str) -> None:
    """Discovery waits --discovery-timeout (not the per-test timeout), then every test is an error saying why."""
    code, results, output = run_suite(stalling_server, tmp_path, ["test_server.py::test_root_says_running"],
                                      "--discovery-timeout", "2", timeout_s=120)  # per-test timeout stays 120 s
    assert code == 1, output[-2000:]
    assert "no answer within 2 s" in results["target"]["error"]
    assert "--discovery-timeout" in results["target"]["error"]
    (entry,) = statuses(results).values()
    assert entry["status"] == "error" and "no answer within 2 s" in entry["message"]


def test_warm_up_reports_problems_instead_of_raising() -> None:
    from ollama_conformance.conformance.warmup import DEFAULT_CHAT_MODEL, warm_up, warm_up_requests

    assert [path for path, _ in warm_up_requests()] == ["/api/show", "/api/show", "/api/generate", "/api/embed"]
    assert warm_up_requests("m:1")[2][1]["model"] == "m:1" and warm_up_requests()[0][1]["model"] == DEFAULT_CHAT_MODEL
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{sock.getsockname()[1]}"
    problem = warm_up(closed, timeout_s=2)
    assert problem.startswith("warm-up failed: ConnectError")


def test_secrets_never_reach_the_results() -> None:
    from ollama_conformance.conformance.target import ModelInfo, Target, redact_url

    assert redact_url("https://user:secret@example.com:8443/base?api_key=secret") == "https://example.com:8443/base"
    target = Target(url="http://u:secret@127.0.0.1:1/?token=secret", profile="local", api_key="secret",
                    models=[ModelInfo("m", None, [])])
    assert "secret" not in json.dumps(target.to_json())
    assert "secret" not in repr(target)


SELECTION = ["test_server.py", "test_embed.py", "test_models.py", "test_openai.py"]


@pytest.mark.parametrize(
    ("options", "keep"),
    [
        (["--surface", "openai"], lambda e: e["surface"] == "openai"),
        (["--level", "MUST"], lambda e: e["level"] == "MUST"),
        (["--feature", "embed.*", "--feature", "tags.list"], lambda e: e["feature"].startswith("embed.") or e["feature"] == "tags.list"),
    ],
    ids=["surface", "level", "feature"],
)
def test_selection_options(tmp_path: Path, options: list[str], keep) -> None:
    _, results, output = run_suite("http://127.0.0.1:9", tmp_path, SELECTION, *options)
    entries = list(statuses(results).values())
    assert entries, output[-2000:]
    assert all(keep(e) for e in entries), [e["id"] for e in entries if not keep(e)][:5]
    assert len(entries) < 60, "nothing was deselected"


@pytest.mark.slow
def test_mutating_tests_run_only_when_allowed(tmp_path: Path) -> None:
    """copy/delete run against a reference backend with a store of its own (never the shared one)."""
    from ollama_conformance.reference_backend.launcher import ReferenceBackend

    selection = ["test_models.py::test_copy_then_delete", "test_models.py::test_delete_removes_from_tags"]
    with ReferenceBackend(env={"OLLAMA_MODELS": str(tmp_path / "store")}, quiet=True) as backend:
        _, refused, _ = run_suite(backend.url, tmp_path, selection)
        _, allowed, output = run_suite(backend.url, tmp_path, selection, "--allow-mutations")
    assert {e["status"] for e in statuses(refused).values()} == {"not_applicable"}
    assert {e["status"] for e in statuses(allowed).values()} == {"pass"}, output[-2000:]
