"""Pull and push against an OCI registry, as Ollama's server/images.go, download.go and upload.go do.

Both are async generators of Ollama's progress objects (`{"status", "digest", "total", "completed"}`) and raise
TransferError with Ollama's error text when they fail. A download keeps its bytes in `<blob>-partial` and a later
pull resumes it with a `Range` request; a blob is verified (sha256) before it is renamed to its final name, so an
unverified blob is never visible. Pushes upload the blobs the registry lacks in chunks (`PATCH` with
`Content-Range`, then `PUT ?digest=`), then the manifest.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import ssl
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import httpx

from ollama_conformance.reference_backend.store.blobs import (
    DigestError,
    blob_name,
    partial_path,
    read_chunks,
)
from ollama_conformance.reference_backend.store.local import Store
from ollama_conformance.reference_backend.store.names import ModelName, parse_name

logging.getLogger("httpx").setLevel(logging.WARNING)  # one INFO line per registry request would flood the log
MANIFEST_MEDIA = "application/vnd.docker.distribution.manifest.v2+json"
PROGRESS_INTERVAL_S = 0.06  # Ollama's progress ticker
UPLOAD_CHUNK = 64 << 20
DOWNLOAD_RETRIES = 3
USER_AGENT = "ollama/0.33.0-rc2 (amd64 linux) Python"
_download_locks: dict[str, asyncio.Lock] = {}


class TransferError(Exception):
    """A failed pull or push: the message is what Ollama streams as {"error": ...}."""


@dataclass(frozen=True)
class RemoteName:
    """A model name with the registry scheme Ollama accepts in front of the host (`http://host/ns/model:tag`)."""

    name: ModelName
    scheme: str  # "" when none was given

    def base_url(self, insecure: bool) -> str:
        scheme = "http" if insecure else (self.scheme or "https")  # makeRequest: insecure turns any scheme to http
        return f"{scheme}://{self.name.host}"

    @property
    def repository(self) -> str:
        return f"{self.name.namespace}/{self.name.model}"


def parse_remote(text: str) -> RemoteName | None:
    scheme = ""
    rest = text
    if "://" in text:
        scheme, rest = text.split("://", 1)
        if not scheme or rest.count("/") != 2:  # the scheme belongs to a host, which needs host/ns/model
            return None
    name = parse_name(rest)
    return RemoteName(name, scheme) if name is not None else None


def progress(status: str, digest: str | None = None, total: int = 0, completed: int = 0) -> dict[str, Any]:
    """api.ProgressResponse: digest, total and completed are omitted when empty (omitempty)."""
    out: dict[str, Any] = {"status": status}
    if digest:
        out["digest"] = digest
    if total:
        out["total"] = total
    if completed:
        out["completed"] = completed
    return out


# --- HTTP with Go's error texts ----------------------------------------------------------------------------------
def go_transport_error(method: str, url: str, exc: Exception) -> str:
    """A url.Error as Go prints it: `Get "URL": dial tcp HOST:PORT: connect: connection refused`."""
    parsed = httpx.URL(url)
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    address = f"{parsed.host}:{port}"
    text = str(exc)
    cause = exc.__cause__ or exc.__context__
    if isinstance(cause, ssl.SSLError) or "SSL" in text or "record layer" in text:
        detail = "http: server gave HTTP response to HTTPS client"
    elif isinstance(exc, httpx.ConnectError) and ("Name or service not known" in text or "nodename" in text
                                                  or "Temporary failure in name resolution" in text):  # fmt: skip
        detail = f"dial tcp: lookup {parsed.host}: no such host"
    elif isinstance(exc, httpx.ConnectError):
        detail = f"dial tcp {address}: connect: connection refused"
    elif isinstance(exc, httpx.TimeoutException):
        detail = f"dial tcp {address}: i/o timeout"
    else:
        detail = text or type(exc).__name__
    return f'{method.title()} "{url}": {detail}'


class Registry:
    """One registry conversation (pull or push): an HTTP client and Ollama's mapping of answers to errors."""

    def __init__(self, remote: RemoteName, insecure: bool) -> None:
        self.remote = remote
        self.base = remote.base_url(insecure)
        self.client = httpx.AsyncClient(timeout=httpx.Timeout(30.0, connect=10.0), headers={"User-Agent": USER_AGENT},
                                        follow_redirects=True)  # fmt: skip

    def url(self, *parts: str) -> str:
        return "/".join([self.base, "v2", self.remote.repository, *parts])

    async def send(self, method: str, url: str, *, stream: bool = False, **kwargs: Any) -> httpx.Response:
        """The response, or TransferError: 404 → "file does not exist", other ≥ 400 → "<code>: <body>"."""
        try:
            request = self.client.build_request(method, url, **kwargs)
            response = await self.client.send(request, stream=stream)
        except httpx.HTTPError as exc:
            raise TransferError(go_transport_error(method, url, exc)) from exc
        if response.status_code == 404:
            await response.aclose()
            raise FileNotFoundError()
        if response.status_code >= 400:
            body = (await response.aread()).decode("utf-8", "replace")
            await response.aclose()
            raise TransferError(f"{response.status_code}: {body}")
        return response

    async def close(self) -> None:
        await self.client.aclose()


