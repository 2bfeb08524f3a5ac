"""The bundled registry: the part of the OCI distribution API that Ollama's pull and push speak.

- `GET /v2/`: the API check.
- `HEAD|GET /v2/<ns>/<model>/manifests/<tag or digest>`, `PUT .../manifests/<tag>` (every blob it names must be
  here first: 400 MANIFEST_BLOB_UNKNOWN otherwise).
- `HEAD|GET /v2/<ns>/<model>/blobs/<digest>` (GET honours one `Range: bytes=a-b`, answering 206: resumed pulls).
- uploads: `POST .../blobs/uploads/` (202 + Location; `?digest=` makes it monolithic, 201; `?mount=<digest>` is 201
  when the blob is already here), `PATCH <location>` with `Content-Range: a-b` (chunked; 416 when `a` is not the
  size so far), `PUT <location>?digest=` (the last bytes, if any; 201, or 400 DIGEST_INVALID), `GET <location>`
  (progress), `DELETE <location>`.

Blobs are shared by every repository (as Ollama's registry deduplicates them); manifests live under
`manifests/<ns>/<model>/<tag>`. Names, tags, digests and upload ids are validated before any path is built; blobs
and manifests are written to temporary files and renamed into place.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
import uuid
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from ollama_conformance.reference_backend.store.blobs import (
    BlobWriter,
    DigestMismatch,
    blob_name,
    is_valid_digest,
    read_chunks,
)

_COMPONENT = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]{0,79}$")
_UPLOAD_ID = re.compile(r"^[0-9a-f]{32}$")
_RANGE = re.compile(r"^bytes=(\d+)-(\d*)$")
_CONTENT_RANGE = re.compile(r"^(?:bytes )?(\d+)-(\d+)(?:/\d+|/\*)?$")
MAX_MANIFEST_BYTES = 4 << 20
MANIFEST_TYPES = (
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
)


class RegistryError(Exception):
    def __init__(self, status: int, code: str, message: str, detail: Any = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.detail = status, code, message, detail


def error_response(exc: RegistryError) -> Response:
    entry: dict[str, Any] = {"code": exc.code, "message": exc.message}
    if exc.detail is not None:
        entry["detail"] = exc.detail
    return JSONResponse({"errors": [entry]}, status_code=exc.status)


class RegistryStore:
    """The registry's files under one root: blobs/, manifests/<ns>/<model>/<tag>, uploads/<id>."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.blobs = root / "blobs"
        self.manifests = root / "manifests"
        self.uploads = root / "uploads"
        for folder in (self.blobs, self.manifests, self.uploads):
            folder.mkdir(parents=True, exist_ok=True)

    def repository(self, namespace: str, model: str) -> Path:
        for part in (namespace, model):
            if not _COMPONENT.match(part):
                raise RegistryError(400, "NAME_INVALID", "invalid repository name", {"name": f"{namespace}/{model}"})
        return self.manifests / namespace / model

    def blob(self, digest: str) -> Path:
        if not is_valid_digest(digest) or digest[6] != ":":
            raise RegistryError(
                400, "DIGEST_INVALID", "provided digest did not match uploaded content", {"digest": digest}
            )
        return self.blobs / blob_name(digest)

    def upload(self, upload_id: str) -> Path:
        path = self.uploads / upload_id
        if not _UPLOAD_ID.match(upload_id) or not path.is_file():
            raise RegistryError(404, "BLOB_UPLOAD_UNKNOWN", "blob upload unknown to registry")
        return path

    def manifest_path(self, namespace: str, model: str, reference: str) -> Path | None:
        """The manifest file for a tag or a digest reference; None when there is none."""
        folder = self.repository(namespace, model)
        if reference.startswith("sha256:"):
            if not is_valid_digest(reference):
                raise RegistryError(400, "DIGEST_INVALID", "invalid digest", {"digest": reference})
            if folder.is_dir():
                for path in folder.iterdir():
                    if path.is_file() and "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest() == reference:
                        return path
            return None
        if not _COMPONENT.match(reference):
            raise RegistryError(400, "TAG_INVALID", "manifest tag did not match URI", {"tag": reference})
        path = folder / reference
        return path if path.is_file() else None


def _store(request: Request) -> RegistryStore:
    return request.app.state.registry


def _repo_url(request: Request) -> str:
    return f"/v2/{request.path_params['namespace']}/{request.path_params['model']}"


async def _errors(handler: Any, request: Request) -> Response:
    try:
        return await handler(request)
    except RegistryError as exc:
        return error_response(exc)


