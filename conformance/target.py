"""The server under test: where it is, how to authenticate, and what it offers (discovered, never assumed).

Discovery asks `/api/version`, `/api/tags` and `/api/show` for each model, as the official clients do, so a
feature can be declared *not applicable* when the model lacks the capability it needs. A target that cannot be
reached raises `TargetError` with one clear line; the plugin turns that into an *error* result for every test.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx

from ollama_conformance.errors import TargetError, UsageError

PROFILES = ("reference", "local", "cloud")
DEFAULT_URLS = {"local": "http://localhost:11434", "cloud": "https://ollama.com"}
DEFAULT_API_KEY_ENV = "OLLAMA_API_KEY"


@dataclass
class ModelInfo:
    name: str
    digest: str | None = None
    capabilities: list[str] = field(default_factory=list)


@dataclass
class Target:
    """Everything a test needs to talk to the server. `api_key` is never serialised or printed."""

    url: str
    profile: str
    api_key: str | None = field(default=None, repr=False)
    version: str | None = None
    models: list[ModelInfo] = field(default_factory=list)
    chat_model: str | None = None
    embed_model: str | None = None
    timeout_s: float = 60.0
    allow_mutations: bool = False

    def __repr__(self) -> str:  # never the key, never credentials in the URL
        return f"Target(url={self.public_url()!r}, profile={self.profile!r}, version={self.version!r})"

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}

    def capabilities(self, model: str | None) -> list[str]:
        for info in self.models:
            if info.name == model:
                return info.capabilities
        return []

    def public_url(self) -> str:
        return redact_url(self.url)

    def to_json(self) -> dict[str, Any]:
        """The serialisable description (no secrets): used in the results file and to hand over to xdist workers."""
        return {
            "url": self.public_url(),
            "profile": self.profile,
            "version": self.version,
            "models": [asdict(m) for m in self.models],
            "chat_model": self.chat_model,
            "embed_model": self.embed_model,
        }


def redact_url(url: str) -> str:
    """Drop user:password and the query string (where tokens hide) from a URL."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def normalise_url(url: str) -> str:
    url = url.strip().rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UsageError(f"--target must be an http(s) URL like http://localhost:11434, got {url!r}")
    return url


def resolve_api_key(profile: str, api_key_env: str | None) -> str | None:
    """The key comes from the environment only: the variable named, or OLLAMA_API_KEY on the cloud profile."""
    name = api_key_env or (DEFAULT_API_KEY_ENV if profile == "cloud" else None)
    return (os.environ.get(name) or None) if name else None


def missing_key_reason(profile: str, api_key_env: str | None) -> str | None:
    """Why a cloud run cannot apply (no key: every test is not applicable, no request is sent); None otherwise."""
    if profile != "cloud" or resolve_api_key(profile, api_key_env):
        return None
    if api_key_env:
        return f"no API key: the variable {api_key_env} named by --api-key-env is unset or empty (set it to check Ollama Cloud)"
    return f"no API key: set {DEFAULT_API_KEY_ENV} (or --api-key-env NAME) to check Ollama Cloud"


def _get_json(client: httpx.Client, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
    try:
        response = client.request(method, path, json=body)
    except httpx.TimeoutException as exc:
        raise TargetError(f"{method} {path}: no answer within {client.timeout.read:g} s ({type(exc).__name__}); "
                          "a server still loading its model may need a longer --discovery-timeout") from exc
    except httpx.TransportError as exc:
        raise TargetError(f"{method} {path}: cannot reach the target: {exc or type(exc).__name__}") from exc
    if response.status_code in (401, 403):
        raise TargetError(f"{method} {path}: HTTP {response.status_code}: check the API key (--api-key-env)")
    if response.status_code >= 400:
        raise TargetError(f"{method} {path}: HTTP {response.status_code}: {response.text[:200]}")
    try:
        return response.json()
    except ValueError as exc:
        raise TargetError(f"{method} {path}: the answer is not JSON: {response.text[:120]!r}") from exc


def discover(
    url: str,
    *,
    profile: str = "local",
    api_key: str | None = None,
    chat_model: str | None = None,
    embed_model: str | None = None,
    timeout_s: float = 60.0,
    allow_mutations: bool = False,
) -> Target:
    """Ask the target what it is and which models it serves; pick a chat and an embedding model."""
    target = Target(url=url, profile=profile, api_key=api_key, timeout_s=timeout_s, allow_mutations=allow_mutations)
    with httpx.Client(base_url=url, headers=target.headers(), timeout=timeout_s) as client:
        version = _get_json(client, "GET", "/api/version")
        target.version = version.get("version") if isinstance(version, dict) else None
        tags = _get_json(client, "GET", "/api/tags")
        entries = tags.get("models") if isinstance(tags, dict) else None
        if not isinstance(entries, list):
            raise TargetError("GET /api/tags: the answer has no `models` list")
        names = [e.get("model") or e.get("name") for e in entries if isinstance(e, dict)]
        if profile == "cloud" and not chat_model:  # a small default keeps a real-cloud run cheap
            from ollama_conformance.conformance.cloud_profile import preferred_cloud_model

            chat_model = preferred_cloud_model(names)
        wanted = [n for n in (chat_model, embed_model) if n]
        for name in dict.fromkeys([*wanted, *names]):
            if not name:
                continue
            if not wanted or name in wanted or len(target.models) < 8:
                target.models.append(_show(client, name, entries))
    target.chat_model = chat_model or _first_with(target.models, "completion")
    target.embed_model = embed_model or _first_with(target.models, "embedding")
    return target


def _show(client: httpx.Client, name: str, entries: list[Any]) -> ModelInfo:
    digest = next((e.get("digest") for e in entries if isinstance(e, dict) and name in (e.get("model"), e.get("name"))), None)
    try:
        shown = _get_json(client, "POST", "/api/show", {"model": name})
    except TargetError as exc:
        if "HTTP 404" in str(exc):
            raise TargetError(f"model {name!r} is not on the target (POST /api/show answered 404)") from exc
        raise
    capabilities = shown.get("capabilities") if isinstance(shown, dict) else None
    return ModelInfo(name=name, digest=digest, capabilities=list(capabilities or []))


def _first_with(models: list[ModelInfo], capability: str) -> str | None:
    return next((m.name for m in models if capability in m.capabilities), None)


def from_json(data: dict[str, Any], *, url: str, api_key: str | None, timeout_s: float, allow_mutations: bool) -> Target:
    """Rebuild a discovered Target (xdist workers receive it from the controller instead of re-discovering)."""
    return Target(
        url=url,
        profile=data["profile"],
        api_key=api_key,
        version=data.get("version"),
        models=[ModelInfo(**m) for m in data.get("models", [])],
        chat_model=data.get("chat_model"),
        embed_model=data.get("embed_model"),
        timeout_s=timeout_s,
        allow_mutations=allow_mutations,
    )
