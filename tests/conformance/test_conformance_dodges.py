"""Dodges (issue 21): servers that slip past a check the way real third-party servers did fail the right test,
with a message that names the fault, and the same message in every run.

Two kinds of server: a scripted loopback server (scripted_target.py) that answers like a rule-based engine (no
model: the budget ignored, `length` claimed for an answer that ended by itself, no /api/version), and the broken
target (broken_target.py) in front of the real reference backend (a final done:true object that repeats the
whole output; a stream held open after its last object).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from broken_target import LINGER_S, BrokenTarget
from scripted_target import MODEL, Answer, ThirdPartyLike
from suite_runs import run_suite, statuses

JSON = "application/json"
NDJSON = "application/x-ndjson"
CREATED = "2026-01-01T00:00:00.123456789Z"
DETAILS = {"parent_model": "", "format": "gguf", "family": "gemma3", "families": ["gemma3"], "parameter_size": "268M",
           "quantization_level": "Q8_0"}
TAG = {"name": MODEL, "model": MODEL, "modified_at": CREATED, "size": 1, "digest": "a" * 64, "details": DETAILS}
METRICS = {"total_duration": 1000, "load_duration": 10, "prompt_eval_count": 5, "prompt_eval_duration": 100,
           "eval_duration": 500}


def native_answer(route: str, words: Callable[[int | None], list[str]], reason: Callable[[int | None], str],
                  count: Callable[[int | None, int], int]) -> Callable[[Any], Answer]:
    """A rule-based engine's /api/generate or /api/chat: `words(budget)` is its output, streamed word by word
    (or in one object for stream:false), `reason(budget)` its done_reason, `count(budget, words)` its eval_count."""

    def answer(request: Any) -> Answer:
        request = request if isinstance(request, dict) else {}
        budget = (request.get("options") or {}).get("num_predict")
        out = words(budget)
        pieces = [w if i == 0 else " " + w for i, w in enumerate(out)]

        def obj(text: str, done: bool) -> dict[str, Any]:
            body: dict[str, Any] = {"model": MODEL, "created_at": CREATED}
            if route == "/api/chat":
                body["message"] = {"role": "assistant", "content": text}
            else:
                body["response"] = text
            body["done"] = done
            if done:
                body.update(done_reason=reason(budget), eval_count=count(budget, len(out)), **METRICS)
            return body

        if request.get("stream") is False:
            return 200, JSON, obj("".join(pieces), True)
        lines = [obj(p, False) for p in pieces] + [obj("", True)]
        return 200, NDJSON, "".join(json.dumps(o) + "\n" for o in lines)

    return answer


def openai_answer(words: Callable[[int | None], list[str]], reason: Callable[[int | None], str],
                  count: Callable[[int | None, int], int]) -> Callable[[Any], Answer]:
    def answer(request: Any) -> Answer:
        request = request if isinstance(request, dict) else {}
        budget = request.get("max_tokens")
        out = words(budget)
        return 200, JSON, {
            "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": MODEL, "system_fingerprint": "fp_ollama",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": " ".join(out)},
                         "finish_reason": reason(budget)}],
            "usage": {"prompt_tokens": 5, "completion_tokens": count(budget, len(out)),
                      "total_tokens": 5 + count(budget, len(out))}}

    return answer


def engine(words: Callable[[int | None], list[str]], reason: Callable[[int | None], str],
           count: Callable[[int | None, int], int]) -> dict[tuple[str, str], Answer]:
    return {("POST", "/api/generate"): native_answer("/api/generate", words, reason, count),
            ("POST", "/api/chat"): native_answer("/api/chat", words, reason, count),
            ("POST", "/v1/chat/completions"): openai_answer(words, reason, count)}


SIX = ["one", "two", "three", "four", "five", "six"]
MODES: dict[str, dict[tuple[str, str], Answer]] = {
    # finding 1: the budget ignored; the natural answer (6 words) is longer than the suite's budget
    "ignores-budget": engine(lambda budget: SIX, lambda budget: "stop", lambda budget, n: n),
    # finding 2: `length` for an answer that ended by itself (the same short text whatever the budget)
    "says-length": engine(lambda budget: ["Blue."], lambda budget: "length", lambda budget, n: min(budget or n, 2)),
    # finding 10: every native route but /api/version (the engine of `ignores-budget` behind them)
    "no-version": {("GET", "/api/version"): None,
                   **engine(lambda budget: SIX, lambda budget: "stop", lambda budget, n: n)},
    # a different text for each budget: the budget is not applied to one generation (a check whose assertion
    # pytest would explain with reprs of bound methods, which must not reach the message)
    "drifts": engine(lambda budget: ["alpha"] if budget == 3 else ["gamma", "delta", "epsilon"],
                     lambda budget: "length", lambda budget, n: n),
}
for mode in MODES.values():
    mode.setdefault(("GET", "/api/tags"), (200, JSON, {"models": [TAG]}))
    mode.setdefault(("POST", "/api/show"), (200, JSON, {"model_info": {}, "details": DETAILS, "modified_at": CREATED,
                                                        "capabilities": ["completion"]}))
DISCOVERY: dict[tuple[str, str], Answer] = {
    ("GET", "/api/version"): (200, JSON, {"version": "0.1.0"}),
    ("GET", "/v1/models"): (200, JSON, {"object": "list", "data": [{"id": MODEL, "object": "model", "created": 0,
                                                                     "owned_by": "library"}]}),
}
BUDGET_TESTS = ["test_generate.py::test_num_predict_bounds_output[nonstream]",
                "test_generate.py::test_num_predict_bounds_output[stream]",
                "test_chat.py::test_num_predict_bounds_output[nonstream]",
                "test_chat.py::test_num_predict_bounds_output[stream]",
                "test_openai.py::test_max_tokens_bounds_output"]


@pytest.fixture(scope="module")
def scripted() -> Iterator[ThirdPartyLike]:
    server = ThirdPartyLike(MODES, DISCOVERY)
    yield server
    server.close()


def _entries(results: dict[str, Any], tests: list[str], output: str) -> dict[str, dict[str, Any]]:
    found = statuses(results)
    missing = [t for t in tests if f"conformance/suite/{t}" not in found]
    assert not missing, f"{missing} did not run:\n{output[-3000:]}"
    return {t: found[f"conformance/suite/{t}"] for t in tests}


def test_a_budget_the_server_ignores_fails(scripted: ThirdPartyLike, tmp_path: Path) -> None:
    """Finding 1: six words for a budget of 3, reason `stop`, a count that matches the words: every budget test
    fails, naming the budget."""
    _, results, output = run_suite(f"{scripted.url}/ignores-budget", tmp_path, BUDGET_TESTS, timeout_s=300)
    for test, entry in _entries(results, BUDGET_TESTS, output).items():
        assert entry["status"] == "fail", f"{test}: {entry['status']} {entry['message']}"
        assert entry["message"].startswith("the budget 3 was not applied"), f"{test}: {entry['message']}"


def test_length_for_a_natural_stop_fails(scripted: ThirdPartyLike, tmp_path: Path) -> None:
    """Finding 2: the same one-word answer with a budget of 3 and of 16, `length` both times."""
    _, results, output = run_suite(f"{scripted.url}/says-length", tmp_path, BUDGET_TESTS, timeout_s=300)
    for test, entry in _entries(results, BUDGET_TESTS, output).items():
        assert entry["status"] == "fail", f"{test}: {entry['status']} {entry['message']}"
        assert "so it ended by itself" in entry["message"] and "'length' both times" in entry["message"], (
            f"{test}: {entry['message']}")
        # the exchange shown is the request judged: the small budget (finding 13)
        assert '"num_predict":3' in entry["curl"] or '"max_tokens":3' in entry["curl"], entry["curl"]


def test_a_missing_version_route_is_one_failure(scripted: ThirdPartyLike, tmp_path: Path) -> None:
    """Finding 10: without /api/version the native surface is still present (its other routes answer as Ollama);
    server.version fails on its own, and the other tests report the server's real faults."""
    tests = ["test_server.py::test_version_is_semver", "test_models.py::test_tags_lists_models",
             "test_chat.py::test_num_predict_bounds_output[nonstream]"]
    _, results, output = run_suite(f"{scripted.url}/no-version", tmp_path, tests, timeout_s=300)
    assert results["surfaces"]["native"]["state"] == "present", results["surfaces"]
    entries = _entries(results, tests, output)
    version = entries["test_server.py::test_version_is_semver"]
    assert (version["status"], version["message"]) == ("fail", "GET /api/version not served: 404 '404 page not found'"), version
    assert entries["test_models.py::test_tags_lists_models"]["status"] == "pass", entries
    budget = entries["test_chat.py::test_num_predict_bounds_output[nonstream]"]
    assert budget["status"] == "fail" and budget["message"].startswith("the budget 3 was not applied"), budget


