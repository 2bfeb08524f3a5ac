"""Model management: /api/tags, /api/ps, /api/show, load/unload and keep_alive; and, as mutations, the model
lifecycle: blobs, create (from a model, from a GGUF blob), pull and push through a registry, copy and delete."""

from __future__ import annotations

import hashlib
import re
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from ollama_conformance.conformance.checks import Api, exact
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
    body = api.single(got)
    models = body.get("models")
    assert isinstance(models, list), f"/api/ps has no `models` list: {got.text[:200]!r}"
    names = [m.get("model") for m in models if isinstance(m, dict)]
    assert chat_model in names, f"{chat_model} just loaded but missing from /api/ps"
    repeated = sorted({str(name) for name in names if names.count(name) > 1})
    assert not repeated, f"/api/ps lists {repeated[0]} {names.count(repeated[0])} times (one entry per loaded model)"
    entry = next(m for m in models if isinstance(m, dict) and m.get("model") == chat_model)
    expires = str(entry.get("expires_at") or "")
    assert not expires or (expires[:4].isdigit() and int(expires[:4]) >= 2000), (
        f"/api/ps gives {chat_model} expires_at {expires!r}, long past, right after a keep_alive 5m request"
    )
    api.contract("GET", "/api/ps", got)


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
    message = api.native_error(got, 404)
    api.contract("POST", "/api/show", got)
    assert "not found" in message, f"message {message!r}"


@pytest.mark.unloads
@pytest.mark.feature("generate.load_unload")
def test_generate_load_then_unload(api: Api, chat_model: str) -> None:
    loaded = api.single(api.post("/api/generate", {"model": chat_model, "prompt": "", "stream": False}))
    assert loaded.get("done") is True and loaded.get("done_reason") == "load", f"empty prompt gave {loaded!r}"
    assert loaded.get("response") == "", "the load answer has an empty response"
    assert chat_model in ps_names(api), f"{chat_model} answered done_reason 'load' but is not listed by /api/ps"
    unloaded = api.single(api.post("/api/generate", {"model": chat_model, "prompt": "", "keep_alive": 0, "stream": False}))
    assert unloaded.get("done_reason") == "unload", f"keep_alive 0 with an empty prompt gave {unloaded!r}"
    wait_until_unloaded(api, chat_model)


@pytest.mark.feature("chat.load_unload")
def test_chat_load(api: Api, chat_model: str) -> None:
    loaded = api.single(api.post("/api/chat", {"model": chat_model, "messages": [], "stream": False}))
    assert loaded.get("done_reason") == "load", f"empty messages gave {loaded!r}"
    message = loaded.get("message")
    # ollama-python reads role and content; a field more is read by no client (the exact grade names it)
    assert isinstance(message, dict) and message.get("role") == "assistant" and message.get("content") == "", (
        f"message {message!r}, expected role 'assistant' and content ''"
    )
    exact(set(message) == {"role", "content"}, f"message carries {sorted(set(message) - {'role', 'content'})}, Ollama sends role and content only")


@pytest.mark.unloads
@pytest.mark.feature("keep_alive.unload")
def test_keep_alive_zero_unloads(api: Api, chat_model: str) -> None:
    # First see the model loaded: a server whose /api/ps is always empty must not pass by default.
    api.single(api.post("/api/generate", {"model": chat_model, "prompt": "", "keep_alive": "5m", "stream": False}))
    assert chat_model in ps_names(api), f"{chat_model} was just loaded (keep_alive 5m) but /api/ps does not list it"
    api.single(api.post("/api/generate", {"model": chat_model, "prompt": "Hi", "stream": False,
                                          "options": {"num_predict": 1}, "keep_alive": 0}))
    wait_until_unloaded(api, chat_model)


