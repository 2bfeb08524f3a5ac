"""The native `/api/*` surface (and `GET /`): HTTP framing over native_core and the model store.

Streams are NDJSON (`application/x-ndjson`, one object per line, sent as produced); `stream: false` merges the
stream into its final object (`application/json; charset=utf-8`). An error before the first object gets its
status and `{"error": ...}` (`application/json`); after it, an `{"error": ...}` line ends the stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from ollama_conformance.reference_backend.api import core as native_core
from ollama_conformance.reference_backend.api.core import ApiError
from ollama_conformance.reference_backend.api.wire import BodyError, decode_body, go_json, rfc3339_local
from ollama_conformance.reference_backend.config import VERSION
from ollama_conformance.reference_backend.engine.options import format_parameters
from ollama_conformance.reference_backend.store import bundled
from ollama_conformance.reference_backend.store.local import ModelEntry
from ollama_conformance.reference_backend.store.names import parse_name
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

JSON_UTF8 = "application/json; charset=utf-8"


def json_response(obj: Any, status: int = 200, content_type: str = JSON_UTF8) -> Response:
    return Response(go_json(obj), status_code=status, headers={"content-type": content_type})


def error_response(status: int, message: str, content_type: str = JSON_UTF8) -> Response:
    return json_response({"error": message}, status, content_type)


async def read_body(request: Request) -> dict[str, Any]:
    try:
        return decode_body(await request.body())
    except BodyError as exc:
        raise ApiError(400, str(exc)) from exc


def state_of(request: Request) -> Any:
    return request.app.state.server


def api_errors(handler: Callable[[Request], Awaitable[Response]]) -> Callable[[Request], Awaitable[Response]]:
    async def wrapped(request: Request) -> Response:
        try:
            return await handler(request)
        except ApiError as exc:
            return error_response(exc.status, exc.message)

    wrapped.__name__ = handler.__name__
    return wrapped


# --- streams -----------------------------------------------------------------------------------------------
def merge_stream(items: list[dict[str, Any]], kind: str, with_tools: bool) -> dict[str, Any]:
    """The non-streaming answer: the final object with the text (and logprobs, tool calls) of every chunk."""
    final = dict(items[-1])
    logprobs: list[Any] = []
    for item in items:
        logprobs.extend(item.get("logprobs") or [])
    if kind == "generate":
        final["response"] = "".join(i.get("response", "") for i in items)
        thinking = "".join(i.get("thinking", "") for i in items)
        if thinking:
            final["thinking"] = thinking
    else:
        message = dict(final.get("message") or {"role": "assistant"})
        message["content"] = "".join((i.get("message") or {}).get("content", "") for i in items)
        thinking = "".join((i.get("message") or {}).get("thinking", "") for i in items)
        if thinking:
            message["thinking"] = thinking
        calls = [c for i in items for c in (i.get("message") or {}).get("tool_calls") or []]
        if calls and with_tools:
            message["tool_calls"] = calls
        final["message"] = message
    if logprobs:
        final["logprobs"] = logprobs
    return _reorder(final)


def _reorder(obj: dict[str, Any]) -> dict[str, Any]:
    """Keys in Go struct order: the streamed text fields come before done and the metrics."""
    order = ["model", "remote_model", "remote_host", "created_at", "response", "thinking", "message", "done",
             "done_reason", "_debug_info", "logprobs", "context"]  # fmt: skip
    out = {k: obj[k] for k in order if k in obj}
    out.update({k: v for k, v in obj.items() if k not in out})
    return out


class ClientGone(Exception):
    """The client disconnected while its request waited (for a slot, or for the model to load)."""


async def first_item(request: Request, items: AsyncIterator[dict[str, Any]]) -> dict[str, Any]:
    """The stream's first object; a client that hangs up while waiting for it gives its queue place back."""
    task = asyncio.ensure_future(items.__anext__())
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=0.5)
            if done:
                return task.result()
            if await request.is_disconnected():
                raise ClientGone()
    finally:
        if not task.done():
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
            await items.aclose()


