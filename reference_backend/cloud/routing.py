"""The rules of Ollama Cloud routing, as pure functions: model-name source suffixes, OLLAMA_NO_CLOUD, the upstream URL.

Written from Ollama's `internal/modelref`, `internal/cloud`, `envconfig` and `server/cloud_proxy.go` (v0.33.0-rc2).
A model whose last `:`-segment is `cloud` (any case), or whose tag ends in `-cloud`, is a cloud model; the daemon
forwards it to the upstream with the suffix stripped. `local` marks an explicit local model. Both at once
(`x:local:cloud`) is a 400.
"""

from __future__ import annotations

import enum
import ipaddress
import json
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

DEFAULT_CLOUD_BASE_URL = "https://ollama.com:443"
SIGNING_HOST = "ollama.com"

DISABLED_PREFIX = "ollama cloud is disabled"
OP_INFERENCE = "remote model is unavailable"
OP_MODEL_DETAILS = "remote model details are unavailable"
OP_WEB_SEARCH = "web search is unavailable"
OP_WEB_FETCH = "web fetch is unavailable"

# Routes whose body is forwarded when its `model` names a cloud model: path -> the operation named in the 403.
# The native handlers of Ollama forward re-marshalled requests, the /v1 middlewares the raw body; both keep the path.
PASSTHROUGH_POST_PATHS: dict[str, str] = {
    "/api/generate": OP_INFERENCE,
    "/api/chat": OP_INFERENCE,
    "/api/embed": OP_INFERENCE,
    "/api/embeddings": OP_INFERENCE,
    "/api/show": OP_MODEL_DETAILS,
    "/v1/chat/completions": OP_INFERENCE,
    "/v1/completions": OP_INFERENCE,
    "/v1/embeddings": OP_INFERENCE,
    "/v1/responses": OP_INFERENCE,
    "/v1/messages": OP_INFERENCE,
}
MODELS_PATH_PREFIX = "/v1/models/"  # GET /v1/models/{model}: forwarded as GET /v1/models/{base}

# The daemon's experimental web routes proxy to these cloud paths.
WEB_PROXY_PATHS: dict[str, tuple[str, str]] = {
    "/api/experimental/web_search": ("/api/web_search", OP_WEB_SEARCH),
    "/api/experimental/web_fetch": ("/api/web_fetch", OP_WEB_FETCH),
}

# Go's strconv.ParseBool; envconfig treats any other non-empty value as true.
_GO_FALSE = {"0", "f", "F", "false", "FALSE", "False"}


class ModelSource(enum.Enum):
    UNSPECIFIED = "unspecified"
    LOCAL = "local"
    CLOUD = "cloud"


class ModelRefError(ValueError):
    """A model name Ollama rejects before routing (status 400 with this message)."""


@dataclass(frozen=True)
class ParsedRef:
    original: str
    base: str
    source: ModelSource


def go_quote(value: str) -> str:
    """Go's %q for the strings we quote: a double-quoted string with JSON-like escapes, non-ASCII kept."""
    return json.dumps(value, ensure_ascii=False)


def _parse_source_suffix(raw: str) -> tuple[str, ModelSource, bool]:
    idx = raw.rfind(":")
    if idx >= 0:
        suffix_raw = raw[idx + 1 :].strip()
        suffix = suffix_raw.lower()
        if suffix == "cloud":
            return raw[:idx], ModelSource.CLOUD, True
        if suffix == "local":
            return raw[:idx], ModelSource.LOCAL, True
        if "/" not in suffix_raw and suffix.endswith("-cloud"):
            return raw[: idx + 1] + suffix_raw[: -len("-cloud")], ModelSource.CLOUD, True
    return raw, ModelSource.UNSPECIFIED, False


