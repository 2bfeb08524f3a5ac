"""Verdicts on answers real third-party servers give (docs/compatibility.md, "Verdicts corrected after these runs").

A loopback server answers as they do, with no model: llama-server's OpenAI errors (an integer `code`, no `param`),
a proxy's /api/tags and /api/show without the fields ollama-python declares Optional (`modified_at`,
`parent_model`, a `sha256:` digest), a 400 for an option of the wrong type, and connections reset or closed
mid-request. What the official clients accept passes the compatible grade and fails only the exact one; what they
break on, or a dropped connection, fails; nothing here is an *error* (that state is for the harness, or a target
that cannot be reached).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from scripted_target import Answer, ThirdPartyLike
from suite_runs import run_suite, statuses

MODEL = "m:1"
JSON = "application/json"
DIGEST = "a" * 64
DETAILS = {"parent_model": "", "format": "gguf", "family": "gemma3", "families": ["gemma3"], "parameter_size": "268M",
           "quantization_level": "Q8_0"}
OLLAMA_TAG = {"name": MODEL, "model": MODEL, "modified_at": "2026-01-01T00:00:00.123456789Z", "size": 1,
              "digest": DIGEST, "details": DETAILS}
# What llama-server and the proxies in front of it send (docs/compatibility.md).
LLAMA_DETAILS = {k: v for k, v in DETAILS.items() if k != "parent_model"}
LENIENT_TAG = {"name": MODEL, "model": MODEL, "size": 1, "digest": f"sha256:{DIGEST}", "details": LLAMA_DETAILS}
LENIENT_SHOW = {"model_info": {}, "details": LLAMA_DETAILS, "capabilities": ["completion"]}


def llama_error(status: int, message: str, kind: str) -> tuple[int, str, Any]:
    return status, JSON, {"error": {"code": status, "message": message, "type": kind}}



# mode -> (method, path) -> answer. `lenient`: differences official clients accept (and dropped connections);
# `breaking`: answers they break on, or accept what Ollama refuses.
MODES: dict[str, dict[tuple[str, str], Answer]] = {
    "lenient": {
        ("GET", "/api/tags"): (200, JSON, {"models": [LENIENT_TAG]}),
        ("POST", "/api/show"): (200, JSON, LENIENT_SHOW),
        ("POST", "/v1/chat/completions"): llama_error(404, "model not found", "not_found_error"),
        ("POST", "/v1/completions"): llama_error(400, "Failed to parse the request body as JSON", "invalid_request_error"),
        ("POST", "/api/generate"): (400, JSON, {"error": 'invalid option "temperature": expected a number'}),
        ("POST", "/api/chat"): "reset",  # before any answer: ReadError
        ("POST", "/api/embed"): "close",  # closed without an answer: RemoteProtocolError
    },
    "breaking": {
        # month 13: the spec's pattern holds, ollama-python's datetime does not (the client's own verdict)
        ("GET", "/api/tags"): (200, JSON, {"models": [{**OLLAMA_TAG, "modified_at": "2026-13-01T00:00:00Z"}]}),
        ("POST", "/api/show"): (200, JSON, {"details": DETAILS, "modified_at": OLLAMA_TAG["modified_at"],
                                            "capabilities": ["completion"]}),
        ("POST", "/api/generate"): (200, JSON, {"model": MODEL, "created_at": OLLAMA_TAG["modified_at"], "response": "hi",
                                                "done": True, "done_reason": "stop"}),
        ("POST", "/api/chat"): "half-stream-reset",  # a 200 NDJSON stream cut by a reset
    },
    # /api/show leaves out `tools`; /api/chat serves any request (a tool call included), or refuses it as Ollama
    # refuses tools for a model without them
    "claims-served": {
        ("GET", "/api/tags"): (200, JSON, {"models": [OLLAMA_TAG]}),
        ("POST", "/api/show"): (200, JSON, {**LENIENT_SHOW, "capabilities": ["completion"]}),
        ("POST", "/api/chat"): (200, JSON, {"model": MODEL, "created_at": OLLAMA_TAG["modified_at"],
                                            "message": {"role": "assistant", "content": "It is noon."},
                                            "done": True, "done_reason": "stop"}),
    },
    "claims-crashed": {
        ("GET", "/api/tags"): (200, JSON, {"models": [OLLAMA_TAG]}),
        ("POST", "/api/show"): (200, JSON, {**LENIENT_SHOW, "capabilities": ["completion"]}),
        ("POST", "/api/chat"): (500, "text/plain", "Internal Server Error"),
    },
    "claims-refused": {
        ("GET", "/api/tags"): (200, JSON, {"models": [OLLAMA_TAG]}),
        ("POST", "/api/show"): (200, JSON, {**LENIENT_SHOW, "capabilities": ["completion"]}),
        ("POST", "/api/chat"): (400, JSON, {"error": f"registry.ollama.ai/library/{MODEL} does not support tools"}),
    },
}
DISCOVERY: dict[tuple[str, str], Answer] = {
    ("GET", "/api/version"): (200, JSON, {"version": "0.1.0"}),
    ("GET", "/v1/models"): (200, JSON, {"object": "list", "data": [{"id": MODEL, "object": "model", "created": 0,
                                                                     "owned_by": "library"}]}),
}


@pytest.fixture(scope="module")
def third_party() -> Iterator[ThirdPartyLike]:
    server = ThirdPartyLike(MODES, DISCOVERY)
    yield server
    server.close()


LENIENT_TESTS = {
    # (compatible, exact), and what the exact difference (or the failure) must name
    "test_openai.py::test_unknown_model[/v1/chat/completions]": ("pass", "fail", "error.param is missing"),
    "test_openai.py::test_malformed_json_error_shape[/v1/completions]": ("pass", "fail", "error.param is missing"),
    "test_models.py::test_tags_lists_models": ("pass", "fail", "'parent_model' is a required property"),
    "test_models.py::test_show_model": ("pass", "fail", "'modified_at' is a required property"),
    "test_errors.py::test_option_of_wrong_type": ("pass", "fail", "status 400, Ollama answers 500"),
    "test_errors.py::test_malformed_json[/api/chat]": ("fail", "fail", "the target reset the connection during POST /lenient/api/chat"),
    "test_errors.py::test_empty_body[/api/embed]": ("fail", "fail", "the target closed the connection during POST /lenient/api/embed"),
}
BREAKING_TESTS = {
    "test_models.py::test_tags_lists_models": ("fail", "fail", "ollama-python fails on the answer"),
    "test_models.py::test_show_model": ("fail", "fail", "'model_info' is a required property"),
    "test_errors.py::test_option_of_wrong_type": ("fail", "fail", "status 200, expected 500 or 400 or 422"),
    "test_chat.py::test_stream_is_ndjson_by_default": ("fail", "fail", "the connection during POST /breaking/api/chat"),
}


def _judge(results: dict[str, Any], expected: dict[str, tuple[str, str, str]], output: str) -> None:
    found = statuses(results)
    for test, (status, exact, says) in expected.items():
        entry = found.get(f"conformance/suite/{test}")
        assert entry is not None, f"{test} did not run:\n{output[-3000:]}"
        got = (entry["status"], entry["exact_status"])
        text = entry["message"] if status != "pass" else entry["exact_message"]
        assert got == (status, exact), f"{test}: {got}, expected {(status, exact)}: {text}\n{output[-2000:]}"
        assert says in text, f"{test}: {text!r} does not say {says!r}"


def test_what_clients_accept_differs_only_at_the_exact_grade(third_party: ThirdPartyLike, tmp_path: Path) -> None:
    code, results, output = run_suite(f"{third_party.url}/lenient", tmp_path, sorted(LENIENT_TESTS),
                                      "--junitxml", str(tmp_path / "junit.xml"), timeout_s=300)
    _judge(results, LENIENT_TESTS, output)
    assert not [t["id"] for t in results["tests"] if t["status"] == "error"], output[-3000:]
    # a dropped connection is the target's failure: shown with the request it broke off, never as an error
    found = statuses(results)
    reset = found["conformance/suite/test_errors.py::test_malformed_json[/api/chat]"]
    assert "[Errno 104]" in reset["message"] or "reset" in reset["message"].lower(), reset["message"]
    assert reset["exchange"]["request"]["method"] == "POST" and reset["exchange"]["status"] is None, reset["exchange"]
    assert reset["exchange"]["request"]["url"].endswith("/lenient/api/chat"), reset["exchange"]
    assert reset["curl"].startswith("curl -sS -X POST") and "/lenient/api/chat" in reset["curl"], reset["curl"]
    junit = (tmp_path / "junit.xml").read_text(encoding="utf-8")
    assert "<error" not in junit and junit.count("<failure") == 2, junit[-3000:]
    assert code == 1, "the dropped connections fail MUST and SHOULD tests: the default gate fails"


def test_what_clients_break_on_still_fails(third_party: ThirdPartyLike, tmp_path: Path) -> None:
    code, results, output = run_suite(f"{third_party.url}/breaking", tmp_path, sorted(BREAKING_TESTS), timeout_s=300)
    _judge(results, BREAKING_TESTS, output)
    assert not [t["id"] for t in results["tests"] if t["status"] == "error"], output[-3000:]
    assert code == 1


def test_a_capability_the_server_denies_but_serves_is_judged(third_party: ThirdPartyLike, tmp_path: Path) -> None:
    """/api/show's `capabilities` are a claim: a model said to lack tools is excused from the tools tests only
    when the server refuses a tool request (as Ollama does); one that serves it is judged on what it serves."""
    test = "test_chat.py::test_tool_call_shape"
    for folder in ("served", "crashed", "refused"):
        (tmp_path / folder).mkdir()
    _, served, output = run_suite(f"{third_party.url}/claims-served", tmp_path / "served", [test], timeout_s=300)
    entry = statuses(served)[f"conformance/suite/{test}"]
    assert entry["status"] == "fail", f"{entry['status']}: {entry['message']}\n{output[-2000:]}"  # no tool call came
    # a crash is no refusal: the claim does not turn the server's 500 into "not applicable"
    _, crashed, output = run_suite(f"{third_party.url}/claims-crashed", tmp_path / "crashed", [test], timeout_s=300)
    entry = statuses(crashed)[f"conformance/suite/{test}"]
    assert entry["status"] == "fail", f"{entry['status']}: {entry['message']}\n{output[-2000:]}"
    _, refused, output = run_suite(f"{third_party.url}/claims-refused", tmp_path / "refused", [test], timeout_s=300)
    entry = statuses(refused)[f"conformance/suite/{test}"]
    assert entry["status"] == "not_applicable", f"{entry['status']}: {entry['message']}\n{output[-2000:]}"
    assert "lacks the 'tools' capability" in entry["message"], entry["message"]
    assert "POST /api/chat → 400 " in entry["message"] and "does not support tools" in entry["message"], entry["message"]
