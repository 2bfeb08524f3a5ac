"""The daemon's two guards in front of every route (Ollama's server/routes.go): CORS and the Host check.

- CORS (gin-contrib/cors with Ollama's origins): a request whose `Origin` is not allowed gets a bare 403; an
  allowed one gets the Access-Control headers, and a preflight (OPTIONS) answers 204. Allowed: OLLAMA_ORIGINS
  plus http(s)://{localhost,127.0.0.1,0.0.0.0}[:*], app://*, file://*, tauri://*, vscode-webview://*,
  vscode-file://*.
- Host check (DNS-rebinding protection): when bound to a loopback address, a `Host` that is not a loopback,
  private or unspecified IP, `localhost`, this machine's hostname, or `*.localhost|*.local|*.internal` gets a
  bare 403.
Cloud mode (behaving like ollama.com) has neither.
"""

from __future__ import annotations

import fnmatch
import ipaddress
import os
import socket
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from starlette.middleware import Middleware

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

ALLOW_METHODS = "GET,POST,PUT,PATCH,DELETE,HEAD,OPTIONS"
ALLOW_HEADERS = (
    "Authorization,Content-Type,User-Agent,Accept,X-Requested-With,X-Stainless-Lang,X-Stainless-Package-Version,"
    "X-Stainless-Os,X-Stainless-Arch,X-Stainless-Retry-Count,X-Stainless-Runtime,X-Stainless-Runtime-Version,"
    "X-Stainless-Async,X-Stainless-Helper-Method,X-Stainless-Poll-Helper,X-Stainless-Custom-Poll-Interval,"
    "X-Stainless-Timeout,Anthropic-Version,Anthropic-Beta,Anthropic-Dangerous-Direct-Browser-Access,"
    "X-Api-Key,Origin"
)


def allowed_origins() -> list[str]:
    origins = [o.strip() for o in os.environ.get("OLLAMA_ORIGINS", "").split(",") if o.strip()]
    for host in ("localhost", "127.0.0.1", "0.0.0.0"):
        origins += [f"http://{host}", f"https://{host}", f"http://{host}:*", f"https://{host}:*"]
    return [*origins, "app://*", "file://*", "tauri://*", "vscode-webview://*", "vscode-file://*"]


def origin_allowed(origin: str, patterns: list[str]) -> bool:
    return any(origin == p or ("*" in p and fnmatch.fnmatchcase(origin, p)) for p in patterns)


def host_allowed(host_header: str) -> bool:
    host = host_header
    if host.startswith("["):
        host = host[1:].split("]", 1)[0]
    elif host.count(":") == 1:
        host = host.split(":", 1)[0]
    host = host.lower()
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        pass
    else:
        return address.is_loopback or address.is_private or address.is_unspecified
    if host in ("localhost", socket.gethostname().lower()):
        return True
    return host.endswith((".localhost", ".local", ".internal"))


def _bound_to_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return host == "localhost"


class GuardMiddleware:
    def __init__(self, app: ASGIApp, check_host: bool) -> None:
        self.app = app
        self.check_host = check_host
        self.origins = allowed_origins()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        if self.check_host and not host_allowed(headers.get("host", "")):
            await _bare(send, 403)
            return
        origin = headers.get("origin")
        if origin is None:
            await self.app(scope, receive, send)
            return
        if not origin_allowed(origin, self.origins):
            await _bare(send, 403)
            return
        cors = [(b"access-control-allow-origin", origin.encode("latin-1")), (b"vary", b"Origin")]
        if scope["method"] == "OPTIONS" and "access-control-request-method" in headers:
            await _bare(
                send,
                204,
                [
                    *cors,
                    (b"access-control-allow-methods", ALLOW_METHODS.encode()),
                    (b"access-control-allow-headers", ALLOW_HEADERS.encode()),
                    (b"access-control-max-age", b"43200"),
                ],
            )
            return

        async def send_with_cors(message: MutableMapping[str, Any]) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *cors]
            await send(message)

        await self.app(scope, receive, send_with_cors)


async def _bare(send: Send, status: int, headers: list[tuple[bytes, bytes]] | None = None) -> None:
    await send({"type": "http.response.start", "status": status, "headers": headers or []})
    await send({"type": "http.response.body", "body": b""})


def guard_middleware(config: Any) -> list[Middleware]:
    if getattr(config, "cloud", False):
        return []
    return [Middleware(GuardMiddleware, check_host=_bound_to_loopback(config.host))]
