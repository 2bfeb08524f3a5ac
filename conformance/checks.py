"""What the suite's tests call: send a request, read the whole answer with a deadline, check it against spec/.

`Api.call` returns a `Captured` exchange. `Api.contract` asserts the three things the spec says about every
response: a declared status, a declared media type, and a body (or every stream item) valid against the schema.
The `*_error` helpers check an error in the shape of the surface it came from.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from ollama_conformance.conformance.streams import (
    NDJSON,
    SSE,
    Captured,
    SseEvent,
    capture,
    check_ndjson_grammar,
    parse_ndjson,
    parse_sse,
)
from ollama_conformance.conformance.target import Target

from ollama_conformance import spec


class Api:
    """Requests to the target, with spec-driven checks on what comes back."""

    def __init__(self, client: httpx.Client, target: Target) -> None:
        self.client = client
        self.target = target

    def call(self, method: str, path: str, body: Any = None, *, raw: bytes | None = None,
             headers: dict[str, str] | None = None) -> Captured:
        kwargs: dict[str, Any] = {"headers": headers or {}}
        if raw is not None:
            kwargs["content"] = raw
        elif body is not None:
            kwargs["json"] = body
        return capture(self.client, method, path, deadline_s=self.target.timeout_s * 0.9, **kwargs)

    def post(self, path: str, body: Any = None, **kwargs: Any) -> Captured:
        return self.call("POST", path, body, **kwargs)

    def get(self, path: str) -> Captured:
        return self.call("GET", path)

    # --- contract -------------------------------------------------------------------------------------------

    def contract(self, method: str, path: str, got: Captured) -> list[Any]:
        """Assert status, media type and schema per spec/; return the body items (one for JSON, n for streams)."""
        where = f"{method} {path}"
        declared = spec.declared_statuses(method, path)
        status = str(got.status)
        assert status in declared or f"{status[0]}XX" in declared or "default" in declared, (
            f"{where}: status {got.status} is not declared by the spec (declared: {declared}); body {got.text[:200]!r}"
        )
        media_types = spec.response_media_types(method, path, got.status)
        if not media_types:
            assert got.text == "", f"{where}: status {got.status} has no body in the spec, got {got.text[:120]!r}"
            return []
        assert got.media_type in media_types, (
            f"{where}: Content-Type {got.headers.get('content-type')!r} is not one the spec declares {media_types}"
        )
        schema = spec.response_schema(method, path, got.status, got.media_type)
        items = self.items(got)
        if schema is not None:
            for index, item in enumerate(items):
                problems = spec.validate(item, schema)
                label = f"item {index}" if got.media_type in (NDJSON, SSE) else "body"
                assert not problems, f"{where}: {label} does not match the spec: " + "; ".join(problems[:5])
        return items

    def items(self, got: Captured) -> list[Any]:
        """The body as JSON values: one for application/json, one per NDJSON line, one per SSE JSON event."""
        if got.media_type == NDJSON:
            stream = parse_ndjson(got.text)
            assert not stream.problems, "NDJSON framing: " + "; ".join(stream.problems[:5])
            return stream.objects
        if got.media_type == SSE:
            return [json.loads(e.data) for e in self.sse(got) if e.data != "[DONE]"]
        if got.media_type.startswith("text/"):
            return [got.text]
        try:
            return [got.json()]
        except ValueError as exc:
            raise AssertionError(f"the body is not JSON ({exc}): {got.text[:120]!r}") from exc

    # --- streams --------------------------------------------------------------------------------------------

    def ndjson(self, got: Captured, *, allow_error_end: bool = False) -> list[dict[str, Any]]:
        """A native stream: 200, application/x-ndjson, framing and grammar correct. Returns the objects."""
        assert got.status == 200, f"status {got.status}, expected 200; body {got.text[:200]!r}"
        assert got.media_type == NDJSON, f"Content-Type {got.headers.get('content-type')!r}, expected {NDJSON}"
        stream = parse_ndjson(got.text)
        assert not stream.problems, "NDJSON framing: " + "; ".join(stream.problems[:5])
        problems = check_ndjson_grammar(stream.objects, allow_error_end=allow_error_end)
        assert not problems, "NDJSON stream grammar: " + "; ".join(problems[:5])
        return stream.objects

    def sse(self, got: Captured) -> list[SseEvent]:
        assert got.status == 200, f"status {got.status}, expected 200; body {got.text[:200]!r}"
        assert got.media_type == SSE, f"Content-Type {got.headers.get('content-type')!r}, expected {SSE}"
        stream = parse_sse(got.text)
        assert not stream.problems, "SSE framing: " + "; ".join(stream.problems[:5])
        return stream.events

    def single(self, got: Captured) -> dict[str, Any]:
        """A non-stream answer: 200, application/json, one JSON object."""
        assert got.status == 200, f"status {got.status}, expected 200; body {got.text[:200]!r}"
        assert got.media_type == "application/json", (
            f"Content-Type {got.headers.get('content-type')!r}, expected application/json"
        )
        return _json_object(got)

    # --- errors ---------------------------------------------------------------------------------------------

    def native_error(self, got: Captured, status: int | tuple[int, ...]) -> str:
        """A native error: the expected status, JSON, `{"error": "<non-empty message>"}`. Returns the message."""
        body = _error_object(got, status)
        assert isinstance(body.get("error"), str) and body["error"], f"error body is not {{\"error\": string}}: {got.text[:200]!r}"
        return body["error"]

    def openai_error(self, got: Captured, status: int, error_type: str) -> str:
        body = _error_object(got, status)
        error = body.get("error")
        assert isinstance(error, dict), f"error body is not {{\"error\": {{message, type, param, code}}}}: {got.text[:200]!r}"
        assert isinstance(error.get("message"), str) and error["message"], f"error.message missing: {got.text[:200]!r}"
        assert error.get("type") == error_type, f"error.type {error.get('type')!r}, expected {error_type!r}"
        for key in ("param", "code"):
            assert key in error, f"error.{key} missing (OpenAI clients read it): {got.text[:200]!r}"
        return error["message"]

    def anthropic_error(self, got: Captured, status: int, error_type: str) -> str:
        body = _error_object(got, status)
        assert body.get("type") == "error", f"error body type {body.get('type')!r}, expected 'error': {got.text[:200]!r}"
        error = body.get("error")
        assert isinstance(error, dict) and error.get("type") == error_type, (
            f"error.type {error.get('type') if isinstance(error, dict) else None!r}, expected {error_type!r}"
        )
        assert isinstance(error.get("message"), str) and error["message"], "error.message missing"
        return error["message"]


def _error_object(got: Captured, status: int | tuple[int, ...]) -> dict[str, Any]:
    """An error answer of every surface: the expected status, application/json, a JSON object."""
    statuses = (status,) if isinstance(status, int) else status
    assert got.status in statuses, f"status {got.status}, expected {' or '.join(map(str, statuses))}; body {got.text[:200]!r}"
    assert got.media_type == "application/json", (
        f"error Content-Type {got.headers.get('content-type')!r}, expected application/json"
    )
    return _json_object(got)


def _json_object(got: Captured) -> dict[str, Any]:
    try:
        body = got.json()
    except ValueError as exc:
        raise AssertionError(f"the body is not JSON ({exc}): {got.text[:200]!r}") from exc
    assert isinstance(body, dict), f"the body is not a JSON object: {got.text[:200]!r}"
    return body


def final(objects: list[dict[str, Any]]) -> dict[str, Any]:
    """The done:true object of a checked NDJSON stream."""
    return objects[-1]


def output_of(obj: dict[str, Any], key: str = "response") -> str:
    """The output one native object carries (generate: `response`; chat, key "message": `message.content`)."""
    if key == "message":
        return (obj.get("message") or {}).get("content") or ""
    return obj.get(key) or ""


def generated_text(objects: list[dict[str, Any]], key: str = "response") -> str:
    """The concatenated output of a native stream (generate: `response`; chat: `message.content`)."""
    return "".join(output_of(o, key) for o in objects)


def check_num_predict_bound(objects: list[dict[str, Any]], limit: int, *, stream: bool, key: str) -> None:
    """num_predict bounds eval_count (and, streamed, the chunks with output); done_reason says which end it was."""
    last = final(objects)
    assert last.get("eval_count", 0) <= limit, f"eval_count {last.get('eval_count')} > num_predict {limit}"
    if stream:
        with_text = [o for o in objects if output_of(o, key)]
        assert len(with_text) <= limit, f"{len(with_text)} chunks with output for num_predict {limit}"
    expected = "length" if last.get("eval_count") == limit else "stop"
    assert last.get("done_reason") == expected, f"eval_count {last.get('eval_count')}, done_reason {last.get('done_reason')!r}"


def check_stop_sequence(api: Api, send: Callable[[dict[str, Any]], Captured], greedy: dict[str, Any], key: str) -> None:
    """A stop string taken from the model's own greedy output (beyond its start) ends the same greedy output just
    before it, with done_reason "stop". `send(options)` makes the native streamed request."""
    pieces = [piece for piece in (output_of(o, key) for o in api.ndjson(send(greedy))) if piece]
    full = "".join(pieces)
    stop = next((p.strip() for p in pieces[1:] if p.strip() and full.find(p.strip()) > 0), None)
    if stop is None:
        pytest.skip(f"the greedy output {full!r} offers no stop string to test with")
    expected = full[: full.find(stop)]
    stopped = api.ndjson(send({**greedy, "stop": [stop]}))
    text = generated_text(stopped, key)
    assert stop not in text, f"the output {text!r} contains the stop sequence {stop!r}"
    assert final(stopped).get("done_reason") == "stop", f"done_reason {final(stopped).get('done_reason')!r}, expected 'stop'"
    assert text == expected, f"with stop {stop!r} the output is {text!r}, expected {expected!r} (same greedy text up to it)"
