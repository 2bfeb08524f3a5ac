"""Daemon-to-cloud routing over loopback: a daemon forwards `:cloud` / `-cloud` models to a `--cloud` backend.

Each check sends the same request twice, once through the daemon with a suffixed name and once straight to the
cloud with the plain name, and compares what came back: answers, streams and errors must pass through intact.
"""

from __future__ import annotations

import json

import httpx
import pytest

from ollama_conformance.reference_backend.launcher import ReferenceBackend

VOLATILE = {"created_at", "total_duration", "load_duration", "prompt_eval_duration", "eval_duration",
            "prompt_eval_count", "created", "id", "request_id"}  # fmt: skip
GENERATE = {"prompt": "The sky is", "stream": False, "options": {"seed": 7, "temperature": 0, "num_predict": 6}}
CHAT = {"messages": [{"role": "user", "content": "Hello"}], "options": {"seed": 7, "temperature": 0, "num_predict": 6}}


def stable(value: object) -> object:
    """The answer without timestamps, durations and generated ids, which differ between any two requests."""
    if isinstance(value, dict):
        return {k: stable(v) for k, v in value.items() if k not in VOLATILE}
    if isinstance(value, list):
        return [stable(v) for v in value]
    return value


@pytest.fixture(scope="module")
def daemon(daemon_url: str) -> httpx.Client:
    with httpx.Client(base_url=daemon_url, timeout=180) as client:
        yield client  # type: ignore[misc]


@pytest.fixture(scope="module")
def cloud(cloud_url: str, cloud_key: str) -> httpx.Client:
    with httpx.Client(base_url=cloud_url, timeout=180, headers={"Authorization": f"Bearer {cloud_key}"}) as client:
        yield client  # type: ignore[misc]


@pytest.mark.parametrize(
    ("suffixed", "base"),
    [("gemma3:270m:cloud", "gemma3:270m"), ("gemma3:270m-cloud", "gemma3:270m"), ("gemma3:270M-CLOUD", "gemma3:270M")],
)
def test_generate_answer_passes_through(daemon: httpx.Client, cloud: httpx.Client, suffixed: str, base: str) -> None:
    direct = cloud.post("/api/generate", json={"model": base, **GENERATE})
    routed = daemon.post("/api/generate", json={"model": suffixed, **GENERATE})
    assert direct.status_code == routed.status_code == 200, routed.text
    assert routed.headers["content-type"] == direct.headers["content-type"]
    assert routed.json()["model"] == base  # the cloud saw the name without its suffix (and echoes it as sent)
    assert stable(routed.json()) == stable(direct.json())


def read_stream(client: httpx.Client, path: str, body: dict) -> tuple[httpx.Response, list[bytes]]:
    with client.stream("POST", path, json=body) as response:
        lines = list(response.iter_lines())
    return response, [line.encode() for line in lines]


def test_chat_stream_passes_through(daemon: httpx.Client, cloud: httpx.Client) -> None:
    direct, direct_lines = read_stream(cloud, "/api/chat", {"model": "gemma3:270m", **CHAT})
    routed, routed_lines = read_stream(daemon, "/api/chat", {"model": "gemma3:270m:cloud", **CHAT})
    assert routed.status_code == direct.status_code == 200
    assert routed.headers["content-type"] == direct.headers["content-type"] == "application/x-ndjson"
    assert "content-length" not in routed.headers  # streamed through, not buffered
    assert len(routed_lines) == len(direct_lines) > 1
    objects = [json.loads(line) for line in routed_lines]
    assert objects[-1]["done"] is True and all(o["done"] is False for o in objects[:-1])
    assert stable(objects) == stable([json.loads(line) for line in direct_lines])


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/chat/completions", {"messages": [{"role": "user", "content": "Hi"}], "stream": True, "seed": 3,
                                  "temperature": 0, "max_tokens": 4}),
        ("/v1/completions", {"prompt": "Hi", "stream": True, "seed": 3, "temperature": 0, "max_tokens": 4}),
        ("/v1/messages", {"messages": [{"role": "user", "content": "Hi"}], "stream": True, "temperature": 0,
                          "max_tokens": 4}),
    ],
)  # fmt: skip
def test_compatibility_streams_pass_through(daemon: httpx.Client, cloud: httpx.Client, path: str, body: dict) -> None:
    direct, direct_lines = read_stream(cloud, path, {"model": "gemma3:270m", **body})
    routed, routed_lines = read_stream(daemon, path, {"model": "gemma3:270m-cloud", **body})
    assert routed.status_code == direct.status_code
    assert routed.headers.get("content-type") == direct.headers.get("content-type")
    assert len(routed_lines) == len(direct_lines)
    for mine, theirs in zip(routed_lines, direct_lines, strict=True):
        if mine.startswith(b"data: {"):
            assert stable(json.loads(mine[6:])) == stable(json.loads(theirs[6:]))
        else:
            assert mine == theirs


