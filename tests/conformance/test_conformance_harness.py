"""The harness around the suite, without models: inert plugin, result states, results file, CLI errors, stalls."""

from __future__ import annotations

import ast
import json
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import jsonschema
import pytest
from suite_runs import run_suite, statuses

from ollama_conformance.conformance.results import SCHEMA_PATH, SCHEMA_VERSION, gate_exit_code, validate_results
from ollama_conformance.conformance.runner import CheckOptions, run_check
from ollama_conformance.reference_backend.launcher import ReferenceBackend

REPO = Path(__file__).resolve().parents[2]


def test_results_schema_is_valid_and_accepts_the_shared_fixture() -> None:
    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator.check_schema(schema)
    fixture = REPO / "fixtures" / "results" / "check_baseline.json"
    sample = json.loads(fixture.read_text(encoding="utf-8")) if fixture.exists() else {}
    if sample.get("schema_version") == SCHEMA_VERSION:  # the reports part's sample of what `check` writes
        assert validate_results(sample) == []


def test_gate_exit_codes() -> None:
    """The one exit rule of check and run: a test at or above the gate that did not pass is exit 1."""
    def doc(*tests: tuple[str, str]) -> dict:
        return {"target": {}, "tests": [{"level": level, "status": status} for level, status in tests]}

    should_fails = doc(("MUST", "pass"), ("SHOULD", "fail"), ("MAY", "error"))
    assert [gate_exit_code(should_fails, g) for g in ("MUST", "SHOULD", "MAY", "none")] == [0, 1, 1, 0]
    assert gate_exit_code(doc(("MUST", "inconclusive")), "MUST") == 1, "inconclusive is not a pass"
    assert gate_exit_code(doc(("MUST", "not_applicable")), "MAY") == 0
    assert gate_exit_code({"target": {"error": "refused"}, "tests": []}, "none") == 3


def test_plugin_is_inert_outside_the_suite(tmp_path: Path) -> None:
    (tmp_path / "test_plain.py").write_text("def test_ok():\n    assert True\n", encoding="utf-8")
    proc = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", str(tmp_path)],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Ollama conformance" not in proc.stdout
    # An unrelated run sees none of the suite's options (no collision with another plugin's --target/--profile)
    # and does not import the harness.
    helped = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--help"],
                            cwd=tmp_path, capture_output=True, text=True, timeout=120).stdout
    assert "--ollama-" not in helped and "--target" not in helped and "--conformance-json" not in helped
    (tmp_path / "conftest.py").write_text(
        "import sys\n\ndef pytest_sessionfinish(session):\n"
        "    loaded = sorted(m for m in sys.modules if m.startswith('ollama_conformance.'))\n"
        "    print('LOADED', loaded)\n", encoding="utf-8")
    loaded = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-s", str(tmp_path)],
                            cwd=tmp_path, capture_output=True, text=True, timeout=120).stdout
    (line,) = [line for line in loaded.splitlines() if "LOADED" in line]
    light = {"ollama_conformance.errors", "ollama_conformance.lazy", "ollama_conformance.conformance",
             "ollama_conformance.conformance.plugin"}
    assert set(ast.literal_eval(line.split("LOADED", 1)[1].strip())) <= light, line
    refused = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--ollama-target", "http://x"],
                             cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert refused.returncode == 4 and "unrecognized arguments: --ollama-target" in refused.stderr
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
                                      "--ollama-timeout", "3", timeout_s=120)
    assert code == 1, output[-2000:]
    (entry,) = statuses(results).values()
    assert entry["status"] == "error"
    assert "no answer within" in entry["message"] or "did not finish within its timeout" in entry["message"]


def test_discovery_timeout_is_its_own_and_says_how_to_raise_it(tmp_path: Path, stalling_server: str) -> None:
    """Discovery waits --discovery-timeout (not the per-test timeout), then every test is an error saying why."""
    code, results, output = run_suite(stalling_server, tmp_path, ["test_server.py::test_root_says_running"],
                                      "--ollama-discovery-timeout", "2", timeout_s=120)  # per-test timeout stays 120 s
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
        (["--ollama-surface", "openai"], lambda e: e["surface"] == "openai"),
        (["--ollama-level", "MUST"], lambda e: e["level"] == "MUST"),
        (["--ollama-feature", "embed.*", "--ollama-feature", "tags.list"], lambda e: e["feature"].startswith("embed.") or e["feature"] == "tags.list"),
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
def test_mutating_tests_run_only_when_allowed(own_reference_backend: ReferenceBackend, tmp_path: Path) -> None:
    """copy/delete run against a reference backend with a store of its own (never the shared one): the session's
    (a throw-away store), or one started for the session where the tests run against an external target."""
    selection = ["test_models.py::test_copy_then_delete", "test_models.py::test_delete_removes_from_tags"]
    _, refused, _ = run_suite(own_reference_backend.url, tmp_path, selection)
    _, allowed, output = run_suite(own_reference_backend.url, tmp_path, selection, "--ollama-allow-mutations")
    assert {e["status"] for e in statuses(refused).values()} == {"not_applicable"}
    assert {e["status"] for e in statuses(allowed).values()} == {"pass"}, output[-2000:]


