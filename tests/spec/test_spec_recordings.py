"""Every recording of real Ollama traffic validates against the spec: every response body and every stream item,
for its path, status and media type, plus the stream framing and the request that was sent.

Client-object records (llama-stack) are semantic samples: the Python client's parsed objects, not wire bytes;
they are turned back into the JSON they represent (see recording_formats.client_object_to_wire) and checked as such.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from recording_formats import Exchange
from recordings_check import check_exchange, parse_recording, recording_files

from tests.conftest import recordings_dir

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

ROOT = recordings_dir()
FILES = recording_files(ROOT) if ROOT.is_dir() else []


def _param(rel: str) -> object:
    marks = [pytest.mark.xfail(reason=EXPECTED_FAILURES[rel], strict=True)] if rel in EXPECTED_FAILURES else []
    return pytest.param(rel, marks=marks, id=rel)


def test_recordings_folder_is_there(recordings: Path) -> None:
    assert recordings == ROOT
    assert len(FILES) >= 40


def test_expected_failures_name_real_files() -> None:
    assert set(EXPECTED_FAILURES) <= set(FILES)


@pytest.mark.parametrize("rel", [_param(rel) for rel in FILES])
def test_recording_validates(rel: str) -> None:
    exchanges = parse_recording(ROOT, rel)
    assert exchanges, f"{rel}: no Ollama exchange found"
    report = []
    for exchange in exchanges:
        assert exchange.payloads or exchange.raw_text is not None, f"{exchange.name}: nothing to validate"
        problems = check_exchange(exchange)
        if problems:
            report.append(exchange.name + "\n  " + "\n  ".join(problems[:20]))
    assert not report, "\n".join(report)


def _all_exchanges() -> list[Exchange]:
    out = []
    for rel in FILES:
        if rel not in EXPECTED_FAILURES:
            out += parse_recording(ROOT, rel)
    return out


def test_every_item_was_checked() -> None:
    """The count of validated items, so a parser that silently yields nothing cannot pass."""
    exchanges = _all_exchanges()
    items = sum(len(e.payloads) for e in exchanges)
    streams = [e for e in exchanges if e.content_type in ("application/x-ndjson", "text/event-stream")]
    assert len(exchanges) >= 45
    assert items >= 900
    assert {e.path for e in exchanges} >= {
        "/api/chat", "/api/generate", "/api/embed", "/api/embeddings", "/api/pull",
        "/v1/chat/completions", "/v1/completions", "/v1/models", "/v1/messages",
    }  # fmt: skip
    assert len(streams) >= 18


def _corrupt(value: object) -> object:
    """A damaged copy of a payload: every scalar becomes a list, every list a string. Must never validate."""
    if isinstance(value, dict):
        return {k: _corrupt(v) for k, v in value.items()}
    if isinstance(value, list):
        return "not a list"
    return [value]


def test_corrupted_recordings_are_rejected() -> None:
    """The same checks fail on damaged copies of every recorded payload: the validation can fail."""
    survivors = []
    for exchange in _all_exchanges():
        for n, payload in enumerate(exchange.payloads):
            damaged = Exchange(
                **{**exchange.__dict__, "payloads": [type(payload)(_corrupt(payload.value), payload.event)]}
            )
            damaged.request_body = None
            if not check_exchange(damaged):
                survivors.append(f"{exchange.name} item {n}: {json.dumps(payload.value)[:120]}")
    assert survivors == []
