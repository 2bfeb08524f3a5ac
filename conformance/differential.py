"""Differential mode: the same deterministic requests to a candidate and a baseline (say a real Ollama); the
structural differences of the answers, per endpoint and surface.

    ollama-conformance check --target CANDIDATE --baseline BASELINE [--json PATH]

What is compared is what a client's parser depends on: status, Content-Type, which fields are present, their JSON
types, null vs absent, the order and names of stream events, stream invariants (one id for a whole stream), error
body shapes, the string *format* of a few fields whose format is a contract (version, timestamps, digests), the
length of embedding vectors and the shape of structured (format) output. What legitimately varies is ignored:
generated text, ids, timestamps, durations, counts, digests (their values), and how many content chunks a stream has.

Every request is deterministic on both sides (temperature 0, a fixed seed, a small output cap), so on one server
against itself nothing differs; a value-level fault (wrong embedding values, an ignored seed) is not structural
and is left to the suite.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from typing import Any

import httpx

from ollama_conformance.conformance.streams import parse_sse

KIND = "ollama-conformance.differential"
SCHEMA_VERSION = 1
SEED = 42
CAP = 8  # output tokens per request: structure shows in a few tokens
OPTIONS = {"temperature": 0, "seed": SEED, "num_predict": CAP}

# String fields whose *format* is part of the contract, judged by class, never by value.
SEMVER = re.compile(r"^v?\d+\.\d+\.\d+([-+][0-9A-Za-z.+-]*)?$")
RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")
HEX64 = re.compile(r"^(sha256:)?[0-9a-f]{64}$")


def _format_class(key: str, value: str) -> str | None:
    if key == "version":
        return "semver" if SEMVER.match(value) else "not-semver"
    if key in ("created_at", "modified_at", "expires_at"):
        return "rfc3339" if RFC3339.match(value) else "not-rfc3339"
    if key == "digest":
        return "hex64" if HEX64.match(value) else "not-hex64"
    return None


# Fields whose value is a tag of the structure itself (not generated content): compared by value.
DISCRIMINATORS = {"object", "type", "role", "event"}
# Stream fields that must be the same in every event of one stream (clients stitch a stream together by them).
STREAM_CONSTANTS = ("id", "model", "created", "system_fingerprint")
# Numeric arrays whose length is a contract (the embedding dimension).
VECTOR_KEYS = {"embedding", "embeddings"}


@dataclass(frozen=True)
class Probe:
    name: str
    surface: str
    method: str
    path: str
    body: Any = None  # JSON body; a str is sent raw (malformed JSON probes)
    json_content: tuple[str, ...] = ()  # dotted paths of strings holding JSON (structured output): their shape counts

    @property
    def endpoint(self) -> str:
        return f"{self.method} {self.path}"


def probes(model: str, embed_model: str | None) -> list[Probe]:
    """The scripted requests, deterministic and capped. Errors are part of the structure clients parse."""
    # A boolean property: a grammar-constrained answer is short and closes well within the cap.
    schema = {"type": "object", "properties": {"answer": {"type": "boolean"}}, "required": ["answer"]}
    chat = [{"role": "user", "content": "Say hello."}]
    out = [
        Probe("version", "native", "GET", "/api/version"),
        Probe("tags", "native", "GET", "/api/tags"),
        Probe("show", "native", "POST", "/api/show", {"model": model}),
        Probe("generate", "native", "POST", "/api/generate", {"model": model, "prompt": "Hello", "stream": False, "options": OPTIONS}),
        Probe("generate stream", "native", "POST", "/api/generate", {"model": model, "prompt": "Hello", "options": OPTIONS}),
        Probe("chat", "native", "POST", "/api/chat", {"model": model, "messages": chat, "stream": False, "options": OPTIONS}),
        Probe("chat stream", "native", "POST", "/api/chat", {"model": model, "messages": chat, "options": OPTIONS}),
        Probe("chat format", "native", "POST", "/api/chat",
              {"model": model, "messages": [{"role": "user", "content": "Is the sky blue? Answer as JSON."}], "stream": False,
               "format": schema, "options": {**OPTIONS, "num_predict": 32}}, json_content=("message.content",)),
        Probe("chat unknown model", "native", "POST", "/api/chat", {"model": "no-such-model-xyz:1b", "messages": chat, "options": OPTIONS}),
        Probe("chat malformed JSON", "native", "POST", "/api/chat", '{"model": '),
        Probe("generate without model", "native", "POST", "/api/generate", {"prompt": "x", "options": OPTIONS}),
        Probe("models", "openai", "GET", "/v1/models"),
        Probe("chat completion", "openai", "POST", "/v1/chat/completions",
              {"model": model, "messages": chat, "max_tokens": CAP, "temperature": 0, "seed": SEED}),
        Probe("chat completion stream", "openai", "POST", "/v1/chat/completions",
              {"model": model, "messages": chat, "max_tokens": CAP, "temperature": 0, "seed": SEED, "stream": True}),
        Probe("completion", "openai", "POST", "/v1/completions", {"model": model, "prompt": "Hello", "max_tokens": CAP, "temperature": 0, "seed": SEED}),
        Probe("chat completion unknown model", "openai", "POST", "/v1/chat/completions",
              {"model": "no-such-model-xyz:1b", "messages": chat, "max_tokens": CAP}),
        Probe("chat completion malformed JSON", "openai", "POST", "/v1/chat/completions", '{"model": '),
        Probe("message", "anthropic", "POST", "/v1/messages", {"model": model, "messages": chat, "max_tokens": CAP, "temperature": 0}),
        Probe("message stream", "anthropic", "POST", "/v1/messages",
              {"model": model, "messages": chat, "max_tokens": CAP, "temperature": 0, "stream": True}),
        Probe("message unknown model", "anthropic", "POST", "/v1/messages", {"model": "no-such-model-xyz:1b", "messages": chat, "max_tokens": CAP}),
    ]
    if embed_model:
        out[5:5] = [
            Probe("embed", "native", "POST", "/api/embed", {"model": embed_model, "input": ["first text", "second text"]}),
            Probe("embed dimensions", "native", "POST", "/api/embed", {"model": embed_model, "input": "text", "dimensions": 8}),
        ]
        out.append(Probe("embeddings", "openai", "POST", "/v1/embeddings", {"model": embed_model, "input": ["first text", "second text"]}))
    return out


# --- what an answer looks like, structurally -------------------------------------------------------------------


def json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def shape(value: Any, path: str = "", out: dict[str, set[str]] | None = None, json_content: tuple[str, ...] = ()) -> dict[str, set[str]]:
    """path -> the set of descriptions seen there: JSON type, and for tags/formats/vectors their class.

    Array elements merge under `path[]`; an array that is empty records `empty`, so a comparison can tell
    "no elements to compare" from "elements of another shape".
    """
    out = {} if out is None else out
    key = path.rsplit(".", 1)[-1].removesuffix("[]")
    kinds = out.setdefault(path or "$", set())
    kinds.add(json_type(value))
    if isinstance(value, dict):
        for k, v in value.items():
            shape(v, f"{path}.{k}" if path else k, out, json_content)
    elif isinstance(value, list):
        if not value:
            kinds.add("empty")
        if key in VECTOR_KEYS and value and all(isinstance(x, int | float) for x in value):
            kinds.add(f"length {len(value)}")
        elif key in VECTOR_KEYS and value and all(isinstance(x, list) for x in value):
            kinds.update(f"vector length {len(x)}" for x in value)
            return out
        for item in value:
            shape(item, f"{path}[]", out, json_content)
    elif isinstance(value, str):
        if key in DISCRIMINATORS:
            kinds.add(f"= {value}")
        fmt = _format_class(key, value)
        if fmt:
            kinds.add(fmt)
        if path in json_content:
            try:
                shape(json.loads(value), f"{path}<json>", out)
            except ValueError:  # cut by the cap (a prefix of JSON) is told apart from not JSON at all
                kinds.add("cut JSON" if value.lstrip()[:1] in ("{", "[") else "not JSON")
    return out


@dataclass
class Event:
    kind: str  # e.g. chunk, done, "message_start", [DONE]
    data: Any


def _native_kind(obj: Any) -> str:
    if isinstance(obj, dict) and "error" in obj:
        return "error"
    return "done" if isinstance(obj, dict) and obj.get("done") else "chunk"


def _openai_kind(obj: Any) -> str:
    if not isinstance(obj, dict):
        return "data"
    if "error" in obj:
        return "error"
    choices = obj.get("choices")
    if isinstance(choices, list) and not choices:
        return "usage"
    if isinstance(choices, list) and any(isinstance(c, dict) and c.get("finish_reason") for c in choices):
        return "finish"
    return "delta"


REPEATABLE = {"chunk", "delta", "content_block_delta", "ping"}


def parse_events(media_type: str, text: str) -> list[Event]:
    events: list[Event] = []
    if media_type == "application/x-ndjson":
        for line in text.splitlines():
            if line.strip():
                data = _loads(line)
                events.append(Event(_native_kind(data), data))
    elif media_type == "text/event-stream":
        # one SSE reader for the whole suite (WHATWG rules: comments, CR/LF, `data:` with or without the space)
        for sse in parse_sse(text).events:
            if sse.event == "ping":  # Anthropic keep-alives: the SDK skips them, so does the comparison
                continue
            if sse.data == "[DONE]":
                events.append(Event("[DONE]", None))
                continue
            data = _loads(sse.data)
            events.append(Event(sse.event or _openai_kind(data), data))
    return events


def _loads(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return {"<not JSON>": text[:40]}


def sequence(events: list[Event]) -> list[str]:
    """Event kinds in order, a run of a repeatable kind (content chunks) collapsed to `kind+`."""
    out: list[str] = []
    for event in events:
        label = f"{event.kind}+" if event.kind in REPEATABLE else event.kind
        if out and label == out[-1] and event.kind in REPEATABLE:
            continue
        out.append(label)
    return out


def stream_constants(events: list[Event]) -> dict[str, str]:
    """For each field of STREAM_CONSTANTS found in the events: `constant` or `varies`."""
    seen: dict[str, set[str]] = {}
    for event in events:
        if isinstance(event.data, dict):
            for key in STREAM_CONSTANTS:
                if key in event.data:
                    seen.setdefault(key, set()).add(json.dumps(event.data[key]))
    return {k: "constant" if len(v) == 1 else "varies" for k, v in seen.items()}


@dataclass
class Observed:
    """One answer, reduced to its structure."""

    status: int | None = None
    media_type: str = ""
    transport_error: str = ""
    body: dict[str, set[str]] = field(default_factory=dict)  # whole-body shape (non-stream)
    events: list[str] = field(default_factory=list)  # stream event order
    event_shapes: dict[str, dict[str, set[str]]] = field(default_factory=dict)  # kind -> merged shape
    constants: dict[str, str] = field(default_factory=dict)


def observe(client: httpx.Client, probe: Probe) -> Observed:
    content = probe.body if isinstance(probe.body, str) else (json.dumps(probe.body) if probe.body is not None else None)
    headers = {"content-type": "application/json"} if content is not None else {}
    if probe.surface == "anthropic":
        headers["anthropic-version"] = "2023-06-01"
    try:
        answer = client.request(probe.method, probe.path, content=content, headers=headers)
        text = answer.text
    except httpx.HTTPError as exc:
        return Observed(transport_error=type(exc).__name__)
    seen = Observed(status=answer.status_code, media_type=answer.headers.get("content-type", "").split(";")[0].strip().lower())
    if seen.media_type in ("application/x-ndjson", "text/event-stream"):
        events = parse_events(seen.media_type, text)
        seen.events = sequence(events)
        for event in events:
            shape(event.data, "", seen.event_shapes.setdefault(event.kind, {}), probe.json_content)
        seen.constants = stream_constants(events)
    elif text.strip():
        seen.body = shape(_loads(text), "", None, probe.json_content)
    return seen


# --- comparing -------------------------------------------------------------------------------------------------


@dataclass
class Difference:
    surface: str
    endpoint: str
    probe: str
    where: str  # status, content-type, event order, a field path
    baseline: str
    candidate: str

    def line(self) -> str:
        return f"{self.surface} {self.endpoint} ({self.probe}): {self.where}: baseline {self.baseline}, candidate {self.candidate}"


def _describe(kinds: set[str] | None) -> str:
    return "absent" if kinds is None else ", ".join(sorted(kinds))


def _under_empty_array(path: str, base: dict[str, set[str]], cand: dict[str, set[str]]) -> bool:
    """A path inside an array that is empty on either side: nothing to compare it with."""
    parts = path.split("[]")[:-1]
    prefix = ""
    for part in parts:
        prefix += part
        for side in (base, cand):
            kinds = side.get(prefix)
            if kinds is not None and kinds == {"array", "empty"}:
                return True
        prefix += "[]"
    return False


def _parent(path: str) -> str | None:
    cut = max(path.rfind("."), path.rfind("[]") if path.endswith("[]") else -1, path.rfind("<json>"))
    if path.endswith("[]"):
        return path[:-2] or None
    if path.endswith("<json>"):
        return path[: -len("<json>")] or None
    return path[:cut] if cut > 0 else None


def _container_missing(path: str, base: dict[str, set[str]], cand: dict[str, set[str]]) -> bool:
    """An ancestor is not an object/array on one side: its children's absence says nothing more."""
    parent = _parent(path)
    while parent:
        for side in (base, cand):
            kinds = side.get(parent)
            if kinds is None or not kinds & {"object", "array"}:
                return True
        parent = _parent(parent)
    return False


