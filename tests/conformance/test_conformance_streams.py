"""The stream readers and grammar checks: silent on real Ollama traffic, loud on each kind of broken stream.

The broken variants are made from the real recordings with the same rewrites the broken target applies.
"""

from __future__ import annotations

import json
from pathlib import Path

import broken_target as broken
import pytest
import yaml

from ollama_conformance.conformance.streams import (
    check_chat_sse_grammar,
    check_messages_sse_grammar,
    check_ndjson_grammar,
    check_responses_sse_grammar,
    parse_ndjson,
    parse_sse,
)

NDJSON_CASSETTES = [
    "traceloop__openllmetry/test_ollama_streaming_chat_legacy.yaml",
    "traceloop__openllmetry/test_ollama_streaming_generation_legacy.yaml",
]
SSE_CASSETTES = [
    "crmne__ruby_llm/chat_streaming_responses_ollama_qwen3_supports_streaming_responses.yml",
    "crmne__ruby_llm/chat_streaming_responses_ollama_cloud_gpt-oss_120b_supports_streaming_responses.yml",
]


def cassette_body(path: Path) -> str:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    interaction = (data.get("interactions") or data.get("http_interactions"))[0]
    body = interaction["response"]["body"]["string"]
    return body


def ndjson_text(recordings: Path, name: str) -> str:
    return cassette_body(recordings / name)


def rewrite(defect, path: str, media_type: str, text: str) -> str:
    ex = broken.Exchange(path=path, body=None, status=200, media_type=media_type, text=text)
    defect(ex)
    return ex.text


@pytest.mark.parametrize("name", NDJSON_CASSETTES)
def test_real_ndjson_streams_conform(recordings: Path, name: str) -> None:
    stream = parse_ndjson(ndjson_text(recordings, name))
    assert stream.problems == []
    assert check_ndjson_grammar(stream.objects) == []
    assert len(stream.objects) > 2


def test_prism_tool_stream_conforms(recordings: Path) -> None:
    stream = parse_ndjson((recordings / "prism-php__prism/stream-with-tools-1.sse").read_text(encoding="utf-8"))
    assert stream.problems == [] and check_ndjson_grammar(stream.objects) == []


@pytest.mark.parametrize(
    ("defect", "expected"),
    [
        (broken.ndjson_missing_final, "ended without its final done:true"),
        (broken.ndjson_after_done, "follow it"),
        (broken.ndjson_no_done_reason, "no done_reason"),
        (broken.metrics_missing, "lacks metrics"),
    ],
)
def test_broken_ndjson_is_caught(recordings: Path, defect, expected: str) -> None:
    text = rewrite(defect, "api/chat", "application/x-ndjson", ndjson_text(recordings, NDJSON_CASSETTES[0]))
    problems = check_ndjson_grammar(parse_ndjson(text).objects)
    assert any(expected in p for p in problems), problems


def test_ndjson_framing_problems() -> None:
    assert "not JSON" in parse_ndjson('{"done": false}\nnot json\n').problems[0]
    assert "blank" in parse_ndjson('{"done": false}\n\n{"done": true}\n').problems[0]
    assert "newline" in parse_ndjson('{"done": true}').problems[0]
    assert "not an object" in parse_ndjson("[1]\n").problems[0]


def test_error_line_ends_a_stream() -> None:
    objects = [{"done": False, "response": "a"}, {"error": "runner crashed"}]
    assert check_ndjson_grammar(objects, allow_error_end=True) == []
    assert check_ndjson_grammar(objects) == ["the stream ended with an error object: 'runner crashed'"]
    assert "goes on" in check_ndjson_grammar([{"error": "x"}, {"done": True, "done_reason": "load"}])[0]


@pytest.mark.parametrize("name", SSE_CASSETTES)
def test_real_sse_streams_conform(recordings: Path, name: str) -> None:
    stream = parse_sse(cassette_body(recordings / name))
    assert stream.problems == []
    assert check_chat_sse_grammar(stream.events, include_usage=True) == []


@pytest.mark.parametrize(
    ("defect", "expected"),
    [
        (broken.sse_no_done, "[DONE]"),
        (broken.sse_two_finishes, "finish_reason"),
        (broken.sse_changing_id, "different ids"),
    ],
)
def test_broken_sse_is_caught(recordings: Path, defect, expected: str) -> None:
    text = rewrite(defect, "v1/chat/completions", "text/event-stream", cassette_body(recordings / SSE_CASSETTES[0]))
    problems = check_chat_sse_grammar(parse_sse(text).events, include_usage=True)
    assert any(expected in p for p in problems), problems


def test_usage_chunk_only_when_asked(recordings: Path) -> None:
    events = parse_sse(cassette_body(recordings / SSE_CASSETTES[0])).events
    problems = check_chat_sse_grammar(events, include_usage=False)
    assert any("include_usage was not asked" in p for p in problems), problems


def _sse(events: list[tuple[str, dict]]) -> str:
    return "".join(f"event: {name}\ndata: {json.dumps(data)}\n\n" for name, data in events)


MESSAGES_STREAM = [
    ("message_start", {"type": "message_start", "message": {}}),
    ("content_block_start", {"type": "content_block_start", "index": 0}),
    ("content_block_delta", {"type": "content_block_delta", "index": 0}),
    ("content_block_delta", {"type": "content_block_delta", "index": 0}),
    ("content_block_stop", {"type": "content_block_stop", "index": 0}),
    ("message_delta", {"type": "message_delta"}),
    ("message_stop", {"type": "message_stop"}),
]


