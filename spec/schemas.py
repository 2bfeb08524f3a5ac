"""Schemas by (method, path, status, media type), fully resolved."""

from __future__ import annotations

import copy
from functools import cache
from typing import Any

from ollama_conformance.spec.documents import _load, find_operation, media_type_base
from ollama_conformance.spec.resolve import resolve
from ollama_conformance.spec.versions import at_version

# Every schema handed out is the spec's version of it (spec/versions.py): fields Ollama removed before that version
# (`x-ollama-until`) are not part of it. Older versions: `spec.validate(..., ollama_version=...)`.


def _operation(method: str, path: str) -> tuple[str, dict[str, Any]]:
    found = find_operation(method, path)
    if found is None:
        raise KeyError(f"no operation {method.upper()} {path} in the spec")
    surface, _template, op = found
    return surface, op


def _content(surface: str, holder: dict[str, Any]) -> dict[str, Any]:
    """The `content` map of a request body or response, following a `$ref` to components."""
    holder = resolve(holder, _load(surface))
    return {media_type_base(k): v for k, v in (holder.get("content") or {}).items()}


def request_schema(method: str, path: str, media_type: str = "application/json") -> dict[str, Any] | None:
    """The request body schema of an operation for a media type, or None if it takes no such body."""
    surface, op = _operation(method, path)
    body = op.get("requestBody")
    if body is None:
        return None
    media = _content(surface, body).get(media_type_base(media_type))
    if media is None or "schema" not in media:
        return None
    return at_version(media["schema"], None)


def _response(surface: str, op: dict[str, Any], status: int | str) -> dict[str, Any] | None:
    responses = op.get("responses", {})
    key = str(status)
    if key in responses:
        return responses[key]
    wildcard = f"{key[0]}XX" if len(key) == 3 else None
    if wildcard in responses:
        return responses[wildcard]
    return responses.get("default")


def declared_statuses(method: str, path: str) -> list[str]:
    """The response status keys an operation declares (e.g. ["200", "400", "404"])."""
    _surface, op = _operation(method, path)
    return [str(k) for k in op.get("responses", {})]


def response_media_types(method: str, path: str, status: int | str) -> list[str]:
    """Media types declared for a response ([] for a declared response without a body)."""
    surface, op = _operation(method, path)
    response = _response(surface, op, status)
    if response is None:
        raise KeyError(f"{method.upper()} {path} declares no response {status}")
    return list(_content(surface, response))


@cache
def _resolved_media(method: str, template: str, status: str, media_type: str) -> dict[str, Any] | None:
    surface, op = _operation(method, template)
    response = _response(surface, op, status)
    if response is None:
        return None
    media = _content(surface, response).get(media_type)
    return None if media is None else at_version(media, None)


def response_media(method: str, path: str, status: int | str, media_type: str) -> dict[str, Any] | None:
    """The whole resolved Media Type Object (schema, x-stream, x-sse-events, ...), or None. A copy: callers may mutate."""
    found = find_operation(method, path)
    if found is None:
        raise KeyError(f"no operation {method.upper()} {path} in the spec")
    media = _resolved_media(method.upper(), found[1], str(status), media_type_base(media_type))
    return copy.deepcopy(media)


def response_schema(method: str, path: str, status: int | str, media_type: str) -> dict[str, Any] | None:
    """The response schema; for a stream media type, the schema of ONE item (NDJSON object / SSE data payload)."""
    media = response_media(method, path, status, media_type)
    if media is None:
        return None
    return media.get("schema")


def component_schema(surface: str, name: str) -> dict[str, Any]:
    """A named component schema of a surface, fully resolved."""
    doc = _load(surface)
    schemas = doc.get("components", {}).get("schemas", {})
    if name not in schemas:
        raise KeyError(f"no component schema {name!r} in the {surface} document")
    return at_version(resolve(schemas[name], doc), None)
