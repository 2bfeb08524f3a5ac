"""Ollama Cloud in the reference backend: the cloud mode (Bearer keys, web search/fetch) and the daemon's routing.

Cloud mode (`serve --cloud`) makes this server behave like https://ollama.com: every /api/* and /v1/* request needs
`Authorization: Bearer <key>` (compared in constant time, never logged), models are named without a `-cloud`
suffix, and /api/web_search and /api/web_fetch answer from a local corpus.

Local mode (the default) behaves like the daemon: a request whose model is an explicit cloud reference
(`gpt-oss:120b-cloud`, `kimi-k2.5:cloud`) is forwarded to OLLAMA_CLOUD_BASE_URL with the suffix stripped, the
answer streamed back unchanged; OLLAMA_NO_CLOUD=1 answers 403 instead. Written from Ollama's
`server/cloud_proxy.go`. One difference: the daemon signs its requests with its ed25519 key, this server sends
`Authorization: Bearer $OLLAMA_API_KEY` (the credential a third-party server can have).
"""

from __future__ import annotations

import hmac
import json
import os
import secrets
import ssl
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from pathlib import Path
from typing import Any

import anyio
import httpx
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from reference_backend import cloud_routing as rules
from reference_backend.web_corpus import Corpus, WebRequestError, default_corpus, web_fetch, web_search

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

CLIENT_VERSION_HEADER = "x-ollama-client-version"
DEFAULT_KEY_ENV = "OLLAMA_API_KEY"
CONNECT_TIMEOUT_S = 30.0
READ_TIMEOUT_S = 600.0  # between bytes of the upstream answer: a cloud model may think for long before a token

# RFC 7230 hop-by-hop headers, dropped in both directions as Ollama does; host and length are recomputed.
HOP_BY_HOP = frozenset(
    {
        "connection",
        "content-length",
        "proxy-connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "host",
    }
)

# uvicorn adds its own Date and Server to every answer; the upstream's copies would make them appear twice.
SERVER_OWN_HEADERS = frozenset({"date", "server"})

NATIVE_JSON = "application/json; charset=utf-8"  # gin's c.JSON


class ApiKeyError(ValueError):
    """No usable API key for the cloud mode: one line, exit status 2."""


# --- API keys --------------------------------------------------------------------------------------------------


def _split_keys(text: str) -> list[str]:
    keys = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keys.extend(part.strip() for part in line.split(",") if part.strip())
    return keys


def load_api_keys(
    keys_file: str | Path | None, key_env: str | None, environ: MutableMapping[str, str] | None = None
) -> tuple[str, ...]:
    """Keys from a file (one per line, `#` comments) and/or an environment variable (comma-separated).

    With neither option, OLLAMA_API_KEY is used. Raises ApiKeyError when no key results: the cloud mode never
    runs open. Key values never appear in a message.
    """
    environ = os.environ if environ is None else environ
    keys: list[str] = []
    if keys_file is not None:
        path = Path(keys_file)
        try:
            keys.extend(_split_keys(path.read_text(encoding="utf-8")))
        except (OSError, UnicodeDecodeError) as exc:
            raise ApiKeyError(f"cannot read API keys file {path}: {exc.__class__.__name__}") from exc
        if not keys:
            raise ApiKeyError(f"API keys file {path} holds no key")
    env_name = key_env or (DEFAULT_KEY_ENV if keys_file is None else None)
    if env_name:
        from_env = _split_keys(environ.get(env_name, ""))
        if not from_env and key_env:
            raise ApiKeyError(f"environment variable {env_name} is empty or unset")
        keys.extend(from_env)
    if not keys:
        raise ApiKeyError(
            "cloud mode needs an API key: use --api-keys-file PATH or --api-key-env NAME (or set OLLAMA_API_KEY)"
        )
    return tuple(dict.fromkeys(keys))


