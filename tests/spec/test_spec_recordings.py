"""Every recording of real Ollama traffic validates against the spec: every response body and every stream item,
for its path, status and media type, plus the stream framing and the request that was sent.

Client-object records (llama-stack) are semantic samples: the Python client's parsed objects, not wire bytes;
they are turned back into the JSON they represent (see spec/recordings.client_object_to_wire) and checked as such.
Each recording is judged as the Ollama version that made it behaved (recordings_check.RECORDED_VERSIONS).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from recordings_check import (
    CLIENT_FILTERED,
    EXPECTED_FAILURES,
    RECORDED_VERSIONS,
    closed,
    parse_recording,
    recorded_version,
    recording_files,
)

from ollama_conformance import spec
from ollama_conformance.spec.recordings import Exchange, check_exchange
from ollama_conformance.spec.schemas import response_media
from tests.conftest import recordings_dir

ROOT = recordings_dir()
FILES = recording_files(ROOT) if ROOT.is_dir() else []
NOT_VALID = {**EXPECTED_FAILURES, **{rel: why for rel, (_v, why) in CLIENT_FILTERED.items()}}


# Tests reading the recordings use the `recordings` fixture (tests/conftest.py): absent, a one-line skip on a fresh
# clone, a failure where CI=true. With none, the parametrized test gets one placeholder so that line is what shows.
NEEDS_RECORDINGS = pytest.mark.usefixtures("recordings")


def _param(rel: str) -> object:
    marks = [pytest.mark.xfail(reason=NOT_VALID[rel], strict=True)] if rel in NOT_VALID else []
    return pytest.param(rel, marks=marks, id=rel)


def test_recordings_folder_is_there(recordings: Path) -> None:
    assert recordings == ROOT
    assert len(FILES) >= 40


@NEEDS_RECORDINGS
def test_expected_failures_name_real_files() -> None:
    assert set(NOT_VALID) | set(RECORDED_VERSIONS) <= set(FILES)


@NEEDS_RECORDINGS
@pytest.mark.parametrize("rel", [_param(rel) for rel in FILES] or [pytest.param("", id="recordings-missing")])
def test_recording_validates(rel: str) -> None:
    """Valid as the Ollama version that made it behaved."""
    exchanges = parse_recording(ROOT, rel)
    assert exchanges, f"{rel}: no Ollama exchange found"
    report = []
    for exchange in exchanges:
        assert exchange.payloads or exchange.raw_text is not None, f"{exchange.name}: nothing to validate"
        problems = check_exchange(exchange, recorded_version(rel))
        if problems:
            report.append(exchange.name + "\n  " + "\n  ".join(problems[:20]))
    assert not report, "\n".join(report)


@NEEDS_RECORDINGS
@pytest.mark.parametrize("rel", sorted(RECORDED_VERSIONS))
def test_version_drift_is_caught_at_the_spec_version(rel: str) -> None:
    """A recording of an older Ollama that is valid for its version is not valid for the spec's (0.33): the
    version annotations are what make the difference."""
    problems = [p for e in parse_recording(ROOT, rel) for p in check_exchange(e)]
    assert problems, f"{rel} validates at {spec.SPEC_VERSION}: its RECORDED_VERSIONS entry is not needed"


def _all_exchanges() -> list[Exchange]:
    out = []
    for rel in FILES:
        if rel not in NOT_VALID and rel not in RECORDED_VERSIONS:
            out += parse_recording(ROOT, rel)
    return out


@NEEDS_RECORDINGS
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


@NEEDS_RECORDINGS
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


@NEEDS_RECORDINGS
def test_every_recorded_field_is_described() -> None:
    """The documents are open to extra fields, yet no field real Ollama sent is left undescribed."""
    undescribed = []
    for exchange in _all_exchanges():
        media = response_media(exchange.method, exchange.path, exchange.status, exchange.content_type)
        assert media is not None
        schema = closed(media["schema"])
        for n, payload in enumerate(exchange.payloads):
            # the compatible grade: this asks whether fields are described, not whether ids have Ollama's form
            lines = spec.validate(payload.value, schema, grade="compatible")
            undescribed += [f"{exchange.name} item {n}: {line}" for line in lines]
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
