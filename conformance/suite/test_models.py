"""Model management: /api/tags, /api/ps, /api/show, load/unload and keep_alive, copy/delete (mutations only)."""

from __future__ import annotations

import time
import uuid

import pytest
from ollama_conformance.conformance.checks import Api
from ollama_conformance.conformance.target import Target


def ps_names(api: Api) -> list[str]:
    body = api.single(api.get("/api/ps"))
    return [m.get("model") or m.get("name") for m in body.get("models") or []]


@pytest.mark.feature("tags.list")
def test_tags_lists_models(api: Api, target: Target) -> None:
    got = api.get("/api/tags")
    (body,) = api.contract("GET", "/api/tags", got)
    names = {m["model"] for m in body["models"]}
    for model in (target.chat_model, target.embed_model):
        if model and target.profile != "cloud":
            assert model in names, f"{model} is served but not listed by /api/tags"


@pytest.mark.feature("ps.list")
def test_ps_lists_loaded_model(api: Api, chat_model: str) -> None:
    api.single(api.post("/api/generate", {"model": chat_model, "prompt": "", "keep_alive": "5m", "stream": False}))
    got = api.get("/api/ps")
    (body,) = api.contract("GET", "/api/ps", got)
    assert chat_model in [m["model"] for m in body["models"]], f"{chat_model} just loaded but missing from /api/ps"


@pytest.mark.feature("show.details")
def test_show_model(api: Api, chat_model: str) -> None:
    got = api.post("/api/show", {"model": chat_model})
    (body,) = api.contract("POST", "/api/show", got)
    assert got.status == 200, f"status {got.status}"
    assert isinstance(body.get("model_info"), dict), "model_info is an object"


@pytest.mark.feature("show.capabilities")
def test_show_capabilities(api: Api, chat_model: str) -> None:
    body = api.single(api.post("/api/show", {"model": chat_model}))
    capabilities = body.get("capabilities")
    assert isinstance(capabilities, list) and "completion" in capabilities, f"capabilities {capabilities!r}"


@pytest.mark.feature("show.not_found")
def test_show_unknown_model(api: Api) -> None:
    got = api.post("/api/show", {"model": "no-such-model-xyz"})
    api.contract("POST", "/api/show", got)
    message = api.native_error(got, 404)
    assert "not found" in message, f"message {message!r}"


@pytest.mark.unloads
@pytest.mark.feature("generate.load_unload")
def test_generate_load_then_unload(api: Api, chat_model: str) -> None:
    loaded = api.single(api.post("/api/generate", {"model": chat_model, "prompt": "", "stream": False}))
    assert loaded.get("done") is True and loaded.get("done_reason") == "load", f"empty prompt gave {loaded!r}"
    assert loaded.get("response") == "", "the load answer has an empty response"
    unloaded = api.single(api.post("/api/generate", {"model": chat_model, "prompt": "", "keep_alive": 0, "stream": False}))
    assert unloaded.get("done_reason") == "unload", f"keep_alive 0 with an empty prompt gave {unloaded!r}"


@pytest.mark.feature("chat.load_unload")
def test_chat_load(api: Api, chat_model: str) -> None:
    loaded = api.single(api.post("/api/chat", {"model": chat_model, "messages": [], "stream": False}))
    assert loaded.get("done_reason") == "load", f"empty messages gave {loaded!r}"
    assert loaded.get("message") == {"role": "assistant", "content": ""}, f"message {loaded.get('message')!r}"


@pytest.mark.unloads
@pytest.mark.feature("keep_alive.unload")
def test_keep_alive_zero_unloads(api: Api, chat_model: str) -> None:
    api.single(api.post("/api/generate", {"model": chat_model, "prompt": "Hi", "stream": False,
                                          "options": {"num_predict": 1}, "keep_alive": 0}))
    deadline = time.monotonic() + 10
    while chat_model in ps_names(api):
        assert time.monotonic() < deadline, f"{chat_model} is still in /api/ps 10 s after a keep_alive 0 request"
        time.sleep(0.25)


@pytest.mark.feature("keep_alive.duration")
def test_keep_alive_sets_expiry(api: Api, chat_model: str) -> None:
    api.single(api.post("/api/generate", {"model": chat_model, "prompt": "", "keep_alive": "10m", "stream": False}))
    models = api.single(api.get("/api/ps"))["models"]
    entry = next((m for m in models if m.get("model") == chat_model), None)
    assert entry is not None, f"{chat_model} missing from /api/ps after loading it"
    assert entry.get("expires_at"), "expires_at missing"


@pytest.mark.feature("keep_alive.invalid")
def test_keep_alive_invalid(api: Api, chat_model: str) -> None:
    got = api.post("/api/generate", {"model": chat_model, "prompt": "", "keep_alive": "abc", "stream": False})
    api.native_error(got, 400)


@pytest.mark.feature("copy.not_found")
def test_copy_unknown_source(api: Api) -> None:
    got = api.post("/api/copy", {"source": "no-such-model-xyz", "destination": "conformance-copy"})
    api.native_error(got, 404)


@pytest.mark.feature("delete.not_found")
def test_delete_unknown_model(api: Api) -> None:
    got = api.call("DELETE", "/api/delete", {"model": "no-such-model-xyz"})
    api.native_error(got, 404)


@pytest.mark.feature("create.missing_source")
def test_create_without_source(api: Api) -> None:
    got = api.post("/api/create", {"model": "conformance-empty", "stream": False})
    api.native_error(got, 400)


@pytest.mark.feature("push.missing_model")
def test_push_without_model(api: Api) -> None:
    message = api.native_error(api.post("/api/push", {"stream": False}), 400)
    assert "model is required" in message, f"message {message!r}"


@pytest.mark.feature("blobs.head")
def test_blob_head(api: Api) -> None:
    absent = api.call("HEAD", "/api/blobs/sha256:" + "0" * 64)
    assert absent.status == 404, f"HEAD of an absent blob answered {absent.status}"
    bad = api.call("HEAD", "/api/blobs/sha256:nothex")
    assert bad.status == 400, f"HEAD with a malformed digest answered {bad.status}"


@pytest.mark.mutating
@pytest.mark.feature("copy.basic")
def test_copy_then_delete(api: Api, chat_model: str) -> None:
    name = f"conformance-copy-{uuid.uuid4().hex[:8]}:latest"
    copied = api.post("/api/copy", {"source": chat_model, "destination": name})
    assert copied.status == 200 and copied.text == "", f"copy answered {copied.status} {copied.text[:80]!r}"
    try:
        tags = [m["model"] for m in api.single(api.get("/api/tags"))["models"]]
        assert name in tags, f"the copy {name} is not listed by /api/tags"
    finally:
        deleted = api.call("DELETE", "/api/delete", {"model": name})
    assert deleted.status == 200 and deleted.text == "", f"delete answered {deleted.status} {deleted.text[:80]!r}"


@pytest.mark.mutating
@pytest.mark.feature("delete.basic")
def test_delete_removes_from_tags(api: Api, chat_model: str) -> None:
    name = f"conformance-del-{uuid.uuid4().hex[:8]}:latest"
    assert api.post("/api/copy", {"source": chat_model, "destination": name}).status == 200, "copy (setup) failed"
    deleted = api.call("DELETE", "/api/delete", {"model": name})
    assert deleted.status == 200, f"delete answered {deleted.status}"
    tags = [m["model"] for m in api.single(api.get("/api/tags"))["models"]]
    assert name not in tags, f"{name} is still listed after delete"
