"""The app factory: one ServerState, the HTTP surfaces composed from their `routes()`, the middleware list.

Each surface is a module with `routes() -> list[starlette.routing.Route]`; add a surface by appending its module
to ROUTE_MODULES. Middleware (cloud auth, ...) goes into `middleware(config)`. Unknown paths and wrong methods
answer as Ollama's gin router does: `404 page not found` / `405 method not allowed` (text/plain, with `Allow`),
and a trailing slash redirects (301 for GET/HEAD, 307 otherwise).
"""

from __future__ import annotations

import contextlib
import importlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from types import ModuleType

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from ollama_conformance.reference_backend.api import guards, native
from ollama_conformance.reference_backend.cloud import mount as cloud
from ollama_conformance.reference_backend.config import ServerConfig
from ollama_conformance.reference_backend.engine.scheduler import Scheduler
from ollama_conformance.reference_backend.store import bundled
from ollama_conformance.reference_backend.store.local import Store

log = logging.getLogger("ollama_conformance.reference_backend.app")

# The HTTP surfaces. Optional ones (written in parallel) join when their module exists.
ROUTE_MODULES: list[ModuleType] = [native]
OPTIONAL_ROUTE_MODULES = [
    "ollama_conformance.reference_backend.api.openai",
    "ollama_conformance.reference_backend.api.anthropic",
    "ollama_conformance.reference_backend.api.responses",
    "ollama_conformance.reference_backend.api.account",
    "ollama_conformance.reference_backend.api.transcription",
    "ollama_conformance.reference_backend.api.lifecycle",  # blobs, create, pull, push
]


@dataclass
class ServerState:
    """What every handler reaches as `request.app.state.server`."""

    config: ServerConfig
    store: Store
    scheduler: Scheduler


def route_modules() -> list[ModuleType]:
    modules = list(ROUTE_MODULES)
    for name in OPTIONAL_ROUTE_MODULES:
        try:
            modules.append(importlib.import_module(name))
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
    return modules


def route_surface(path: str) -> str:
    """The surface a route belongs to (serve --surfaces mounts only some): /v1/messages is Anthropic's, the rest
    of /v1 OpenAI's, everything else (/, /api/*) native."""
    if path.startswith("/v1/messages"):
        return "anthropic"
    return "openai" if path.startswith("/v1/") else "native"


def middleware(config: ServerConfig) -> list[Middleware]:
    """Middleware applied to every route, outermost first (the cloud mode adds its auth here)."""
    return [*guards.guard_middleware(config), *cloud.cloud_middleware(config)]


def _plain(text: str, status: int, headers: dict[str, str] | None = None) -> Response:
    return Response(text, status_code=status, headers={"content-type": "text/plain", **(headers or {})})


def build_app(config: ServerConfig) -> Starlette:
    store = Store(config.models_dir)
    bundled.install(store)
    state = ServerState(config=config, store=store, scheduler=Scheduler(config, store))
    routes: list[Route] = []
    for module in route_modules():
        routes.extend(module.routes())
    routes.extend(cloud.cloud_routes(config))  # web search/fetch (cloud mode) or the daemon's web proxies
    routes = [route for route in routes if route_surface(route.path) in config.surfaces]
    paths = {route.path for route in routes}

    async def not_found(request: Request, exc: Exception) -> Response:
        path = request.url.path
        if path != "/" and path.endswith("/") and path.rstrip("/") in paths:
            code = 301 if request.method in ("GET", "HEAD") else 307
            target = path.rstrip("/") + (f"?{request.url.query}" if request.url.query else "")
            return RedirectResponse(target, status_code=code)
        return _plain("404 page not found", 404)

    async def not_allowed(request: Request, exc: Exception) -> Response:
        headers = dict(getattr(exc, "headers", None) or {})
        allow = headers.get("Allow") or headers.get("allow")
        return _plain("405 method not allowed", 405, {"Allow": allow} if allow else None)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        state.scheduler.start()
        try:
            yield
        finally:
            await state.scheduler.close()

    app = Starlette(
        routes=routes,
        middleware=middleware(config),
        exception_handlers={404: not_found, 405: not_allowed},
        lifespan=lifespan,
    )
    app.router.redirect_slashes = False
    app.state.server = state
    return app