# --- pull --------------------------------------------------------------------------------------------------------
async def pull(store: Store, remote: RemoteName, insecure: bool) -> AsyncIterator[dict[str, Any]]:
    """PullModel: `pulling manifest`, `pulling <digest[7:19]>` per blob, `verifying sha256 digest`,
    `writing manifest`, (`removing unused layers`), `success`."""
    name = remote.name
    old = store.get(name)
    if remote.scheme == "http" and not insecure:
        raise TransferError("insecure protocol http")
    yield progress("pulling manifest")
    registry = Registry(remote, insecure)
    try:
        manifest, data = await _pull_manifest(registry, name)
        layers = [*manifest.get("layers", []), manifest["config"]] if manifest.get("config", {}).get("digest") \
            else list(manifest.get("layers", []))  # fmt: skip
        failures: list[str] = []
        for layer in layers:
            async for item in _download(store, registry, layer, failures):
                yield item
        yield progress("verifying sha256 digest")
        if failures:
            raise TransferError(failures[0])
        yield progress("writing manifest")
        store.write_manifest_bytes(name, data)
        if old is not None:
            unused = {layer["digest"] for layer in [*old.manifest.get("layers", []), old.manifest["config"]]}
            unused -= {layer["digest"] for layer in layers}
            if unused:
                yield progress("removing unused layers")
                store.remove_unused(unused)
        yield progress("success")
    finally:
        await registry.close()


async def _pull_manifest(registry: Registry, name: ModelName) -> tuple[dict[str, Any], bytes]:
    try:
        response = await registry.send("GET", registry.url("manifests", name.tag), headers={"Accept": MANIFEST_MEDIA})
        data = await response.aread()
    except FileNotFoundError as exc:
        raise TransferError("pull model manifest: file does not exist") from exc
    except TransferError as exc:
        raise TransferError(f"pull model manifest: {exc}") from exc
    try:
        manifest = json.loads(data)
        if not isinstance(manifest, dict) or not isinstance(manifest.get("config", {}), dict):
            raise ValueError("manifest is not an object")
        if not isinstance(manifest.get("layers", []), list):
            raise ValueError("json: cannot unmarshal into Go struct field Manifest.layers of type []manifest.Layer")
        for layer in [*(manifest.get("layers") or []), manifest.get("config") or {}]:
            if not isinstance(layer, dict) or not isinstance(layer.get("digest", ""), str):
                raise ValueError("json: cannot unmarshal into Go struct field Manifest.layers of type manifest.Layer")
    except ValueError as exc:
        raise TransferError(f"pull model manifest: {exc}") from exc
    manifest.setdefault("config", {})
    return manifest, data


async def _download(
    store: Store, registry: Registry, layer: dict[str, Any], failures: list[str]
) -> AsyncIterator[dict[str, Any]]:
    """downloadBlob: a cache hit is one progress object; otherwise the bytes go to `<blob>-partial` (resumed from
    what is there), are verified, and renamed into place. A digest mismatch is recorded in `failures` (Ollama
    reports it at the verification step) and its bytes are removed."""
    digest = layer.get("digest") or ""
    if not digest:
        raise TransferError(f"{registry.remote.repository}: digest is empty")
    try:
        blob = store.blobs / blob_name(digest)
    except DigestError as exc:
        raise TransferError(str(exc)) from exc
    short = digest[7:19]
    lock = _download_locks.setdefault(digest, asyncio.Lock())
    async with lock:  # one download per digest (blobDownloadManager); others wait and find the blob
        if blob.is_file():
            size = blob.stat().st_size
            yield progress(f"pulling {short}", digest, size, size)
            return
        partial = partial_path(blob)
        try:
            head = await registry.send("HEAD", registry.url("blobs", digest))
        except FileNotFoundError as exc:
            raise TransferError("file does not exist") from exc
        total = int(head.headers.get("content-length") or 0)
        hasher = hashlib.sha256()
        done = 0
        if partial.is_file() and partial.stat().st_size <= total:
            for chunk in read_chunks(partial):
                hasher.update(chunk)
                done += len(chunk)
        else:
            partial.unlink(missing_ok=True)
        yield progress(f"pulling {short}", digest, total, done)
        attempt = 0
        last = time.monotonic()
        while done < total:
            try:
                headers = {"Range": f"bytes={done}-{total - 1}"}
                response = await registry.send("GET", registry.url("blobs", digest), stream=True, headers=headers)
                try:
                    if response.status_code != 206 and done:  # the registry ignored the range: start over
                        hasher, done = hashlib.sha256(), 0
                        partial.unlink(missing_ok=True)
                    with open(partial, "ab") as handle:
                        async for chunk in response.aiter_bytes(1 << 20):
                            handle.write(chunk)
                            hasher.update(chunk)
                            done += len(chunk)
                            if time.monotonic() - last >= PROGRESS_INTERVAL_S:
                                last = time.monotonic()
                                yield progress(f"pulling {short}", digest, total, done)
                finally:
                    await response.aclose()
                if done < total:
                    raise httpx.RemoteProtocolError("unexpected EOF")
            except (httpx.HTTPError, TransferError, FileNotFoundError) as exc:
                attempt += 1
                if attempt >= DOWNLOAD_RETRIES:
                    detail = "file does not exist" if isinstance(exc, FileNotFoundError) else str(exc)
                    raise TransferError(f"max retries exceeded: {detail}") from exc
                await asyncio.sleep(0.2 * attempt)
        yield progress(f"pulling {short}", digest, total, done)
        got = "sha256:" + hasher.hexdigest()
        if got != digest or done != total:
            partial.unlink(missing_ok=True)
            failures.append(f"digest mismatch, file must be downloaded again: want {digest}, got {got}")
            return
        partial.touch(exist_ok=True)  # an empty blob has no bytes written
        os.chmod(partial, 0o644)
        os.replace(partial, blob)


