"""schemathesis 4 reads the documents the way we do: `schemathesis_document` gives its response checks the same
verdict as ours on every recording, and it rejects damaged stream items, unknown SSE events and a payload filed
under the wrong event name."""

from __future__ import annotations

import datetime
import json
from functools import cache
from typing import Any

import httpx
import pytest
from recordings_check import CLIENT_FILTERED, EXPECTED_FAILURES, RECORDED_VERSIONS, parse_recording, recording_files

from ollama_conformance import spec
from ollama_conformance.spec.recordings import Exchange
from tests.conftest import recordings_dir, require_recordings

ROOT = recordings_dir()
TS = "2025-08-20T13:48:21.068526Z"


@cache
def _schema(surface: str) -> Any:
    import schemathesis

    spec.register_ndjson_deserializer()
    return schemathesis.openapi.from_dict(spec.schemathesis_document(surface))


def _response(method: str, path: str, status: int, content_type: str, body: str) -> httpx.Response:
    response = httpx.Response(
        status,
        headers={"content-type": content_type},
        content=body.encode(),
        request=httpx.Request(method, "http://127.0.0.1" + path),
    )
    response.read()
    response.elapsed = datetime.timedelta(milliseconds=1)
    return response


def _problems(method: str, path: str, status: int, content_type: str, body: str) -> str | None:
    found = spec.find_path(path)
    assert found is not None
    operation = _schema(found[0])[found[1]][method]
    try:
        operation.validate_response(_response(method, path, status, content_type, body))
    except Exception as exc:  # schemathesis raises its own failure group types
        return f"{type(exc).__name__}: {str(exc)[:300]}"
    return None


def _wire_body(exchange: Exchange) -> str:
    if exchange.content_type == "application/x-ndjson":
        return "".join(json.dumps(p.value) + "\n" for p in exchange.payloads)
    if exchange.content_type == "text/event-stream":
        out = ""
        for payload in exchange.payloads:
            out += f"event: {payload.event}\n" if payload.event else ""
            out += f"data: {json.dumps(payload.value)}\n\n"
        return out + ("data: [DONE]\n\n" if exchange.sse_sentinel else "")
    return json.dumps(exchange.payloads[0].value) if exchange.payloads else ""


def test_schemathesis_agrees_with_our_checks_on_every_recording() -> None:
    require_recordings()
    # schemathesis reads the documents as they are: the spec's version (0.33), so the older recordings fail too
    invalid_at_spec_version = {*EXPECTED_FAILURES, *CLIENT_FILTERED, *RECORDED_VERSIONS}
    disagreements = []
    checked = 0
    for rel in recording_files(ROOT):
        for exchange in parse_recording(ROOT, rel):
            verdict = _problems(
                exchange.method, exchange.path, exchange.status, exchange.content_type, _wire_body(exchange)
            )
            checked += 1
            expected_to_fail = rel in invalid_at_spec_version
            if (verdict is not None) != expected_to_fail:
                disagreements.append(f"{exchange.name}: {verdict or 'accepted, but listed as an expected failure'}")
    assert checked >= 45
    assert disagreements == []


CHUNK = {
    "id": "chatcmpl-1",
    "object": "chat.completion.chunk",
    "created": 1,
    "model": "m",
    "system_fingerprint": "fp_ollama",
    "choices": [{"index": 0, "delta": {"role": "assistant", "content": "x"}, "finish_reason": None}],
}
FINISH = {**CHUNK, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}


def _sse(*events: tuple[str | None, object]) -> str:
    out = ""
    for name, data in events:
        out += f"event: {name}\n" if name else ""
        out += f"data: {data if isinstance(data, str) else json.dumps(data)}\n\n"
    return out


@pytest.mark.parametrize(
    ("path", "body", "ok"),
    [
        ("/v1/chat/completions", _sse((None, CHUNK), (None, FINISH), (None, "[DONE]")), True),
        (
            "/v1/chat/completions",
            _sse((None, CHUNK), (None, {**FINISH, "choices": [{"index": 0, "delta": {}, "finish_reason": "done"}]})),
            False,
        ),
        ("/v1/chat/completions", _sse((None, {**CHUNK, "object": "chat.completion"})), False),
        ("/v1/chat/completions", _sse((None, "[NOT DONE]")), False),
        ("/v1/messages", _sse(("message_stop", {"type": "message_stop"})), True),
        ("/v1/messages", _sse(("ping", {"type": "ping"})), False),
        ("/v1/messages", _sse(("message_stop", {"type": "content_block_stop", "index": 0})), False),
        ("/v1/responses", _sse(("response.output_text.delta", {"type": "response.output_text.delta"})), False),
    ],
    ids=[
        "chat-ok",
        "chat-bad-finish",
        "chat-bad-object",
        "chat-bad-sentinel",
        "msg-ok",
        "msg-ping",
        "msg-wrong-event",
        "resp-missing-fields",
    ],
)
def test_schemathesis_judges_sse_events(path: str, body: str, ok: bool) -> None:
    verdict = _problems("POST", path, 200, "text/event-stream", body)
    assert (verdict is None) == ok, verdict


def test_schemathesis_judges_ndjson_items() -> None:
    chunk = {"model": "m", "created_at": TS, "message": {"role": "assistant", "content": "x"}, "done": False}
    final = {**chunk, "done": True, "done_reason": "stop", "total_duration": 1, "eval_count": 1}
    good = json.dumps(chunk) + "\n" + json.dumps(final) + "\n"
    assert _problems("POST", "/api/chat", 200, "application/x-ndjson", good) is None
    bad = json.dumps(chunk) + "\n" + json.dumps({**final, "done_reason": None}) + "\n"
    assert _problems("POST", "/api/chat", 200, "application/x-ndjson", bad) is not None
    assert _problems("POST", "/api/chat", 200, "application/x-ndjson", good + '{"error": "boom"}\n') is None


@pytest.mark.parametrize("surface", spec.SURFACES)
def test_schemathesis_document_is_valid_openapi(surface: str) -> None:
    from openapi_spec_validator import validate as validate_openapi

    doc = spec.schemathesis_document(surface)
    validate_openapi(doc)
    assert doc["paths"].keys() == spec.document(surface)["paths"].keys()