class ApiKeys:
    """Accepted keys; `check` compares against every key in constant time, so timing reveals neither key nor match."""

    def __init__(self, keys: Iterable[str]) -> None:
        self._keys = tuple(k.encode() for k in keys)
        if not self._keys:
            raise ApiKeyError("no API key given")

    def __repr__(self) -> str:  # never the values
        return f"ApiKeys(<{len(self._keys)} keys>)"

    def check(self, authorization: str | None) -> bool:
        if not authorization:
            return False
        scheme, _, token = authorization.strip().partition(" ")
        if scheme.lower() != "bearer":
            return False
        candidate = token.strip().encode()
        matched = False
        for key in self._keys:
            matched |= hmac.compare_digest(candidate, key)
        return matched


# --- small ASGI helpers ----------------------------------------------------------------------------------------


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return value.decode("latin-1")
    return None


async def _send_body(send: Send, status: int, body: bytes, content_type: str) -> None:
    headers = [(b"content-type", content_type.encode()), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


def _json_bytes(obj: object) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode()


async def send_native_error(send: Send, status: int, message: str) -> None:
    await _send_body(send, status, _json_bytes({"error": message}), NATIVE_JSON)


def surface_of(path: str) -> str:
    if path == "/v1/messages" or path.startswith("/v1/messages/"):
        return "anthropic"
    if path.startswith("/v1/"):
        return "openai"
    return "native"


def _openai_error_type(status: int) -> str:
    return {400: "invalid_request_error", 404: "not_found_error"}.get(status, "api_error")


def _anthropic_error_type(status: int) -> str:
    return {
        400: "invalid_request_error",
        401: "authentication_error",
        403: "permission_error",
        404: "not_found_error",
        429: "rate_limit_error",
        503: "overloaded_error",
        529: "overloaded_error",
    }.get(status, "api_error")


def surface_error_body(surface: str, status: int, message: str) -> bytes:
    """An error in the shape Ollama's compatibility middlewares give it (native, OpenAI or Anthropic)."""
    if surface == "openai":
        obj: object = {"error": {"message": message, "type": _openai_error_type(status), "param": None, "code": None}}
    elif surface == "anthropic":
        obj = {
            "type": "error",
            "error": {"type": _anthropic_error_type(status), "message": message},
            "request_id": "req_" + secrets.token_hex(12),
        }
    else:
        obj = {"error": message}
    return _json_bytes(obj)


async def _read_body(receive: Receive) -> tuple[bytes, bool]:
    """The whole request body, and whether the client went away while sending it."""
    chunks = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return b"".join(chunks), True
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks), False