def test_a_route_not_served_says_so(scripted: ThirdPartyLike, tmp_path: Path) -> None:
    """Finding 11: one rule for a route the target does not have, before anything about the body."""
    test = "test_openai.py::test_unknown_model[/v1/completions]"
    _, results, output = run_suite(f"{scripted.url}/ignores-budget", tmp_path, [test], timeout_s=300)
    entry = _entries(results, [test], output)[test]
    assert (entry["status"], entry["message"]) == ("fail", "POST /v1/completions not served: 404 '404 page not found'"), entry


def test_messages_are_the_same_in_every_run(scripted: ThirdPartyLike, tmp_path: Path) -> None:
    """Finding 15: two runs against the same server give identical messages, free of pytest's introspection."""
    tests = [*BUDGET_TESTS, "test_server.py::test_version_is_semver", "test_openai.py::test_unknown_model[/v1/completions]"]
    runs = []
    for run in ("first", "second"):
        (tmp_path / run).mkdir()
        _, results, output = run_suite(f"{scripted.url}/drifts", tmp_path / run, tests, timeout_s=300)
        runs.append({t: (e["status"], e["message"], e["exact_message"]) for t, e in _entries(results, tests, output).items()})
    assert runs[0] == runs[1]
    messages = [m for status, message, exact in runs[0].values() for m in (message, exact)]
    assert not [m for m in messages if " at 0x" in m or "\nassert " in m or "+  where" in m], messages
    prefix = runs[0]["test_generate.py::test_num_predict_bounds_output[nonstream]"]
    assert prefix[0] == "fail" and "is not a prefix of the same request's output" in prefix[1], prefix


