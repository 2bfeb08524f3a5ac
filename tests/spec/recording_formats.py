"""Parsers for the recording formats under ../shared/recordings (test infrastructure).

Each parser turns one file into `Exchange`s: what was asked (method, path, request body) and what came back
(status, content type, and the JSON payloads to validate: the body, or every NDJSON line / SSE data payload).
Formats: vcrpy and Ruby VCR cassettes (YAML), Go `httprr` raw wire traces, body-only JSON and NDJSON files,
and llama-stack records (client objects, raw SSE lines, raw JSON bodies, exception records).
"""

from __future__ import annotations

import base64
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
    """A recording file that cannot be parsed (a broken fixture, not a spec failure)."""


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


def _cassette_path(uri: str) -> str | None:
    if uri.startswith(OLLAMA_API_BASE):
        return "/v1" + uri[len(OLLAMA_API_BASE) :]
    parts = urlsplit(uri)
    host = parts.hostname or ""
    if host in ("localhost", "127.0.0.1", "0.0.0.0", "ollama.com") or parts.port == 11434:
        return parts.path
    return None  # another provider in a multi-provider cassette


def _header(headers: dict[str, Any] | None, name: str) -> str | None:
    for key, value in (headers or {}).items():
        if key.lower() == name.lower():
            return value[0] if isinstance(value, list) else value
    return None


class _CassetteLoader(yaml.SafeLoader):
    """SafeLoader plus Ruby VCR's `!binary` tag (base64 of the body bytes)."""


def _construct_binary(loader: yaml.SafeLoader, node: yaml.Node) -> str:
    return base64.b64decode(loader.construct_scalar(node)).decode("utf-8")


_CassetteLoader.add_constructor("!binary", _construct_binary)


def parse_cassette(path: Path, rel: str) -> list[Exchange]:
    data = yaml.load(path.read_text(encoding="utf-8"), Loader=_CassetteLoader)  # a SafeLoader subclass
    interactions = data.get("interactions") or data.get("http_interactions")
    if interactions is None:
        raise RecordingFormatError(f"{rel}: not a VCR cassette (no interactions)")
    out = []
    for i, item in enumerate(interactions):
        request, response = item["request"], item["response"]
        api_path = _cassette_path(request["uri"])
        if api_path is None:
            continue
        req_body = request.get("body")
        if isinstance(req_body, dict):
            req_body = req_body.get("string")
        body = response["body"]
        body = body.get("string") if isinstance(body, dict) else body
        if isinstance(body, bytes):
            body = body.decode("utf-8")
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