class StubServer:
    """A loopback HTTP server answering from a table {(method, path): (status, content type, body)}; anything
    else 404 text/plain, as a router without the route. Stands in for the partial servers of the wild (proxies
    that serve part of /api, or /v1 only) in tests that need no model."""

    def __init__(self, routes: dict[tuple[str, str], tuple[int, str, str]]) -> None:
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        table = routes

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                self.rfile.read(int(self.headers.get("content-length") or 0))
                status, media, body = table.get((self.command, self.path), (404, "text/plain", "404 page not found"))
                data = body.encode()
                self.send_response(status)
                self.send_header("content-type", media)
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_HEAD = do_DELETE = _answer

            def log_message(self, *args: object) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_discovery_per_surface_on_a_partial_proxy() -> None:
    """/api without capabilities in show, /v1 absent (a FastAPI 404), /v1/messages answering its own error."""
    from ollama_conformance.conformance.target import discover

    json_type = "application/json"
    stub = StubServer({
        ("GET", "/api/version"): (200, json_type, '{"version": "0.1.0"}'),
        ("GET", "/api/tags"): (200, json_type, '{"models": [{"name": "m:1", "model": "m:1", "digest": "abc"}]}'),
        ("POST", "/api/show"): (200, json_type, '{"details": {}}'),
        ("GET", "/v1/models"): (404, json_type, '{"detail": "Not Found"}'),
        ("POST", "/v1/messages"): (404, json_type, '{"type": "error", "error": {"type": "not_found_error", "message": "no"}}'),
    })
    try:
        target = discover(stub.url, timeout_s=10)
    finally:
        stub.close()
    states = target.surface_states()
    assert states["native"]["state"] == "present" and target.version == "0.1.0"
    assert target.capabilities("m:1") is None, "no `capabilities` in show: unknown, not empty"
    assert target.chat_model == "m:1", "a model of unknown capabilities is used for chat rather than none"
    assert states["openai"]["state"] == "absent"
    assert states["openai"]["evidence"] == {"request": "GET /v1/models", "status": 404, "detail": '{"detail": "Not Found"}'}
    assert target.absent_reason("openai") == "openai surface absent: GET /v1/models → 404 '{\"detail\": \"Not Found\"}'"
    assert states["anthropic"]["state"] == "present", "an Anthropic-shaped 404 proves the route"


def test_discovery_of_a_v1_only_server_uses_the_given_model() -> None:
    from ollama_conformance.conformance.target import discover

    stub = StubServer({
        ("GET", "/v1/models"): (200, "application/json", '{"object": "list", "data": []}'),
        ("POST", "/v1/messages"): (200, "application/json", '{"type": "message"}'),
    })
    try:
        target = discover(stub.url, chat_model="given:1", timeout_s=10, surfaces=("openai",))
    finally:
        stub.close()
    states = target.surface_states()
    assert states["native"] == {"state": "not_selected", "evidence": {"request": "GET /api/version", "status": 404,
                                                                      "detail": "404 page not found"}}
    assert not target.has_surface("native") and target.has_surface("openai") and target.has_surface("anthropic")
    assert states["anthropic"]["state"] == "not_selected"
    assert target.chat_model == "given:1" and target.capabilities("given:1") is None