async def inference_response(
    request: Request, kind: str, produce: Callable[[Any, dict[str, Any]], AsyncIterator[dict[str, Any]]]
) -> Response:
    started = time.perf_counter_ns()
    body = await read_body(request)
    body["_request_start_ns"] = started
    stream = next((v for k, v in body.items() if k.lower() == "stream"), True)
    with_tools = bool(next((v for k, v in body.items() if k.lower() == "tools"), None))
    items = produce(state_of(request), body)
    try:
        first = await first_item(request, items)
    except StopAsyncIteration:
        return error_response(500, "no response")
    except ClientGone:
        return error_response(499, "request canceled")
    if "error" in first:
        await items.aclose()
        return error_response(500, first["error"], "application/json")
    if "_debug_info" in first:  # `_debug_render_only`: Ollama answers c.JSON, whatever `stream` says
        await items.aclose()
        return json_response(first)
    if stream is False:
        collected = [first]
        async for item in items:
            if "error" in item:
                return error_response(500, item["error"])
            collected.append(item)
        return json_response(merge_stream(collected, kind, with_tools))

    async def lines() -> AsyncIterator[bytes]:
        try:
            yield go_json(first) + b"\n"
            async for item in items:
                yield go_json(item) + b"\n"
        finally:
            await items.aclose()

    return StreamingResponse(lines(), media_type="application/x-ndjson")


@api_errors
async def generate(request: Request) -> Response:
    return await inference_response(request, "generate", native_core.generate)


@api_errors
async def chat(request: Request) -> Response:
    return await inference_response(request, "chat", native_core.chat)


@api_errors
async def embed(request: Request) -> Response:
    body = await read_body(request)
    body["_request_start_ns"] = time.perf_counter_ns()
    return json_response(await native_core.embed(state_of(request), body))


@api_errors
async def embeddings(request: Request) -> Response:
    body = await read_body(request)
    return json_response(await native_core.embeddings(state_of(request), body))


# --- server and models --------------------------------------------------------------------------------------
async def root(request: Request) -> Response:
    return Response("Ollama is running", headers={"content-type": "text/plain; charset=utf-8"})


async def version(request: Request) -> Response:
    return json_response({"version": VERSION})


async def status(request: Request) -> Response:
    disabled = state_of(request).config.no_cloud
    return json_response({"cloud": {"disabled": disabled, "source": "env" if disabled else "none"}})


def details(entry: ModelEntry) -> dict[str, Any]:
    cfg = entry.config
    return {
        "parent_model": "",
        "format": cfg.get("model_format", ""),
        "family": cfg.get("model_family", ""),
        "families": cfg.get("model_families"),
        "parameter_size": cfg.get("model_type", ""),
        "quantization_level": cfg.get("file_type", ""),
    }


def modified_at(entry: ModelEntry) -> str:
    return rfc3339_local(entry.manifest_path.stat().st_mtime)


async def tags(request: Request) -> Response:
    state = state_of(request)
    models = []
    for entry in state.store.list():
        models.append(
            {
                "name": entry.name.display,
                "model": entry.name.display,
                "modified_at": modified_at(entry),
                "size": entry.size,
                "digest": entry.digest,
                "details": details(entry),
                "capabilities": bundled.capabilities(entry, state.store),
            }
        )
    return json_response({"models": models})


async def ps(request: Request) -> Response:
    state = state_of(request)
    models = []
    for loaded in state.scheduler.ps():
        entry = loaded.entry
        expires = state.scheduler.expires_at(loaded)
        models.append(
            {
                "name": entry.name.display,
                "model": entry.name.display,
                "size": loaded.size,
                "digest": entry.digest,
                "details": details(entry),
                "expires_at": rfc3339_local(min(expires, 10_800_000_000.0)),  # "forever": Go's far-future time
                "size_vram": loaded.size_vram,
                "context_length": loaded.context_length,
            }
        )
    return json_response({"models": models})


