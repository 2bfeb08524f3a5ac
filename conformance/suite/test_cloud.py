"""Ollama Cloud: Bearer authentication on every surface, model naming, web search and fetch, and the daemon's
cloud routing rules (`:cloud` / `-cloud` suffixes, `:local:cloud`, /api/status).

Profile `cloud` (https://ollama.com, or `serve --cloud` for the offline proof) runs the cloud tests; other
profiles run the daemon-side ones. What is checked against the real cloud comes from captures of it (the 401 on
/v1, crmne/ruby_llm cassettes) and its documentation; where a detail is not known (the native and Anthropic 401
bodies, exact web-search error texts) only the part that any client relies on is asserted.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable

import httpx
import pytest

from ollama_conformance.conformance.checks import Api
from ollama_conformance.conformance.streams import Captured, capture
from ollama_conformance.conformance.target import Target

CHAT_BODY_MESSAGES = [{"role": "user", "content": "Say hi."}]
NO_CLOUD_ACCESS = "the daemon's cloud routing is checked on local and reference targets, not on the cloud itself"

# One protected request per surface; the model need not exist, authentication comes first.
PROTECTED = [
    ("native", "/api/chat", lambda m: {"model": m, "messages": CHAT_BODY_MESSAGES, "stream": False, "options": {"num_predict": 1}}),
    ("openai", "/v1/chat/completions", lambda m: {"model": m, "messages": CHAT_BODY_MESSAGES, "max_tokens": 1}),
    ("anthropic", "/v1/messages", lambda m: {"model": m, "max_tokens": 1, "messages": CHAT_BODY_MESSAGES}),
    ("native", "/api/web_search", lambda m: {"query": "ollama", "max_results": 1}),
]


def _needs_cloud(target: Target) -> None:
    if target.profile != "cloud":
        pytest.skip("needs the cloud profile: --profile cloud with the key in OLLAMA_API_KEY (or --api-key-env)")
    if not target.api_key:
        pytest.skip("no API key: set OLLAMA_API_KEY (or name another variable with --api-key-env)")


def _needs_daemon(target: Target) -> None:
    if target.profile == "cloud":
        pytest.skip(NO_CLOUD_ACCESS)


def _unauthenticated(api: Api, authorization: str | None) -> httpx.Client:
    """A client like the suite's (same target, timeout and request budget) but without the key."""
    headers = {"Authorization": authorization} if authorization else {}
    timeout = httpx.Timeout(api.target.timeout_s, connect=10.0)
    return httpx.Client(base_url=api.target.url, headers=headers, timeout=timeout, event_hooks=api.client.event_hooks)


def _model(target: Target) -> str:
    return target.chat_model or "gpt-oss:20b"


def _post_without_key(api: Api, path: str, body: dict, authorization: str | None) -> Captured:
    with _unauthenticated(api, authorization) as client:
        return capture(client, "POST", path, json=body, deadline_s=api.target.timeout_s * 0.9)


def _check_401(api: Api, surface: str, got: Captured) -> None:
    assert got.status == 401, f"answered {got.status} without a valid key, expected 401; body {got.text[:200]!r}"
    if surface == "openai":
        # ollama.com, 2026-08-13: {"error":{"message":"Unauthorized","type":"api_error","param":null,"code":null}}
        api.openai_error(got, 401, "api_error")
    elif surface == "native":
        api.native_error(got, 401)
    else:
        assert got.media_type == "application/json", f"401 Content-Type {got.headers.get('content-type')!r}"
        assert isinstance(got.json(), dict), f"401 body is not a JSON object: {got.text[:200]!r}"


@pytest.mark.feature("cloud.auth.missing")
@pytest.mark.parametrize(("surface", "path", "make_body"), PROTECTED, ids=[p for _, p, _ in PROTECTED])
def test_no_key_is_401(api: Api, target: Target, surface: str, path: str, make_body: Callable[[str], dict]) -> None:
    _needs_cloud(target)
    _check_401(api, surface, _post_without_key(api, path, make_body(_model(target)), None))


