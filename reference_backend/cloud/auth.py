"""The cloud mode's authentication: API keys from a file or the environment, and the 401 of each surface.

Keys are compared in constant time and never logged or printed (their repr hides them).
"""

from __future__ import annotations

import hmac
import os
from collections.abc import Iterable, MutableMapping
from pathlib import Path

from ollama_conformance.reference_backend.cloud.http import (
    ASGIApp,
    Receive,
    Scope,
    Send,
    header,
    json_bytes,
    send_body,
    surface_error_body,
    surface_of,
)

DEFAULT_KEY_ENV = "OLLAMA_API_KEY"


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
    return json_bytes({"error": "unauthorized"}) + b"\n"


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
        if self.keys.check(header(scope, b"authorization")):
            await self.app(scope, receive, send)
            return
        await send_body(send, 401, unauthorized_body(scope["path"]), UNAUTHORIZED_CONTENT_TYPE)
