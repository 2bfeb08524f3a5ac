"""The model lifecycle of the reference backend: blobs, create, the bundled registry, pull and push.

The registry's protocol is tested in process (starlette's TestClient); the rest against a real backend on a
temporary model store and a real registry process, both on loopback. The round trip pull → create → generate →
push → delete → pull goes through the registry; resume and digest verification are proven with a planted
`-partial` file (a good prefix is resumed; a corrupt one is resumed too, so the pull fails verification).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.testclient import TestClient

from ollama_conformance.reference_backend.registry.server import build_registry
from ollama_conformance.reference_backend.store.blobs import (
    BlobWriter,
    DigestError,
    DigestMismatch,
    blob_name,
)
from ollama_conformance.reference_backend.store.transfer import parse_remote

ZERO = "sha256:" + "0" * 64


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


# --- store/blobs.py ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("digest", ["sha256:../../etc/passwd", "sha256:" + "0" * 63, "sha512:" + "0" * 64, "0" * 64,
                                    "sha256:" + "0" * 64 + "/..", "sha256:" + "g" * 64, ""])  # fmt: skip
def test_blob_name_refuses_anything_but_a_sha256(digest: str) -> None:
    with pytest.raises(DigestError, match="invalid digest format"):
        blob_name(digest)


def test_blob_writer_is_atomic(tmp_path: Path) -> None:
    with BlobWriter(tmp_path) as writer:
        writer.write(b"abc")
        with pytest.raises(DigestMismatch):
            writer.commit(ZERO)
    assert list(tmp_path.iterdir()) == [], "a refused blob left a file"
    with BlobWriter(tmp_path) as writer:
        writer.write(b"abc")
        assert not any(p.name == blob_name(sha(b"abc")) for p in tmp_path.iterdir()), "visible before commit"
        path = writer.commit(sha(b"abc"))
    assert path.read_bytes() == b"abc" and [p.name for p in tmp_path.iterdir()] == [path.name]


def test_parse_remote_names() -> None:
    remote = parse_remote("http://127.0.0.1:5000/ns/model:tag")
    assert remote is not None and remote.scheme == "http" and remote.name.host == "127.0.0.1:5000"
    assert remote.base_url(insecure=False) == "http://127.0.0.1:5000"
    plain = parse_remote("127.0.0.1:5000/ns/model")
    assert plain is not None and plain.base_url(insecure=False) == "https://127.0.0.1:5000"
    assert plain.base_url(insecure=True) == "http://127.0.0.1:5000"
    assert parse_remote("http://model") is None and parse_remote("a/b/c/d") is None


# --- the registry (in process) ------------------------------------------------------------------------------------
@pytest.fixture
def registry(tmp_path: Path) -> Iterator[TestClient]:
    with TestClient(build_registry(tmp_path)) as client:
        yield client


def test_registry_chunked_upload_and_range(registry: TestClient) -> None:
    data = bytes(range(256)) * 40
    started = registry.post("/v2/ns/m/blobs/uploads/")
    assert started.status_code == 202
    location = started.headers["location"]
    first = registry.patch(location, content=data[:4000], headers={"Content-Range": "0-3999"})
    assert first.status_code == 202 and first.headers["range"] == "0-3999"
    wrong = registry.patch(location, content=data[4000:], headers={"Content-Range": "10-20"})
    assert wrong.status_code == 416, "a chunk that does not continue the upload is refused"
    second = registry.patch(location, content=data[4000:], headers={"Content-Range": f"4000-{len(data) - 1}"})
    assert second.status_code == 202
    done = registry.put(f"{location}?digest={sha(data)}")
    assert done.status_code == 201 and done.headers["docker-content-digest"] == sha(data)
    head = registry.head(f"/v2/ns/m/blobs/{sha(data)}")
    assert head.status_code == 200 and head.headers["content-length"] == str(len(data))
    part = registry.get(f"/v2/other/repo/blobs/{sha(data)}", headers={"Range": "bytes=100-"})
    assert part.status_code == 206 and part.content == data[100:]
    assert part.headers["content-range"] == f"bytes 100-{len(data) - 1}/{len(data)}"


def test_registry_refuses_bad_digests_and_manifests(registry: TestClient) -> None:
    started = registry.post("/v2/ns/m/blobs/uploads/")
    bad = registry.put(f"{started.headers['location']}?digest={ZERO}", content=b"not zero")
    assert bad.status_code == 400 and bad.json()["errors"][0]["code"] == "DIGEST_INVALID"
    assert registry.head(f"/v2/ns/m/blobs/{ZERO}").status_code == 404
    assert registry.get("/v2/ns/m/blobs/sha256:..%2F..%2Fx").status_code in (400, 404)
    monolithic = registry.post(f"/v2/ns/m/blobs/uploads/?digest={sha(b'cfg')}", content=b"cfg")
    assert monolithic.status_code == 201
    manifest = {"schemaVersion": 2, "config": {"digest": sha(b"cfg"), "size": 3}, "layers": [{"digest": ZERO, "size": 1}]}
    refused = registry.put("/v2/ns/m/manifests/latest", content=json.dumps(manifest))
    assert refused.status_code == 400 and refused.json()["errors"][0]["code"] == "MANIFEST_BLOB_UNKNOWN"
    manifest["layers"] = []
    assert registry.put("/v2/ns/m/manifests/latest", content=json.dumps(manifest)).status_code == 201
    got = registry.get("/v2/ns/m/manifests/latest")
    assert got.status_code == 200 and got.json() == manifest
    assert registry.get(f"/v2/ns/m/manifests/{got.headers['docker-content-digest']}").status_code == 200
    assert registry.get("/v2/ns/m/manifests/nope").status_code == 404
    assert registry.put("/v2/../m/manifests/latest", content=b"{}").status_code in (400, 404)
    assert registry.put("/v2/ns/m/manifests/-x", content=json.dumps(manifest)).status_code == 400
    assert registry.put("/v2/ns/.m/manifests/x", content=json.dumps(manifest)).status_code == 400


# --- the backend with a registry (real processes) -----------------------------------------------------------------
@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str, Path, Path]]:
    """(backend URL, registry host, backend store, registry storage)."""
    from ollama_conformance.reference_backend.launcher import ReferenceBackend
    from ollama_conformance.reference_backend.registry.launcher import RegistryProcess

    root = tmp_path_factory.mktemp("lifecycle")
    models, storage = root / "models", root / "registry"
    with RegistryProcess(storage) as registry, ReferenceBackend(args=["--models", str(models)], quiet=True) as backend:
        yield backend.url, registry.host, models, storage


@pytest.fixture(scope="module")
def http(servers: tuple[str, str, Path, Path]) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=servers[0], timeout=600) as client:
        yield client


def stream(http: httpx.Client, path: str, body: dict[str, Any]) -> list[dict[str, Any]]:
    response = http.post(path, json=body)
    assert response.status_code == 200, response.text[:300]
    assert response.headers["content-type"] == "application/x-ndjson"
    return [json.loads(line) for line in response.text.splitlines()]


def ok(objects: list[dict[str, Any]]) -> list[str]:
    assert objects[-1] == {"status": "success"}, objects[-3:]
    return [o["status"] for o in objects]


def gemma_digest(http: httpx.Client) -> str:
    show = http.post("/api/show", json={"model": "gemma3:270m"}).json()
    return "sha256:" + show["modelfile"].split("sha256-")[1].split()[0]


def test_blob_routes(http: httpx.Client, servers: tuple[str, str, Path, Path]) -> None:
    data = b"blob routes " * 100
    assert http.head(f"/api/blobs/{sha(data)}").status_code == 404
    assert http.head("/api/blobs/sha256:nothex").status_code == 400
    refused = http.post(f"/api/blobs/{ZERO}", content=data)
    assert refused.status_code == 400
    assert refused.json() == {"error": f'digest mismatch, expected "{ZERO}", got "{sha(data)}"'}
    upper = sha(data).upper().replace("SHA256", "sha256")
    assert http.post(f"/api/blobs/{upper}", content=data).status_code == 400, "Ollama compares digests as strings"
    assert http.post(f"/api/blobs/{sha(data)}", content=data).status_code == 201
    assert http.post(f"/api/blobs/{sha(data)}", content=b"ignored").status_code == 200
    assert http.head(f"/api/blobs/{sha(data)}").status_code == 200
    assert http.head(f"/api/blobs/sha256-{sha(data)[7:]}").status_code == 200
    blobs = servers[2] / "blobs"
    assert not [p for p in blobs.iterdir() if p.name.endswith("partial")], "a temporary file was left behind"


@pytest.mark.parametrize(("body", "status", "message"), [
    ({"model": "m"}, 400, "neither 'from' or 'files' was specified"),
    ({"model": "bad name!", "from": "gemma3:270m"}, 400, "invalid model name"),
    ({"model": "m", "files": {"../x.gguf": ZERO}}, 400, "file path must be relative"),
    ({"model": "m", "files": {"x.gguf": ""}}, 400, "invalid digest format"),
    ({"model": "m", "files": {"x.bin": ZERO}}, 400, "unknown type"),
    ({"model": "m", "files": 3}, 400, "json: cannot unmarshal number into Go struct field CreateRequest.files of type map[string]string"),
    ({"model": "m", "files": {"x.gguf": 3}}, 400, "json: cannot unmarshal number into Go struct field CreateRequest.files of type string"),
    ({"model": "m", "from": "gemma3:270m", "template": "{{ .Prompt "}, 400, "template error: template: :1: unclosed action"),
    ({"model": "m", "from": "gemma3:270m", "quantize": "q5_9"}, 500, "unsupported quantization type Q5_9 - supported types are F32, F16, Q4_K_S, Q4_K_M, Q8_0"),
    ({"model": "m", "from": "gemma3:270m", "quantize": "q8_0"}, 500, "quantization is only supported for F16, BF16 and F32 models"),
    ({"model": "m", "from": "gemma3:270m", "info": {"context_length": -1}}, 400, 'info field "context_length" must be a non-negative integer'),
])  # fmt: skip
def test_create_errors(http: httpx.Client, body: dict[str, Any], status: int, message: str) -> None:
    response = http.post("/api/create", json=body)
    assert (response.status_code, response.json()) == (status, {"error": message})


def test_create_from_model_layers(http: httpx.Client) -> None:
    statuses = ok(stream(http, "/api/create", {
        "model": "layered", "from": "gemma3:270m", "system": "Be brief.", "template": "{{ .Prompt }}",
        "parameters": {"temperature": 0.5, "stop": ["x"]}, "license": ["L1", "L2"],
        "messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}))  # fmt: skip
    assert statuses[0].startswith("using existing layer sha256:") and statuses[-2] == "writing manifest"
    assert any(s.startswith("creating new layer") for s in statuses)
    show = http.post("/api/show", json={"model": "layered"}).json()
    assert show["template"] == "{{ .Prompt }}"
    assert "temperature" in show["parameters"] and "top_k" in show["parameters"], "parameters merge with the base's"
    tags = {m["name"]: m for m in http.get("/api/tags").json()["models"]}
    assert tags["layered:latest"]["details"]["family"] == "gemma3"
    merged = http.post("/api/create", json={"model": "layered", "from": "gemma3:270m", "stream": False})
    assert (merged.status_code, merged.json()) == (200, {"status": "success"})
    assert http.request("DELETE", "/api/delete", json={"model": "layered"}).status_code == 200


def test_create_from_gguf_blob_generates(http: httpx.Client) -> None:
    statuses = ok(stream(http, "/api/create", {"model": "from-file", "files": {"model.gguf": gemma_digest(http)}}))
    assert statuses[:2] == ["parsing GGUF", f"using existing layer {gemma_digest(http)}"]
    details = {m["name"]: m["details"] for m in http.get("/api/tags").json()["models"]}["from-file:latest"]
    assert details == {"parent_model": "", "format": "gguf", "family": "gemma3", "families": ["gemma3"],
                       "parameter_size": "268.10M", "quantization_level": "Q4_K_M"}  # fmt: skip
    answer = http.post("/api/generate", json={"model": "from-file", "prompt": "Hi", "stream": False,
                                              "options": {"num_predict": 2}}).json()  # fmt: skip
    assert answer["done"] is True and answer["eval_count"] >= 1
    not_gguf = b"not a gguf at all"
    assert http.post(f"/api/blobs/{sha(not_gguf)}", content=not_gguf).status_code == 201
    refused = http.post("/api/create", json={"model": "m", "files": {"x.gguf": sha(not_gguf)}})
    assert refused.text.splitlines()[-1] == '{"error":"supplied file was not in GGUF format"}'
    missing = http.post("/api/create", json={"model": "m", "files": {"x.gguf": ZERO}, "stream": False})
    assert missing.status_code == 500 and missing.json()["error"].endswith(f"{blob_name(ZERO)}: no such file or directory")
    assert http.request("DELETE", "/api/delete", json={"model": "from-file"}).status_code == 200


def test_pull_and_push_errors(http: httpx.Client, servers: tuple[str, str, Path, Path]) -> None:
    host = servers[1]
    unknown = stream(http, "/api/pull", {"model": f"{host}/ns/unknown", "insecure": True})
    assert unknown == [{"status": "pulling manifest"}, {"error": "pull model manifest: file does not exist"}]
    merged = http.post("/api/pull", json={"model": f"{host}/ns/unknown", "insecure": True, "stream": False})
    assert (merged.status_code, merged.json()) == (500, {"error": "pull model manifest: file does not exist"})
    https = stream(http, "/api/pull", {"model": f"{host}/ns/unknown"})
    assert https[-1]["error"].endswith("http: server gave HTTP response to HTTPS client")
    insecure = http.post("/api/pull", json={"model": f"http://{host}/ns/unknown"})
    assert (insecure.status_code, insecure.json()) == (500, {"error": "insecure protocol http"})
    refused = stream(http, "/api/pull", {"model": "127.0.0.1:9/ns/m", "insecure": True})
    assert refused[-1] == {"error": 'pull model manifest: Get "http://127.0.0.1:9/v2/ns/m/manifests/latest": '
                                    "dial tcp 127.0.0.1:9: connect: connection refused"}  # fmt: skip
    assert http.post("/api/pull", json={}).json() == {"error": "invalid model name"}
    assert http.post("/api/push", json={}).json() == {"error": "model is required"}
    missing = stream(http, "/api/push", {"model": f"{host}/ns/absent", "insecure": True})
    assert [o.get("status") for o in missing[:2]] == ["retrieving manifest", "couldn't retrieve manifest"]
    assert missing[-1]["error"].endswith("/absent/latest: no such file or directory")


def test_round_trip_through_the_registry(http: httpx.Client, servers: tuple[str, str, Path, Path]) -> None:
    """pull → create → generate → push → delete → pull, starting from a registry seeded with gemma3:270m."""
    _, host, models, _ = servers
    seed = f"{host}/library/gemma3:270m"
    assert http.post("/api/copy", json={"source": "gemma3:270m", "destination": seed}).status_code == 200
    ok(stream(http, "/api/push", {"model": seed, "insecure": True}))
    weights = gemma_digest(http)
    for name in (seed, "gemma3:270m"):  # nothing local uses the GGUF any more: its blob goes
        assert http.request("DELETE", "/api/delete", json={"model": name}).status_code == 200
    assert http.head(f"/api/blobs/{weights}").status_code == 404, "the deleted model's weights are still there"
    pulled = stream(http, "/api/pull", {"model": seed, "insecure": True})
    statuses = ok(pulled)
    progress = [o for o in pulled if o.get("digest") == weights]
    assert progress and progress[-1]["completed"] == progress[-1]["total"] == progress[0]["total"] > 0, progress[-1:]
    assert statuses[0] == "pulling manifest" and statuses[-3:] == ["verifying sha256 digest", "writing manifest", "success"]
    assert http.head(f"/api/blobs/{weights}").status_code == 200
    ok(stream(http, "/api/create", {"model": "rt-model", "from": seed, "system": "Round trip."}))
    answer = http.post("/api/generate", json={"model": "rt-model", "prompt": "Hi", "stream": False,
                                              "options": {"num_predict": 1}}).json()  # fmt: skip
    assert answer["done"] is True
    target = f"{host}/rt/model:v1"
    assert http.post("/api/copy", json={"source": "rt-model", "destination": target}).status_code == 200
    pushed = ok(stream(http, "/api/push", {"model": target, "insecure": True}))
    assert pushed[0] == "retrieving manifest" and pushed[-2] == "pushing manifest"
    for name in (target, "rt-model"):
        assert http.request("DELETE", "/api/delete", json={"model": name}).status_code == 200
    ok(stream(http, "/api/pull", {"model": target, "insecure": True}))
    tags = {m["name"]: m for m in http.get("/api/tags").json()["models"]}
    assert target in tags and tags[target]["details"]["family"] == "gemma3"
    again = http.post("/api/generate", json={"model": target, "prompt": "Hi", "stream": False,
                                             "options": {"num_predict": 1}}).json()  # fmt: skip
    assert again["done"] is True
    assert http.post("/api/copy", json={"source": seed, "destination": "gemma3:270m"}).status_code == 200
    assert not [p for p in (models / "blobs").iterdir() if p.name.endswith("partial")]


def test_pull_resumes_and_verifies(http: httpx.Client, servers: tuple[str, str, Path, Path]) -> None:
    _, host, models, storage = servers
    name = f"{host}/resume/model:latest"
    big = ("resumable license text " * 120_000).encode()  # ~2.6 MB: one layer worth resuming
    ok(stream(http, "/api/create", {"model": name, "from": "gemma3:270m", "license": big.decode()}))
    ok(stream(http, "/api/push", {"model": name, "insecure": True}))
    assert http.request("DELETE", "/api/delete", json={"model": name}).status_code == 200
    blob = models / "blobs" / blob_name(sha(big))
    partial = blob.with_name(blob.name + "-partial")
    assert not blob.exists()
    partial.write_bytes(b"X" + big[1:1_000_000])  # a corrupt prefix: resumed, so the whole fails verification
    failed = stream(http, "/api/pull", {"model": name, "insecure": True})
    assert failed[-1] == {"error": f"digest mismatch, file must be downloaded again: want {sha(big)}, "
                                   f"got {sha(b'X' + big[1:])}"}  # fmt: skip
    assert failed[-2] == {"status": "verifying sha256 digest"}
    assert not partial.exists() and not blob.exists(), "the bad download was kept"
    partial.write_bytes(big[:1_000_000])  # a good prefix: the pull completes it
    resumed = stream(http, "/api/pull", {"model": name, "insecure": True})
    ok(resumed)
    first = next(o for o in resumed if o.get("digest") == sha(big))
    assert first["completed"] == 1_000_000, f"the pull did not start from the partial file: {first}"
    assert blob.read_bytes() == big and not partial.exists()
    # a corrupt blob in the registry is caught by verification too
    stored = storage / "blobs" / blob_name(sha(big))
    stored.write_bytes(b"Y" + big[1:])
    assert http.request("DELETE", "/api/delete", json={"model": name}).status_code == 200
    corrupt = stream(http, "/api/pull", {"model": name, "insecure": True})
    assert corrupt[-1]["error"].startswith(f"digest mismatch, file must be downloaded again: want {sha(big)}")
    assert not blob.exists()


def test_delete_keeps_shared_and_uploaded_blobs(http: httpx.Client) -> None:
    data = b"uploaded for a later create"
    assert http.post(f"/api/blobs/{sha(data)}", content=data).status_code == 201
    system = "shared system prompt for two models"
    for name in ("share-a", "share-b"):
        ok(stream(http, "/api/create", {"model": name, "from": "gemma3:270m", "system": system}))
    assert http.request("DELETE", "/api/delete", json={"model": "share-a"}).status_code == 200
    assert http.head(f"/api/blobs/{sha(system.encode())}").status_code == 200, "a blob of share-b went"
    assert http.head(f"/api/blobs/{sha(data)}").status_code == 200, "an unrelated uploaded blob went"
    assert http.request("DELETE", "/api/delete", json={"model": "share-b"}).status_code == 200
    assert http.head(f"/api/blobs/{sha(system.encode())}").status_code == 404, "an unused blob stayed"