def parse_model_ref(raw: str) -> ParsedRef:
    """modelref.ParseRef: strip an explicit `:cloud` / `-cloud` / `:local` suffix; raise on nested suffixes."""
    raw = raw.strip()
    if not raw:
        raise ModelRefError("model is required")
    base, source, explicit = _parse_source_suffix(raw)
    if explicit and _parse_source_suffix(base)[2]:
        raise ModelRefError(f"use either :local or :cloud, not both: {go_quote(raw)}")
    return ParsedRef(original=raw, base=base, source=source)


def is_cloud_model(raw: str) -> bool:
    try:
        return parse_model_ref(raw).source is ModelSource.CLOUD
    except ModelRefError:
        return False


def disabled_message(operation: str) -> str:
    return f"{DISABLED_PREFIX}: {operation}" if operation else DISABLED_PREFIX


def parse_no_cloud(value: str | None) -> bool:
    """OLLAMA_NO_CLOUD as envconfig reads it: empty is false, Go's false spellings are false, anything else true."""
    value = (value or "").strip().strip("\"'")
    if not value:
        return False
    return value not in _GO_FALSE


def cloud_status(no_cloud: bool) -> dict[str, object]:
    """The `cloud` object of /api/status. This server has no ~/.ollama/server.json, so the source is env or none."""
    return {"disabled": no_cloud, "source": "env" if no_cloud else "none"}


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def resolve_cloud_base_url(raw: str | None) -> str:
    """OLLAMA_CLOUD_BASE_URL checked as Ollama checks it: scheme and host only; loopback, or https elsewhere.

    Ollama's release builds also refuse non-loopback overrides; this server allows an https one so that a
    gateway in front of ollama.com can be tested. Raises ValueError with one clear line.
    """
    raw = (raw or "").strip()
    if not raw:
        return DEFAULT_CLOUD_BASE_URL
    try:
        parts = urlsplit(raw)
        host = parts.hostname or ""
        _ = parts.port  # raises on a bad port
    except ValueError as exc:
        raise ValueError(f"OLLAMA_CLOUD_BASE_URL: invalid URL: {exc}") from exc
    if not parts.scheme or not parts.netloc or not host:
        raise ValueError("OLLAMA_CLOUD_BASE_URL: invalid URL: scheme and host are required")
    if parts.username is not None or parts.password is not None:
        raise ValueError("OLLAMA_CLOUD_BASE_URL: invalid URL: userinfo is not allowed")
    if parts.path not in ("", "/"):
        raise ValueError("OLLAMA_CLOUD_BASE_URL: invalid URL: path is not allowed")
    if parts.query or parts.fragment:
        raise ValueError("OLLAMA_CLOUD_BASE_URL: invalid URL: query and fragment are not allowed")
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise ValueError(f"OLLAMA_CLOUD_BASE_URL: unsupported scheme {parts.scheme!r}")
    if not _is_loopback(host) and scheme != "https":
        raise ValueError("OLLAMA_CLOUD_BASE_URL: non-loopback cloud override must use https")
    return urlunsplit((scheme, parts.netloc, "", "", ""))


def needs_signing(base_url: str) -> bool:
    """The daemon signs (here: attaches the API key) only for the real cloud host, as Ollama does."""
    return (urlsplit(base_url).hostname or "").lower() == SIGNING_HOST


def rewrite_model_field(body: dict[str, object], model: str) -> bytes:
    """The body with `model` replaced, other keys kept in order (Ollama re-marshals; key order is not asserted)."""
    rewritten = dict(body)
    rewritten["model"] = model
    return json.dumps(rewritten, ensure_ascii=False, separators=(",", ":")).encode()


def extract_model_field(raw_body: bytes) -> tuple[dict[str, object], str] | None:
    """(parsed object, model) when the body is a JSON object whose `model` is a non-empty string, else None."""
    if not raw_body.strip():
        return None
    try:
        payload = json.loads(raw_body)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(payload, dict):
        return None
    model = payload.get("model")
    if not isinstance(model, str) or not model.strip():
        return None
    return payload, model.strip()