def compare_shapes(base: dict[str, set[str]], cand: dict[str, set[str]], where: str) -> list[tuple[str, str, str]]:
    out = []
    for path in sorted(set(base) | set(cand)):
        b, c = base.get(path), cand.get(path)
        if b is not None and c is not None:
            b, c = b - {"empty"}, c - {"empty"}  # an array empty on one side only is not a structural difference
        if b == c or _under_empty_array(path, base, cand) or _container_missing(path, base, cand):
            continue
        label = "body" if path == "$" else f"field {path}"
        out.append((f"{where}{label}", _describe(b), _describe(c)))
    return out


def compare(probe: Probe, base: Observed, cand: Observed) -> list[Difference]:
    found: list[tuple[str, str, str]] = []
    if base.transport_error or cand.transport_error:
        if base.transport_error != cand.transport_error:
            found.append(("transport", base.transport_error or "answered", cand.transport_error or "answered"))
        return [Difference(probe.surface, probe.endpoint, probe.name, *f) for f in found]
    if base.status != cand.status:
        found.append(("status", str(base.status), str(cand.status)))
    if base.media_type != cand.media_type:
        found.append(("Content-Type", base.media_type or "none", cand.media_type or "none"))
    if base.events or cand.events:
        if base.events != cand.events:
            found.append(("event order", " ".join(base.events) or "no events", " ".join(cand.events) or "no events"))
        for kind in sorted(set(base.event_shapes) & set(cand.event_shapes)):
            found += compare_shapes(base.event_shapes[kind], cand.event_shapes[kind], f"{kind} event ")
        for key in sorted(set(base.constants) | set(cand.constants)):
            if base.constants.get(key) != cand.constants.get(key) and key in base.constants and key in cand.constants:
                found.append((f"stream field {key}", base.constants[key] + " across events", cand.constants[key] + " across events"))
    if (base.body or cand.body) and bool(base.events) == bool(cand.events):  # a stream vs a document: said above
        found += compare_shapes(base.body, cand.body, "")
    return [Difference(probe.surface, probe.endpoint, probe.name, *f) for f in found]