def test_embed_and_show_pass_through(daemon: httpx.Client, cloud: httpx.Client) -> None:
    body = {"input": ["why is the sky blue?", "pizza"]}
    direct = cloud.post("/api/embed", json={"model": "all-minilm:22m", **body})
    routed = daemon.post("/api/embed", json={"model": "all-minilm:22m:cloud", **body})
    assert routed.status_code == direct.status_code == 200, routed.text
    assert stable(routed.json()) == stable(direct.json())
    # all-minilm: the first /api/show of gemma3 in a fresh process took 80 s on a busy 2-core machine
    shown = daemon.post("/api/show", json={"model": "all-minilm:22m:cloud"})
    assert shown.status_code == 200, shown.text
    assert shown.json() == cloud.post("/api/show", json={"model": "all-minilm:22m"}).json()
    by_name = daemon.post("/api/show", json={"name": "all-minilm:22m-cloud"})  # the deprecated field is routed too
    assert by_name.status_code == 200 and by_name.json() == shown.json()


def test_model_path_passes_through(daemon: httpx.Client, cloud: httpx.Client) -> None:
    routed = daemon.get("/v1/models/all-minilm:22m-cloud")
    direct = cloud.get("/v1/models/all-minilm:22m")
    assert routed.status_code == direct.status_code
    assert routed.content == direct.content


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/api/chat", {"messages": [{"role": "user", "content": "Hi"}]}),
        ("/api/generate", {"prompt": "Hi"}),
        ("/api/embed", {"input": "Hi"}),
        ("/api/show", {}),
        ("/v1/chat/completions", {"messages": [{"role": "user", "content": "Hi"}]}),
        ("/v1/messages", {"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 1}),
    ],
)
def test_upstream_errors_pass_through(daemon: httpx.Client, cloud: httpx.Client, path: str, body: dict) -> None:
    direct = cloud.post(path, json={"model": "no-such-model", **body})
    routed = daemon.post(path, json={"model": "no-such-model:cloud", **body})
    assert direct.status_code >= 400
    assert routed.status_code == direct.status_code
    assert routed.headers.get("content-type") == direct.headers.get("content-type")
    assert stable(routed.json()) == stable(direct.json())


def test_daemon_attaches_its_key_over_the_clients(daemon: httpx.Client) -> None:
    """The client's own Authorization is replaced by the daemon's key (the daemon signs in Ollama)."""
    got = daemon.post("/api/show", json={"model": "all-minilm:22m:cloud"}, headers={"Authorization": "Bearer wrong"})
    assert got.status_code == 200, got.text


@pytest.mark.parametrize("path", ["/api/chat", "/v1/chat/completions"])
def test_local_and_cloud_together_is_400(daemon: httpx.Client, path: str) -> None:
    got = daemon.post(path, json={"model": "gemma3:270m:local:cloud", "messages": [{"role": "user", "content": "x"}]})
    assert got.status_code == 400
    message = 'use either :local or :cloud, not both: "gemma3:270m:local:cloud"'
    if path.startswith("/v1/"):
        assert got.json() == {"error": {"message": message, "type": "invalid_request_error", "param": None, "code": None}}
    else:
        assert got.json() == {"error": message}


