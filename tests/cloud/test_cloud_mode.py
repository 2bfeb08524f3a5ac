"""`serve --cloud`: the reference backend behaving like https://ollama.com, checked over loopback with real clients."""

from __future__ import annotations

import anthropic
import httpx
import ollama
import openai
import pytest

CHAT = {"model": "gemma3:270m", "messages": [{"role": "user", "content": "Hi"}], "stream": False, "options": {"num_predict": 2}}
RECORDED_V1_401 = b'{"error":{"message":"Unauthorized","type":"api_error","param":null,"code":null}}\n'


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture(scope="module")
def http(cloud_url: str) -> httpx.Client:
    with httpx.Client(base_url=cloud_url, timeout=120) as client:
        yield client  # type: ignore[misc]


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic d3Jvbmc="}],
                         ids=["no-key", "wrong-key", "not-bearer"])  # fmt: skip
def test_each_surface_answers_its_401(http: httpx.Client, headers: dict[str, str]) -> None:
    native = http.post("/api/chat", json=CHAT, headers=headers)
    assert native.status_code == 401
    assert native.headers["content-type"] == "application/json"
    assert native.json() == {"error": "unauthorized"}

    v1 = http.post("/v1/chat/completions", json={"model": "gemma3:270m", "messages": []}, headers=headers)
    assert v1.status_code == 401
    assert v1.headers["content-type"] == "application/json"
    assert v1.content == RECORDED_V1_401  # byte for byte what ollama.com answered (crmne/ruby_llm cassette)

    messages = http.post("/v1/messages", json={"model": "gemma3:270m", "max_tokens": 1, "messages": []}, headers=headers)
    assert messages.status_code == 401
    body = messages.json()
    assert body["type"] == "error" and body["error"] == {"type": "authentication_error", "message": "Unauthorized"}

    for method, path in [("GET", "/api/version"), ("GET", "/api/ps"), ("POST", "/api/web_search"), ("GET", "/v1/models")]:
        assert http.request(method, path, headers=headers).status_code == 401, f"{method} {path} served without a key"


def test_any_configured_key_is_accepted(http: httpx.Client, cloud_key: str) -> None:
    for key in (cloud_key, f"second-{cloud_key}"):
        got = http.get("/api/version", headers=bearer(key))
        assert got.status_code == 200, got.text
        assert "version" in got.json()
    assert http.get("/api/version", headers=bearer(cloud_key + "x")).status_code == 401
    assert http.get("/api/version", headers=bearer(cloud_key[:-1])).status_code == 401


def test_model_list_is_public_and_unsuffixed(http: httpx.Client) -> None:
    got = http.get("/api/tags")
    assert got.status_code == 200, got.text
    names = [m["model"] for m in got.json()["models"]]
    assert "gemma3:270m" in names
    assert not [n for n in names if n.endswith(("-cloud", ":cloud"))]


def test_suffixed_names_are_not_cloud_models_here(http: httpx.Client, cloud_key: str) -> None:
    """On the cloud itself a `-cloud` name is just a name it does not have: no routing happens."""
    got = http.post("/api/show", json={"model": "gemma3:270m-cloud"}, headers=bearer(cloud_key))
    assert got.status_code == 404, got.text


def test_api_v1_is_not_found(http: httpx.Client, cloud_key: str) -> None:
    assert http.get("/api/v1/models", headers=bearer(cloud_key)).status_code == 404


def test_ollama_client_with_and_without_key(cloud_url: str, cloud_key: str) -> None:
    client = ollama.Client(host=cloud_url, headers=bearer(cloud_key))
    answer = client.generate(model="gemma3:270m", prompt="Hello", options={"num_predict": 2, "seed": 1})
    assert answer.done and answer.model == "gemma3:270m"
    with pytest.raises(ollama.ResponseError) as info:
        ollama.Client(host=cloud_url).generate(model="gemma3:270m", prompt="Hello")
    assert info.value.status_code == 401


def test_openai_and_anthropic_clients_see_authentication_errors(cloud_url: str) -> None:
    with pytest.raises(openai.AuthenticationError) as oa:
        openai.OpenAI(base_url=f"{cloud_url}/v1", api_key="wrong", max_retries=0).models.list()
    assert oa.value.status_code == 401
    client = anthropic.Anthropic(base_url=cloud_url, auth_token="wrong", api_key=None, max_retries=0)
    with pytest.raises(anthropic.AuthenticationError) as an:
        client.messages.create(model="gemma3:270m", max_tokens=1, messages=[{"role": "user", "content": "Hi"}])
    assert an.value.status_code == 401


def test_web_search_over_http(http: httpx.Client, cloud_key: str) -> None:
    got = http.post("/api/web_search", json={"query": "why is the sky blue", "max_results": 2}, headers=bearer(cloud_key))
    assert got.status_code == 200, got.text
    results = got.json()["results"]
    assert 1 <= len(results) <= 2
    assert all(set(r) == {"title", "url", "content"} for r in results)
    default = http.post("/api/web_search", json={"query": "ollama"}, headers=bearer(cloud_key)).json()["results"]
    assert len(default) == 5


@pytest.mark.parametrize(
    ("path", "raw", "status", "message"),
    [
        ("/api/web_search", b"", 400, "missing request body"),
        ("/api/web_search", b'{"query": ', 400, None),
        ("/api/web_search", b'{"query": "x", "max_results": 11}', 400, "max_results must be between 1 and 10"),
        ("/api/web_search", b'{"max_results": 1}', 400, "query is required"),
        ("/api/web_fetch", b'{"url": "https://nowhere.example/"}', 404, "page not found: https://nowhere.example/"),
        ("/api/web_fetch", b'{"url": 5}', 400, "url is required"),
    ],
)
def test_web_errors_are_clear_4xx(http: httpx.Client, cloud_key: str, path: str, raw: bytes, status: int,
                                  message: str | None) -> None:  # fmt: skip
    got = http.post(path, content=raw, headers={**bearer(cloud_key), "Content-Type": "application/json"})
    assert got.status_code == status, got.text
    error = got.json()["error"]
    assert error == message if message else error.startswith("invalid JSON")


def test_web_fetch_and_wrong_method(http: httpx.Client, cloud_key: str) -> None:
    page = http.post("/api/web_fetch", json={"url": "ollama.com"}, headers=bearer(cloud_key)).json()
    assert page["title"] == "Ollama" and page["content"] and page["links"]
    assert http.get("/api/web_fetch", headers=bearer(cloud_key)).status_code == 405