# --- running both ----------------------------------------------------------------------------------------------


def discover_models(client: httpx.Client) -> tuple[str | None, str | None]:
    """The first completion model and the first embedding model the server lists (capabilities from /api/show)."""
    try:
        models = [m.get("model") or m.get("name") for m in client.get("/api/tags").json().get("models") or []]
    except (httpx.HTTPError, ValueError, AttributeError):
        return None, None
    chat = embed = None
    for name in models:
        try:
            capabilities = client.post("/api/show", json={"model": name}).json().get("capabilities") or []
        except (httpx.HTTPError, ValueError, AttributeError):
            capabilities = []
        if "completion" in capabilities and chat is None:
            chat = name
        if "embedding" in capabilities and embed is None:
            embed = name
    return chat, embed


@dataclass
class DifferentialResult:
    candidate: str
    baseline: str
    model: str
    embed_model: str | None
    probes: list[dict[str, Any]]
    differences: list[Difference]

    def to_json(self) -> dict[str, Any]:
        from ollama_conformance import __version__

        return {
            "kind": KIND,
            "schema_version": SCHEMA_VERSION,
            "tool_version": __version__,
            "candidate": self.candidate,
            "baseline": self.baseline,
            "model": self.model,
            "embed_model": self.embed_model,
            "probes": self.probes,
            "differences": [asdict(d) for d in self.differences],
        }


