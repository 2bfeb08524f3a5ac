"""The native `/api/*` surface (and `GET /`): HTTP framing over the inference core and the model catalog.

Streams are NDJSON (`application/x-ndjson`, one object per line, sent as produced); `stream: false` merges the
stream into its final object (`application/json; charset=utf-8`). An error before the first object gets its
status and `{"error": ...}` (`application/json`); after it, an `{"error": ...}` line ends the stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from ollama_conformance.reference_backend.api import catalog, core
from ollama_conformance.reference_backend.api.errors import ApiError
from ollama_conformance.reference_backend.api.stream import merge_stream
from ollama_conformance.reference_backend.api.wire import JSON_UTF8, BodyError, decode_body, go_json, json_response
from ollama_conformance.reference_backend.config import VERSION


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
            yield go_json(first).encode() + b"\n"
            async for item in items:
                yield go_json(item).encode() + b"\n"
        finally:
            await items.aclose()

    return StreamingResponse(lines(), media_type="application/x-ndjson")


@api_errors
async def generate(request: Request) -> Response:
    return await inference_response(request, "generate", core.generate)


@api_errors
async def chat(request: Request) -> Response:
    return await inference_response(request, "chat", core.chat)


@api_errors
async def embed(request: Request) -> Response:
    body = await read_body(request)
    body["_request_start_ns"] = time.perf_counter_ns()
    return json_response(await core.embed(state_of(request), body))


@api_errors
async def embeddings(request: Request) -> Response:
    body = await read_body(request)
    return json_response(await core.embeddings(state_of(request), body))


# --- server and models --------------------------------------------------------------------------------------
async def root(request: Request) -> Response:
    return Response("Ollama is running", headers={"content-type": "text/plain; charset=utf-8"})


async def version(request: Request) -> Response:
    return json_response({"version": VERSION})


async def status(request: Request) -> Response:
    disabled = state_of(request).config.no_cloud
    return json_response({"cloud": {"disabled": disabled, "source": "env" if disabled else "none"}})


async def tags(request: Request) -> Response:
    return json_response(catalog.tags(state_of(request)))


async def ps(request: Request) -> Response:
    return json_response(catalog.ps(state_of(request)))


@api_errors
async def show(request: Request) -> Response:
    return json_response(catalog.show(state_of(request), await read_body(request)))


@api_errors
async def copy(request: Request) -> Response:
    catalog.copy(state_of(request), await read_body(request))
    return Response(status_code=200)


@api_errors
async def delete(request: Request) -> Response:
    catalog.delete(state_of(request), await read_body(request))
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
