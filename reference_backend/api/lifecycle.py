"""The model lifecycle routes of the native surface: blobs, create, pull and push, as Ollama 0.33 answers them.

- `HEAD /api/blobs/{digest}`: 200, 404 `blob "<digest>" not found`, 400 `invalid digest format`.
- `POST /api/blobs/{digest}`: 200 when the blob is there, else the body is streamed to disk while hashed: 201, or
  400 `digest mismatch, expected "<digest>", got "<sha256>"` (nothing kept).
- `POST /api/create`, `/api/pull`, `/api/push`: request checks answer 400 before anything streams; then a stream of
  progress objects (`{"status", "digest"?, "total"?, "completed"?}`, NDJSON) that ends with `success` or an
  `{"error"}` line. As in Ollama's streamResponse, an error before the first object is the whole answer
  (`application/json`, status 500 unless the error names one); `stream: false` answers the last object, or the
  error with its status (waitForStream).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from ollama_conformance.reference_backend.api import prompts
from ollama_conformance.reference_backend.api.errors import ApiError
from ollama_conformance.reference_backend.api.wire import BodyError, decode_body, decode_struct, go_json
from ollama_conformance.reference_backend.store import bundled
from ollama_conformance.reference_backend.store.blobs import (
    INVALID_DIGEST,
    DigestError,
    DigestMismatch,
    blob_name,
    is_valid_digest,
    write_bytes,
    write_stream,
)
from ollama_conformance.reference_backend.store.local import (
    MEDIA_LICENSE,
    MEDIA_MESSAGES,
    MEDIA_MODEL,
    MEDIA_PARAMS,
    MEDIA_SYSTEM,
    MEDIA_TEMPLATE,
    Store,
)
from ollama_conformance.reference_backend.store.names import ModelName, parse_name
from ollama_conformance.reference_backend.store.transfer import RemoteName, TransferError, parse_remote, progress
from ollama_conformance.reference_backend.store.transfer import pull as pull_model
from ollama_conformance.reference_backend.store.transfer import push as push_model

log = logging.getLogger("ollama_conformance.reference_backend.lifecycle")
JSON = "application/json"
JSON_UTF8 = "application/json; charset=utf-8"
INVALID_NAME = "invalid model name"  # errtypes.InvalidModelNameErrMsg
QUANT_TYPES = {"F32": "F32", "F16": "F16", "Q8_0": "Q8_0", "Q4_K_S": "Q4_K_S", "Q4_K_M": "Q4_K_M", "Q4_K": "Q4_K_M",
               "BF16": "BF16"}  # fmt: skip
# GGUF general.file_type numbers as Ollama's FileType.String() names them
FILE_TYPES = {0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 7: "Q8_0", 8: "Q5_0", 9: "Q5_1", 10: "Q2_K", 11: "Q3_K_S",
              12: "Q3_K_M", 13: "Q3_K_L", 14: "Q4_K_S", 15: "Q4_K_M", 16: "Q5_K_S", 17: "Q5_K_M", 18: "Q6_K",
              32: "BF16"}  # fmt: skip


class StreamError(Exception):
    """An error inside a progress stream: `{"error": message}` with `status` when it is the first thing sent."""

    def __init__(self, message: str, status: int = 500) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


def _json(obj: Any, status: int = 200, content_type: str = JSON_UTF8) -> Response:
    data = go_json(obj)
    body = data.encode() if isinstance(data, str) else data
    return Response(body, status_code=status, headers={"content-type": content_type})


def _error(status: int, message: str, content_type: str = JSON_UTF8) -> Response:
    return _json({"error": message}, status, content_type)


def _state(request: Request) -> Any:
    return request.app.state.server


async def _body(request: Request, struct: str, fields: dict[str, str]) -> dict[str, Any]:
    try:
        raw = decode_body(await request.body())
    except BodyError as exc:
        raise ApiError(400, str(exc)) from exc
    return decode_struct(raw, struct, fields)


def _handler(fn: Any) -> Any:
    async def wrapped(request: Request) -> Response:
        try:
            return await fn(request)
        except ApiError as exc:
            return _error(exc.status, exc.message)

    wrapped.__name__ = fn.__name__
    return wrapped


async def progress_response(items: AsyncIterator[dict[str, Any]], stream: bool) -> Response:
    """streamResponse / waitForStream over a progress generator that raises StreamError (or TransferError)."""

    async def guarded() -> AsyncIterator[dict[str, Any]]:
        try:
            async for item in items:
                yield item
        except StreamError as exc:
            yield {"error": exc.message, "_status": exc.status}
        except TransferError as exc:
            yield {"error": str(exc), "_status": 500}
        except (OSError, ValueError) as exc:  # the disk or a stored file failed: Ollama streams err.Error() too
            log.exception("lifecycle stream failed")
            yield {"error": str(exc), "_status": 500}

    source = guarded()
    if not stream:
        latest: dict[str, Any] = {"status": ""}
        async for item in source:
            if "error" in item:
                return _error(item["_status"], item["error"], JSON)
            latest = item
        return _json(latest, content_type=JSON)
    try:
        first = await source.__anext__()
    except StopAsyncIteration:
        return Response(b"", headers={"content-type": "application/x-ndjson"})
    if "error" in first:
        return _error(first["_status"], first["error"], JSON)

    async def lines() -> AsyncIterator[bytes]:
        try:
            yield _line(first)
            async for item in source:
                if "error" in item:
                    yield _line({"error": item["error"]})
                    return
                yield _line(item)
        finally:
            await source.aclose()

    return StreamingResponse(lines(), media_type="application/x-ndjson")


def _line(obj: dict[str, Any]) -> bytes:
    data = go_json(obj)
    return (data.encode() if isinstance(data, str) else data) + b"\n"


# --- blobs ---------------------------------------------------------------------------------------------------------
async def head_blob(request: Request) -> Response:
    digest = request.path_params["digest"]
    try:
        path = _state(request).store.blobs / blob_name(digest)
    except DigestError:
        return _error(400, INVALID_DIGEST)
    if not path.is_file():
        return _error(404, f"blob {json.dumps(digest)} not found")
    return Response(status_code=200)


async def create_blob(request: Request) -> Response:
    digest = request.path_params["digest"]
    store: Store = _state(request).store
    try:
        path = store.blobs / blob_name(digest)
    except DigestError:
        return _error(400, INVALID_DIGEST)
    if path.is_file():
        return Response(status_code=200)
    try:
        await write_stream(store.blobs, request.stream(), digest)
    except DigestMismatch as exc:
        return _error(400, f"digest mismatch, expected {json.dumps(exc.expected)}, got {json.dumps(exc.got)}")
    return Response(status_code=201)


# --- create --------------------------------------------------------------------------------------------------------
CREATE_FIELDS = {
    "model": "string", "stream": "bool", "quantize": "string", "draft_quantize": "string", "from": "string",
    "remote_host": "string", "files": "map[string]string", "draft_files": "map[string]string",
    "adapters": "map[string]string", "template": "string", "license": "any", "system": "string",
    "parameters": "map[string]interface {}", "messages": "[]api.Message", "renderer": "string", "parser": "string",
    "requires": "string", "info": "map[string]interface {}", "name": "string", "quantization": "string",
}  # fmt: skip


def _kind(value: Any) -> str:
    """The JSON kind Go names in its unmarshal errors."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    return {str: "string", list: "array", dict: "object"}.get(type(value), "null")


