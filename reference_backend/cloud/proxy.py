"""The daemon's routing to Ollama Cloud: explicit cloud models are forwarded upstream, the answer streamed back.

Written from Ollama's `server/cloud_proxy.go` (v0.33.0-rc2): the request goes to the same path of
OLLAMA_CLOUD_BASE_URL with `model` stripped of its suffix, hop-by-hop headers dropped and the client version added;
status, headers and body come back unchanged, flushed chunk by chunk. OLLAMA_NO_CLOUD=1 answers 403 instead, an
unreachable upstream 502. One difference: the daemon signs its requests with its ed25519 key, this server sends
`Authorization: Bearer $OLLAMA_API_KEY` (the credential a third-party server can have).
"""

from __future__ import annotations

import json
import ssl

import anyio
import httpx

from ollama_conformance.reference_backend.cloud import routing as rules
from ollama_conformance.reference_backend.cloud.http import (
    NATIVE_JSON,
    ASGIApp,
    Receive,
    Scope,
    Send,
    read_body,
    replay,
    send_body,
    send_native_error,
    surface_error_body,
    surface_of,
)

CLIENT_VERSION_HEADER = "x-ollama-client-version"
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
        async with (
            httpx.AsyncClient(timeout=timeout, verify=_verify(), trust_env=not loopback) as client,
            anyio.create_task_group() as group,
        ):

            async def watch_disconnect() -> None:
                while (await receive())["type"] != "http.disconnect":
                    pass
                group.cancel_scope.cancel()  # the client left: stop waiting on, or reading from, the upstream

            group.start_soon(watch_disconnect)
            request = client.build_request(method, url, headers=headers, content=body if body else None)
            try:
                response = await client.send(request, stream=True)
            except httpx.HTTPError as exc:
                reason = str(exc) or exc.__class__.__name__
                await send_native_error(send, 502, f'{method.title()} "{url}": {reason}')
            else:
                try:
                    await self._relay(response, send)
                finally:
                    await response.aclose()
            group.cancel_scope.cancel()

    @staticmethod
    async def _relay(response: httpx.Response, send: Send) -> None:
        connection_tokens = {t.strip().lower() for t in response.headers.get_list("connection", split_commas=True)}
        dropped = HOP_BY_HOP | connection_tokens | SERVER_OWN_HEADERS
        headers = [
            (key.lower(), value) for key, value in response.headers.raw if key.decode("latin-1").lower() not in dropped
        ]
        await send({"type": "http.response.start", "status": response.status_code, "headers": headers})
        try:
            async for chunk in response.aiter_raw():
                if chunk:
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
        except httpx.HTTPError:
            pass  # upstream broke mid-answer: end our answer where it stopped, as Ollama's copy loop does
        await send({"type": "http.response.body", "body": b"", "more_body": False})


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
        body, gone = await read_body(receive)
        if gone:
            return
        found = rules.extract_model_field(body)
        if found is None and path == "/api/show":
            found = _show_name_field(body)
        if found is None:
            await self.app(scope, replay(body, receive), send)
            return
        payload, model = found
        try:
            ref = rules.parse_model_ref(model)
        except rules.ModelRefError as exc:
            error, content_type = _conflict_error(surface_of(path), str(exc))
            await send_body(send, 400, error, content_type)
            return
        if ref.source is not rules.ModelSource.CLOUD:
            await self.app(scope, replay(body, receive), send)
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
            await send_body(send, 400, error, content_type)
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
        body, gone = await read_body(receive)
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
