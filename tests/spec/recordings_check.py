"""Load every recording and check each exchange against the spec (shared by the tests and by nothing else)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ollama_conformance.spec.schemas import response_media
from recording_formats import (
    JSON,
    NDJSON,
    SSE,
    Exchange,
    RecordingFormatError,
    parse_body_only,
    parse_cassette,
    parse_httprr,
    parse_llamastack,
)

from ollama_conformance import spec

# Body-only files carry no request: the recordings README says which endpoint each one answers.
BODY_ONLY: dict[str, tuple[str, str, str]] = {
    "prism-php__prism/generate-text-with-a-prompt-1.json": ("POST", "/api/chat", JSON),
    "prism-php__prism/generate-text-with-multiple-tools-1.json": ("POST", "/api/chat", JSON),
    "prism-php__prism/structured-1.json": ("POST", "/api/chat", JSON),
    "prism-php__prism/embeddings-multiple-inputs-1.json": ("POST", "/api/embed", JSON),
    # `.sse` is prism's naming; the content is NDJSON
    "prism-php__prism/stream-with-thinking-1.sse": ("POST", "/api/chat", NDJSON),
    "prism-php__prism/stream-with-tools-1.sse": ("POST", "/api/chat", NDJSON),
}

# A recording that cannot validate for a reason outside the spec: file -> reason. Strict: if one starts to pass,
# the entry must go.
EXPECTED_FAILURES: dict[str, str] = {
    "prism-php__prism/stream-with-thinking-1.sse": (
        "hand-edited, not what Ollama sends: its chunks omit message.content (api.Message.Content has no "
        "omitempty, so Ollama always sends it), the final chunk has no metrics, and every created_at is a round "
        "second (10:00:00Z, 10:00:01Z, ...)"
    ),
    "prism-php__prism/generate-text-with-multiple-tools-1.json": (
        "Ollama changed: recorded 2025-06, before v0.12.6 (#12625 'types: send index for tool calls'); "
        "function.index then had omitempty, so index 0 was left out. 0.33 always sends it"
    ),
    "prism-php__prism/stream-with-tools-1.sse": (
        "Ollama changed: recorded 2025-06, before v0.12.6 (#12625); the first tool call's function.index (0) was "
        "omitted by omitempty. 0.33 always sends it"
    ),
    "llamastack__llama-stack/1748d5358e4c3440db43059e7fe37918bea64f182bf3d38effdebd59139129c7.json": (
        "client object: /api/ps entries lack context_length, which Ollama sends (no omitempty) since v0.9.7 "
        "(#11331, 2025-07) and this 2025-10 server sent; the recording client's ProcessResponse model had no such "
        "field, so the recorder never saw it"
    ),
}

# Files in the folder that are documentation, not recordings.
NOT_RECORDINGS = frozenset({"README.md"})


def recording_files(root: Path) -> list[str]:
    return sorted(
        str(p.relative_to(root))
        for p in root.rglob("*")
        if p.is_file() and str(p.relative_to(root)) not in NOT_RECORDINGS
    )


def parse_recording(root: Path, rel: str) -> list[Exchange]:
    path = root / rel
    if rel in BODY_ONLY:
        method, api_path, content_type = BODY_ONLY[rel]
        return parse_body_only(path, rel, method, api_path, content_type)
    if path.suffix == ".httprr":
        return parse_httprr(path, rel)
    if path.suffix in (".yaml", ".yml"):
        return parse_cassette(path, rel)
    if rel.startswith("llamastack__llama-stack/") and path.suffix == ".json":
        return parse_llamastack(path, rel)
    raise RecordingFormatError(f"{rel}: no parser knows this recording format")


def _is_final_native(value: Any) -> bool:
    return isinstance(value, dict) and value.get("done") is True


def _framing_problems(exchange: Exchange, media: dict[str, Any]) -> list[str]:
    """Stream-level invariants the per-item schemas cannot express."""
    items = [p.value for p in exchange.payloads]
    problems: list[str] = []
    if not items:
        return ["stream has no items"]
    if media.get("x-stream") == "ndjson" and exchange.path in ("/api/chat", "/api/generate"):
        finals = [i for i, v in enumerate(items) if _is_final_native(v)]
        errors = [i for i, v in enumerate(items) if isinstance(v, dict) and "error" in v]
        if errors:
            if errors != [len(items) - 1]:
                problems.append("an error line must be the last line of the stream")
        elif finals != [len(items) - 1]:
            problems.append(f"exactly one done:true chunk, last, expected; found at {finals} of {len(items)}")
    if media.get("x-stream") == "sse" and exchange.fidelity in ("cassette", "raw-wire", "raw-lines"):
        # framing is only visible where the wire text was kept (client objects lose it)
        sentinel = media.get("x-sse-sentinel")
        if sentinel and not exchange.sse_sentinel:
            problems.append(f"SSE stream did not end with data: {sentinel}")
        if not sentinel and exchange.sse_sentinel:
            problems.append("SSE stream sent a [DONE] sentinel the spec does not declare")
    if exchange.path == "/v1/messages" and exchange.content_type == SSE:
        types = [v.get("type") for v in items if isinstance(v, dict)]
        if types[:1] != ["message_start"] or types[-1:] != ["message_stop"]:
            problems.append(
                f"Anthropic stream must start with message_start and end with message_stop, got {types[:1]}..{types[-1:]}"
            )
    return problems


def check_exchange(exchange: Exchange) -> list[str]:
    """Every way the exchange disagrees with the spec ([] when it conforms)."""
    found = spec.find_path(exchange.path)
    if found is None:
        return [f"path {exchange.path} is not in the spec"]
    try:
        statuses = spec.declared_statuses(exchange.method, exchange.path)
    except KeyError:
        return [f"{exchange.method} {exchange.path} is not in the spec"]
    if str(exchange.status) not in statuses:
        return [f"status {exchange.status} is not declared for {exchange.method} {exchange.path} ({statuses})"]
    problems: list[str] = []
    declared = spec.response_media_types(exchange.method, exchange.path, exchange.status)
    if exchange.content_type not in declared:
        return [f"content type {exchange.content_type!r} is not declared for status {exchange.status} ({declared})"]
    media = response_media(exchange.method, exchange.path, exchange.status, exchange.content_type) or {}
    item_schema = media.get("schema")
    if item_schema is None:
        return [f"no schema for {exchange.content_type} at status {exchange.status}"]
    events = media.get("x-sse-events") or {}
    for n, payload in enumerate(exchange.payloads):
        where = f"item {n}" if media.get("x-stream") else "body"
        for line in spec.validate(payload.value, item_schema):
            problems.append(f"{where}: {line}")
        if events and exchange.fidelity != "client-object":
            if payload.event not in events:
                problems.append(f"{where}: SSE event {payload.event!r} is not declared ({sorted(events)})")
            else:
                if isinstance(payload.value, dict) and payload.value.get("type") != payload.event:
                    problems.append(f"{where}: data type {payload.value.get('type')!r} != event {payload.event!r}")
                for line in spec.validate(payload.value, events[payload.event]):
                    problems.append(f"{where} (event {payload.event}): {line}")
    if media.get("x-stream"):
        problems += _framing_problems(exchange, media)
    if exchange.status == 200 and isinstance(exchange.request_body, dict):
        schema = spec.request_schema(exchange.method, exchange.path)
        if schema is not None:
            problems += [f"request: {line}" for line in spec.validate(exchange.request_body, schema)]
    return problems


def closed(node: Any, top: bool = True) -> Any:
    """A copy of a resolved schema where objects admit no property the spec does not describe.

    The documents stay open (real servers add fields); this closed form checks the other promise, that every field
    Ollama was seen to send is described. `unevaluatedProperties` is set on the outermost object of each
    composition, so properties contributed by `allOf` members count as described.
    """
    if isinstance(node, list):
        return [closed(n) for n in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key == "properties":
            out[key] = {name: closed(sub) for name, sub in value.items()}
        elif key in ("items", "additionalProperties", "not", "if", "then", "else"):
            out[key] = closed(value) if isinstance(value, dict) else value
        elif key in ("oneOf", "anyOf"):
            out[key] = [closed(sub) for sub in value]
        elif key == "allOf":
            out[key] = [closed(sub, top=False) for sub in value]
        else:
            out[key] = value
    is_object = node.get("type", "object") in ("object", ["object", "null"])
    if top and is_object and ("properties" in node or "allOf" in node) and "additionalProperties" not in node:
        out["unevaluatedProperties"] = False
    return out