# --- push --------------------------------------------------------------------------------------------------------
async def push(store: Store, remote: RemoteName, insecure: bool) -> AsyncIterator[dict[str, Any]]:
    """PushModel: `retrieving manifest`, `pushing <digest[7:19]>` per blob, `pushing manifest`, `success`."""
    name = remote.name
    yield progress("retrieving manifest")
    if remote.scheme == "http" and not insecure:
        raise TransferError("insecure protocol http")
    entry = store.get(name)
    if entry is None:
        yield progress("couldn't retrieve manifest")
        raise TransferError(f"open {store.manifest_path(name)}: no such file or directory")
    manifest = entry.manifest
    layers = list(manifest.get("layers", []))
    if manifest.get("config", {}).get("digest"):
        layers.append(manifest["config"])
    registry = Registry(remote, insecure)
    try:
        for layer in layers:
            async for item in _upload(store, registry, layer):
                yield item
        yield progress("pushing manifest")
        body = json.dumps(manifest, separators=(",", ":")).encode()
        try:
            await registry.send("PUT", registry.url("manifests", name.tag), content=body,
                                headers={"Content-Type": MANIFEST_MEDIA})  # fmt: skip
        except FileNotFoundError as exc:
            raise TransferError("file does not exist") from exc
        yield progress("success")
    finally:
        await registry.close()


async def _upload(store: Store, registry: Registry, layer: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
    digest = layer["digest"]
    short = digest[7:19]
    size = int(layer.get("size", 0))
    try:
        await registry.send("HEAD", registry.url("blobs", digest))
        yield progress(f"pushing {short}", digest, size, size)
        return
    except FileNotFoundError:
        pass
    path = store.blobs / blob_name(digest)
    if not path.is_file():
        raise TransferError(f"stat {path}: no such file or directory")
    try:
        started = await registry.send("POST", registry.url("blobs", "uploads") + "/")
        if started.status_code == 201:  # mounted: the registry has it
            yield progress(f"pushing {short}", digest, size, size)
            return
        location = urljoin(
            registry.base + "/", started.headers.get("docker-upload-location") or started.headers.get("location") or ""
        )
        total = path.stat().st_size
        done = 0
        last = time.monotonic()
        yield progress(f"pushing {short}", digest, total, 0)
        while done < total:
            end = min(total, done + UPLOAD_CHUNK)
            headers = {"Content-Type": "application/octet-stream", "Content-Length": str(end - done),
                       "Content-Range": f"{done}-{end - 1}"}  # fmt: skip
            response = await registry.send("PATCH", location, content=_file_part(path, done, end), headers=headers)
            location = urljoin(
                location, response.headers.get("docker-upload-location") or response.headers.get("location") or location
            )
            done = end
            if time.monotonic() - last >= PROGRESS_INTERVAL_S or done == total:
                last = time.monotonic()
                yield progress(f"pushing {short}", digest, total, done)
        separator = "&" if "?" in location else "?"
        await registry.send("PUT", f"{location}{separator}digest={digest}",
                            headers={"Content-Type": "application/octet-stream", "Content-Length": "0"})  # fmt: skip
    except FileNotFoundError as exc:
        raise TransferError("file does not exist") from exc


async def _file_part(path: Path, start: int, end: int) -> AsyncIterator[bytes]:
    for chunk in read_chunks(path, start, end):
        yield chunk