def _replay(body: bytes, receive: Receive) -> Receive:
    """A receive that hands the buffered body to the app once, then waits on the real one (for disconnects)."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


# --- cloud mode: authentication --------------------------------------------------------------------------------

# What ollama.com answers a request without a valid key. /v1 is recorded (crmne/ruby_llm cassette, 2026-08-13:
# 401, `application/json`, this body and a newline). The native and Anthropic bodies are not recorded anywhere we
# know of: native follows Ollama's own `{"error":"unauthorized"}`, Anthropic the shape Ollama's Anthropic
# middleware gives a 401.
UNAUTHORIZED_CONTENT_TYPE = "application/json"


def unauthorized_body(path: str) -> bytes:
    surface = surface_of(path)
    if surface == "openai":
        return surface_error_body("openai", 401, "Unauthorized") + b"\n"
    if surface == "anthropic":
        return surface_error_body("anthropic", 401, "Unauthorized") + b"\n"
    return _json_bytes({"error": "unauthorized"}) + b"\n"


def requires_key(method: str, path: str) -> bool:
    """Every /api and /v1 route needs a key, except the model list, which ollama.com documents as public."""
    if not (path.startswith(("/api/", "/v1/")) or path in ("/api", "/v1")):
        return False
    return not (path == "/api/tags" and method in ("GET", "HEAD"))


class CloudAuthMiddleware:
    """Refuse /api/* and /v1/* requests without a valid Bearer key, with the cloud's 401 for each surface."""

    def __init__(self, app: ASGIApp, keys: ApiKeys) -> None:
        self.app = app
        self.keys = keys

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not requires_key(scope["method"], scope["path"]):
            await self.app(scope, receive, send)
            return
        if self.keys.check(_header(scope, b"authorization")):
            await self.app(scope, receive, send)
            return
        await _send_body(send, 401, unauthorized_body(scope["path"]), UNAUTHORIZED_CONTENT_TYPE)


# --- cloud mode: web search and fetch ----------------------------------------------------------------------------


async def _web_endpoint(request: Request, handler: Callable[[Corpus, object], dict[str, object]]) -> Response:
    raw = await request.body()
    if not raw.strip():
        return JSONResponse({"error": "missing request body"}, status_code=400)
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        return JSONResponse({"error": f"invalid JSON: {exc}"}, status_code=400)
    try:
        return JSONResponse(handler(default_corpus(), body))
    except WebRequestError as exc:
        return JSONResponse({"error": exc.message}, status_code=exc.status)


async def web_search_endpoint(request: Request) -> Response:
    return await _web_endpoint(request, web_search)


async def web_fetch_endpoint(request: Request) -> Response:
    return await _web_endpoint(request, web_fetch)


# --- local mode: forwarding to the cloud -------------------------------------------------------------------------


_ssl_context: ssl.SSLContext | None = None


def _verify() -> ssl.SSLContext:
    global _ssl_context
    if _ssl_context is None:  # built once: loading the CA bundle costs milliseconds per client otherwise
        import certifi

        _ssl_context = ssl.create_default_context(cafile=certifi.where())
    return _ssl_context


class CloudUpstream:
    """Where cloud requests go and how they are authenticated. `api_key` is never printed."""

    def __init__(self, base_url: str, api_key: str | None, no_cloud: bool, client_version: str) -> None:
        self.base_url = rules.resolve_cloud_base_url(base_url)
        self._api_key = api_key or None
        self.no_cloud = no_cloud
        self.client_version = client_version

    def __repr__(self) -> str:
        return f"CloudUpstream({self.base_url!r}, key={'set' if self._api_key else 'unset'}, no_cloud={self.no_cloud})"

    def request_headers(self, scope: Scope, drop_authorization: bool) -> list[tuple[str, str]] | None:
        """Client headers minus hop-by-hop ones, plus the client version and our key. None: no credential."""
        connection_tokens = {
            token.strip().lower()
            for key, value in scope.get("headers", [])
            if key.lower() == b"connection"
            for token in value.decode("latin-1").split(",")
        }
        headers: list[tuple[str, str]] = []
        for key, value in scope.get("headers", []):
            name = key.decode("latin-1").lower()
            if name in HOP_BY_HOP or name in connection_tokens or name == CLIENT_VERSION_HEADER:
                continue
            if name == "authorization" and (drop_authorization or self._api_key):
                continue
            headers.append((name, value.decode("latin-1")))
        headers.append((CLIENT_VERSION_HEADER, self.client_version))
        if not any(name == "accept-encoding" for name, _ in headers):
            headers.append(("accept-encoding", "identity"))  # pass bytes through as the client would get them
        if self._api_key:
            headers.append(("authorization", f"Bearer {self._api_key}"))
        elif rules.needs_signing(self.base_url):
            return None  # the real cloud without a credential: refuse here, as the daemon does when it cannot sign
        return headers

    async def forward(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        *,
        method: str,
        path: str,
        body: bytes,
        operation: str,
        drop_authorization: bool = False,
    ) -> None:
        """proxyCloudRequestWithPath: 403 when disabled, else send upstream and stream the answer back unchanged."""
        if self.no_cloud:
            await send_native_error(send, 403, rules.disabled_message(operation))
            return
        headers = self.request_headers(scope, drop_authorization)
        if headers is None:
            await send_native_error(send, 401, "unauthorized")
            return
        if body and not any(name == "content-type" for name, _ in headers):
            headers.append(("content-type", "application/json"))
        query = scope.get("query_string", b"").decode("latin-1")
        url = self.base_url + path + (f"?{query}" if query else "")
        loopback = not rules.needs_signing(self.base_url) and self.base_url.startswith("http://")
        timeout = httpx.Timeout(READ_TIMEOUT_S, connect=CONNECT_TIMEOUT_S)
        async with httpx.AsyncClient(timeout=timeout, verify=_verify(), trust_env=not loopback) as client:
            request = client.build_request(method, url, headers=headers, content=body if body else None)
            try:
                response = await client.send(request, stream=True)
            except httpx.HTTPError as exc:
                reason = str(exc) or exc.__class__.__name__
                await send_native_error(send, 502, f'{method.title()} "{url}": {reason}')
                return
            try:
                await self._relay(response, receive, send)
            finally:
                await response.aclose()

    @staticmethod
    async def _relay(response: httpx.Response, receive: Receive, send: Send) -> None:
        connection_tokens = {t.strip().lower() for t in response.headers.get_list("connection", split_commas=True)}
        dropped = HOP_BY_HOP | connection_tokens | SERVER_OWN_HEADERS
        headers = [
            (key.lower(), value) for key, value in response.headers.raw if key.decode("latin-1").lower() not in dropped
        ]
        await send({"type": "http.response.start", "status": response.status_code, "headers": headers})
        async with anyio.create_task_group() as group:

            async def watch_disconnect() -> None:
                while (await receive())["type"] != "http.disconnect":
                    pass
                group.cancel_scope.cancel()  # the client left: stop reading the upstream

            group.start_soon(watch_disconnect)
            try:
                async for chunk in response.aiter_raw():
                    if chunk:
                        await send({"type": "http.response.body", "body": chunk, "more_body": True})
            except httpx.HTTPError:
                pass  # upstream broke mid-answer: end our answer where it stopped, as Ollama's copy loop does
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            group.cancel_scope.cancel()


def _conflict_error(surface: str, message: str) -> tuple[bytes, str]:
    content_type = NATIVE_JSON if surface == "native" else "application/json"
    return surface_error_body(surface, 400, message), content_type


class CloudRoutingMiddleware:
    """The daemon's cloud passthrough: explicit cloud models go upstream, `x:local:cloud` is a 400."""

    def __init__(self, app: ASGIApp, upstream: CloudUpstream) -> None:
        self.app = app
        self.upstream = upstream

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        method, path = scope["method"], scope["path"]
        if method == "GET" and path.startswith(rules.MODELS_PATH_PREFIX):
            await self._model_path(scope, receive, send, path[len(rules.MODELS_PATH_PREFIX) :])
            return
        operation = rules.PASSTHROUGH_POST_PATHS.get(path)
        if method != "POST" or operation is None:
            await self.app(scope, receive, send)
            return
        body, gone = await _read_body(receive)
        if gone:
            return
        found = rules.extract_model_field(body)
        if found is None and path == "/api/show":
            found = _show_name_field(body)
        if found is None:
            await self.app(scope, _replay(body, receive), send)
            return
        payload, model = found
        try:
            ref = rules.parse_model_ref(model)
        except rules.ModelRefError as exc:
            error, content_type = _conflict_error(surface_of(path), str(exc))
            await _send_body(send, 400, error, content_type)
            return
        if ref.source is not rules.ModelSource.CLOUD:
            await self.app(scope, _replay(body, receive), send)
            return
        await self.upstream.forward(
            scope,
            receive,
            send,
            method="POST",
            path=path,
            body=rules.rewrite_model_field(payload, ref.base),
            operation=operation,
        )

    async def _model_path(self, scope: Scope, receive: Receive, send: Send, model: str) -> None:
        if "/" in model or not model.strip():
            await self.app(scope, receive, send)
            return
        try:
            ref = rules.parse_model_ref(model)
        except rules.ModelRefError as exc:
            error, content_type = _conflict_error("openai", str(exc))
            await _send_body(send, 400, error, content_type)
            return
        if ref.source is not rules.ModelSource.CLOUD:
            await self.app(scope, receive, send)
            return
        await self.upstream.forward(
            scope,
            receive,
            send,
            method="GET",
            path=rules.MODELS_PATH_PREFIX + ref.base,
            body=b"",
            operation=rules.OP_MODEL_DETAILS,
        )


def _show_name_field(body: bytes) -> tuple[dict[str, object], str] | None:
    """/api/show still accepts the deprecated `name` when `model` is absent; forward it as `model`."""
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None
    if isinstance(payload, dict) and not payload.get("model") and isinstance(payload.get("name"), str):
        name = payload["name"].strip()
        if name:
            return {k: v for k, v in payload.items() if k != "name"}, name
    return None


class ExperimentalWebProxy:
    """POST /api/experimental/web_search|web_fetch on the daemon: the client's Authorization is dropped, the body
    forwarded verbatim to the cloud's /api/web_search|web_fetch."""

    def __init__(self, upstream: CloudUpstream, cloud_path: str, operation: str) -> None:
        self.upstream = upstream
        self.cloud_path = cloud_path
        self.operation = operation

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        body, gone = await _read_body(receive)
        if gone:
            return
        if not body.strip():
            await send_native_error(send, 400, "missing request body")
            return
        await self.upstream.forward(
            scope,
            receive,
            send,
            method="POST",
            path=self.cloud_path,
            body=body,
            operation=self.operation,
            drop_authorization=True,
        )


# --- wiring: the serve options and what the app factory adds -----------------------------------------------------


def add_cloud_arguments(parser: Any) -> None:
    """`serve --cloud [--api-keys-file PATH] [--api-key-env NAME]`."""
    group = parser.add_argument_group("cloud mode (behave like https://ollama.com)")
    group.add_argument(
        "--cloud",
        action="store_true",
        help="require Authorization: Bearer <key> on /api and /v1, serve /api/web_search and /api/web_fetch",
    )
    group.add_argument("--api-keys-file", metavar="PATH", help="accepted keys, one per line (# comments)")
    group.add_argument(
        "--api-key-env", metavar="NAME", help="environment variable holding accepted keys (default OLLAMA_API_KEY)"
    )


def apply_cloud_arguments(args: Any, config: Any) -> None:
    """Copy the cloud options into the ServerConfig; keys are loaded now so a missing key fails at startup."""
    from reference_backend.config import ConfigError

    keys_file = getattr(args, "api_keys_file", None)
    key_env = getattr(args, "api_key_env", None)
    if not getattr(args, "cloud", False):
        if keys_file or key_env:
            raise ConfigError("--api-keys-file and --api-key-env need --cloud")
        upstream_from_config(config)  # a bad OLLAMA_CLOUD_BASE_URL is reported now, not at the first request
        return
    try:
        config.api_keys = load_api_keys(keys_file, key_env)
    except ApiKeyError as exc:
        raise ConfigError(str(exc)) from exc
    config.cloud = True


# --- wiring: what the app factory adds ---------------------------------------------------------------------------


def cloud_middleware(config: Any) -> list[Middleware]:
    """The middleware for the server's mode: authentication in cloud mode, routing to the cloud in local mode."""
    if getattr(config, "cloud", False):
        return [Middleware(CloudAuthMiddleware, keys=ApiKeys(config.api_keys))]
    return [Middleware(CloudRoutingMiddleware, upstream=upstream_from_config(config))]


def upstream_from_config(config: Any) -> CloudUpstream:
    """The daemon's upstream; a bad OLLAMA_CLOUD_BASE_URL is a ConfigError at startup (Ollama only warns)."""
    from reference_backend.config import VERSION, ConfigError

    try:
        return CloudUpstream(
            base_url=getattr(config, "cloud_base_url", "") or "",
            api_key=getattr(config, "api_key", None),
            no_cloud=bool(getattr(config, "no_cloud", False)),
            client_version=VERSION,
        )
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc


def cloud_routes(config: Any) -> list[BaseRoute]:
    """Cloud mode: /api/web_search and /api/web_fetch. Local mode: the daemon's experimental web proxies."""
    if getattr(config, "cloud", False):
        default_corpus()  # load now: a broken corpus is a startup error, not a 500 later
        return [
            Route("/api/web_search", web_search_endpoint, methods=["POST"]),
            Route("/api/web_fetch", web_fetch_endpoint, methods=["POST"]),
        ]
    upstream = upstream_from_config(config)
    return [
        Route(path, ExperimentalWebProxy(upstream, cloud_path, operation), methods=["POST"])
        for path, (cloud_path, operation) in rules.WEB_PROXY_PATHS.items()
    ]
