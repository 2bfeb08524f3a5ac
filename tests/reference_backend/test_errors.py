"""Every error of the native routes, with Ollama's status, body and content type (facts §4)."""

from __future__ import annotations

import httpx
import pytest

GEMMA = "gemma3:270m"
MINILM = "all-minilm:22m"
LONG_PROMPT_ERROR = (
    "the prompt is longer than the context length currently available to the model; shorten the prompt, "
    "adjust the context length in settings, or use a model with a longer context length"
)


@pytest.fixture(scope="module")
def http(reference_url: str) -> httpx.Client:
    with httpx.Client(base_url=reference_url, timeout=300) as session:
        yield session


CASES = [
    ("/api/generate", b"", 400, "missing request body"),
    ("/api/chat", b"{", 400, "unexpected EOF"),
    ("/api/generate", b"nope", 400, "invalid character 'o' in literal null (expecting 'u')"),
    ("/api/generate", {"model": ""}, 404, "model '' not found"),
    ("/api/generate", {"model": "no-such-model"}, 404, "model 'no-such-model' not found"),
    ("/api/chat", {"model": ""}, 400, "model is required"),
    ("/api/chat", {"model": "no-such-model", "messages": []}, 404, "model 'no-such-model' not found"),
    ("/api/embed", {"model": "", "input": "x"}, 404, "model '' not found"),
    ("/api/embed", {"model": "nope", "input": "x"}, 404, 'model "nope" not found, try pulling it first'),
    ("/api/embeddings", {"model": ""}, 400, "model is required"),
    ("/api/embeddings", {"model": "nope", "prompt": "x"}, 404, 'model "nope" not found, try pulling it first'),
    ("/api/embed", {"model": MINILM, "input": 5}, 400, "invalid input type"),
    (
        "/api/chat",
        {"model": GEMMA, "messages": [{"role": "user", "content": "x"}], "tools": [1]},
        400,
        "json: cannot unmarshal number into Go struct field ChatRequest.tools of type api.Tool",
    ),
    (
        "/api/chat",
        {"model": GEMMA, "messages": [{"role": "user", "content": "x"}], "tools": [{"function": "f"}]},
        400,
        "json: cannot unmarshal string into Go struct field Tool.function of type api.ToolFunction",
    ),
    ("/api/show", {}, 400, "model is required"),
    ("/api/show", {"model": "nope"}, 404, "model 'nope:latest' not found"),
    ("/api/generate", {"model": GEMMA, "prompt": "x", "think": True}, 400, '"gemma3:270m" does not support thinking'),
    (
        "/api/chat",
        {"model": GEMMA, "messages": [{"role": "user", "content": "x"}], "think": "high"},
        400,
        '"gemma3:270m" does not support thinking',
    ),
    (
        "/api/generate",
        {"model": GEMMA, "prompt": "x", "think": "huge"},
        400,
        'invalid think value: "huge" (must be "high", "medium", "low", "max", true, or false)',
    ),
    (
        "/api/generate",
        {"model": GEMMA, "prompt": "x", "think": 3},
        400,
        'think must be a boolean or string ("high", "medium", "low", "max", true, or false)',
    ),
    (
        "/api/generate",
        {"model": GEMMA, "prompt": "x", "suffix": "y"},
        400,
        "registry.ollama.ai/library/gemma3:270m does not support insert",
    ),
    (
        "/api/generate",
        {"model": GEMMA, "prompt": "x", "raw": True, "system": "s"},
        400,
        "raw mode does not support template, system, or context",
    ),
    ("/api/generate", {"model": GEMMA, "prompt": "x", "keep_alive": "abc"}, 400, 'time: invalid duration "abc"'),
    ("/api/generate", {"model": GEMMA, "prompt": "x", "keep_alive": "10"}, 400, 'time: missing unit in duration "10"'),
    ("/api/generate", {"model": GEMMA, "prompt": "x", "keep_alive": True}, 400, "Unsupported type: 'bool'"),
    (
        "/api/generate",
        {"model": GEMMA, "prompt": "x", "top_logprobs": 21},
        400,
        "top_logprobs must be between 0 and 20",
    ),
    (
        "/api/generate",
        {"model": GEMMA, "prompt": "x", "options": {"temperature": "hot"}},
        500,
        'option "temperature" must be of type float32',
    ),
    (
        "/api/generate",
        {"model": GEMMA, "prompt": "x", "options": {"stop": "x"}},
        500,
        'option "stop" must be of type array',
    ),
    (
        "/api/generate",
        {"model": GEMMA, "prompt": "x", "format": "yaml"},
        500,
        'invalid format: "yaml"; expected "json" or a valid JSON Schema object',
    ),
    ("/api/generate", {"model": MINILM, "prompt": "x"}, 400, '"all-minilm:22m" does not support generate'),
    (
        "/api/chat",
        {"model": MINILM, "messages": [{"role": "user", "content": "x"}]},
        400,
        '"all-minilm:22m" does not support chat',
    ),
    (
        "/api/generate",
        {"model": GEMMA, "prompt": "x", "images": ["not base64!"]},
        400,
        "illegal base64 data at input byte 3",
    ),
    (
        "/api/generate",
        {"model": GEMMA, "prompt": 5},
        400,
        "json: cannot unmarshal number into Go struct field GenerateRequest.prompt of type string",
    ),
    ("/api/generate", {"model": GEMMA, "prompt": "word " * 40, "shift": False, "options": {"num_ctx": 16}}, 400, LONG_PROMPT_ERROR),
    (
        "/api/generate",
        {"model": GEMMA, "prompt": "x", "options": "hot"},
        400,
        "json: cannot unmarshal string into Go struct field GenerateRequest.options of type map[string]interface {}",
    ),
    (
        "/api/chat",
        {"model": GEMMA, "messages": [{"role": "user", "content": ["x"]}]},
        400,
        "json: cannot unmarshal array into Go struct field ChatRequest.messages.content of type string",
    ),
    (
        "/api/embed",
        {"model": MINILM, "input": "word " * 40, "truncate": False, "options": {"num_ctx": 8}},
        400,
        "the input length exceeds the context length",
    ),
    ("/api/copy", {"source": "", "destination": "x"}, 400, 'source "" is invalid'),
    ("/api/copy", {"source": GEMMA, "destination": "bad name"}, 400, 'destination "bad name" is invalid'),
    ("/api/copy", {"source": "nope", "destination": "x"}, 404, 'model "nope" not found'),
]


