"""What the cloud modules share at the ASGI level: reading and replaying bodies, sending JSON, error shapes.

Errors keep the shape of the surface they answer on, as Ollama's compatibility middlewares give it: native
`{"error": message}`, OpenAI `{"error": {message, type, param, code}}`, Anthropic `{type: "error", error: {...}}`.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from ollama_conformance.reference_backend.api.anthropic import error_body as anthropic_error_body
from ollama_conformance.reference_backend.api.openai import error_body as openai_error_body

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

NATIVE_JSON = "application/json; charset=utf-8"  # gin's c.JSON


def header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return value.decode("latin-1")
    return None


async def send_body(send: Send, status: int, body: bytes, content_type: str) -> None:
    headers = [(b"content-type", content_type.encode()), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


def json_bytes(obj: object) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode()


async def send_native_error(send: Send, status: int, message: str) -> None:
    await send_body(send, status, json_bytes({"error": message}), NATIVE_JSON)


def surface_of(path: str) -> str:
    if path == "/v1/messages" or path.startswith("/v1/messages/"):
        return "anthropic"
    if path.startswith("/v1/"):
        return "openai"
    return "native"


def surface_error_body(surface: str, status: int, message: str) -> bytes:
    """An error in the shape Ollama's compatibility middlewares give it (native, OpenAI or Anthropic): the same
    bodies the local surfaces send, so the cloud mode and the daemon cannot drift apart."""
    if surface == "openai":
        return json_bytes(openai_error_body(status, message))
    if surface == "anthropic":
        return json_bytes(anthropic_error_body(status, message))
    return json_bytes({"error": message})


async def read_body(receive: Receive) -> tuple[bytes, bool]:
    """The whole request body, and whether the client went away while sending it."""
    chunks = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return b"".join(chunks), True
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks), False


def replay(body: bytes, receive: Receive) -> Receive:
    """A receive that hands the buffered body to the app once, then waits on the real one (for disconnects)."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