def route(path: str, methods: list[str]):  # -> decorator giving a Route
    def wrap(handler: Any) -> Route:
        async def endpoint(request: Request) -> Response:
            return await _errors(handler, request)

        endpoint.__name__ = handler.__name__
        return Route(path, endpoint, methods=methods)

    return wrap


@route("/v2/", ["GET", "HEAD"])
async def api_check(request: Request) -> Response:
    return JSONResponse({}, headers={"Docker-Distribution-API-Version": "registry/2.0"})


@route("/v2/{namespace}/{model}/manifests/{reference}", ["GET", "HEAD"])
async def get_manifest(request: Request) -> Response:
    p = request.path_params
    path = _store(request).manifest_path(p["namespace"], p["model"], p["reference"])
    if path is None:
        raise RegistryError(404, "MANIFEST_UNKNOWN", "manifest unknown", {"name": f"{p['namespace']}/{p['model']}",
                                                                         "tag": p["reference"]})  # fmt: skip
    data = path.read_bytes()
    try:
        media_type = json.loads(data).get("mediaType") or MANIFEST_TYPES[0]
    except ValueError:
        media_type = MANIFEST_TYPES[0]
    headers = {"Docker-Content-Digest": "sha256:" + hashlib.sha256(data).hexdigest(), "Content-Length": str(len(data))}
    body = b"" if request.method == "HEAD" else data
    return Response(body, headers=headers, media_type=media_type)


@route("/v2/{namespace}/{model}/manifests/{reference}", ["PUT"])
async def put_manifest(request: Request) -> Response:
    p = request.path_params
    store = _store(request)
    folder = store.repository(p["namespace"], p["model"])
    if not _COMPONENT.match(p["reference"]):
        raise RegistryError(400, "TAG_INVALID", "manifest tag did not match URI", {"tag": p["reference"]})
    data = await _bounded_body(request, MAX_MANIFEST_BYTES)
    try:
        manifest = json.loads(data)
        digests = [manifest["config"]["digest"], *(layer["digest"] for layer in manifest.get("layers") or [])]
        if not all(isinstance(d, str) for d in digests):
            raise TypeError("digest")
    except (ValueError, KeyError, TypeError) as exc:
        raise RegistryError(400, "MANIFEST_INVALID", "manifest invalid", {"reason": str(exc)}) from exc
    for digest in digests:
        if not store.blob(digest).is_file():
            raise RegistryError(400, "MANIFEST_BLOB_UNKNOWN", "blob unknown to registry", {"digest": digest})
    folder.mkdir(parents=True, exist_ok=True)
    _atomic_write(folder / p["reference"], data)
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    return Response(status_code=201, headers={"Location": f"{_repo_url(request)}/manifests/{digest}",
                                              "Docker-Content-Digest": digest})  # fmt: skip


@route("/v2/{namespace}/{model}/blobs/uploads/", ["POST"])
async def start_upload(request: Request) -> Response:
    p = request.path_params
    store = _store(request)
    store.repository(p["namespace"], p["model"])
    mount = request.query_params.get("mount")
    if mount and store.blob(mount).is_file():
        return _blob_created(request, mount)
    upload_id = uuid.uuid4().hex
    path = store.uploads / upload_id
    path.touch()
    digest = request.query_params.get("digest")
    if digest is not None:  # monolithic: the whole blob in this request
        await _append(request, path)
        return _finish(request, path, digest)
    return _upload_accepted(request, upload_id, 0)


@route("/v2/{namespace}/{model}/blobs/uploads/{upload_id}", ["PATCH"])
async def patch_upload(request: Request) -> Response:
    store = _store(request)
    store.repository(request.path_params["namespace"], request.path_params["model"])
    path = store.upload(request.path_params["upload_id"])
    content_range = request.headers.get("content-range")
    if content_range:
        match = _CONTENT_RANGE.match(content_range.strip())
        if match is None or int(match.group(1)) != path.stat().st_size:
            return Response(status_code=416, headers={"Range": _range_header(path.stat().st_size)})
    await _append(request, path)
    return _upload_accepted(request, request.path_params["upload_id"], path.stat().st_size)


@route("/v2/{namespace}/{model}/blobs/uploads/{upload_id}", ["PUT"])
async def finish_upload(request: Request) -> Response:
    store = _store(request)
    store.repository(request.path_params["namespace"], request.path_params["model"])
    path = store.upload(request.path_params["upload_id"])
    digest = request.query_params.get("digest") or ""
    await _append(request, path)
    return _finish(request, path, digest)