def modelfile(entry: ModelEntry, state: Any, template: str, params: dict[str, Any], license_text: str | None) -> str:
    lines = [
        '# Modelfile generated by "ollama show"',
        "# To build a new Modelfile based on this, replace FROM with:",
        f"# FROM {entry.name.display}",
        "",
        f"FROM {state.store.blob_path(entry.model_digest or '')}",
    ]
    if template:
        lines.append(f'TEMPLATE """{template}"""')
    for key, value in params.items():
        for item in value if isinstance(value, list) else [value]:
            lines.append(f"PARAMETER {key} {item}")
    if license_text:
        lines.append(f'LICENSE """{license_text}"""')
    return "\n".join(lines) + "\n"


@api_errors
async def show(request: Request) -> Response:
    state = state_of(request)
    body = await read_body(request)
    lowered = {k.lower(): v for k, v in body.items()}
    name = lowered.get("model") or lowered.get("name") or ""
    if not isinstance(name, str):
        raise ApiError(
            400, f"json: cannot unmarshal {type(name).__name__} into Go struct field ShowRequest.model of type string"
        )
    if not name:
        raise ApiError(400, "model is required")
    parsed = parse_name(name)
    entry = state.store.get(parsed) if parsed else None
    if entry is None:
        display = parsed.display if parsed else name
        raise ApiError(404, f"model '{display}' not found")
    verbose = bool(lowered.get("verbose"))
    template = bundled.template_of(entry, state.store)
    params = bundled.params_of(entry, state.store)
    if isinstance(lowered.get("options"), dict):
        params = {**params, **lowered["options"]}
    license_text = bundled.license_of(entry, state.store)
    out: dict[str, Any] = {}
    if license_text:
        out["license"] = license_text
    out["modelfile"] = modelfile(entry, state, template, params, license_text)
    if params:
        out["parameters"] = format_parameters(params)
    if template:
        out["template"] = template
    if lowered.get("system"):
        out["system"] = lowered["system"]
    out["details"] = details(entry)
    out["model_info"] = bundled.model_info(entry, state.store, verbose)
    if entry.config.get("model_format") == "gguf":
        out["tensors"] = bundled.gguf_tensors(entry, state.store)
    out["capabilities"] = bundled.capabilities(entry, state.store)
    out["modified_at"] = modified_at(entry)
    return json_response(out)


@api_errors
async def copy(request: Request) -> Response:
    state = state_of(request)
    body = await read_body(request)
    lowered = {k.lower(): v for k, v in body.items()}
    source, destination = lowered.get("source") or "", lowered.get("destination") or ""
    src = parse_name(source) if isinstance(source, str) else None
    if src is None:
        raise ApiError(400, f"source {json.dumps(source)} is invalid")
    dst = parse_name(destination) if isinstance(destination, str) else None
    if dst is None:
        raise ApiError(400, f"destination {json.dumps(destination)} is invalid")
    entry = state.store.get(src)
    if entry is None:
        raise ApiError(404, f"model {json.dumps(source)} not found")
    state.store.copy(entry, dst)
    return Response(status_code=200)


@api_errors
async def delete(request: Request) -> Response:
    state = state_of(request)
    body = await read_body(request)
    lowered = {k.lower(): v for k, v in body.items()}
    name = lowered.get("model") or lowered.get("name") or ""
    if not name:
        raise ApiError(400, "model is required")
    parsed = parse_name(name) if isinstance(name, str) else None
    if parsed is None:
        raise ApiError(400, f"name {json.dumps(name)} is invalid")
    entry = state.store.get(parsed)
    if entry is None:
        raise ApiError(404, f"model '{name}' not found")
    state.store.delete(entry)
    return Response(status_code=200)


def routes() -> list[Route]:
    return [
        Route("/", root, methods=["GET", "HEAD"]),
        Route("/api/version", version, methods=["GET", "HEAD"]),
        Route("/api/status", status, methods=["GET"]),
        Route("/api/tags", tags, methods=["GET", "HEAD"]),
        Route("/api/ps", ps, methods=["GET"]),
        Route("/api/show", show, methods=["POST"]),
        Route("/api/generate", generate, methods=["POST"]),
        Route("/api/chat", chat, methods=["POST"]),
        Route("/api/embed", embed, methods=["POST"]),
        Route("/api/embeddings", embeddings, methods=["POST"]),
        Route("/api/copy", copy, methods=["POST"]),
        Route("/api/delete", delete, methods=["DELETE"]),
    ]
