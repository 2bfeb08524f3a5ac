"""The cloud routing rules as pure functions: model-name suffixes, OLLAMA_NO_CLOUD, the upstream URL, API keys."""

from __future__ import annotations

import json

import pytest

from ollama_conformance.reference_backend.cloud import routing as rules
from ollama_conformance.reference_backend.cloud.auth import (
    ApiKeyError,
    ApiKeys,
    load_api_keys,
    requires_key,
    unauthorized_body,
)
from ollama_conformance.reference_backend.cloud.http import surface_of
from ollama_conformance.reference_backend.cloud.routing import ModelRefError, ModelSource, parse_model_ref


# Cases from Ollama's internal/modelref tests and facts §7.
@pytest.mark.parametrize(
    ("raw", "base", "source"),
    [
        ("gpt-oss:120b-cloud", "gpt-oss:120b", ModelSource.CLOUD),
        ("kimi-k2.5:cloud", "kimi-k2.5", ModelSource.CLOUD),
        ("gpt-oss:20b:cloud", "gpt-oss:20b", ModelSource.CLOUD),
        ("qwen3:CLOUD", "qwen3", ModelSource.CLOUD),
        ("qwen3:8B-Cloud", "qwen3:8B", ModelSource.CLOUD),
        ("user/model:tag-cloud", "user/model:tag", ModelSource.CLOUD),
        ("  gemma3:270m:local ", "gemma3:270m", ModelSource.LOCAL),
        ("gemma3:270m", "gemma3:270m", ModelSource.UNSPECIFIED),
        ("foo-cloud", "foo-cloud", ModelSource.UNSPECIFIED),  # no tag: not cloud
        ("registry.example.com:5000/x-cloud", "registry.example.com:5000/x-cloud", ModelSource.UNSPECIFIED),
    ],
)
def test_parse_model_ref(raw: str, base: str, source: ModelSource) -> None:
    ref = parse_model_ref(raw)
    assert (ref.base, ref.source) == (base, source)
    assert ref.original == raw.strip()


@pytest.mark.parametrize("raw", ["x:local:cloud", "x:cloud:local", "x:8b-cloud:local", "gpt-oss:20b-cloud:cloud"])
def test_nested_source_suffix_is_a_conflict(raw: str) -> None:
    with pytest.raises(ModelRefError) as info:
        parse_model_ref(raw)
    assert str(info.value) == f'use either :local or :cloud, not both: "{raw}"'


def test_empty_model_is_required() -> None:
    with pytest.raises(ModelRefError, match="model is required"):
        parse_model_ref("   ")


@pytest.mark.parametrize(
    ("value", "disabled"),
    [(None, False), ("", False), ("0", False), ("false", False), ("F", False), ("1", True), ("true", True),
     ("yes", True), ("garbage", True)],
)  # fmt: skip
def test_no_cloud_parses_like_envconfig(value: str | None, disabled: bool) -> None:
    assert rules.parse_no_cloud(value) is disabled
    assert rules.cloud_status(disabled) == {"disabled": disabled, "source": "env" if disabled else "none"}


