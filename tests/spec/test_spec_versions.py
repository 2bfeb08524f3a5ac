"""Version history in the spec: the annotations cover the changes that matter, `spec.validate(...,
ollama_version=...)` judges as that version behaved, and `ollama-conformance spec --since X` lists what changed."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from ollama_conformance import spec
from ollama_conformance.spec.versions import (
    RELEASES,
    VersionError,
    at_version,
    boundaries,
    candidate_versions,
    changes,
    parse_version,
    release_before,
)

TS = "2025-06-09T10:00:00Z"
CALL = {"function": {"name": "get_weather", "arguments": {"city": "Paris"}}}
CHAT_FINAL = {
    "model": "m",
    "created_at": TS,
    "message": {"role": "assistant", "content": "", "tool_calls": [CALL]},
    "done": True,
    "done_reason": "stop",
    "total_duration": 5,
}


def _chat_schema() -> dict:
    schema = spec.response_schema("POST", "/api/chat", 200, "application/json")
    assert schema is not None
    return schema


def test_versions_sort_as_ollama_releases_do() -> None:
    order = ["0.1.35", "0.9.7", "0.12.5", "0.12.6", "0.12.10", "0.33.0-rc0", "0.33.0-rc2", "0.33.0-rc10", "0.33.0"]
    assert sorted(order, key=parse_version) == order
    assert parse_version("v0.12.6") == parse_version("0.12.6")
    assert release_before("0.12.6") == "0.12.5"
    assert release_before("0.33.0-rc2") == "0.32.15"
    assert release_before("0.0.1") is None


@pytest.mark.parametrize("bad", ["", "x", "0.12", "1.2.3.4", "0.12.x"])
def test_a_bad_version_is_refused(bad: str) -> None:
    with pytest.raises(VersionError):
        parse_version(bad)


def test_function_index_is_required_from_0_12_6() -> None:
    schema = _chat_schema()
    missing = "at $.message.tool_calls[0].function: 'index' is a required property"
    assert spec.validate(CHAT_FINAL, schema) == [missing]
    assert spec.validate(CHAT_FINAL, schema, ollama_version="0.12.6") == [missing]
    assert spec.validate(CHAT_FINAL, schema, ollama_version="0.12.5") == []
    assert spec.validate(CHAT_FINAL, schema, ollama_version="0.12.0") == []
    # an older version still checks what it did have: a wrong type stays wrong
    broken = {**CHAT_FINAL, "message": {**CHAT_FINAL["message"], "content": 1}}
    assert spec.validate(broken, schema, ollama_version="0.12.0") != []


def test_done_reason_is_required_from_0_1_35() -> None:
    final = {k: v for k, v in CHAT_FINAL.items() if k != "done_reason"}
    final["message"] = {"role": "assistant", "content": "hi"}
    assert spec.validate(final, _chat_schema(), ollama_version="0.1.34") == []
    assert "at $: 'done_reason' is a required property" in spec.validate(final, _chat_schema(), ollama_version="0.1.35")


def test_ps_context_length_is_required_from_0_10_0() -> None:
    schema = spec.response_schema("GET", "/api/ps", 200, "application/json")
    entry = {
        "name": "m:latest", "model": "m:latest", "size": 1, "digest": "0" * 64, "expires_at": TS, "size_vram": 1,
        "details": {"parent_model": "", "format": "gguf", "family": "gemma3", "families": ["gemma3"],
                    "parameter_size": "1B", "quantization_level": "Q4_K_M"},
    }  # fmt: skip
    # required at the exact grade only (ollama-python types it Optional), and there only from 0.10.0 on
    assert spec.validate({"models": [entry]}, schema, ollama_version="0.9.6", grade="exact") == []
    assert spec.validate({"models": [entry]}, schema, ollama_version="0.10.0", grade="exact") != []
    assert spec.validate({"models": [entry]}, schema, ollama_version="0.10.0", grade="compatible") == []
    assert spec.validate({"models": [{**entry, "context_length": 4096}]}, schema) == []


def test_removed_image_fields_are_checked_only_while_they_existed() -> None:
    schema = spec.response_schema("POST", "/api/generate", 200, "application/json")
    final = {"model": "m", "created_at": TS, "response": "", "done": True, "done_reason": "stop", "total_duration": 1}
    wrong = {**final, "image": 7}  # `image` was a base64 string while it existed
    assert spec.validate(wrong, schema, ollama_version="0.20.0") != []
    assert spec.validate({**final, "image": "aGk="}, schema, ollama_version="0.20.0") == []
    # removed in 0.32.6: from then on the field is not Ollama's, and objects are open to others' fields
    assert spec.validate(wrong, schema, ollama_version="0.32.6") == []
    assert spec.validate(wrong, schema) == []


def test_at_version_none_is_the_spec_version() -> None:
    schema = spec.response_schema("POST", "/api/generate", 200, "application/json")
    assert at_version(schema, None) == at_version(schema, spec.SPEC_VERSION)
    assert at_version(schema, None) != at_version(schema, "0.20.0")  # image, completed, total


# The changes issue 17 names, each as (surface, where, version).
LISTED = [
    ("native", "ResponseToolCall.function", "0.12.6"),
    ("openai", "ChatCompletionFinishChunk", "0.32.6"),
    ("native", "ChatCommon.done_reason", "0.1.35"),
    ("native", "ChatStreamFinal.done_reason", "0.1.35"),
    ("native", "ProcessModel.context_length", "0.10.0"),
    ("native", "ShowResponse.capabilities", "0.6.4"),
    ("native", "ResponseMessage.thinking", "0.9.0"),
    ("native", "ChatCommon.logprobs", "0.12.11"),
    ("openai", "CompletionChunk.usage", "0.5.2"),
    ("native", "GenerateCommon.image", "0.32.6"),
    ("native", "GenerateRequest.width", "0.32.6"),
    ("native", "Options.repeat_penalty", "0.32.10"),
]


@pytest.mark.parametrize(("surface", "where", "version"), LISTED, ids=lambda v: str(v))
def test_listed_changes_are_annotated(surface: str, where: str, version: str) -> None:
    found = {(c.surface, c.where, c.version) for c in changes()}
    assert (surface, where, version) in found


def test_every_annotation_names_a_release() -> None:
    for surface in spec.SURFACES:
        for version in boundaries(spec.document(surface)):
            assert version in RELEASES, f"{surface}: {version} is not an Ollama release"


def test_changes_since_a_version_are_the_later_ones() -> None:
    later = changes("0.12.6")
    assert later and all(parse_version(c.version) > parse_version("0.12.6") for c in later)
    assert not any(c.where == "ResponseToolCall.function" for c in later)
    assert any(c.where == "ResponseToolCall.function" for c in changes("0.12.5"))
    assert changes(spec.SPEC_VERSION) == []


def test_candidate_versions_step_across_each_boundary() -> None:
    candidates = candidate_versions(spec.document("native"))
    assert candidates[0] == spec.SPEC_VERSION
    assert {"0.12.6", "0.12.5", "0.1.35", "0.1.34"} <= set(candidates)


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ollama_conformance", "spec", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_spec_since_lists_the_differences() -> None:
    proc = _cli("--since", "0.12.0")
    assert proc.returncode == 0, proc.stderr
    assert "Changes after Ollama 0.12.0" in proc.stdout
    assert "ResponseToolCall.function" in proc.stdout and "0.12.6" in proc.stdout
    assert "Options.repeat_penalty" in proc.stdout
    assert "ProcessModel.context_length" not in proc.stdout  # 0.10.0: before 0.12.0
    data = json.loads(_cli("--since", "0.32.6", "--json").stdout)
    assert {row["where"] for row in data["changes"]} == {"Options.repeat_penalty"}


def test_spec_since_refuses_a_bad_version() -> None:
    proc = _cli("--since", "twelve")
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "is not an Ollama version" in proc.stderr
    assert "Traceback" not in proc.stderr