def _client(url: str, timeout_s: float, headers: dict[str, str] | None) -> httpx.Client:
    return httpx.Client(base_url=url.rstrip("/"), timeout=httpx.Timeout(timeout_s, connect=10.0), headers=headers)


def observe_all(url: str, selected: list[Probe], timeout_s: float = 120.0, headers: dict[str, str] | None = None) -> list[Observed]:
    """Every probe against one server, one at a time (no interference between requests)."""
    with _client(url, timeout_s, headers) as client:
        return [observe(client, probe) for probe in selected]


def select_probes(model: str, embed_model: str | None, surfaces: list[str] | None = None) -> list[Probe]:
    return [p for p in probes(model, embed_model) if not surfaces or p.surface in surfaces]


def diff_observed(candidate: str, baseline: str, model: str, embed_model: str | None, selected: list[Probe],
                  base: list[Observed], cand: list[Observed]) -> DifferentialResult:
    differences: list[Difference] = []
    ran = []
    for probe, b, c in zip(selected, base, cand, strict=True):
        found = compare(probe, b, c)
        differences += found
        ran.append({"probe": probe.name, "surface": probe.surface, "endpoint": probe.endpoint,
                    "baseline_status": b.status, "candidate_status": c.status, "differences": len(found)})
    return DifferentialResult(candidate, baseline, model, embed_model, ran, differences)