def test_disabled_messages_match_ollama() -> None:
    assert rules.disabled_message(rules.OP_INFERENCE) == "ollama cloud is disabled: remote model is unavailable"
    assert rules.disabled_message(rules.OP_MODEL_DETAILS) == (
        "ollama cloud is disabled: remote model details are unavailable"
    )
    assert rules.disabled_message(rules.OP_WEB_SEARCH) == "ollama cloud is disabled: web search is unavailable"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("", "https://ollama.com:443"),
        ("http://127.0.0.1:8080", "http://127.0.0.1:8080"),
        ("http://localhost:9/", "http://localhost:9"),
        ("http://[::1]:7000", "http://[::1]:7000"),
        ("https://gateway.example", "https://gateway.example"),
    ],
)
def test_cloud_base_url_accepted(raw: str, expected: str) -> None:
    assert rules.resolve_cloud_base_url(raw) == expected


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("http://gateway.example", "must use https"),
        ("127.0.0.1:8080", "scheme and host"),
        ("http://127.0.0.1:8080/api", "path is not allowed"),
        ("http://127.0.0.1:8080?x=1", "query and fragment"),
        ("http://user:pw@127.0.0.1:8080", "userinfo"),
        ("ftp://127.0.0.1", "unsupported scheme"),
        ("http://127.0.0.1:notaport", "invalid URL"),
    ],
)
def test_cloud_base_url_refused(raw: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        rules.resolve_cloud_base_url(raw)


def test_only_the_real_cloud_host_needs_a_credential() -> None:
    assert rules.needs_signing("https://ollama.com:443")
    assert not rules.needs_signing("http://127.0.0.1:1234")


def test_model_field_extraction_and_rewrite() -> None:
    assert rules.extract_model_field(b"") is None
    assert rules.extract_model_field(b"{not json") is None
    assert rules.extract_model_field(b'["model"]') is None
    assert rules.extract_model_field(b'{"model": 3}') is None
    payload, model = rules.extract_model_field(b'{"model": " m:cloud ", "stream": false, "x": {"y": 1}}') or ({}, "")
    assert model == "m:cloud"
    assert json.loads(rules.rewrite_model_field(payload, "m")) == {"model": "m", "stream": False, "x": {"y": 1}}


def test_api_keys_file_and_env(tmp_path) -> None:  # type: ignore[no-untyped-def]
    keys_file = tmp_path / "keys.txt"
    keys_file.write_text("# team keys\nalpha\n\n beta ,gamma\n", encoding="utf-8")
    assert load_api_keys(keys_file, None, environ={}) == ("alpha", "beta", "gamma")
    assert load_api_keys(keys_file, "EXTRA", environ={"EXTRA": "delta"}) == ("alpha", "beta", "gamma", "delta")
    assert load_api_keys(None, None, environ={"OLLAMA_API_KEY": "k1"}) == ("k1",)
    with pytest.raises(ApiKeyError, match="needs an API key"):
        load_api_keys(None, None, environ={})
    with pytest.raises(ApiKeyError, match="MISSING is empty or unset"):
        load_api_keys(None, "MISSING", environ={})
    with pytest.raises(ApiKeyError, match="cannot read API keys file"):
        load_api_keys(tmp_path / "absent.txt", None, environ={})
    (tmp_path / "empty.txt").write_text("# nothing\n", encoding="utf-8")
    with pytest.raises(ApiKeyError, match="holds no key"):
        load_api_keys(tmp_path / "empty.txt", None, environ={})


def test_api_key_check_and_secrecy() -> None:
    keys = ApiKeys(["s3cret-one", "s3cret-two"])
    assert keys.check("Bearer s3cret-one")
    assert keys.check("bearer s3cret-two")
    assert not keys.check(None)
    assert not keys.check("")
    assert not keys.check("Bearer s3cret")
    assert not keys.check("Bearer s3cret-one-and-more")
    assert not keys.check("Basic s3cret-one")
    assert not keys.check("s3cret-one")
    assert "s3cret" not in repr(keys)


def test_unauthorized_bodies_per_surface() -> None:
    # /v1: byte for byte what ollama.com sent (crmne/ruby_llm cassette, 2026-08-13)
    assert unauthorized_body("/v1/chat/completions") == (
        b'{"error":{"message":"Unauthorized","type":"api_error","param":null,"code":null}}\n'
    )
    assert json.loads(unauthorized_body("/api/chat")) == {"error": "unauthorized"}
    anthropic = json.loads(unauthorized_body("/v1/messages"))
    assert anthropic["type"] == "error"
    assert anthropic["error"] == {"type": "authentication_error", "message": "Unauthorized"}
    assert anthropic["request_id"].startswith("req_")
    assert [surface_of(p) for p in ("/api/chat", "/v1/models", "/v1/messages")] == ["native", "openai", "anthropic"]


def test_which_paths_need_a_key() -> None:
    assert requires_key("POST", "/api/chat")
    assert requires_key("GET", "/api/version")
    assert requires_key("POST", "/v1/chat/completions")
    assert requires_key("POST", "/api/web_search")
    assert not requires_key("GET", "/api/tags")  # documented as public on ollama.com
    assert not requires_key("GET", "/")
