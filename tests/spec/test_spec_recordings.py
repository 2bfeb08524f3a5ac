"""Every recording of real Ollama traffic validates against the spec: every response body and every stream item,
for its path, status and media type, plus the stream framing and the request that was sent.

Client-object records (llama-stack) are semantic samples: the Python client's parsed objects, not wire bytes;
they are turned back into the JSON they represent (see recording_formats.client_object_to_wire) and checked as such.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from ollama_conformance.spec.schemas import response_media
from recording_formats import Exchange
from recordings_check import EXPECTED_FAILURES, check_exchange, closed, parse_recording, recording_files

from ollama_conformance import spec
from tests.conftest import recordings_dir

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


def test_every_recorded_field_is_described() -> None:
    """The documents are open to extra fields, yet no field real Ollama sent is left undescribed."""
    undescribed = []
    for exchange in _all_exchanges():
        media = response_media(exchange.method, exchange.path, exchange.status, exchange.content_type)
        assert media is not None
        schema = closed(media["schema"])
        for n, payload in enumerate(exchange.payloads):
            undescribed += [f"{exchange.name} item {n}: {line}" for line in spec.validate(payload.value, schema)]
    assert undescribed == []


def test_closed_form_rejects_an_undescribed_field() -> None:
    schema = closed(spec.response_schema("POST", "/api/chat", 200, "application/x-ndjson"))
    chunk = {"model": "m", "created_at": "2025-08-20T13:48:21Z", "message": {"role": "assistant", "content": ""}}
    assert spec.validate({**chunk, "done": False}, schema) == []
    assert spec.validate({**chunk, "done": False, "surprise": 1}, schema) != []
    nested = {**chunk, "message": {**chunk["message"], "surprise": 1}, "done": False}
    assert "at $.message: Unevaluated properties are not allowed ('surprise' was unexpected)" in spec.validate(
        nested, schema
    )