def run_differential(candidate: str, baseline: str, model: str | None = None, embed_model: str | None = None,
                     timeout_s: float = 120.0, surfaces: list[str] | None = None, headers: dict[str, str] | None = None) -> DifferentialResult:
    """Every probe to the baseline, then to the candidate; the structural differences."""
    if model is None or embed_model is None:
        with _client(baseline, timeout_s, headers) as client:
            found_model, found_embed = discover_models(client)
        model = model or found_model
        embed_model = embed_model or found_embed
    if model is None:
        from ollama_conformance.errors import UsageError

        raise UsageError("the baseline lists no completion model: pass --model")
    selected = select_probes(model, embed_model, surfaces)
    base = observe_all(baseline, selected, timeout_s, headers)
    cand = observe_all(candidate, selected, timeout_s, headers)
    return diff_observed(candidate, baseline, model, embed_model, selected, base, cand)


def render_text(result: DifferentialResult) -> str:
    lines = [f"differential: candidate {result.candidate} vs baseline {result.baseline} "
             f"(model {result.model}, embed model {result.embed_model or 'none'}; {len(result.probes)} probes)"]
    surfaces = dict.fromkeys(p["surface"] for p in result.probes)
    for surface in surfaces:
        mine = [d for d in result.differences if d.surface == surface]
        probed = sum(1 for p in result.probes if p["surface"] == surface)
        lines.append(f"  {surface}: {probed} probes, {len(mine)} structural difference(s)")
        lines += [f"    - {d.endpoint} ({d.probe}): {d.where}: baseline {d.baseline}; candidate {d.candidate}" for d in mine]
    lines.append("no structural difference" if not result.differences else f"{len(result.differences)} structural difference(s)")
    return "\n".join(lines)


EXIT_SAME, EXIT_DIFFERENT = 0, 1


def run_from_check_args(args: Any) -> int:
    """`check --target CANDIDATE --baseline URL`: differential mode instead of the suite; exit 1 on a difference."""
    from pathlib import Path

    from ollama_conformance.errors import TargetError, UsageError

    if not args.target:
        raise UsageError("--baseline needs --target CANDIDATE (the server compared with the baseline)")
    for name, url in (("--target", args.target), ("--baseline", args.baseline)):
        if not re.match(r"^https?://[^/\s]+", url):
            raise UsageError(f"{name} {url!r} is not an http(s) URL")
        try:
            httpx.get(url.rstrip("/") + "/", timeout=10.0)
        except httpx.HTTPError as exc:
            raise TargetError(f"{name} {url}: nothing answers HTTP ({type(exc).__name__})") from exc
    surfaces = [s.strip() for s in (getattr(args, "surface", "") or "").split(",") if s.strip()]
    result = run_differential(args.target, args.baseline, args.model, args.embed_model, args.timeout, surfaces or None)
    print(render_text(result))
    json_path = getattr(args, "json", None)
    if json_path is not None:
        path = Path(json_path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(result.to_json(), indent=2) + "\n", encoding="utf-8")
        print(f"wrote {path}")
    return EXIT_DIFFERENT if result.differences else EXIT_SAME
