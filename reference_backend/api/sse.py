"""Byte-level output of the compatibility surfaces: JSON encoded as Go's encoding/json writes it, SSE framing.

Ollama's /v1 and /v1/messages writers marshal with Go's encoder: compact, HTML-unsafe characters escaped
(`<` `>` `&` U+2028 U+2029), and `json.Encoder.Encode` ends a non-stream body with a newline. Copying that
keeps our bytes comparable with recordings of the real server.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from starlette.responses import Response, StreamingResponse

_GO_ESCAPES = str.maketrans({"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"})

DONE_SENTINEL = b"data: [DONE]\n\n"


def go_json(obj: Any, *, sort_keys: bool = False) -> str:
    """Compact JSON as Go's json.Marshal writes it. `sort_keys` mimics a Go map (keys sorted)."""
    # The escaped characters can only occur inside JSON strings, so a plain translation is safe.
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"), sort_keys=sort_keys).translate(_GO_ESCAPES)


def sse_data(obj: Any) -> bytes:
    """One OpenAI-style event: `data: <json>` and a blank line."""
    return f"data: {go_json(obj)}\n\n".encode()


def sse_event(event: str, obj: Any, *, sort_keys: bool = False) -> bytes:
    """One named event (Anthropic, Responses): `event: <name>`, `data: <json>`, blank line."""
    return f"event: {event}\ndata: {go_json(obj, sort_keys=sort_keys)}\n\n".encode()


JSON = "application/json"
# What gin's c.AbortWithStatusJSON sends: Ollama's middlewares answer their own validation errors with it, while
# bodies that pass through their response writers get the writer's bare `application/json`.
JSON_UTF8 = "application/json; charset=utf-8"


def json_response(obj: Any, status_code: int = 200, content_type: str = JSON) -> Response:
    """A body as Go's json.Encoder writes it (trailing newline)."""
    response = Response((go_json(obj) + "\n").encode(), status_code=status_code)
    response.headers["content-type"] = content_type
    return response


def sse_response(body: AsyncIterator[bytes], headers: dict[str, str] | None = None) -> StreamingResponse:
    """A `text/event-stream` response (no charset, as Ollama sends it)."""
    response = StreamingResponse(body, status_code=200, headers=headers)
    # Starlette would add "; charset=utf-8" to a text/* media type; Ollama sends the bare type.
    response.headers["content-type"] = "text/event-stream"
    return response