# --- dodges in front of the real reference backend -----------------------------------------------------------


@pytest.fixture(scope="module")
def broken(warm_reference_url: str) -> Iterator[BrokenTarget]:
    proxy = BrokenTarget(warm_reference_url).start()
    yield proxy
    proxy.stop()


def test_a_final_object_repeating_the_output_fails(broken: BrokenTarget, tmp_path: Path) -> None:
    """Finding 4: its own named check, whatever the budget."""
    test = "test_chat.py::test_stream_is_ndjson_by_default"
    _, results, output = run_suite(broken.url_for("final_repeats_text"), tmp_path, [test])
    entry = _entries(results, [test], output)[test]
    assert entry["status"] == "fail", entry
    assert "the final done:true object repeats the whole output in `message.content`" in entry["message"], entry["message"]


def test_a_stream_held_open_after_its_end_fails_promptly(broken: BrokenTarget, tmp_path: Path) -> None:
    """Finding 3: the connection stays open 30 s after done:true; the test fails after a bounded wait, naming it."""
    tests = ["test_chat.py::test_stream_is_ndjson_by_default", "test_openai.py::test_chat_stream_grammar"]
    _, results, output = run_suite(broken.url_for("linger_after_done"), tmp_path, tests)
    for test, entry in _entries(results, tests, output).items():
        assert entry["status"] == "fail", f"{test}: {entry}"
        assert "the stream's final item came but the connection did not end the body within 2 s" in entry["message"], entry
        # the wait is bounded by the suite, not by the server's 30 s
        assert entry["duration_s"] < LINGER_S, f"{test} took {entry['duration_s']} s"