@pytest.mark.feature("cloud.auth.missing")
@pytest.mark.parametrize(("surface", "path", "make_body"), PROTECTED, ids=[p for _, p, _ in PROTECTED])
def test_wrong_key_is_401(api: Api, target: Target, surface: str, path: str, make_body: Callable[[str], dict]) -> None:
    _needs_cloud(target)
    wrong = "Bearer conformance-wrong-key-" + secrets.token_hex(8)
    _check_401(api, surface, _post_without_key(api, path, make_body(_model(target)), wrong))


@pytest.mark.feature("anthropic.errors.shape")
def test_anthropic_401_is_anthropic_shaped(api: Api, target: Target) -> None:
    _needs_cloud(target)
    body = {"model": _model(target), "max_tokens": 1, "messages": CHAT_BODY_MESSAGES}
    api.anthropic_error(_post_without_key(api, "/v1/messages", body, None), 401, "authentication_error")


@pytest.mark.feature("cloud.auth.bearer")
def test_bearer_key_is_served(api: Api, target: Target, chat_model: str) -> None:
    _needs_cloud(target)
    body = {"model": chat_model, "messages": CHAT_BODY_MESSAGES, "stream": False, "options": {"num_predict": 1}}
    answer = api.single(api.post("/api/chat", body))
    assert answer.get("done") is True, f"the answer is not final: {answer}"
    assert answer.get("model") == chat_model, f"model {answer.get('model')!r}, asked for {chat_model!r}"


@pytest.mark.feature("cloud.tags")
def test_cloud_models_are_named_without_suffix(api: Api, target: Target) -> None:
    _needs_cloud(target)
    models = api.single(api.get("/api/tags")).get("models")
    assert isinstance(models, list) and models, f"/api/tags lists no models: {models!r}"
    names = [m.get("model") or m.get("name") for m in models if isinstance(m, dict)]
    suffixed = [n for n in names if not isinstance(n, str) or _has_cloud_suffix(n)]
    assert not suffixed, f"on the cloud, model names carry no :cloud/-cloud suffix; got {suffixed[:5]}"


@pytest.mark.feature("routing.not_found")
def test_api_v1_paths_are_404(api: Api, target: Target) -> None:
    """/api/v1/... belongs to the desktop app's UI server, never to the API (daemon or cloud)."""
    got = api.get("/api/v1/models")
    assert got.status == 404, f"GET /api/v1/models answered {got.status}, expected 404; body {got.text[:120]!r}"


@pytest.mark.feature("cloud.web_search")
def test_web_search(api: Api, target: Target) -> None:
    _needs_cloud(target)
    answer = api.single(api.post("/api/web_search", {"query": "what is ollama", "max_results": 2}))
    results = answer.get("results")
    assert isinstance(results, list), f"no results list: {answer!r:.200}"
    assert 1 <= len(results) <= 2, f"{len(results)} results for max_results=2"
    for result in results:
        assert isinstance(result, dict), f"result {result!r:.120} is not an object"
        for key in ("title", "url", "content"):
            assert isinstance(result.get(key), str), f"result.{key} is not a string: {result!r:.200}"
        assert result["url"].startswith(("http://", "https://")), f"result.url {result['url']!r}"


@pytest.mark.feature("cloud.web_search")
def test_web_search_without_query_is_refused(api: Api, target: Target) -> None:
    _needs_cloud(target)
    got = api.post("/api/web_search", {"max_results": 1})
    assert 400 <= got.status < 500, f"a search without query answered {got.status}; body {got.text[:200]!r}"