def test_everything_404_is_judged_and_nothing_answering_is_exit_3(tmp_path: Path) -> None:
    """Exit 3 only when nothing at the URL answers HTTP; a server answering 404 to everything is judged (exit 1):
    each test fails with its surface's one cause, shown once on the console, never a traceback."""
    stub = StubServer({})
    try:
        proc = subprocess.run([sys.executable, "-m", "ollama_conformance", "check", "--target", stub.url,
                               "--json", str(tmp_path / "c.json"), "--junit", str(tmp_path / "j.xml"), "--feature", "server.*",
                               "--feature", "v1.models.*", "--feature", "anthropic.errors.shape"],
                              capture_output=True, text=True, timeout=300, cwd=tmp_path)
    finally:
        stub.close()
    output = proc.stdout + proc.stderr
    assert proc.returncode == 1, output[-3000:]
    results = json.loads((tmp_path / "c.json").read_text())
    assert validate_results(results) == []
    assert {s["state"] for s in results["surfaces"].values()} == {"absent"}
    assert {t["status"] for t in results["tests"]} == {"fail"}
    for surface in ("native", "openai", "anthropic"):
        causes = {t["message"] for t in results["tests"] if t["surface"] == surface}
        assert len(causes) == 1 and next(iter(causes)).startswith(f"{surface} surface absent: "), causes
        grouped = [line for line in output.splitlines() if line.startswith("FAIL") and f"{surface} surface absent" in line]
        assert len(grouped) == 1, output[-3000:]
    assert "Traceback" not in output
    junit = (tmp_path / "j.xml").read_text()
    assert junit.count("<failure") == len(results["tests"]) and "<error" not in junit
    assert 'name="conformance_status" value="fail"' in junit
    unreachable = run_check(CheckOptions(target="http://127.0.0.1:9", features=["server.*"], json=tmp_path / "u.json", quiet=True))
    assert unreachable == 3


def test_failure_line_names_the_difference_with_a_curl_line(tmp_path: Path) -> None:
    """A wrong answer: one console line with what differs, a curl line, and the exchange in the JSON."""
    stub = StubServer({
        ("GET", "/api/version"): (200, "application/json", '{"version": "not-semver"}'),
        ("GET", "/api/tags"): (200, "application/json", '{"models": []}'),
    })
    try:
        proc = subprocess.run([sys.executable, "-m", "ollama_conformance", "check", "--target", stub.url,
                               "--json", str(tmp_path / "c.json"), "--feature", "server.version", "--surface", "native"],
                              capture_output=True, text=True, timeout=300, cwd=tmp_path)
    finally:
        stub.close()
    output = proc.stdout + proc.stderr
    (entry,) = json.loads((tmp_path / "c.json").read_text())["tests"]
    assert entry["status"] == "fail" and "not-semver" in entry["message"], entry
    assert entry["curl"] == f"curl -sS -X GET {stub.url}/api/version"
    assert entry["exchange"]["status"] == 200 and "not-semver" in entry["exchange"]["body_head"]
    assert entry["exchange"]["request"] == {"method": "GET", "url": f"{stub.url}/api/version", "body_head": ""}
    assert entry["curl"] in output and "Traceback" not in output
    assert proc.returncode == 1


def test_harness_error_is_exit_4_with_the_traceback_in_a_file(tmp_path: Path) -> None:
    """The harness breaking (here: the results file cannot replace a folder of that name) is one line, exit 4."""
    folder = tmp_path / "results-folder"
    folder.mkdir()
    traceback_file = tmp_path / "tb.txt"
    code = run_check(CheckOptions(target="http://127.0.0.1:9", features=["server.root"], json=folder, quiet=True,
                                  traceback_file=traceback_file))
    assert code == 4
    assert "IsADirectoryError" in traceback_file.read_text(encoding="utf-8")


def test_every_generating_request_gets_an_output_cap() -> None:
    from ollama_conformance.conformance.suite.payloads import DEFAULT_OUTPUT_CAP, capped

    assert capped("/api/chat", {"model": "m", "messages": []})["options"] == {"num_predict": DEFAULT_OUTPUT_CAP}
    assert capped("/api/generate", {"options": {"temperature": "hot"}})["options"]["num_predict"] == DEFAULT_OUTPUT_CAP
    assert capped("/api/generate", {"options": {"num_predict": 64}})["options"] == {"num_predict": 64}
    assert capped("/v1/chat/completions", {"messages": []})["max_tokens"] == DEFAULT_OUTPUT_CAP
    assert "max_tokens" not in capped("/v1/chat/completions", {"max_completion_tokens": 3})
    assert capped("/v1/responses", {"input": "x"})["max_output_tokens"] == DEFAULT_OUTPUT_CAP
    assert capped("/v1/messages", {"messages": []}) == {"messages": []}, "a missing max_tokens is what that test checks"
    assert capped("/api/generate", {"options": "not an object"}) == {"options": "not an object"}
    assert capped("/api/chat", b"raw") == b"raw"
