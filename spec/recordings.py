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
    fidelity: str  # raw-wire | cassette | body-only | stream-item | client-object | raw-json
    method: str
    path: str
    status: int
    content_type: str  # base media type
    request_body: Any = None
    payloads: list[Payload] = field(default_factory=list)
    sse_sentinel: bool = False  # a `data: [DONE]` was seen
    raw_text: str | None = None  # for non-JSON bodies (text/plain)
    notes: list[str] = field(default_factory=list)
    route_reason: str = ""  # why it is judged as METHOD path: the recorded request, --endpoint, or the content
    label: str | None = None  # its key in a top-level object of bodies (instead of its position)

    @property
    def name(self) -> str:
        where = self.label if self.label is not None else self.index
        return f"{self.recording}#{where} {self.method} {self.path} {self.status}"


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
            # vcrpy cassettes of the time drop most headers: infer from the body (one JSON value, else NDJSON).
            content_type = _infer_media_type(body or "")
        exchange = Exchange(
            recording=rel,
            index=i,
            fidelity="cassette",
            method=request["method"].upper(),
            path=api_path,
            status=int(response["status"]["code"]),
            content_type=content_type,
            request_body=_json_or_none(req_body),
            route_reason=f"the recorded request ({request['method'].upper()} {request['uri']})",
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
            route_reason=f"the recorded request line ({method.upper()} {url})",
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
        route_reason="given by the caller",
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
    return _llamastack_exchange(json.loads(path.read_text(encoding="utf-8")), rel, 0)


def _llamastack_exchange(data: dict[str, Any], rel: str, index: int) -> list[Exchange]:
    request, response = data["request"], data["response"]
    api_path = _llamastack_path(request)
    method = "GET" if api_path in GET_ENDPOINTS else request.get("method", "POST").upper()
    body = response.get("body")
    exchange = Exchange(
        recording=rel,
        index=index,
        fidelity="client-object",
        method=method,
        path=api_path,
        status=int(response.get("status", 200)),
        content_type=JSON,
        request_body=request.get("body"),
        route_reason=f"the recorded request ({request.get('endpoint') or request.get('url')})",
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
            route_reason=f"the recorded request ({str(request.get('method', 'GET')).upper()} {request['url']})",
        )
        out.append(_fill_body(exchange, body))
    return out


# --- bare response bodies: JSON, NDJSON, SSE -----------------------------------------------------------------


def _infer_media_type(body: str) -> str:
    """The media type of a body recorded without one: SSE by its fields, JSON when the whole body is one JSON value
    (compact or pretty-printed), else NDJSON (several values, one per line)."""
    lines = [ln for ln in body.splitlines() if ln.strip()]
    if any(ln.startswith(("data:", "event:")) for ln in lines[:5]):
        return SSE
    if len(lines) <= 1 or _json_or_none(body) is not None:
        return JSON
    return NDJSON


def infer_route(first: Any, media_type: str) -> tuple[tuple[str, str], str] | None:
    """((method, path), why) for a bare body, from its first item; None when the content does not say."""
    if not isinstance(first, dict):
        return None
    kind = first.get("object") or first.get("type") or ""
    if media_type == SSE or kind:
        said = f'"object": "{kind}"' if first.get("object") else f'"type": "{kind}"'
        if kind == "chat.completion.chunk" or kind == "chat.completion":
            return ("POST", "/v1/chat/completions"), said
        if kind == "text_completion":
            return ("POST", "/v1/completions"), said
        if (kind in ("message_start", "message", "error") and media_type == SSE) or kind == "message":
            return ("POST", "/v1/messages"), said
        if isinstance(kind, str) and kind.startswith("response"):
            return ("POST", "/v1/responses"), said
        if kind == "list":
            return ("GET", "/v1/models"), said
    if "message" in first and "created_at" in first:
        return ("POST", "/api/chat"), 'fields "message" and "created_at"'
    if "response" in first and "created_at" in first:
        return ("POST", "/api/generate"), 'fields "response" and "created_at"'
    if "embeddings" in first:
        return ("POST", "/api/embed"), 'field "embeddings"'
    if "embedding" in first:
        return ("POST", "/api/embeddings"), 'field "embedding"'
    if "status" in first and ("digest" in first or first.get("status") in ("success", "pulling manifest")):
        return ("POST", "/api/pull"), 'a pull progress "status"'
    if "models" in first:
        return ("GET", "/api/tags"), 'field "models"'
    if set(first) == {"version"}:
        return ("GET", "/api/version"), 'only the field "version"'
    return None


def infer_endpoint(first: Any, media_type: str) -> tuple[str, str] | None:
    """(method, path) a bare body answers, from its first item; None when the content does not say."""
    found = infer_route(first, media_type)
    return found[0] if found else None


def _route(value: Any, media_type: str, endpoint: tuple[str, str] | None, what: str) -> tuple[tuple[str, str], str] | None:
    if endpoint is not None:
        return endpoint, "given with --endpoint"
    found = infer_route(value, media_type)
    return (found[0], f"{what} has {found[1]}") if found else None


def _json_sequence(text: str) -> list[Any] | None:
    """JSON values one after another, however laid out (pretty-printed NDJSON); None when the text is not that."""
    decoder = json.JSONDecoder()
    values, pos = [], 0
    while True:
        while pos < len(text) and text[pos].isspace():
            pos += 1
        if pos == len(text):
            return values or None
        try:
            value, pos = decoder.raw_decode(text, pos)
        except json.JSONDecodeError:
            return None
        values.append(value)


def parse_body(text: str, rel: str, endpoint: tuple[str, str] | None = None) -> list[Exchange]:
    """A bare response body (what a 200 sent): one JSON value (compact or pretty-printed: see parse_json_value),
    NDJSON lines or SSE events; the endpoint from `endpoint` or inferred from the first item."""
    media_type = _infer_media_type(text)
    if media_type == JSON:
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            raise RecordingFormatError(f"{rel}: JSON body does not parse: {exc}") from exc
        return parse_json_value(value, rel, endpoint)
    exchange = Exchange(recording=rel, index=0, fidelity="body-only", method="", path="", status=200,
                        content_type=media_type)  # fmt: skip
    try:
        _fill_body(exchange, text)
    except RecordingFormatError:
        values = _json_sequence(text) if media_type == NDJSON else None
        if values is None:
            raise
        exchange.payloads = [Payload(v) for v in values]
        exchange.notes.append("JSON values not one per line (pretty-printed): read one after another")
    first = exchange.payloads[0].value if exchange.payloads else None
    found = _route(first, media_type, endpoint, "its first item")
    if found is None:
        raise RecordingFormatError(f"{rel}: a bare body whose endpoint cannot be told; give it with --endpoint")
    (exchange.method, exchange.path), exchange.route_reason = found
    if media_type == NDJSON and exchange.path.startswith("/v1/"):  # /v1 streams are SSE: its data, one per line
        exchange.content_type = SSE
        if exchange.path == "/v1/messages":
            for payload in exchange.payloads:
                payload.event = payload.value.get("type") if isinstance(payload.value, dict) else None
        exchange.notes.append("SSE data payloads one per line, without the data: framing")
    return [exchange]


STREAM_START_TYPES = ("message_start", "response.created")


def _is_stream(items: list[Any]) -> bool:
    """A JSON array holding one stream's items (as a client collected them), not several bodies."""
    if len(items) < 2 or not all(isinstance(x, dict) for x in items):
        return False
    first = items[0]
    if first.get("object") == "chat.completion.chunk" or first.get("type") in STREAM_START_TYPES:
        return True
    done = [x.get("done") for x in items]
    return all(d is not None for d in done) and done[-1] is True and not any(done[:-1])


def _recognised(value: Any) -> bool:
    """A value a top-level object of bodies may hold: an exchange object, a body, or an array of either."""
    if isinstance(value, list):
        return bool(value) and _recognised(value[0])
    return isinstance(value, dict) and (("request" in value and "response" in value) or infer_route(value, JSON) is not None)


def parse_json_value(value: Any, rel: str, endpoint: tuple[str, str] | None = None, label: str | None = None,
                     index: int = 0) -> list[Exchange]:
    """The exchanges in one JSON document that is no known container: a response body; an array of exchange
    objects ({request, response}), of one stream's items, or of bodies; or a top-level object of bodies."""
    where = f"{rel}#{label}" if label is not None else rel
    if isinstance(value, list):
        if not value:
            raise RecordingFormatError(f"{where}: an empty JSON array")
        if all(isinstance(x, dict) and "request" in x and "response" in x for x in value):
            return [ex for i, x in enumerate(value) for ex in _object_exchange(x, rel, i, label)]
        if _is_stream(value):
            found = _route(value[0], JSON, endpoint, "its first item")
            if found is None:
                raise RecordingFormatError(f"{where}: a JSON array of stream items whose endpoint cannot be told; "
                                           "give it with --endpoint")
            route, why = found
            native = route[1].startswith("/api/")
            exchange = Exchange(recording=rel, index=index, fidelity="body-only", method=route[0], path=route[1],
                                status=200, content_type=NDJSON if native else SSE, label=label,
                                route_reason=f"{why}; a JSON array of {len(value)} stream items")  # fmt: skip
            anthropic = route[1] == "/v1/messages"
            exchange.payloads = [Payload(x, event=x.get("type") if anthropic else None) for x in value]
            exchange.notes.append("stream items collected into a JSON array: the wire framing is not known")
            return [exchange]
        out = []
        for i, item in enumerate(value):
            out += parse_json_value(item, rel, endpoint, f"{label}[{i}]" if label is not None else str(i), i)
        return out
    if isinstance(value, dict):
        if "request" in value and "response" in value:
            return _object_exchange(value, rel, index, label)
        found = _route(value, JSON, endpoint, "the body")
        if found is not None:
            (method, path), why = found
            exchange = Exchange(recording=rel, index=index, fidelity="body-only", method=method, path=path,
                                status=200, content_type=JSON, payloads=[Payload(value)], route_reason=why,
                                label=label)  # fmt: skip
            if value.get("done") is False or value.get("object") == "chat.completion.chunk":
                # one item of a stream (a fixture of a chunk): judged as an item; a whole stream's rules do not apply
                exchange.fidelity = "stream-item"
                exchange.content_type = NDJSON if path.startswith("/api/") else SSE
                exchange.notes.append("one stream item, judged as an item of a stream (not as a whole stream)")
            return [exchange]
        bodies = {k: v for k, v in value.items() if _recognised(v)}
        if bodies:  # a top-level object of bodies, e.g. fixtures by name
            out = []
            for i, (key, body) in enumerate(bodies.items()):
                out += parse_json_value(body, rel, endpoint, f"{label}.{key}" if label is not None else str(key), i)
            return out
    raise RecordingFormatError(f"{where}: a JSON value whose endpoint cannot be told (no Ollama body, exchange or "
                               "object of them); give it with --endpoint")


def _status_of(response: dict[str, Any]) -> int:
    status = response.get("status", response.get("status_code", 200))
    if isinstance(status, dict):
        status = status.get("code", 200)
    try:
        return int(status)
    except (TypeError, ValueError) as exc:
        raise RecordingFormatError(f"a response status {status!r} that is not a number") from exc


def _object_exchange(item: dict[str, Any], rel: str, index: int, label: str | None) -> list[Exchange]:
    """One {request, response} object (a test fixture's exchange, a llama-stack record); [] for another provider's."""
    request, response = item["request"], item["response"]
    if not isinstance(request, dict) or not isinstance(response, dict):
        raise RecordingFormatError(f"{rel}: exchange {index}: request and response must be objects")
    if "endpoint" in request or "is_streaming" in response or "is_exception" in response:
        return _llamastack_exchange(item, rel, index)
    url = str(request.get("url") or request.get("uri") or request.get("path") or "")
    api_path = ollama_path(url) if "://" in url or url.startswith(OLLAMA_API_BASE) else urlsplit(url).path or None
    if api_path is None:
        return []
    method = str(request.get("method") or ("GET" if api_path in GET_ENDPOINTS else "POST")).upper()
    headers = response.get("headers")
    if isinstance(headers, list):  # [{name, value}] (HAR-like)
        headers = {str(h.get("name")): h.get("value") for h in headers if isinstance(h, dict)}
    body = next((response[k] for k in ("body", "json", "content", "text", "data") if k in response), None)
    request_body = next((request[k] for k in ("body", "json", "data") if k in request), None)
    if isinstance(request_body, str):
        request_body = _json_or_none(request_body)
    exchange = Exchange(recording=rel, index=index, fidelity="body-only", method=method, path=api_path,
                        status=_status_of(response), content_type=JSON, request_body=request_body, label=label,
                        route_reason=f"the recorded request ({method} {url})")  # fmt: skip
    if isinstance(body, dict) and ("string" in body or "base64_string" in body):
        body = _body_text(body)
    if isinstance(body, str):
        exchange.content_type = _base(_header(headers, "Content-Type")) or _infer_media_type(body)
        return [_fill_body(exchange, body)]
    if isinstance(body, list) and _is_stream(body):
        exchange.content_type = NDJSON if api_path.startswith("/api/") else SSE
        exchange.payloads = [Payload(x, event=x.get("type") if api_path == "/v1/messages" else None) for x in body]
        exchange.notes.append("stream items collected into a JSON array: the wire framing is not known")
        return [exchange]
    exchange.payloads = [Payload(body)]
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
    if stripped.startswith(("{", "[")):
        try:
            data = json.loads(text)
        except json.JSONDecodeError:
            data = None  # NDJSON: several objects
    if isinstance(data, dict):
        if "log" in data:
            return parse_har(data, rel)
        if "interactions" in data or "http_interactions" in data:
            return parse_cassette(path, rel)
    if isinstance(data, dict | list):
        return parse_json_value(data, rel, endpoint)
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
    if exchange.fidelity == "stream-item":  # one item on its own: no stream to frame
        return problems
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