def test_messages_event_order() -> None:
    assert check_messages_sse_grammar(parse_sse(_sse(MESSAGES_STREAM)).events) == []
    no_stop = rewrite(broken.messages_no_stop, "v1/messages", "text/event-stream", _sse(MESSAGES_STREAM))
    assert any("message_stop" in p for p in check_messages_sse_grammar(parse_sse(no_stop).events))
    unclosed = [e for e in MESSAGES_STREAM if e[0] != "content_block_stop"]
    assert any("never stopped" in p or "outside" in p for p in check_messages_sse_grammar(parse_sse(_sse(unclosed)).events))


def test_responses_event_order() -> None:
    names = ["response.created", "response.in_progress", "response.output_text.delta", "response.completed"]
    good = [(n, {"type": n, "sequence_number": i}) for i, n in enumerate(names)]
    assert check_responses_sse_grammar(parse_sse(_sse(good)).events) == []
    shuffled = [good[1], good[0], *good[2:]]
    problems = check_responses_sse_grammar(parse_sse(_sse(shuffled)).events)
    assert any("sequence_number" in p for p in problems) and any("starts with" in p for p in problems)


# --- grades, arrival times, official clients (issue 12) -------------------------------------------------------


def _captured(text: str, media_type: str, reads: list[tuple[float, int]] | None = None):
    import httpx

    from ollama_conformance.conformance.streams import Captured

    raw = text.encode()
    return Captured(200, httpx.Headers({"content-type": media_type}), text, 1.0, reads or [(0.5, len(raw))], raw)


def _openai_stream(recordings: Path) -> str:
    return cassette_body(recordings / SSE_CASSETTES[0])


def test_item_arrivals_follow_the_reads() -> None:
    text = '{"a": 1}\n{"b": 2}\n{"c": 3}\n'
    got = _captured(text, "application/x-ndjson", reads=[(0.1, 9), (0.2, 18), (0.3, 27)])
    assert got.item_arrivals() == [0.1, 0.2, 0.3]
    sse = _captured(": ping\n\ndata: 1\n\ndata: 2\n\n", "text/event-stream", reads=[(0.1, 8), (0.4, 26)])
    assert sse.timed_items() == [(0.4, "1"), (0.4, "2")]  # the comment block is no item


def test_a_burst_is_buffered_not_streamed() -> None:
    from ollama_conformance.conformance.checks import Inconclusive, check_incremental_delivery, json_output

    lines = "".join(json.dumps({"response": f"w{i}", "done": False}) + "\n" for i in range(10))
    ends = [len("".join(json.dumps({"response": f"w{j}", "done": False}) + "\n" for j in range(i + 1))) for i in range(10)]
    spaced = _captured(lines, "application/x-ndjson", reads=[(0.1 * (i + 1), end) for i, end in enumerate(ends)])
    check_incremental_delivery(spaced, json_output(("response",)))
    burst = _captured(lines, "application/x-ndjson", reads=[(2.0, ends[-1])])
    with pytest.raises(AssertionError, match="buffered, not streamed"):
        check_incremental_delivery(burst, json_output(("response",)))
    few = _captured(lines[: ends[2]], "application/x-ndjson", reads=[(2.0, ends[2])])
    with pytest.raises(Inconclusive):
        check_incremental_delivery(few, json_output(("response",)))


def test_compatible_only_differences_pass_compatible_and_fail_exact(recordings: Path) -> None:
    """content null, other ids, finish_reason on the last content chunk: the SDK and the compatible schema
    accept them; the exact grade names the difference."""
    from ollama_conformance import spec
    from ollama_conformance.conformance import clients
    from ollama_conformance.conformance.streams import chat_sse_exact_differences

    schema = spec.response_schema("POST", "/v1/chat/completions", 200, "text/event-stream")
    original = _openai_stream(recordings)
    for defect in (broken.content_null, broken.other_ids, broken.finish_on_content_chunk, broken.sse_no_role):
        text = rewrite(defect, "v1/chat/completions", "text/event-stream", original)
        events = parse_sse(text).events
        assert check_chat_sse_grammar(events, include_usage=True) == [], defect.__name__
        items = [json.loads(e.data) for e in events if e.data != "[DONE]"]
        assert all(spec.validate(item, schema, grade="compatible") == [] for item in items), defect.__name__
        assert clients.openai_chat(_captured(text, "text/event-stream"), stream=True) == [], defect.__name__
        exact_problems = [p for item in items for p in spec.validate(item, schema, grade="exact")]
        assert exact_problems or chat_sse_exact_differences(events), f"{defect.__name__}: no exact difference found"


def test_the_sdk_refuses_what_clients_break_on(recordings: Path) -> None:
    from ollama_conformance.conformance import clients

    text = rewrite(broken.sse_no_role, "v1/chat/completions", "text/event-stream", _openai_stream(recordings))
    broken_json = text.replace('"object"', '"object', 1)
    assert clients.openai_chat(_captured(broken_json, "text/event-stream"), stream=True)


def test_exact_grade_keywords() -> None:
    from ollama_conformance import spec

    schema = {"type": "object", "properties": {"id": {"type": "string", "x-exact": {"pattern": "^msg_[0-9a-f]{24}$"}}}}
    assert spec.validate({"id": "msg_01AbC"}, schema, grade="compatible") == []
    assert spec.validate({"id": "msg_01AbC"}, schema, grade="exact") != []
    assert spec.validate({"id": "msg_" + "a" * 24}, schema) == []
    with pytest.raises(ValueError, match="unknown grade"):
        spec.validate({}, schema, grade="loose")
