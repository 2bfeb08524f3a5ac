"""The documents in the form schemathesis 4 needs to check streamed responses (its response_schema_conformance).

Our documents give, for a stream media type, the schema of ONE item (the JSON of one NDJSON line or of one SSE
`data:`). On OpenAPI 3.1 schemathesis reads an SSE media type's `schema` as the schema of the whole *event*
(`{"data": "<text>", "event": ..., "id": ...}`) and decodes `data` only where `contentMediaType` and
`contentSchema` say so; it leaves NDJSON unchecked unless a deserializer is registered. `schemathesis_document`
rewrites the stream media types accordingly (the `[DONE]` sentinel allowed, named events mapped to their own
payload schema) and `register_ndjson_deserializer` lets it read NDJSON bodies as a list of objects.
"""

from __future__ import annotations

import json
from typing import Any

from ollama_conformance.spec.documents import HTTP_METHODS, document

JSON = "application/json"
NDJSON = "application/x-ndjson"


def _json_data(payload_schema: dict[str, Any]) -> dict[str, Any]:
    return {"type": "string", "contentMediaType": JSON, "contentSchema": payload_schema}


def _sse_event_schema(media: dict[str, Any]) -> dict[str, Any]:
    data: dict[str, Any] = _json_data(media["schema"])
    sentinel = media.get("x-sse-sentinel")
    if sentinel:
        # `if` first, so the sentinel (not JSON) is never handed to the JSON decoder
        data = {"if": {"const": sentinel}, "then": True, "else": data}
    envelope: dict[str, Any] = {"type": "object", "required": ["data"], "properties": {"data": data}}
    events: dict[str, Any] = media.get("x-sse-events") or {}
    if events:
        envelope["required"] = ["data", "event"]
        envelope["properties"]["event"] = {"enum": sorted(events)}
        envelope["allOf"] = [
            {
                "if": {"properties": {"event": {"const": name}}, "required": ["event"]},
                "then": {"properties": {"data": _json_data(schema)}},
            }
            for name, schema in events.items()
        ]
    return envelope


def schemathesis_document(surface: str) -> dict[str, Any]:
    """The surface's document with SSE media schemas as event envelopes and NDJSON ones as arrays of items."""
    doc = document(surface)
    for item in doc.get("paths", {}).values():
        for method in HTTP_METHODS:
            op = item.get(method)
            if not op:
                continue
            for response in op.get("responses", {}).values():
                for media in (response.get("content") or {}).values():
                    stream = media.get("x-stream")
                    if stream == "sse":
                        media["schema"] = _sse_event_schema(media)
                    elif stream == "ndjson":
                        media["schema"] = {"type": "array", "items": media["schema"]}
    return doc


def _ndjson(_ctx: Any, response: Any) -> list[Any]:
    text = response.content.decode("utf-8")
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def register_ndjson_deserializer() -> None:
    """Teach schemathesis to read application/x-ndjson bodies as the list of their lines' JSON values."""
    import schemathesis

    schemathesis.deserializer(NDJSON)(_ndjson)