def wait_until_unloaded(api: Api, model: str, seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while model in ps_names(api):
        assert time.monotonic() < deadline, f"{model} is still in /api/ps {seconds:g} s after a keep_alive 0 request"
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


# --- the model lifecycle: blobs, create, pull, push (through an OCI registry the target can reach) --------------
# `--ollama-registry URL` names the registry; without it the bundled one (reference_backend/registry) is started on
# loopback for the session. Models go to it as `HOST:PORT/conformance/<name>:latest` with `insecure: true`.


@pytest.fixture(scope="session")
def registry_host(pytestconfig: pytest.Config, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    configured = getattr(pytestconfig.option, "ollama_registry", None)
    if configured:
        yield configured.split("://", 1)[-1].rstrip("/")
        return
    from ollama_conformance.reference_backend.registry.launcher import RegistryProcess

    with RegistryProcess(tmp_path_factory.mktemp("registry")) as registry:
        yield registry.host


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def statuses(objects: list[dict[str, Any]]) -> list[str]:
    return [str(o.get("status")) for o in objects if "status" in o]


def progress_stream(api: Api, path: str, body: dict[str, Any]) -> list[dict[str, Any]]:
    """A streamed create/pull/push that must end in `success`: 200, NDJSON, each line per the spec, no error."""
    got = api.post(path, body)
    assert got.status == 200, f"{path} answered {got.status}: {got.text[:300]!r}"
    objects = api.contract("POST", path, got)
    errors = [o["error"] for o in objects if "error" in o]
    assert not errors, f"{path} streamed an error: {errors[0]!r}"
    assert objects and objects[-1].get("status") == "success", f"{path}: the stream ends {objects[-1:]!r}, not 'success'"
    return objects


def tag_names(api: Api) -> list[str]:
    return [m["model"] for m in api.single(api.get("/api/tags"))["models"]]


def delete_model(api: Api, name: str) -> None:
    got = api.call("DELETE", "/api/delete", {"model": name})
    assert got.status in (200, 404), f"delete {name} answered {got.status} {got.text[:120]!r}"


def model_blob_digest(api: Api, model: str) -> str | None:
    """The digest of a model's weights, from the `FROM <blobs>/sha256-<hex>` line of /api/show's modelfile."""
    modelfile = api.single(api.post("/api/show", {"model": model})).get("modelfile") or ""
    found = re.search(r"^FROM .*sha256-([0-9a-f]{64})\s*$", modelfile, re.MULTILINE)
    return f"sha256:{found.group(1)}" if found else None


@pytest.mark.mutating
@pytest.mark.feature("blobs.upload")
def test_blob_upload(api: Api) -> None:
    data = f"conformance blob {uuid.uuid4()}\n".encode() * 64
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    created = api.call("POST", f"/api/blobs/{digest}", raw=data)
    assert created.status == 201 and created.text == "", f"upload answered {created.status} {created.text[:120]!r}"
    assert api.call("HEAD", f"/api/blobs/{digest}").status == 200, "HEAD of the uploaded blob is not 200"
    again = api.call("POST", f"/api/blobs/{digest}", raw=data)
    assert again.status == 200, f"uploading an existing blob answered {again.status}, expected 200"
    other = "sha256:" + hashlib.sha256(data + b"x").hexdigest()
    mismatch = api.call("POST", f"/api/blobs/{other}", raw=data)
    message = api.native_error(mismatch, 400)
    exact("digest mismatch" in message, f"mismatch message: expected 'digest mismatch, expected ...', got {message!r}")
    assert api.call("HEAD", f"/api/blobs/{other}").status == 404, "a refused upload left a blob under its digest"


@pytest.mark.mutating
@pytest.mark.feature("create.from")
def test_create_from_model(api: Api, chat_model: str) -> None:
    name = unique("conformance-create") + ":latest"
    try:
        objects = progress_stream(api, "/api/create", {"model": name, "from": chat_model, "system": "Answer briefly.",
                                                       "parameters": {"temperature": 0.25}})  # fmt: skip
        assert "writing manifest" in statuses(objects), f"no 'writing manifest' status in {statuses(objects)}"
        assert name in tag_names(api), f"the created {name} is not listed by /api/tags"
        shown = api.single(api.post("/api/show", {"model": name}))
        assert re.search(r"(?m)^temperature\s+0\.25$", shown.get("parameters") or ""), (
            f"the created model's parameters {shown.get('parameters')!r} lack 'temperature 0.25'"
        )
    finally:
        delete_model(api, name)


@pytest.mark.mutating
@pytest.mark.feature("create.files")
def test_create_from_gguf_blob(api: Api, chat_model: str) -> None:
    digest = model_blob_digest(api, chat_model)
    if digest is None:
        pytest.skip(f"/api/show of {chat_model} names no weights blob (FROM .../sha256-<hex>) to create from")
    if api.call("HEAD", f"/api/blobs/{digest}").status != 200:
        pytest.skip(f"the weights blob {digest} of {chat_model} is not served by HEAD /api/blobs")
    if (api.single(api.post("/api/show", {"model": chat_model})).get("details") or {}).get("format") != "gguf":
        pytest.skip(f"{chat_model} is not stored as GGUF")
    name = unique("conformance-gguf") + ":latest"
    try:
        objects = progress_stream(api, "/api/create", {"model": name, "files": {"model.gguf": digest}})
        assert "parsing GGUF" in statuses(objects), f"no 'parsing GGUF' status in {statuses(objects)}"
        assert name in tag_names(api), f"the created {name} is not listed by /api/tags"
        answer = api.single(api.post("/api/generate", {"model": name, "prompt": "Hello", "stream": False,
                                                       "options": {"num_predict": 2}}))  # fmt: skip
        assert answer.get("done") is True, f"the created model did not finish a generation: {answer!r}"
    finally:
        delete_model(api, name)


@pytest.mark.feature("pull.not_found")
def test_pull_unknown_model(api: Api, registry_host: str) -> None:
    name = f"{registry_host}/conformance/{unique('no-such-model')}:latest"
    got = api.post("/api/pull", {"model": name, "insecure": True})
    objects = api.contract("POST", "/api/pull", got)
    assert objects and "error" in objects[-1], f"pulling an unknown model did not end with an error: {objects[-2:]!r}"
    exact("file does not exist" in objects[-1]["error"],
          f"error: expected 'pull model manifest: file does not exist', got {objects[-1]['error']!r}")  # fmt: skip
    merged = api.post("/api/pull", {"model": name, "insecure": True, "stream": False})
    api.native_error(merged, 500)


def push_copy(api: Api, chat_model: str, registry_host: str) -> tuple[str, list[dict[str, Any]]]:
    """Copies the chat model to a registry name and pushes it: the name and the push stream."""
    name = f"{registry_host}/conformance/{unique('roundtrip')}:latest"
    assert api.post("/api/copy", {"source": chat_model, "destination": name}).status == 200, "copy (setup) failed"
    return name, progress_stream(api, "/api/push", {"model": name, "insecure": True})


@pytest.mark.mutating
@pytest.mark.feature("push.stream")
def test_push_then_pull_back(api: Api, chat_model: str, registry_host: str) -> None:
    name, pushed = push_copy(api, chat_model, registry_host)
    try:
        seen = statuses(pushed)
        assert seen[0] == "retrieving manifest", f"push starts with {seen[0]!r}, expected 'retrieving manifest'"
        assert "pushing manifest" in seen, f"no 'pushing manifest' status in {seen}"
        layers = [o for o in pushed if str(o.get("status", "")).startswith("pushing ") and o.get("digest")]
        assert layers, f"no 'pushing <digest>' progress in {seen}"
        for item in layers:
            assert item["status"] == f"pushing {item['digest'][7:19]}", f"progress status {item['status']!r}"
        size = next(m["size"] for m in api.single(api.get("/api/tags"))["models"] if m["model"] == name)
        delete_model(api, name)
        assert name not in tag_names(api), f"{name} still listed after delete"
        progress_stream(api, "/api/pull", {"model": name, "insecure": True})
        back = next((m for m in api.single(api.get("/api/tags"))["models"] if m["model"] == name), None)
        assert back is not None, f"{name} is not listed after pulling it back"
        assert back["size"] == size, f"pulled back with size {back['size']}, pushed {size}"
    finally:
        delete_model(api, name)


@pytest.mark.mutating
@pytest.mark.feature("pull.stream")
def test_pull_stream(api: Api, chat_model: str, registry_host: str) -> None:
    name, _ = push_copy(api, chat_model, registry_host)
    try:
        delete_model(api, name)
        objects = progress_stream(api, "/api/pull", {"model": name, "insecure": True})
        seen = statuses(objects)
        for expected in ("pulling manifest", "verifying sha256 digest", "writing manifest"):
            assert expected in seen, f"no {expected!r} status in {seen}"
        layers = [o for o in objects if str(o.get("status", "")).startswith("pulling ") and o.get("digest")]
        assert layers, f"no 'pulling <digest>' progress in {seen}"
        for item in layers:
            assert item["status"] == f"pulling {item['digest'][7:19]}", f"progress status {item['status']!r}"
            assert isinstance(item.get("total"), int) and item["total"] > 0, f"progress without a total: {item!r}"
        finals = {o["digest"]: o for o in layers}
        short = [d for d, o in finals.items() if o.get("completed") != o["total"]]
        assert not short, f"the last progress of {short[:2]} does not reach its total"
        answer = api.single(api.post("/api/generate", {"model": name, "prompt": "Hi", "stream": False,
                                                       "options": {"num_predict": 1}}))  # fmt: skip
        assert answer.get("done") is True, f"the pulled model did not generate: {answer!r}"
    finally:
        delete_model(api, name)


@pytest.mark.mutating
@pytest.mark.feature("delete.shared_blobs")
def test_delete_keeps_shared_blobs(api: Api, chat_model: str) -> None:
    first, second = unique("conformance-share-a") + ":latest", unique("conformance-share-b") + ":latest"
    try:
        for name in (first, second):
            assert api.post("/api/copy", {"source": chat_model, "destination": name}).status == 200, "copy failed"
        assert api.call("DELETE", "/api/delete", {"model": first}).status == 200, "delete failed"
        digest = model_blob_digest(api, second)
        if digest is not None:
            assert api.call("HEAD", f"/api/blobs/{digest}").status == 200, f"the shared blob {digest} is gone"
        loaded = api.single(api.post("/api/generate", {"model": second, "prompt": "", "stream": False}))
        assert loaded.get("done") is True, f"the remaining copy does not load: {loaded!r}"
    finally:
        delete_model(api, first)
        delete_model(api, second)