def _string_map(body: dict[str, Any], field: str) -> dict[str, str] | None:
    """A map[string]string field: a null value is "" (Go leaves the zero value), another kind a 400."""
    value = body.get(field)
    if value is None:
        return None
    for item in value.values():
        if item is not None and not isinstance(item, str):
            raise ApiError(
                400, f"json: cannot unmarshal {_kind(item)} into Go struct field CreateRequest.{field} of type string"
            )
    return {k: v if isinstance(v, str) else "" for k, v in value.items()}


def _messages(body: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for message in body.get("messages") or []:
        if not isinstance(message, dict):
            raise ApiError(400, f"json: cannot unmarshal {_kind(message)} into Go struct field "
                                f"CreateRequest.messages of type api.Message")  # fmt: skip
        for key in ("role", "content", "thinking"):
            value = message.get(key)
            if value is not None and not isinstance(value, str):
                raise ApiError(400, f"json: cannot unmarshal {_kind(value)} into Go struct field "
                                    f"CreateRequest.messages.{key} of type string")  # fmt: skip
        out.append({k: message[k] for k in ("role", "content", "thinking", "images", "tool_calls") if message.get(k)}
                   | {"role": message.get("role") or "", "content": message.get("content") or ""})  # fmt: skip
    return out


def valid_path(name: str) -> bool:
    """Go's io/fs.ValidPath: unrooted, slash-separated, no empty, '.' or '..' element (except the name '.')."""
    if name == ".":
        return True
    return bool(name) and all(part not in ("", ".", "..") for part in name.split("/"))


def _go_template_error(template: str) -> str | None:
    """The error Go's text/template (as Ollama's template.Parse sets it up) gives for this template, else None."""
    try:
        prompts.parse(template)
    except prompts.TemplateError as exc:
        return str(exc)
    return None


def human_number(count: int) -> str:
    """Ollama's format.HumanNumber (parameter_size)."""
    for limit, suffix, decimals in ((1_000_000_000, "B", 1), (1_000_000, "M", 2)):
        if count >= limit:
            number = count / limit
            return f"{number:.0f}{suffix}" if number == int(number) else f"{number:.{decimals}f}{suffix}"
    if count >= 1000:
        return f"{count / 1000:.0f}K"
    return str(count)


def _gguf_config(store: Store, digest: str) -> dict[str, Any]:
    """model_format, family, parameter size and file type from a GGUF blob's metadata (cached by digest)."""
    info = bundled._cached_gguf_metadata(store, digest.split(":", 1)[1])["model_info"]
    arch = str(info.get("general.architecture") or "")
    return {
        "model_format": "gguf",
        "model_family": arch,
        "model_families": [arch],
        "model_type": human_number(int(info.get("general.parameter_count") or 0)),
        "file_type": FILE_TYPES.get(int(info.get("general.file_type") or 0), "unknown"),
    }


def _layer(media_type: str, store: Store, data: bytes) -> tuple[dict[str, Any], str]:
    digest, size, created = write_bytes(store.blobs, data)
    status = f"{'creating new' if created else 'using existing'} layer {digest}"
    return {"mediaType": media_type, "digest": digest, "size": size}, status


_GO_ESCAPES = str.maketrans({"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"})


def _go_encode(value: Any) -> bytes:
    """json.Encoder.Encode of a Go map: compact, keys sorted, <>& escaped, and a newline."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=True, allow_nan=False)
    return text.translate(_GO_ESCAPES).encode() + b"\n"


def _blob_digest_error(store: Store, digest: str) -> str | None:
    """BlobsPath + os.Open: the error text for a files entry whose blob cannot be read, else None."""
    if not is_valid_digest(digest):
        return INVALID_DIGEST
    path = store.blobs / blob_name(digest)
    if not path.is_file():
        return f"open {path}: no such file or directory"
    return None


def _file_kind(store: Store, files: dict[str, str]) -> str:
    """detectModelTypeFromFiles: by extension, else by the GGUF magic of the blob."""
    for name, digest in files.items():
        if name.endswith(".safetensors"):
            return "safetensors"
        if name.endswith(".gguf"):
            return "gguf"
        if _blob_digest_error(store, digest) is None:
            with open(store.blobs / blob_name(digest), "rb") as handle:
                if handle.read(4) == b"GGUF":
                    return "gguf"
    return ""


def _is_gguf(store: Store, digest: str) -> bool:
    with open(store.blobs / blob_name(digest), "rb") as handle:
        return handle.read(4) == b"GGUF"


class CreatePlan:
    """The layers and config being assembled for one create request (Ollama's createModel)."""

    def __init__(self) -> None:
        self.layers: list[dict[str, Any]] = []
        self.statuses: list[str] = []
        self.config: dict[str, Any] = {}

    def remove(self, media_type: str) -> None:
        keep = [(layer, status) for layer, status in zip(self.layers, self.statuses, strict=True)
                if layer["mediaType"] != media_type]  # fmt: skip
        self.layers = [layer for layer, _ in keep]
        self.statuses = [status for _, status in keep]

    def add(self, layer: dict[str, Any], status: str) -> None:
        self.layers.append(layer)
        self.statuses.append(status)


async def _from_layers(store: Store, body: dict[str, Any], plan: CreatePlan) -> AsyncIterator[dict[str, Any]]:
    """parseFromModel: the base model's layers (pulled first when it is not here)."""
    remote = parse_remote(body["from"])
    if remote is None or body.get("remote_host"):
        if remote is not None:  # remote models are stubs that forward to another server: not served here
            raise StreamError("remote models are not supported by this server", 400)
        raise StreamError(INVALID_NAME, 400)
    entry = store.get(remote.name)
    if entry is None:
        async for item in pull_model(store, remote, insecure=False):
            yield item
        entry = store.get(remote.name)
        if entry is None:
            raise StreamError(f"open {store.manifest_path(remote.name)}: no such file or directory")
    for layer in entry.manifest.get("layers", []):
        plan.add({**layer, "from": entry.name.display}, f"using existing layer {layer['digest']}")
    base = entry.config
    for key in ("model_format", "model_family", "model_families", "model_type", "file_type", "renderer", "parser",
                "requires", "capabilities"):  # fmt: skip
        if base.get(key):
            plan.config[key] = base[key]


async def _file_layers(store: Store, files: dict[str, str], plan: CreatePlan) -> AsyncIterator[dict[str, Any]]:
    """convertModelFromFiles for GGUF blobs; safetensors conversion is not implemented here."""
    kind = _file_kind(store, files)
    if kind == "safetensors":
        raise StreamError("converting safetensors is not supported by this server: create from a GGUF blob")
    if kind != "gguf":
        raise StreamError("unknown type", 400)
    if not files:
        raise StreamError("no files provided to convert", 400)
    for name in sorted(files):
        digest = files[name]
        yield progress("parsing GGUF")
        problem = _blob_digest_error(store, digest)
        if problem:
            raise StreamError(problem)
        if not _is_gguf(store, digest):
            raise StreamError("supplied file was not in GGUF format", 400)
        try:
            config = await asyncio.to_thread(_gguf_config, store, digest)
        except Exception as exc:
            raise StreamError(f"failed to parse GGUF: {exc}") from exc
        size = (store.blobs / blob_name(digest)).stat().st_size
        plan.add({"mediaType": MEDIA_MODEL, "digest": digest, "size": size, "from": name},
                 f"using existing layer {digest}")  # fmt: skip
        for key, value in config.items():
            plan.config.setdefault(key, value)


def _check_adapters(store: Store, adapters: dict[str, str]) -> None:
    if not adapters:
        raise StreamError("no files provided to convert", 400)
    if len(adapters) > 1:
        raise StreamError("only one adapter is currently supported", 400)
    kind = _file_kind(store, adapters)
    if kind == "safetensors":
        raise StreamError("converting safetensors is not supported by this server: create from a GGUF blob", 400)
    if kind != "gguf":
        raise StreamError("unknown type", 400)
    (digest,) = adapters.values()
    problem = _blob_digest_error(store, digest)
    if problem:
        raise StreamError(problem, 400)
    if not _is_gguf(store, digest):
        raise StreamError("supplied file was not in GGUF format", 400)
    raise StreamError("LoRA adapters are not supported by this server", 400)


def _check_quantize(body: dict[str, Any], plan: CreatePlan) -> None:
    wanted = (body.get("quantize") or body.get("quantization") or "").upper()
    if not wanted or plan.config.get("model_format") != "gguf":
        return
    if wanted not in QUANT_TYPES:
        raise StreamError(
            f"unsupported quantization type {wanted} - supported types are F32, F16, Q4_K_S, Q4_K_M, Q8_0"
        )
    current = plan.config.get("file_type", "")
    if current not in ("F16", "BF16", "F32"):
        raise StreamError("quantization is only supported for F16, BF16 and F32 models")
    if current != QUANT_TYPES[wanted]:
        raise StreamError(f"quantizing {current} to {QUANT_TYPES[wanted]} is not supported by this server")


def _apply_info(info: dict[str, Any] | None, plan: CreatePlan) -> None:
    if not info:
        return
    caps = info.get("capabilities")
    if isinstance(caps, list):
        plan.config["capabilities"] = [*plan.config.get("capabilities", []), *(c for c in caps if isinstance(c, str))]
    for key, field in (("model_family", "model_family"), ("base_name", "base_name"),
                       ("quantization_level", "file_type"), ("parameter_size", "model_type")):  # fmt: skip
        if key in info:
            if not isinstance(info[key], str):
                raise StreamError(f"info field {json.dumps(key)} must be a string", 400)
            plan.config[field] = info[key]
            if key == "model_family" and info[key]:
                plan.config["model_families"] = [info[key]]
    for key in ("context_length", "embedding_length"):
        if key in info:
            value = info[key]
            if not isinstance(value, int | float) or isinstance(value, bool):
                raise StreamError(f"info field {json.dumps(key)} must be a number", 400)
            if value < 0 or int(value) != value or value > 2**63 - 1:
                raise StreamError(f"info field {json.dumps(key)} must be a non-negative integer", 400)
            plan.config[key] = int(value)


def _set_text_layers(store: Store, body: dict[str, Any], plan: CreatePlan) -> None:
    """setTemplate, setSystem, setLicense, setParameters, setMessages."""
    if body.get("template"):
        problem = _go_template_error(body["template"])
        if problem:
            raise StreamError(f"template error: {problem}", 400)
        plan.remove(MEDIA_TEMPLATE)
        plan.add(*_layer(MEDIA_TEMPLATE, store, body["template"].encode()))
    if body.get("system"):
        plan.remove(MEDIA_SYSTEM)
        plan.add(*_layer(MEDIA_SYSTEM, store, body["system"].encode()))
    license_value = body.get("license")
    if isinstance(license_value, str):
        if license_value:
            plan.add(*_layer(MEDIA_LICENSE, store, license_value.encode()))
    elif license_value is not None:
        if not isinstance(license_value, list):  # re-marshalled into []string, as createModel does
            raise StreamError(f"json: cannot unmarshal {_kind(license_value)} into Go value of type []string")
        for text in license_value:
            if not isinstance(text, str):
                raise StreamError(f"json: cannot unmarshal {_kind(text)} into Go value of type string")
        for text in license_value:
            plan.add(*_layer(MEDIA_LICENSE, store, text.encode()))
    params = dict(body.get("parameters") or {})
    for layer in [layer for layer in plan.layers if layer["mediaType"] == MEDIA_PARAMS]:
        try:
            existing = json.loads((store.blobs / blob_name(layer["digest"])).read_bytes())
        except (OSError, ValueError, DigestError) as exc:
            raise StreamError(str(exc)) from exc
        for key, value in existing.items() if isinstance(existing, dict) else ():
            params.setdefault(key, value)
    if params:
        plan.remove(MEDIA_PARAMS)
        plan.add(*_layer(MEDIA_PARAMS, store, _go_encode(params)))
    messages = _messages(body)
    if messages:
        plan.remove(MEDIA_MESSAGES)
        plan.add(*_layer(MEDIA_MESSAGES, store, _go_encode(messages)))


async def _create_stream(store: Store, name: ModelName, body: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
    old = store.get(name)
    plan = CreatePlan()
    if body.get("from"):
        async for item in _from_layers(store, body, plan):
            yield item
    elif body.get("files") is not None:
        async for item in _file_layers(store, body["files"], plan):
            yield item
    else:
        raise StreamError("neither 'from' or 'files' was specified", 400)
    if body.get("adapters") is not None:
        _check_adapters(store, body["adapters"])
    _apply_info(body.get("info"), plan)
    _check_quantize(body, plan)
    _set_text_layers(store, body, plan)
    for status in plan.statuses:
        yield progress(status)
    yield progress("writing manifest")
    config = {
        "model_format": "", "model_family": "", "model_families": None, "model_type": "", "file_type": "",
        **plan.config,
        "renderer": body.get("renderer") or plan.config.get("renderer", ""),
        "parser": body.get("parser") or plan.config.get("parser", ""),
        "architecture": "amd64", "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [layer["digest"] for layer in plan.layers]},
    }  # fmt: skip
    with store.exclusive():
        digest, size, _ = write_bytes(store.blobs, _go_encode(config))
        store.write_manifest(name, {"digest": digest, "size": size}, plan.layers)
        if old is not None:  # RemoveLayers of the replaced manifest
            previous = [old.manifest.get("config", {}), *old.manifest.get("layers", [])]
            store.remove_unused({layer["digest"] for layer in previous if layer.get("digest")})
    yield progress("success")


async def create(request: Request) -> Response:
    try:
        body = await _body(request, "api.CreateRequest", CREATE_FIELDS)
        store: Store = _state(request).store
        files = _string_map(body, "files")
        draft_files = _string_map(body, "draft_files")
        adapters = _string_map(body, "adapters")
        for mapping in (files, draft_files):
            for path, digest in (mapping or {}).items():
                if not valid_path(path):
                    raise ApiError(400, "file path must be relative")
                if not digest:
                    raise ApiError(400, INVALID_DIGEST)
        if body.get("draft_quantize") and not draft_files:
            raise ApiError(400, "--draft-quantize requires a DRAFT model")
        if draft_files:
            raise ApiError(400, "DRAFT models are not supported by this server")
        for digest in (adapters or {}).values():
            if not digest:
                raise ApiError(400, INVALID_DIGEST)
        body["files"], body["adapters"] = files, adapters
        name = parse_name(body.get("model") or body.get("name") or "")
        if name is None:
            raise ApiError(400, INVALID_NAME)
        existing = store.get(name)
        if existing is not None:  # getExistingName: the stored spelling of a case-insensitive match
            name = existing.name
    except ApiError as exc:
        return _error(exc.status, exc.message)
    return await progress_response(_create_stream(store, name, body), body.get("stream") is not False)


# --- pull and push -------------------------------------------------------------------------------------------------
TRANSFER_FIELDS = {"model": "string", "insecure": "bool", "username": "string", "password": "string",
                   "stream": "bool", "name": "string"}  # fmt: skip


def _existing(store: Store, remote: RemoteName) -> RemoteName:
    entry = store.get(remote.name)
    return RemoteName(entry.name, remote.scheme) if entry is not None else remote


async def pull(request: Request) -> Response:
    try:
        body = await _body(request, "api.PullRequest", TRANSFER_FIELDS)
    except ApiError as exc:
        return _error(exc.status, exc.message)
    text = body.get("model") or body.get("name") or ""
    remote = parse_remote(text)
    if remote is None:
        return _error(400, INVALID_NAME)
    store: Store = _state(request).store
    items = pull_model(store, _existing(store, remote), bool(body.get("insecure")))
    return await progress_response(items, body.get("stream") is not False)


async def push(request: Request) -> Response:
    try:
        body = await _body(request, "api.PushRequest", TRANSFER_FIELDS)
    except ApiError as exc:
        return _error(exc.status, exc.message)
    text = body.get("model") or body.get("name") or ""
    if not text:
        return _error(400, "model is required")
    store: Store = _state(request).store

    async def items() -> AsyncIterator[dict[str, Any]]:
        remote = parse_remote(text)
        if remote is None:
            yield progress("retrieving manifest")
            yield progress("couldn't retrieve manifest")
            raise StreamError(f"unqualified name: {text}")
        async for item in push_model(store, _existing(store, remote), bool(body.get("insecure"))):
            yield item

    return await progress_response(items(), body.get("stream") is not False)


def routes() -> list[Route]:
    return [
        Route("/api/blobs/{digest}", head_blob, methods=["HEAD"]),
        Route("/api/blobs/{digest}", create_blob, methods=["POST"]),
        Route("/api/create", _handler(create), methods=["POST"]),
        Route("/api/pull", _handler(pull), methods=["POST"]),
        Route("/api/push", _handler(push), methods=["POST"]),
    ]