@pytest.mark.feature("cloud.web_fetch")
def test_web_fetch(api: Api, target: Target) -> None:
    _needs_cloud(target)
    page = api.single(api.post("/api/web_fetch", {"url": "https://ollama.com"}))
    assert isinstance(page.get("title"), str) and page["title"], f"title {page.get('title')!r}"
    assert isinstance(page.get("content"), str) and page["content"], "content is empty"
    links = page.get("links", [])
    assert isinstance(links, list) and all(isinstance(u, str) for u in links), f"links {links!r:.200}"


@pytest.mark.feature("cloud.routing.suffix")
@pytest.mark.parametrize("path", ["/api/chat", "/v1/chat/completions"])
def test_local_and_cloud_suffix_together_is_400(api: Api, target: Target, path: str) -> None:
    _needs_daemon(target)
    model = "conformance-probe:local:cloud"
    got = api.post(path, {"model": model, "messages": CHAT_BODY_MESSAGES, "stream": False})
    expected = f'use either :local or :cloud, not both: "{model}"'
    if path.startswith("/v1/"):
        message = api.openai_error(got, 400, "invalid_request_error")
    else:
        message = api.native_error(got, 400)
    assert message == expected, f"message {message!r}, expected {expected!r}"


@pytest.mark.feature("server.status")
def test_status_reports_cloud_switch(api: Api, target: Target) -> None:
    _needs_daemon(target)
    body = api.single(api.get("/api/status"))
    cloud = body.get("cloud")
    assert isinstance(cloud, dict), f"/api/status has no cloud object: {body!r:.200}"
    assert isinstance(cloud.get("disabled"), bool), f"cloud.disabled {cloud.get('disabled')!r}"
    assert cloud.get("source") in ("none", "env", "config", "both"), f"cloud.source {cloud.get('source')!r}"
    assert (cloud["source"] == "none") is (not cloud["disabled"]), f"source and disabled disagree: {cloud}"


def _cloud_disabled(api: Api, target: Target) -> None:
    _needs_daemon(target)
    cloud = api.single(api.get("/api/status")).get("cloud")
    if not (isinstance(cloud, dict) and cloud.get("disabled") is True):
        pytest.skip("cloud is enabled on the target: start it with OLLAMA_NO_CLOUD=1 to check the refusals")


DISABLED_PATHS = [
    ("/api/chat", {"messages": CHAT_BODY_MESSAGES}, "remote model is unavailable"),
    ("/api/show", {}, "remote model details are unavailable"),
]


@pytest.mark.feature("cloud.disabled")
@pytest.mark.requires_route("GET", "/api/status", feature="server.status")
@pytest.mark.parametrize(("path", "extra", "operation"), DISABLED_PATHS, ids=[p for p, _, _ in DISABLED_PATHS])
def test_disabled_cloud_refuses_cloud_models(api: Api, target: Target, path: str, extra: dict, operation: str) -> None:
    _cloud_disabled(api, target)
    message = api.native_error(api.post(path, {"model": "conformance-probe:cloud", **extra}), 403)
    assert message == f"ollama cloud is disabled: {operation}", f"message {message!r}"


@pytest.mark.feature("cloud.errors.shape")
@pytest.mark.requires_route("GET", "/api/status", feature="server.status")
@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/messages"])
def test_disabled_cloud_error_keeps_native_shape_on_v1(api: Api, target: Target, path: str) -> None:
    """The refusal comes from the passthrough middleware, before any OpenAI/Anthropic adapter could wrap it."""
    _cloud_disabled(api, target)
    body = {"model": "conformance-probe:cloud", "messages": CHAT_BODY_MESSAGES, "max_tokens": 1}
    message = api.native_error(api.post(path, body), 403)
    assert message == "ollama cloud is disabled: remote model is unavailable", f"message {message!r}"


def _has_cloud_suffix(name: str) -> bool:
    """Ollama's modelref rule: last `:`-segment `cloud`, or a tag ending in `-cloud`."""
    _head, colon, tag = name.rpartition(":")
    if not colon or "/" in tag:
        return False
    tag = tag.strip().lower()
    return tag == "cloud" or tag.endswith("-cloud")
