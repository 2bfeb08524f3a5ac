"""Recorded HTTP traffic, read into `Exchange`s that can be checked against the spec.

Each parser turns one file into `Exchange`s: what was asked (method, path, request body) and what came back
(status, content type, and the JSON payloads to validate: the body, or every NDJSON line / SSE data payload).
Formats: VCR cassettes (vcrpy YAML or JSON, Ruby VCR YAML or JSON), HAR 1.2 (browsers, Polly.JS), Go `httprr`
raw wire traces, bare response bodies (JSON, NDJSON, SSE; the endpoint inferred from the content), and
llama-stack records (client objects, raw SSE lines, raw JSON bodies, exception records). `parse_file` picks the
parser from the content; `check_exchange` says every way an exchange disagrees with the spec.
"""

from __future__ import annotations

import base64
import gzip
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

NDJSON = "application/x-ndjson"
SSE = "text/event-stream"
JSON = "application/json"


class RecordingFormatError(Exception):
    """A recording file that cannot be parsed (a broken or unknown file, not a spec failure)."""


@dataclass
class Payload:
    """One JSON value to validate: the whole body, one NDJSON line, or one SSE data payload (with its event)."""

    value: Any
    event: str | None = None


@dataclass
class Exchange:
    recording: str  # path relative to the recordings folder
    index: int  # position of the exchange in the file
    fidelity: str  # raw-wire | cassette | body-only | client-object | raw-json
    method: str
    path: str
    status: int
    content_type: str  # base media type
    request_body: Any = None
    payloads: list[Payload] = field(default_factory=list)
    sse_sentinel: bool = False  # a `data: [DONE]` was seen
    raw_text: str | None = None  # for non-JSON bodies (text/plain)
    notes: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return f"{self.recording}#{self.index} {self.method} {self.path} {self.status}"


# --- body parsing --------------------------------------------------------------------------------------------


def parse_ndjson(text: str) -> list[Payload]:
    out = []
    for n, line in enumerate(text.splitlines(), 1):
        if line.strip():
            try:
                out.append(Payload(json.loads(line)))
            except json.JSONDecodeError as exc:
                raise RecordingFormatError(f"NDJSON line {n} is not JSON: {exc}") from exc
    return out


def parse_sse(lines: list[str]) -> tuple[list[Payload], bool]:
    """SSE events -> payloads (with event names); True if the `[DONE]` sentinel was seen."""
    payloads: list[Payload] = []
    sentinel = False
    event: str | None = None
    data: list[str] = []

    def flush() -> None:
        nonlocal event, data, sentinel
        if data:
            text = "\n".join(data)
            if text == "[DONE]":
                sentinel = True
            else:
                try:
                    payloads.append(Payload(json.loads(text), event))
                except json.JSONDecodeError as exc:
                    raise RecordingFormatError(f"SSE data is not JSON: {text[:80]!r}: {exc}") from exc
        event, data = None, []

    for line in lines:
        if line == "":
            flush()
        elif line.startswith(":"):
            continue
        elif line.startswith("event:"):
            event = line[len("event:") :].strip()
        elif line.startswith("data:"):
            data.append(line[len("data:") :].removeprefix(" "))
    flush()
    return payloads, sentinel


def _fill_body(exchange: Exchange, body: str) -> Exchange:
    if exchange.content_type == NDJSON:
        exchange.payloads = parse_ndjson(body)
    elif exchange.content_type == SSE:
        exchange.payloads, exchange.sse_sentinel = parse_sse(body.splitlines())
    elif exchange.content_type == JSON:
        if body.strip():
            try:
                exchange.payloads = [Payload(json.loads(body))]
            except json.JSONDecodeError as exc:
                raise RecordingFormatError(f"{exchange.name}: JSON body does not parse: {exc}") from exc
    else:
        exchange.raw_text = body
    return exchange


def _json_or_none(text: str | None) -> Any:
    if not text:
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return None


