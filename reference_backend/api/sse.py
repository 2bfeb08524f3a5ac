"""Server-sent events of the compatibility surfaces, and their JSON bodies as Ollama's /v1 writers send them.

The bytes come from the one Go-JSON encoder (`wire.go_json`); a non-stream body ends with a newline as Go's
`json.Encoder.Encode` writes it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from starlette.responses import Response, StreamingResponse

from ollama_conformance.reference_backend.api import wire
from ollama_conformance.reference_backend.api.wire import JSON, JSON_UTF8, go_json

__all__ = [
    "DONE_SENTINEL",
    "JSON",
    "JSON_UTF8",
    "go_json",
    "sse_data",
    "sse_event",
    "sse_response",
    "writer_json_response",
]

DONE_SENTINEL = b"data: [DONE]\n\n"


def sse_data(obj: Any) -> bytes:
    """One OpenAI-style event: `data: <json>` and a blank line."""
    return f"data: {go_json(obj)}\n\n".encode()


def sse_event(event: str, obj: Any, *, sort_keys: bool = False) -> bytes:
    """One named event (Anthropic, Responses): `event: <name>`, `data: <json>`, blank line."""
    return f"event: {event}\ndata: {go_json(obj, sort_keys=sort_keys)}\n\n".encode()


def writer_json_response(obj: Any, status_code: int = 200, content_type: str = JSON) -> Response:
    """`wire.json_response` as the /v1 and /v1/messages response writers call it: Go's json.Encoder (trailing
    newline), bare `application/json` unless told."""
    return wire.json_response(obj, status_code, content_type, newline=True)


def sse_response(body: AsyncIterator[bytes], headers: dict[str, str] | None = None) -> StreamingResponse:
    """A `text/event-stream` response (no charset, as Ollama sends it)."""
    response = StreamingResponse(body, status_code=200, headers=headers)
    # Starlette would add "; charset=utf-8" to a text/* media type; Ollama sends the bare type.
    response.headers["content-type"] = "text/event-stream"
    return response
