"""What the compatibility surfaces share: the native core's stream, merging it, timestamps, model names.

Ollama's /v1 and /v1/messages middlewares bind the body into a Go struct (`wire.decode_struct`, re-exported
here), rewrite it into a native request and read the native handler's output back. `NativeStream` calls the
native core and surfaces its validation error before the first byte; a non-stream answer is merged by
`stream.merge_stream`, as the native /api handlers merge theirs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from ollama_conformance.reference_backend.api.errors import ApiError, RequestError
from ollama_conformance.reference_backend.api.stream import merge_stream
from ollama_conformance.reference_backend.api.wire import decode_struct, json_type, parse_json_body

log = logging.getLogger("ollama_conformance.reference_backend.surfaces")

__all__ = [  # the binder is re-exported: the surfaces and their tests import it from here
    "NativeStream", "RequestError", "collect_final", "decode_struct", "first_error", "json_type", "merge_native",
    "model_namespace", "parse_json_body", "unix_seconds",
]  # fmt: skip


# --- the native core's output ------------------------------------------------------------------------------------


class NativeStream:
    """The items of one native chat/generate call, with the first one fetched eagerly.

    The native core raises its validation `ApiError` when the first item is requested, so `start()` lets the
    surface answer with a proper error status before any byte is sent.
    """

    def __init__(self, items: AsyncIterator[dict[str, Any]]) -> None:
        self._items = items
        self._first: dict[str, Any] | None = None

    async def start(self) -> NativeStream:
        try:
            self._first = await anext(self._items)
        except StopAsyncIteration:
            self._first = None
        except ApiError:
            raise
        except Exception as exc:  # a native-side bug: answer a clear 500 (Ollama's status for internal errors)
            log.exception("native core failed before its first item")
            raise RequestError(str(exc) or type(exc).__name__, status=500) from exc
        return self

    async def __aiter__(self) -> AsyncIterator[dict[str, Any]]:
        try:
            if self._first is not None:
                yield self._first
            async for item in self._items:
                yield item
        except Exception as exc:  # an engine failure after the first byte is reported like the native stream's
            yield {"error": str(exc) or type(exc).__name__}
        finally:
            await self.aclose()

    async def aclose(self) -> None:
        close = getattr(self._items, "aclose", None)
        if close is not None:
            await close()

    async def collect(self) -> list[dict[str, Any]]:
        return [item async for item in self]


async def collect_unless_disconnected(request: Request, stream: NativeStream) -> list[dict[str, Any]] | None:
    """All items of a non-stream call, or None when the client went away first: then the generation is
    cancelled, as Ollama's request context cancels it."""

    async def disconnected() -> None:
        while (await request.receive())["type"] != "http.disconnect":
            pass

    collecting = asyncio.ensure_future(stream.collect())
    watching = asyncio.ensure_future(disconnected())
    try:
        done, _ = await asyncio.wait({collecting, watching}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watching.cancel()
    if collecting in done:
        return collecting.result()
    collecting.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await collecting
    return None


def merge_native(items: list[dict[str, Any]], kind: str, with_tools: bool) -> dict[str, Any]:
    """The non-stream native object, merged as /api merges it for stream=false (as Ollama's middlewares
    convert what the native handler answers)."""
    return merge_stream(items, kind, with_tools)


async def collect_final(
    request: Request, stream: NativeStream, kind: str, with_tools: bool, on_error: Callable[[int, str], Response]
) -> dict[str, Any] | Response:
    """The merged native answer of a non-stream call, or the response to send instead: 499 when the client went
    away first, `on_error(500, why)` (in the surface's own error shape) when the model failed or said nothing."""
    items = await collect_unless_disconnected(request, stream)
    if items is None:
        return Response(status_code=499)
    error = first_error(items)
    if error is not None or not items:
        return on_error(500, error or "no response from the model")
    return merge_native(items, kind, with_tools)


def first_error(items: list[dict[str, Any]]) -> str | None:
    for item in items:
        if "error" in item:
            return str(item["error"])
    return None


_FRACTION = re.compile(r"\.(\d+)")


def unix_seconds(timestamp: str | None) -> int:
    """Seconds since the epoch of an RFC 3339 (nano) timestamp, as Go's Time.Unix(); now when absent."""
    if not timestamp:
        return int(time.time())
    text = _FRACTION.sub(lambda m: "." + m.group(1)[:6].ljust(6, "0"), timestamp.replace("Z", "+00:00"), count=1)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return int(time.time())
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() // 1)


def model_namespace(name: str) -> str:
    """The namespace part of an Ollama model name (`library` unless given), as model.ParseName finds it."""
    without_tag = name
    last_slash = name.rfind("/")
    colon = name.rfind(":")
    if colon > last_slash:
        without_tag = name[:colon]
    parts = without_tag.split("/")
    if len(parts) >= 2:
        return parts[-2]
    return "library"