def _base(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


# --- VCR cassettes (vcrpy `interactions`, Ruby VCR `http_interactions`) --------------------------------------

OLLAMA_API_BASE = "<OLLAMA_API_BASE>"  # ruby_llm replaces the Ollama base URL (.../v1) with this placeholder


# Hosts of other providers that serve paths like Ollama's /v1/*: their exchanges in a multi-provider recording
# are not Ollama's.
OTHER_PROVIDERS = (
    "openai.com", "anthropic.com", "mistral.ai", "googleapis.com", "openrouter.ai", "groq.com", "deepseek.com",
    "perplexity.ai", "x.ai", "together.xyz", "fireworks.ai", "cohere.ai", "cohere.com", "azure.com",
    "amazonaws.com", "huggingface.co", "gpustack", "voyageai.com",
)  # fmt: skip


def ollama_path(uri: str) -> str | None:
    """The API path of a request URL when it is an exchange with Ollama, else None.

    Ollama is at localhost, ollama.com or port 11434 anywhere; at any other host an exchange counts when its
    path is one of the spec's routes and the host is not a known other provider."""
    if uri.startswith(OLLAMA_API_BASE):
        return "/v1" + uri[len(OLLAMA_API_BASE) :]
    parts = urlsplit(uri)
    host = (parts.hostname or "").lower()
    if host in ("localhost", "127.0.0.1", "0.0.0.0", "::1", "ollama.com") or parts.port == 11434:
        return parts.path
    if any(host == d or host.endswith("." + d) or d in host for d in OTHER_PROVIDERS):
        return None
    from ollama_conformance.spec.documents import find_path

    return parts.path if find_path(parts.path) else None


_cassette_path = ollama_path


def _header(headers: dict[str, Any] | None, name: str) -> str | None:
    for key, value in (headers or {}).items():
        if key.lower() == name.lower():
            return value[0] if isinstance(value, list) else value
    return None


class _CassetteLoader(yaml.SafeLoader):
    """SafeLoader plus Ruby VCR's `!binary` tag (base64 of the body bytes)."""


def _construct_binary(loader: yaml.SafeLoader, node: yaml.Node) -> str:
    return _decode_bytes(base64.b64decode(loader.construct_scalar(node)))


_CassetteLoader.add_constructor("!binary", _construct_binary)


def _decode_bytes(data: bytes) -> str:
    """Body bytes as text; a gzip body (a recorder that kept the compressed bytes) is decompressed first."""
    if data[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError) as exc:
            raise RecordingFormatError(f"a gzip body that does not decompress: {exc}") from exc
    return data.decode("utf-8", "replace")


def _body_text(body: Any) -> str:
    """A cassette body: a string, or {string | base64_string} (Ruby VCR), bytes (vcrpy `!!binary`)."""
    if isinstance(body, dict):
        if body.get("base64_string") is not None:
            return _decode_bytes(base64.b64decode(body["base64_string"]))
        body = body.get("string")
    if isinstance(body, bytes):
        return _decode_bytes(body)
    return body if isinstance(body, str) else ""


def parse_cassette(path: Path, rel: str) -> list[Exchange]:
    """vcrpy (YAML or JSON serializer) and Ruby VCR (YAML or JSON) cassettes."""
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=_CassetteLoader)  # a SafeLoader subclass
    except (yaml.YAMLError, UnicodeDecodeError, ValueError) as exc:
        raise RecordingFormatError(f"{rel}: not YAML or JSON: {str(exc).splitlines()[0]}") from exc
    if not isinstance(data, dict):
        raise RecordingFormatError(f"{rel}: not a VCR cassette (no interactions)")
    interactions = data.get("interactions") or data.get("http_interactions")
    if interactions is None:
        raise RecordingFormatError(f"{rel}: not a VCR cassette (no interactions)")
    out = []
    for i, item in enumerate(interactions):
        try:
            request, response = item["request"], item["response"]
            api_path = _cassette_path(request["uri"])
        except (KeyError, TypeError) as exc:
            raise RecordingFormatError(f"{rel}: interaction {i} has no request/response uri ({exc})") from exc
        if api_path is None:
            continue
        req_body = _body_text(request.get("body"))
        body = _body_text(response.get("body"))
        content_type = _base(_header(response.get("headers"), "Content-Type"))
        if not content_type:
            # vcrpy cassettes of the time drop most headers: infer from the body (NDJSON if several lines).
            lines = [ln for ln in (body or "").splitlines() if ln.strip()]
            content_type = NDJSON if len(lines) > 1 else JSON
        exchange = Exchange(
            recording=rel,
            index=i,
            fidelity="cassette",
            method=request["method"].upper(),
            path=api_path,
            status=int(response["status"]["code"]),
            content_type=content_type,
            request_body=_json_or_none(req_body),
        )
        out.append(_fill_body(exchange, body or ""))
    return out


