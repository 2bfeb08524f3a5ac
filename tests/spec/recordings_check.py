"""What the tests know about the shared recordings (which endpoint a body-only file answers, which Ollama version
made each, which cannot validate and why); the parsers and the check are the product's (spec/recordings.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ollama_conformance.spec.recordings import (
    JSON,
    NDJSON,
    Exchange,
    RecordingFormatError,
    parse_body_only,
    parse_cassette,
    parse_httprr,
    parse_llamastack,
)

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

# The Ollama version each recording was made with, where it is older than the spec's and that matters: the files
# show no version (no /api/version call), so it is the last release before the recording date. Validation judges
# these as that version behaved (spec/versions.py).
RECORDED_VERSIONS: dict[str, str] = {
    # recorded 2025-06-09; Ollama 0.9.0 was current. function.index had omitempty until 0.12.6 (#12625).
    "prism-php__prism/generate-text-with-multiple-tools-1.json": "0.9.0",
    "prism-php__prism/stream-with-tools-1.sse": "0.9.0",
}

# A recording that cannot validate for a reason outside the spec and any version: file -> reason. Strict: if one
# starts to pass, the entry must go.
EXPECTED_FAILURES: dict[str, str] = {
    "prism-php__prism/stream-with-thinking-1.sse": (
        "hand-edited, not what Ollama sends: its chunks omit message.content (api.Message.Content has no "
        "omitempty, so Ollama always sends it), the final chunk has no metrics, and every created_at is a round "
        "second (10:00:00Z, 10:00:01Z, ...)"
    ),
}

# Recordings whose client-side recorder dropped fields the server sent (valid for no version as recorded):
# file -> (the version it was made with, why).
# (The llama-stack client object whose /api/ps entries lack context_length left this list with issue 21: client
# objects are graded compatible, and ollama-python types context_length Optional.)
CLIENT_FILTERED: dict[str, tuple[str, str]] = {}

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


def recorded_version(rel: str) -> str | None:
    return RECORDED_VERSIONS.get(rel) or (CLIENT_FILTERED[rel][0] if rel in CLIENT_FILTERED else None)


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