@route("/v2/{namespace}/{model}/blobs/uploads/{upload_id}", ["GET"])
async def upload_status(request: Request) -> Response:
    store = _store(request)
    store.repository(request.path_params["namespace"], request.path_params["model"])
    path = store.upload(request.path_params["upload_id"])
    return _upload_accepted(request, request.path_params["upload_id"], path.stat().st_size, status=204)


@route("/v2/{namespace}/{model}/blobs/uploads/{upload_id}", ["DELETE"])
async def cancel_upload(request: Request) -> Response:
    store = _store(request)
    store.upload(request.path_params["upload_id"]).unlink(missing_ok=True)
    return Response(status_code=204)


@route("/v2/{namespace}/{model}/blobs/{digest}", ["GET", "HEAD"])
async def get_blob(request: Request) -> Response:
    store = _store(request)
    store.repository(request.path_params["namespace"], request.path_params["model"])
    digest = request.path_params["digest"]
    path = store.blob(digest)
    if not path.is_file():
        raise RegistryError(404, "BLOB_UNKNOWN", "blob unknown to registry", {"digest": digest})
    size = path.stat().st_size
    headers = {"Docker-Content-Digest": digest, "Accept-Ranges": "bytes", "Content-Type": "application/octet-stream"}
    if request.method == "HEAD":
        return Response(status_code=200, headers={**headers, "Content-Length": str(size)})
    start, end, status = 0, size, 200
    wanted = request.headers.get("range")
    if wanted:
        match = _RANGE.match(wanted.strip())
        if match is None or int(match.group(1)) >= max(size, 1):
            return Response(status_code=416, headers={"Content-Range": f"bytes */{size}"})
        start = int(match.group(1))
        end = min(size, int(match.group(2)) + 1) if match.group(2) else size
        status = 206
        headers["Content-Range"] = f"bytes {start}-{end - 1}/{size}"
    headers["Content-Length"] = str(end - start)
    return StreamingResponse(read_chunks(path, start, end), status_code=status, headers=headers)


# --- helpers --------------------------------------------------------------------------------------------------
async def _bounded_body(request: Request, limit: int) -> bytes:
    data = bytearray()
    async for chunk in request.stream():
        data.extend(chunk)
        if len(data) > limit:
            raise RegistryError(413, "SIZE_INVALID", "manifest too large")
    return bytes(data)


async def _append(request: Request, path: Path) -> None:
    with open(path, "ab") as handle:
        async for chunk in request.stream():
            handle.write(chunk)


def _finish(request: Request, upload: Path, digest: str) -> Response:
    """Moves a complete upload into the blobs when its sha256 is `digest`; the upload is gone either way."""
    store = _store(request)
    try:
        store.blob(digest)
        with BlobWriter(store.blobs) as writer:
            for chunk in read_chunks(upload):
                writer.write(chunk)
            writer.commit(digest)
    except DigestMismatch as exc:
        raise RegistryError(400, "DIGEST_INVALID", "provided digest did not match uploaded content",
                            {"expected": exc.expected, "got": exc.got}) from exc  # fmt: skip
    finally:
        upload.unlink(missing_ok=True)
    return _blob_created(request, digest)


def _blob_created(request: Request, digest: str) -> Response:
    return Response(status_code=201, headers={"Location": f"{_repo_url(request)}/blobs/{digest}",
                                              "Docker-Content-Digest": digest})  # fmt: skip


def _range_header(size: int) -> str:
    return f"0-{max(size - 1, 0)}"


def _upload_accepted(request: Request, upload_id: str, size: int, status: int = 202) -> Response:
    location = f"{_repo_url(request)}/blobs/uploads/{upload_id}"
    return Response(status_code=status, headers={"Location": location, "Docker-Upload-UUID": upload_id,
                                                 "Range": _range_header(size)})  # fmt: skip


def _atomic_write(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".partial", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def build_registry(root: Path) -> Starlette:
    routes = [api_check, get_manifest, put_manifest, start_upload, patch_upload, finish_upload, upload_status,
              cancel_upload, get_blob]  # fmt: skip

    async def not_found(request: Request, exc: Exception) -> Response:
        return error_response(RegistryError(404, "NOT_FOUND", "not found"))

    app = Starlette(routes=routes, exception_handlers={404: not_found})
    app.state.registry = RegistryStore(root)
    return app
