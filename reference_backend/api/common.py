"""What the compatibility surfaces share: Go-style request decoding, the native stream, merging it, timestamps.

Ollama's /v1 and /v1/messages middlewares bind the body into a Go struct (unknown keys ignored, key match
case-insensitive, `null` = absent, a wrong JSON type is a 400 with Go's message), rewrite it into a native
request and read the native handler's output back. `decode_struct` copies that binding for the fields a
surface reads; `NativeStream` calls the native core and surfaces its validation error before the first byte.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import time
from collections.abc import AsyncIterator, Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from ollama_conformance.reference_backend.api.wire import go_syntax_error
from starlette.requests import Request
from starlette.responses import Response

log = logging.getLogger("ollama_conformance.reference_backend.surfaces")


class RequestError(Exception):
    """A request the surface refuses before calling the native core: HTTP status and Ollama's message."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


# --- Go-style JSON binding -------------------------------------------------------------------------------------


def json_type(value: Any) -> str:
    """The JSON kind Go's decoder names in its errors."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _fits(value: Any, go_type: str) -> bool:
    if go_type == "any":
        return True
    if go_type == "string":
        return isinstance(value, str)
    if go_type == "bool":
        return isinstance(value, bool)
    if go_type == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if go_type in ("float64", "float32"):
        return isinstance(value, int | float) and not isinstance(value, bool)
    if go_type.startswith("[]"):
        return isinstance(value, list)
    return isinstance(value, dict)  # struct, pointer to struct or map


def decode_struct(data: Any, struct: str, fields: Mapping[str, str]) -> dict[str, Any]:
    """Bind `data` the way encoding/json fills the Go struct `struct` with `fields` (json name -> Go type).

    Returns the known fields under their canonical names; nulls are dropped (Go leaves the zero value).
    """
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise RequestError(f"json: cannot unmarshal {json_type(data)} into Go value of type {struct}")
    by_folded = {name.lower(): name for name in fields}
    out: dict[str, Any] = {}
    for key, value in data.items():
        name = key if key in fields else by_folded.get(key.lower())
        if name is None or value is None:
            continue
        go_type = fields[name]
        if not _fits(value, go_type):
            shown = json_type(value)
            if shown == "number":
                shown = f"number {json.dumps(value)}"
            field = struct.split(".")[-1]
            # Go names the pointed-to type: a *T field reports T.
            raise RequestError(
                f"json: cannot unmarshal {shown} into Go struct field {field}.{name} of type {go_type.lstrip('*')}"
            )
        out[name] = value
    return out


def parse_json_body(raw: bytes) -> Any:
    """gin's ShouldBindJSON: an empty body is `EOF`, malformed JSON Go's syntax message (both 400)."""
    if not raw.strip():
        raise RequestError("EOF")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RequestError(f"invalid character in request body: {exc.reason}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise RequestError(go_syntax_error(text, exc)) from None


async def read_struct(request: Request, struct: str, fields: Mapping[str, str]) -> dict[str, Any]:
    return decode_struct(parse_json_body(await request.body()), struct, fields)


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
        from ollama_conformance.reference_backend.api.core import ApiError

        try:
            self._first = await anext(self._items)
        except StopAsyncIteration:
            self._first = None
        except (ApiError, RequestError):
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
    """The non-stream native object, merged by the native layer itself (as Ollama's middlewares convert what
    the native handler answers with stream=false)."""
    from ollama_conformance.reference_backend.api.native import merge_stream

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
