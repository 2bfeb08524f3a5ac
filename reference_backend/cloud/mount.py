"""Ollama Cloud in the reference backend: the serve options, the middleware and the routes each mode adds.

Cloud mode (`serve --cloud`) makes this server behave like https://ollama.com: every /api/* and /v1/* request needs
`Authorization: Bearer <key>` (cloud_auth.py), models are named without a `-cloud` suffix, and /api/web_search and
/api/web_fetch answer from a local corpus (web_corpus.py). Local mode (the default) behaves like the daemon: explicit
cloud models are forwarded to OLLAMA_CLOUD_BASE_URL (cloud_proxy.py, rules in cloud_routing.py).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from ollama_conformance.reference_backend.cloud import routing as rules
from ollama_conformance.reference_backend.cloud.auth import ApiKeyError, ApiKeys, CloudAuthMiddleware, load_api_keys
from ollama_conformance.reference_backend.cloud.proxy import CloudRoutingMiddleware, CloudUpstream, ExperimentalWebProxy
from ollama_conformance.reference_backend.cloud.web_corpus import (
    Corpus,
    WebRequestError,
    default_corpus,
    web_fetch,
    web_search,
)

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


# --- wiring: the serve options and what the app factory adds -----------------------------------------------------


def apply_cloud_arguments(args: Any, config: Any) -> None:
    """Copy the cloud options into the ServerConfig; keys are loaded now so a missing key fails at startup."""
    from ollama_conformance.reference_backend.config import ConfigError

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
    from ollama_conformance.reference_backend.config import VERSION, ConfigError

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