@pytest.mark.parametrize(("path", "body", "status", "message"), CASES, ids=[f"{c[0]}-{c[3][:40]}" for c in CASES])
def test_error_rows(http: httpx.Client, path: str, body: object, status: int, message: str) -> None:
    if isinstance(body, bytes):
        response = http.post(path, content=body, headers={"content-type": "application/json"})
    else:
        response = http.post(path, json=body)
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert response.json() == {"error": message}


def test_delete_errors(http: httpx.Client) -> None:
    missing = http.request("DELETE", "/api/delete", json={})
    assert (missing.status_code, missing.json()) == (400, {"error": "model is required"})
    invalid = http.request("DELETE", "/api/delete", json={"model": "bad name"})
    assert (invalid.status_code, invalid.json()) == (400, {"error": 'name "bad name" is invalid'})
    absent = http.request("DELETE", "/api/delete", json={"model": "no-such-model"})
    assert (absent.status_code, absent.json()) == (404, {"error": "model 'no-such-model' not found"})


def test_unknown_route_and_wrong_method(http: httpx.Client) -> None:
    unknown = http.get("/api/nothing-here")
    assert (unknown.status_code, unknown.text, unknown.headers["content-type"]) == (
        404,
        "404 page not found",
        "text/plain",
    )
    wrong = http.get("/api/chat")
    assert (wrong.status_code, wrong.text, wrong.headers["content-type"]) == (
        405,
        "405 method not allowed",
        "text/plain",
    )
    assert "POST" in wrong.headers["allow"]
    slash = http.get("/api/tags/", follow_redirects=False)
    assert slash.status_code == 301 and slash.headers["location"].endswith("/api/tags")


def test_root_and_version(http: httpx.Client) -> None:
    root = http.get("/")
    assert (root.status_code, root.text, root.headers["content-type"]) == (
        200,
        "Ollama is running",
        "text/plain; charset=utf-8",
    )
    assert http.head("/").status_code == 200
    version = http.get("/api/version").json()["version"]
    assert version.count(".") == 2
    assert http.get("/api/status").json() == {"cloud": {"disabled": False, "source": "none"}}


def test_host_check_and_cors(http: httpx.Client) -> None:
    rebinding = http.get("/api/version", headers={"host": "evil.example.com"})
    assert (rebinding.status_code, rebinding.content) == (403, b"")
    assert http.get("/api/version", headers={"host": "localhost:11434"}).status_code == 200
    foreign = http.get("/api/version", headers={"origin": "https://evil.example.com"})
    assert (foreign.status_code, foreign.content) == (403, b"")
    local = http.get("/api/version", headers={"origin": "http://localhost:3000"})
    assert local.status_code == 200 and local.headers["access-control-allow-origin"] == "http://localhost:3000"
    preflight = http.options(
        "/api/chat", headers={"origin": "http://127.0.0.1:8080", "access-control-request-method": "POST"}
    )
    assert preflight.status_code == 204 and "POST" in preflight.headers["access-control-allow-methods"]