def test_experimental_web_routes_proxy_to_the_cloud(daemon: httpx.Client, cloud: httpx.Client) -> None:
    query = {"query": "server-sent events", "max_results": 3}
    routed = daemon.post("/api/experimental/web_search", json=query, headers={"Authorization": "Bearer other"})
    assert routed.status_code == 200, routed.text
    assert routed.json() == cloud.post("/api/web_search", json=query).json()
    fetched = daemon.post("/api/experimental/web_fetch", json={"url": "https://ollama.com/"})
    assert fetched.status_code == 200 and fetched.json()["title"] == "Ollama"
    missing = daemon.post("/api/experimental/web_fetch", json={"url": "https://nowhere.example/"})
    assert missing.status_code == 404  # the cloud's answer, passed through
    empty = daemon.post("/api/experimental/web_search", content=b"")
    assert (empty.status_code, empty.json()) == (400, {"error": "missing request body"})
    assert daemon.post("/api/web_search", json=query).status_code == 404  # the daemon has no /api/web_search


@pytest.mark.parametrize(
    ("method", "path", "body", "operation"),
    [
        ("POST", "/api/chat", {"model": "m:cloud", "messages": []}, "remote model is unavailable"),
        ("POST", "/api/generate", {"model": "m-x:8b-cloud", "prompt": "x"}, "remote model is unavailable"),
        ("POST", "/api/embed", {"model": "m:cloud", "input": "x"}, "remote model is unavailable"),
        ("POST", "/api/show", {"model": "m:cloud"}, "remote model details are unavailable"),
        ("POST", "/v1/chat/completions", {"model": "m:cloud", "messages": []}, "remote model is unavailable"),
        ("POST", "/v1/messages", {"model": "m:cloud", "messages": [], "max_tokens": 1}, "remote model is unavailable"),
        ("GET", "/v1/models/m:cloud", None, "remote model details are unavailable"),
        ("POST", "/api/experimental/web_search", {"query": "x"}, "web search is unavailable"),
        ("POST", "/api/experimental/web_fetch", {"url": "ollama.com"}, "web fetch is unavailable"),
    ],
)
def test_no_cloud_blocks_every_cloud_path(no_cloud_url: str, method: str, path: str, body: dict | None,
                                          operation: str) -> None:  # fmt: skip
    got = httpx.request(method, no_cloud_url + path, json=body, timeout=30)
    assert got.status_code == 403
    # native shape on every surface, as Ollama's passthrough middleware answers before any adapter runs
    assert got.json() == {"error": f"ollama cloud is disabled: {operation}"}


def test_status_reports_the_cloud_switch(no_cloud_url: str, daemon_url: str) -> None:
    assert httpx.get(no_cloud_url + "/api/status").json() == {"cloud": {"disabled": True, "source": "env"}}
    assert httpx.get(daemon_url + "/api/status").json() == {"cloud": {"disabled": False, "source": "none"}}


def test_no_cloud_leaves_local_models_alone(no_cloud_url: str) -> None:
    got = httpx.post(no_cloud_url + "/api/show", json={"model": "all-minilm:22m"}, timeout=120)
    assert got.status_code == 200, got.text


def test_unreachable_cloud_is_502(dead_upstream_url: str) -> None:
    got = httpx.post(dead_upstream_url + "/api/chat", json={"model": "m:cloud", "messages": []}, timeout=60)
    assert got.status_code == 502
    assert got.json()["error"].startswith('Post "http://127.0.0.1:')


def test_keys_are_never_logged(capfd: pytest.CaptureFixture[str]) -> None:
    """Both sides at debug log level: the key appears in neither process's output, on success or refusal."""
    key = "never-logged-" + "7" * 24
    with ReferenceBackend(args=["--cloud", "--log-level", "debug"], env={"OLLAMA_API_KEY": key}) as upstream:
        env = {"OLLAMA_API_KEY": key, "OLLAMA_CLOUD_BASE_URL": upstream.url, "OLLAMA_NO_CLOUD": "0"}
        with ReferenceBackend(args=["--log-level", "debug"], env=env) as daemon:
            assert httpx.post(daemon.url + "/api/show", json={"model": "all-minilm:22m:cloud"}, timeout=120).status_code == 200
            assert httpx.post(daemon.url + "/api/experimental/web_search", json={"query": "x"}, timeout=60).status_code == 200
            refused = httpx.post(upstream.url + "/api/chat", json={}, headers={"Authorization": f"Bearer {key}x"})
            assert refused.status_code == 401
    captured = capfd.readouterr()
    assert "DEBUG" in captured.err  # the logs were captured
    assert key not in captured.out + captured.err