# --- Go httprr raw wire traces -------------------------------------------------------------------------------


def _split_http(raw: bytes) -> tuple[str, dict[str, str], bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    if not _:
        head, _, body = raw.partition(b"\n\n")
    lines = head.decode("utf-8").splitlines()
    headers: dict[str, str] = {}
    for line in lines[1:]:
        key, _, value = line.partition(":")
        headers[key.strip().lower()] = value.strip()
    return lines[0], headers, body


def _dechunk(body: bytes) -> bytes:
    out = b""
    rest = body
    while rest:
        size_line, _, rest = rest.partition(b"\r\n")
        size = int(size_line.split(b";")[0].strip() or b"0", 16)
        if size == 0:
            break
        out += rest[:size]
        rest = rest[size + 2 :]
    return out


def parse_httprr(path: Path, rel: str) -> list[Exchange]:
    raw = path.read_bytes()
    magic = b"httprr trace v1\n"
    if not raw.startswith(magic):
        raise RecordingFormatError(f"{rel}: not an httprr trace")
    pos = len(magic)
    out = []
    index = 0
    while pos < len(raw):
        eol = raw.index(b"\n", pos)
        req_len, resp_len = (int(x) for x in raw[pos:eol].split())
        pos = eol + 1
        req_raw, resp_raw = raw[pos : pos + req_len], raw[pos + req_len : pos + req_len + resp_len]
        pos += req_len + resp_len
        request_line, _req_headers, req_body = _split_http(req_raw)
        method, url, _version = request_line.split(" ", 2)
        status_line, headers, body = _split_http(resp_raw)
        if headers.get("transfer-encoding", "").lower() == "chunked":
            body = _dechunk(body)
        exchange = Exchange(
            recording=rel,
            index=index,
            fidelity="raw-wire",
            method=method.upper(),
            path=urlsplit(url).path,
            status=int(status_line.split()[1]),
            content_type=_base(headers.get("content-type")),
            request_body=_json_or_none(req_body.decode("utf-8")),
        )
        out.append(_fill_body(exchange, body.decode("utf-8")))
        index += 1
    return out


# --- body-only files (prism) ---------------------------------------------------------------------------------


def parse_body_only(path: Path, rel: str, method: str, api_path: str, content_type: str) -> list[Exchange]:
    """A response body with no request or status: the README says which endpoint; a captured body means 200."""
    exchange = Exchange(
        recording=rel,
        index=0,
        fidelity="body-only",
        method=method,
        path=api_path,
        status=200,
        content_type=content_type,
    )
    return [_fill_body(exchange, path.read_text(encoding="utf-8"))]


# --- llama-stack records -------------------------------------------------------------------------------------

# Null-valued keys a Python client model fills in for fields absent on the wire; these are kept because Ollama
# does send them as null.
WIRE_NULLS = frozenset({"finish_reason", "param", "code"})


def client_object_to_wire(value: Any) -> Any:
    """A llama-stack client object (`__type__`/`__data__`) back to the JSON it represents.

    The client's model adds every field it knows with null when the server did not send it; those nulls are
    dropped (except the ones Ollama really sends as null), so the spec checks what the server sent.
    """
    if isinstance(value, dict):
        if "__type__" in value and "__data__" in value:
            return client_object_to_wire(value["__data__"])
        return {k: client_object_to_wire(v) for k, v in value.items() if v is not None or k in WIRE_NULLS}
    if isinstance(value, list):
        return [client_object_to_wire(v) for v in value]
    return value


# Endpoints the llama-stack recorder logs as POST although the client sent GET.
GET_ENDPOINTS = frozenset({"/api/ps", "/api/tags", "/api/version", "/v1/models"})


def _llamastack_path(request: dict[str, Any]) -> str:
    endpoint = request.get("endpoint") or urlsplit(request["url"]).path
    # the recorder writes /v1/v1/... for the OpenAI client (base URL .../v1 plus /v1/...): a recorder artefact
    return endpoint.replace("/v1/v1/", "/v1/")


def parse_llamastack(path: Path, rel: str) -> list[Exchange]:
    data = json.loads(path.read_text(encoding="utf-8"))
    request, response = data["request"], data["response"]
    api_path = _llamastack_path(request)
    method = "GET" if api_path in GET_ENDPOINTS else request.get("method", "POST").upper()
    body = response.get("body")
    exchange = Exchange(
        recording=rel,
        index=0,
        fidelity="client-object",
        method=method,
        path=api_path,
        status=int(response.get("status", 200)),
        content_type=JSON,
        request_body=request.get("body"),
    )
    if response.get("is_exception"):
        exc = response["exception_data"]
        exchange.status = int(exc["status_code"])
        exchange.fidelity = "exception-record"
        # the openai client stores the inner error object; the wire body wraps it in {"error": ...}
        exchange.payloads = [Payload({"error": exc["body"]})]
        exchange.notes.append("exception record: body rebuilt as {'error': <client's error object>}")
        return [exchange]
    if isinstance(body, list) and body and all(isinstance(x, str) for x in body):
        exchange.fidelity = "raw-lines"
        exchange.content_type = SSE
        exchange.payloads, exchange.sse_sentinel = parse_sse(body)
        return [exchange]
    if isinstance(body, list) and not response.get("is_streaming") and api_path == "/v1/models":
        # the client pages through the list and stores each Model: rebuild the list object it came from
        exchange.payloads = [Payload({"object": "list", "data": [client_object_to_wire(x) for x in body]})]
        exchange.notes.append("client objects: the Model items are wrapped back into {'object': 'list', 'data': [...]}")
        return [exchange]
    if isinstance(body, list):
        if response.get("is_streaming"):
            exchange.content_type = SSE
        exchange.payloads = [Payload(client_object_to_wire(x)) for x in body]
        exchange.notes.append(
            "client objects: nulls the client model added are dropped"
            + ("; stream chunks as parsed by the client (no SSE framing)" if response.get("is_streaming") else "")
        )
        return [exchange]
    if isinstance(body, dict) and "__type__" in body:
        exchange.payloads = [Payload(client_object_to_wire(body))]
        exchange.notes.append("client object: nulls the client model added are dropped")
        return [exchange]
    exchange.fidelity = "raw-json"
    exchange.payloads = [Payload(body)]
    return [exchange]


# --- HAR 1.2 (browsers, Polly.JS) ----------------------------------------------------------------------------


def _har_text(content: dict[str, Any] | None) -> str:
    content = content or {}
    text = content.get("text") or ""
    if content.get("encoding") == "base64":
        return _decode_bytes(base64.b64decode(text))
    return text


def parse_har(data: dict[str, Any], rel: str) -> list[Exchange]:
    """A HAR log (`log.entries[]`); Polly.JS recordings are HAR."""
    entries = (data.get("log") or {}).get("entries")
    if not isinstance(entries, list):
        raise RecordingFormatError(f"{rel}: not a HAR file (no log.entries)")
    out = []
    for i, entry in enumerate(entries):
        try:
            request, response = entry["request"], entry["response"]
            api_path = ollama_path(request["url"])
        except (KeyError, TypeError) as exc:
            raise RecordingFormatError(f"{rel}: entry {i} has no request/response url ({exc})") from exc
        if api_path is None:
            continue
        headers = {h.get("name", "").lower(): h.get("value", "") for h in response.get("headers") or []}
        content = response.get("content") or {}
        content_type = _base(headers.get("content-type") or content.get("mimeType"))
        body = _har_text(content)
        if not content_type:
            content_type = _infer_media_type(body)
        exchange = Exchange(
            recording=rel,
            index=i,
            fidelity="raw-wire",
            method=str(request.get("method", "GET")).upper(),
            path=api_path,
            status=int(response.get("status") or 0),
            content_type=content_type,
            request_body=_json_or_none((request.get("postData") or {}).get("text")),
        )
        out.append(_fill_body(exchange, body))
    return out


# --- bare response bodies: JSON, NDJSON, SSE -----------------------------------------------------------------


def _infer_media_type(body: str) -> str:
    lines = [ln for ln in body.splitlines() if ln.strip()]
    if any(ln.startswith(("data:", "event:")) for ln in lines[:5]):
        return SSE
    return NDJSON if len(lines) > 1 else JSON


def infer_endpoint(first: Any, media_type: str) -> tuple[str, str] | None:
    """(method, path) a bare body answers, from its first item; None when the content does not say."""
    if not isinstance(first, dict):
        return None
    kind = first.get("object") or first.get("type") or ""
    if media_type == SSE or kind:
        if kind == "chat.completion.chunk" or kind == "chat.completion":
            return "POST", "/v1/chat/completions"
        if kind == "text_completion":
            return "POST", "/v1/completions"
        if (kind in ("message_start", "message", "error") and media_type == SSE) or kind == "message":
            return "POST", "/v1/messages"
        if isinstance(kind, str) and kind.startswith("response"):
            return "POST", "/v1/responses"
        if kind == "list":
            return "GET", "/v1/models"
    if "message" in first and "created_at" in first:
        return "POST", "/api/chat"
    if "response" in first and "created_at" in first:
        return "POST", "/api/generate"
    if "embeddings" in first:
        return "POST", "/api/embed"
    if "embedding" in first:
        return "POST", "/api/embeddings"
    if "status" in first and ("digest" in first or first.get("status") in ("success", "pulling manifest")):
        return "POST", "/api/pull"
    if "models" in first:
        return "GET", "/api/tags"
    if set(first) == {"version"}:
        return "GET", "/api/version"
    return None


def parse_body(text: str, rel: str, endpoint: tuple[str, str] | None = None) -> list[Exchange]:
    """A bare response body (what a 200 sent): JSON, NDJSON lines or SSE events; the endpoint from `endpoint` or
    inferred from the first item."""
    media_type = _infer_media_type(text)
    exchange = Exchange(recording=rel, index=0, fidelity="body-only", method="", path="", status=200,
                        content_type=media_type)  # fmt: skip
    _fill_body(exchange, text)
    if endpoint is None:
        first = exchange.payloads[0].value if exchange.payloads else None
        endpoint = infer_endpoint(first, media_type)
        if endpoint is None:
            raise RecordingFormatError(f"{rel}: a bare body whose endpoint cannot be told; give it with --endpoint")
    exchange.method, exchange.path = endpoint
    return [exchange]


# --- any file ------------------------------------------------------------------------------------------------


def parse_file(path: Path, rel: str | None = None, endpoint: tuple[str, str] | None = None) -> list[Exchange]:
    """The Ollama exchanges in one recording file, whatever its format (told from its content)."""
    rel = rel or str(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise RecordingFormatError(f"{rel}: cannot read: {exc.strerror or exc}") from exc
    if raw.startswith(b"httprr trace v1\n"):
        return parse_httprr(path, rel)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RecordingFormatError(f"{rel}: not text (UTF-8): {exc}") from exc
    stripped = text.lstrip()
    if not stripped:
        raise RecordingFormatError(f"{rel}: empty file")
    data: Any = None
    if stripped.startswith("{"):
        try:
            data = json.loads(text)
        except json.JSONDecodeError:
            data = None  # NDJSON: several objects
    if isinstance(data, dict):
        if "log" in data:
            return parse_har(data, rel)
        if "interactions" in data or "http_interactions" in data:
            return parse_cassette(path, rel)
        if "request" in data and "response" in data:
            return parse_llamastack(path, rel)
        return parse_body(text, rel, endpoint)
    if data is None and not stripped.startswith(("{", "[", "data:", "event:", ":")):
        try:
            loaded = yaml.load(text, Loader=_CassetteLoader)
        except yaml.YAMLError:
            loaded = None
        if isinstance(loaded, dict) and ("interactions" in loaded or "http_interactions" in loaded):
            return parse_cassette(path, rel)
        raise RecordingFormatError(
            f"{rel}: not a recording this tool reads (VCR cassette, HAR, httprr, or a JSON/NDJSON/SSE body)"
        )
    return parse_body(text, rel, endpoint)


def shown_version(exchanges: list[Exchange]) -> str | None:
    """The Ollama version a recording shows: the answer of a GET /api/version in it."""
    for exchange in exchanges:
        if exchange.path == "/api/version" and exchange.status == 200 and exchange.payloads:
            value = exchange.payloads[0].value
            if isinstance(value, dict) and isinstance(value.get("version"), str):
                return value["version"]
    return None


# --- checking an exchange against the spec ------------------------------------------------------------------


def _is_final_native(value: Any) -> bool:
    return isinstance(value, dict) and value.get("done") is True


def _framing_problems(exchange: Exchange, media: dict[str, Any]) -> list[str]:
    """Stream-level invariants the per-item schemas cannot express."""
    items = [p.value for p in exchange.payloads]
    problems: list[str] = []
    if not items:
        return ["stream has no items"]
    if media.get("x-stream") == "ndjson" and exchange.path in ("/api/chat", "/api/generate"):
        finals = [i for i, v in enumerate(items) if _is_final_native(v)]
        errors = [i for i, v in enumerate(items) if isinstance(v, dict) and "error" in v]
        if errors:
            if errors != [len(items) - 1]:
                problems.append("an error line must be the last line of the stream")
        elif finals != [len(items) - 1]:
            problems.append(f"exactly one done:true chunk, last, expected; found at {finals} of {len(items)}")
    if media.get("x-stream") == "sse" and exchange.fidelity in ("cassette", "raw-wire", "raw-lines"):
        # framing is only visible where the wire text was kept (client objects lose it)
        sentinel = media.get("x-sse-sentinel")
        if sentinel and not exchange.sse_sentinel:
            problems.append(f"SSE stream did not end with data: {sentinel}")
        if not sentinel and exchange.sse_sentinel:
            problems.append("SSE stream sent a [DONE] sentinel the spec does not declare")
    if exchange.path == "/v1/messages" and exchange.content_type == SSE:
        types = [v.get("type") for v in items if isinstance(v, dict)]
        if types[:1] != ["message_start"] or types[-1:] != ["message_stop"]:
            problems.append(
                f"Anthropic stream must start with message_start and end with message_stop, got {types[:1]}..{types[-1:]}"
            )
    return problems


def check_exchange(exchange: Exchange, ollama_version: str | None = None, grade: str | None = None) -> list[str]:
    """Every way the exchange disagrees with the spec as Ollama `ollama_version` behaved ([] when it conforms).

    `grade` None: exact, except for client objects, whose ids the recorder rewrote (compatible)."""
    from ollama_conformance import spec
    from ollama_conformance.spec.schemas import response_media

    if grade is None:
        grade = "compatible" if exchange.fidelity in ("client-object", "exception-record") else "exact"
    opts: dict[str, Any] = {"grade": grade, "ollama_version": ollama_version}
    found = spec.find_path(exchange.path)
    if found is None:
        return [f"path {exchange.path} is not in the spec"]
    try:
        statuses = spec.declared_statuses(exchange.method, exchange.path)
    except KeyError:
        return [f"{exchange.method} {exchange.path} is not in the spec"]
    if str(exchange.status) not in statuses:
        return [f"status {exchange.status} is not declared for {exchange.method} {exchange.path} ({statuses})"]
    problems: list[str] = []
    declared = spec.response_media_types(exchange.method, exchange.path, exchange.status)
    if exchange.content_type not in declared:
        return [f"content type {exchange.content_type!r} is not declared for status {exchange.status} ({declared})"]
    media = response_media(exchange.method, exchange.path, exchange.status, exchange.content_type) or {}
    item_schema = media.get("schema")
    if item_schema is None:
        return [f"no schema for {exchange.content_type} at status {exchange.status}"]
    events = media.get("x-sse-events") or {}
    for n, payload in enumerate(exchange.payloads):
        where = f"item {n}" if media.get("x-stream") else "body"
        for line in spec.validate(payload.value, item_schema, **opts):
            problems.append(f"{where}: {line}")
        if events and exchange.fidelity != "client-object":
            if payload.event not in events:
                problems.append(f"{where}: SSE event {payload.event!r} is not declared ({sorted(events)})")
            else:
                if isinstance(payload.value, dict) and payload.value.get("type") != payload.event:
                    problems.append(f"{where}: data type {payload.value.get('type')!r} != event {payload.event!r}")
                for line in spec.validate(payload.value, events[payload.event], **opts):
                    problems.append(f"{where} (event {payload.event}): {line}")
    if media.get("x-stream"):
        problems += _framing_problems(exchange, media)
    if exchange.status == 200 and isinstance(exchange.request_body, dict):
        schema = spec.request_schema(exchange.method, exchange.path)
        if schema is not None:
            problems += [f"request: {line}" for line in spec.validate(exchange.request_body, schema, **opts)]
    return problems
