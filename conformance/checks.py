"""What the suite's tests call: send a request, read the answer as it arrives, check it against spec/.

Two grades per check (the schema side of it: spec/grades.py):
- *compatible*: what the official clients (ollama-python, openai, anthropic SDKs) and the public API docs rely
  on. A plain `assert` (or `fail(...)`) is a compatible-grade failure: the test fails.
- *exact*: sameness with Ollama 0.33 (id formats, null vs absent, chunk boundaries). `exact(condition, what)`
  records a difference and the test goes on; the plugin turns the record into the test's `exact_status`.
`raise Inconclusive(why)` when the model did not do what the probe needs (after the probe's retries): the test is
neither passed nor failed, and it counts as not passed.

`Api.call` returns a `Captured` exchange (with the arrival time of every read). `Api.contract` checks a declared
status, a declared media type, and a body (or every stream item) valid against the spec's compatible schema
(asserted) and exact schema (recorded), and replays the answer through the official client of its route
(conformance/clients.py). The `*_error` helpers check an error in the shape of the surface it came from.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

import httpx

from ollama_conformance import spec
from ollama_conformance.conformance import clients, session
from ollama_conformance.conformance.streams import (
    NDJSON,
    SSE,
    Captured,
    SseEvent,
    capture,
    check_ndjson_grammar,
    parse_ndjson,
    parse_sse,
)
from ollama_conformance.conformance.target import Target

# A stream whose items stop arriving for this long (after the headers) fails as a stall; the per-test timeout
# would only turn it into an error much later.
IDLE_FRACTION = 0.5
MIN_IDLE_S = 10.0


class Inconclusive(Exception):
    """The model did not do what the probe needs (no tool call after a strong prompt tried three times, too
    little output to place a stop string): no verdict, and not a pass."""


def exact(condition: bool, difference: str) -> bool:
    """An Ollama-exact check: when `condition` is false, record `difference` ("expected X, got Y") and go on."""
    if not condition:
        session.record_exact_difference(difference)
    return condition


def fail(message: str) -> None:
    """A compatible-grade failure (what an official client would break on or misread)."""
    raise AssertionError(message)


def record_chunk_times(got: Captured) -> list[float]:
    """Note the arrival time (ms after the request) of each item of a stream, for the results file."""
    times = [round(t * 1000, 1) for t in got.item_arrivals()]
    session.record_chunk_times(times)
    return times


class Api:
    """Requests to the target, with spec-driven checks on what comes back."""

    def __init__(self, client: httpx.Client, target: Target) -> None:
        self.client = client
        self.target = target

    def call(self, method: str, path: str, body: Any = None, *, raw: bytes | None = None,
             headers: dict[str, str] | None = None) -> Captured:
        kwargs: dict[str, Any] = {"headers": headers or {}}
        if raw is not None:
            kwargs["content"] = raw
        elif body is not None:
            kwargs["json"] = body
        idle_s = max(MIN_IDLE_S, self.target.timeout_s * IDLE_FRACTION)
        try:
            got = capture(self.client, method, path, deadline_s=self.target.timeout_s * 0.9, idle_s=idle_s, **kwargs)
        except AssertionError:  # a stream that stalled or did not close: this exchange is the one that failed
            session.record_judged(session.exchange_count() - 1)
            raise
        got.request_body = body
        got.method, got.path = method, path
        got.exchange_index = session.exchange_count() - 1
        session.record_body(got.text)
        return got

    def post(self, path: str, body: Any = None, **kwargs: Any) -> Captured:
        return self.call("POST", path, body, **kwargs)

    def get(self, path: str) -> Captured:
        return self.call("GET", path)

    # --- contract -------------------------------------------------------------------------------------------

    def contract(self, method: str, path: str, got: Captured) -> list[Any]:
        """Assert status, media type and schema per spec/; return the body items (one for JSON, n for streams)."""
        where = f"{method} {path}"
        session.record_judged(got.exchange_index)
        check_served(got)
        declared = spec.declared_statuses(method, path)
        status = str(got.status)
        assert status in declared or f"{status[0]}XX" in declared or "default" in declared, (
            f"{where}: status {got.status} is not declared by the spec (declared: {declared}); body {got.text[:200]!r}"
        )
        media_types = spec.response_media_types(method, path, got.status)
        if not media_types:
            assert got.text == "", f"{where}: status {got.status} has no body in the spec, got {got.text[:120]!r}"
            return []
        stream = got.media_type in (NDJSON, SSE)
        if stream and not asks_stream(path, got.request_body):
            fail(f"{where}: a request with stream false was answered with a {got.media_type} stream: clients "
                 f"parse it as one JSON document and fail")
        assert got.media_type in media_types, (
            f"{where}: Content-Type {got.headers.get('content-type')!r} is not one the spec declares {media_types}"
        )
        if stream:
            check_stream_media_type(got)
        schema = spec.response_schema(method, path, got.status, got.media_type)
        items = self.items(got)
        like_ollama = True
        if schema is not None:
            for index, item in enumerate(items):
                label = f"item {index}" if stream else "body"
                problems = spec.validate(item, schema, grade="compatible")
                assert not problems, f"{where}: {label} does not match the spec: " + "; ".join(problems[:5])
                exact_problems = spec.validate(item, schema, grade="exact", closed=True)
                like_ollama = like_ollama and not exact_problems
                exact(not exact_problems, f"{where}: {label} differs from Ollama: " + "; ".join(exact_problems[:3]))
        problems = clients.sdk_problems(method, _template(method, path), got, stream=stream)
        decoding = [p for p in problems if clients.TYPE_REFUSAL not in p]
        assert not decoding, f"{where}: the official client fails on the answer: " + "; ".join(decoding[:3])
        # The SDKs build their objects without validating them, so a type refusal breaks no client at run time.
        # It fails the compatible grade unless Ollama itself answers so (the item matches the exact spec: e.g.
        # finish_reason "load" for an empty prompt, Anthropic `content: null` when empty): a documented deviation
        # of Ollama from the SDK types, not of the server from Ollama.
        typing = [p for p in problems if clients.TYPE_REFUSAL in p]
        assert not typing or like_ollama, f"{where}: the official client's types refuse the answer: " + "; ".join(typing[:3])
        if stream:
            record_chunk_times(got)
        return items

    def items(self, got: Captured) -> list[Any]:
        """The body as JSON values: one for application/json, one per NDJSON line, one per SSE JSON event."""
        if got.media_type == NDJSON:
            stream = parse_ndjson(got.text)
            assert not stream.problems, "NDJSON framing: " + "; ".join(stream.problems[:5])
            return stream.objects
        if got.media_type == SSE:
            events = self.sse(got)
            pings = [e for e in events if e.event == "ping"]
            # the anthropic SDK skips `ping` events (keep-alives): a legal difference from Ollama, which sends none
            exact(not pings, f"{len(pings)} `event: ping` keep-alive(s) in the stream, Ollama sends none")
            return [json.loads(e.data) for e in events if e.data != "[DONE]" and e.event != "ping"]
        if got.media_type.startswith("text/"):
            return [got.text]
        try:
            return [got.json()]
        except ValueError as exc:
            raise AssertionError(f"the body is not JSON ({exc}): {got.text[:120]!r}") from exc

    # --- streams --------------------------------------------------------------------------------------------

    def ndjson(self, got: Captured, *, allow_error_end: bool = False) -> list[dict[str, Any]]:
        """A native stream: 200, application/x-ndjson, framing and grammar correct. Returns the objects."""
        session.record_judged(got.exchange_index)
        check_served(got)
        assert got.status == 200, f"status {got.status}, expected 200; body {got.text[:200]!r}"
        assert got.media_type == NDJSON, f"Content-Type {got.headers.get('content-type')!r}, expected {NDJSON}"
        stream = parse_ndjson(got.text)
        assert not stream.problems, "NDJSON framing: " + "; ".join(stream.problems[:5])
        check_stream_media_type(got)
        problems = check_ndjson_grammar(stream.objects, allow_error_end=allow_error_end)
        assert not problems, "NDJSON stream grammar: " + "; ".join(problems[:5])
        record_chunk_times(got)
        return stream.objects

    def sse(self, got: Captured) -> list[SseEvent]:
        session.record_judged(got.exchange_index)
        check_served(got)
        assert got.status == 200, f"status {got.status}, expected 200; body {got.text[:200]!r}"
        assert got.media_type == SSE, f"Content-Type {got.headers.get('content-type')!r}, expected {SSE}"
        stream = parse_sse(got.text)
        assert not stream.problems, "SSE framing: " + "; ".join(stream.problems[:5])
        for difference in stream.wire:
            exact(False, f"SSE framing: {difference}")
        check_stream_media_type(got)
        record_chunk_times(got)
        return stream.events

    def single(self, got: Captured) -> dict[str, Any]:
        """A non-stream answer: 200, application/json, one JSON object."""
        session.record_judged(got.exchange_index)
        check_served(got)
        if got.media_type in (NDJSON, SSE) and not asks_stream(got.path, got.request_body):
            fail(f"{got.method} {got.path}: a request with stream false was answered with a {got.media_type} stream: "
                 "clients parse it as one JSON document and fail")
        assert got.status == 200, f"status {got.status}, expected 200; body {got.text[:200]!r}"
        assert got.media_type == "application/json", (
            f"Content-Type {got.headers.get('content-type')!r}, expected application/json"
        )
        return _json_object(got)

    # --- errors ---------------------------------------------------------------------------------------------

    def native_error(self, got: Captured, status: int | tuple[int, ...]) -> str:
        """A native error: the expected status, JSON, `{"error": "<non-empty message>"}`. Returns the message."""
        body = _error_object(got, status)
        assert isinstance(body.get("error"), str) and body["error"], f"error body is not {{\"error\": string}}: {got.text[:200]!r}"
        return body["error"]

    def openai_error(self, got: Captured, status: int, error_type: str) -> str:
        body = _error_object(got, status)
        error = body.get("error")
        assert isinstance(error, dict), f"error body is not {{\"error\": {{message, type, param, code}}}}: {got.text[:200]!r}"
        assert isinstance(error.get("message"), str) and error["message"], f"error.message missing: {got.text[:200]!r}"
        assert error.get("type") == error_type, f"error.type {error.get('type')!r}, expected {error_type!r}"
        # The openai SDK reads a missing `param` or `code` as None and any `code` as str(code) (APIError in
        # openai/_exceptions.py): llama-server's {"code": 400, ...} without `param` breaks no client. Ollama sends
        # both, null: the exact grade.
        for key in ("param", "code"):
            exact(key in error and error[key] is None,
                  f"error.{key} is {_shown(error, key)}, Ollama sends null: {got.text[:200]!r}")
        return error["message"]

    def anthropic_error(self, got: Captured, status: int, error_type: str) -> str:
        body = _error_object(got, status)
        assert body.get("type") == "error", f"error body type {body.get('type')!r}, expected 'error': {got.text[:200]!r}"
        error = body.get("error")
        assert isinstance(error, dict) and error.get("type") == error_type, (
            f"error.type {error.get('type') if isinstance(error, dict) else None!r}, expected {error_type!r}"
        )
        assert isinstance(error.get("message"), str) and error["message"], "error.message missing"
        return error["message"]


# Routes whose requests stream unless they say `stream: false` (the /v1 ones stream only when asked).
STREAM_BY_DEFAULT = ("/api/generate", "/api/chat", "/api/pull", "/api/push", "/api/create")


def check_served(got: Captured) -> None:
    """One rule for a route the target does not serve, checked before anything else about the answer: a 404 or
    405 without an error object of the route's surface (a router's "no such route", not "model not found")."""
    if got.status not in (404, 405):
        return
    try:
        body = json.loads(got.text)
    except ValueError:
        body = None
    native = got.path.startswith("/api/")
    if isinstance(body, dict) and (isinstance(body.get("error"), str) if native else ("error" in body or body.get("type") == "error")):
        return
    text = " ".join(got.text.split())[:60]
    fail(f"{got.method} {got.path.split('?', 1)[0]} not served: {got.status} {text!r}")


def asks_stream(path: str, body: Any) -> bool:
    """Whether the request asked for a streamed answer."""
    default = path.split("?", 1)[0] in STREAM_BY_DEFAULT
    if isinstance(body, dict) and isinstance(body.get("stream"), bool):
        return body["stream"]
    return default


def check_stream_media_type(got: Captured) -> None:
    """The wire of a stream, exact grade: Ollama's stream Content-Types carry no parameter (a client reads the
    type and ignores the parameter), and Ollama writes and flushes each item whole, so no item arrives split
    across network reads (clients reassemble split items: legal, but not Ollama's chunk boundaries)."""
    header = got.headers.get("content-type", "")
    exact(header.strip().lower() == got.media_type,
          f"Content-Type {header!r}, Ollama sends {got.media_type!r} (no parameters)")
    ends = {match.end() for match in re.finditer(rb"\n\n|\r\n\r\n" if got.media_type == SSE else rb"\n", got.raw)}
    split = [received for _, received in got.reads[:-1] if received not in ends]
    exact(not split, "a network read ended inside a stream item: the items were written in pieces, Ollama writes "
                     "each item whole")


def _shown(body: dict[str, Any], key: str) -> str:
    return repr(body[key]) if key in body else "missing"


def _template(method: str, path: str) -> str:
    """The spec's path template of a concrete path (/v1/models/x -> /v1/models/{model})."""
    found = spec.find_path(path)
    return found[1] if found else path


def _error_object(got: Captured, status: int | tuple[int, ...]) -> dict[str, Any]:
    """An error answer of every surface: the expected status, application/json, a JSON object."""
    statuses = (status,) if isinstance(status, int) else status
    session.record_judged(got.exchange_index)
    check_served(got)
    assert got.status in statuses, f"status {got.status}, expected {' or '.join(map(str, statuses))}; body {got.text[:200]!r}"
    assert got.media_type == "application/json", (
        f"error Content-Type {got.headers.get('content-type')!r}, expected application/json"
    )
    return _json_object(got)


def _json_object(got: Captured) -> dict[str, Any]:
    try:
        body = got.json()
    except ValueError as exc:
        raise AssertionError(f"the body is not JSON ({exc}): {got.text[:200]!r}") from exc
    assert isinstance(body, dict), f"the body is not a JSON object: {got.text[:200]!r}"
    return body


def final(objects: list[dict[str, Any]]) -> dict[str, Any]:
    """The done:true object of a checked NDJSON stream."""
    return objects[-1]


def output_of(obj: dict[str, Any], key: str = "response") -> str:
    """The output one native object carries (generate: `response`; chat, key "message": `message.content`)."""
    if key == "message":
        return (obj.get("message") or {}).get("content") or ""
    return obj.get(key) or ""


def generated_text(objects: list[dict[str, Any]], key: str = "response") -> str:
    """The concatenated output of a native stream (generate: `response`; chat: `message.content`)."""
    return "".join(output_of(o, key) for o in objects)


# --- output budgets (num_predict, max_tokens): judged from the output, not from the server's counts ------------

# A small budget and a wide one, on a prompt a model continues at length (BUDGET_PROMPT): the wide run shows
# that the server can go past the small budget with this prompt before the small run's cut is judged.
BUDGET = 3
WIDER_BUDGET = 16
BUDGET_PROMPT = "Count from 1 to 30, separated by commas."


def least_tokens(text: str, chunks: int = 0) -> int:
    """A lower bound of the tokens an output took: each whitespace-separated word is at least one token (no
    tokenizer of a served model joins two words into one token), each streamed chunk with output too."""
    return max(len(text.split()), chunks)


def judge_budget(limit: int, wider: int, cut_text: str, full_text: str, *, reason: Any, count: Any,
                 length_reason: str, stop_reasons: tuple[str, ...], count_name: str, reason_name: str,
                 wide_reason: Any = None, cut_chunks: int = 0) -> None:
    """One greedy request run with budget `limit` and again with `wider`, judged in this order:
    1. the output of the small run holds no more tokens than its budget (counted from the text, at least);
    2. it is a prefix of the wide run's output (the budget cuts the generation itself);
    3. the wide run goes on past it: only then does this prompt show a cut (else Inconclusive, or a failure when
       both runs claim `length`: one text cannot have been cut by two different budgets);
    4. the cut output says `length_reason` and a count equal to the budget.
    The server's own count never decides what is expected."""
    shortest = least_tokens(cut_text, cut_chunks)
    assert shortest <= limit, (
        f"the budget {limit} was not applied: the output has at least {shortest} tokens "
        f"({len(cut_text.split())} words, {cut_chunks} chunks): {cut_text[:120]!r}"
    )
    assert full_text.startswith(cut_text), (
        f"the greedy output with a budget of {limit} ({cut_text!r}) is not a prefix of the same request's output "
        f"with {wider} ({full_text[:200]!r}): the budget is not applied to the generation itself"
    )
    assert isinstance(count, int) and not isinstance(count, bool), f"{count_name} is {count!r}, expected an integer"
    assert count <= limit, f"{count_name} {count} > the budget {limit}"
    if cut_text:
        assert count >= 1, f"{count_name} {count} for the non-empty output {cut_text!r}"
    if len(full_text) == len(cut_text):
        assert not (reason == length_reason and wide_reason == length_reason), (
            f"the output {cut_text!r} is the same with a budget of {limit} and of {wider}, so it ended by itself, "
            f"but {reason_name} is {length_reason!r} both times"
        )
        assert reason in (*stop_reasons, length_reason), f"{reason_name} is {reason!r}, expected one of {(*stop_reasons, length_reason)}"
        raise Inconclusive(f"the output {cut_text!r} ended by itself within the budget {limit} (the same with "
                           f"{wider}): this prompt shows no cut to judge")
    assert reason == length_reason, (
        f"the output {cut_text!r} was cut by the budget {limit} (with {wider} it goes on: {full_text[:120]!r}), "
        f"but {reason_name} is {reason!r}, expected {length_reason!r}"
    )
    assert count == limit, f"the output was cut by the budget {limit}, but {count_name} is {count}"


def check_native_budget(api: Api, send: Callable[[dict[str, Any], bool], Captured], key: str, *, stream: bool) -> None:
    """num_predict on /api/generate or /api/chat (`send(options, stream)` makes the request). The wide run comes
    first and the small one last, so the exchange a failure shows is the request it judged."""
    options = {"temperature": 0, "seed": 1}
    wide = api.single(send({**options, "num_predict": WIDER_BUDGET}, False))
    got = send({**options, "num_predict": BUDGET}, stream)
    objects = api.ndjson(got) if stream else [api.single(got)]
    last = final(objects)
    with_text = [o for o in objects if output_of(o, key)] if stream else []
    judge_budget(BUDGET, WIDER_BUDGET, generated_text(objects, key), output_of(wide, key), reason=last.get("done_reason"),
                 count=last.get("eval_count"), length_reason="length", stop_reasons=("stop",),
                 count_name="eval_count", reason_name="done_reason", wide_reason=wide.get("done_reason"),
                 cut_chunks=len(with_text))
    if stream:
        assert last["eval_count"] >= len(with_text), (
            f"eval_count {last['eval_count']} < the {len(with_text)} chunks that carried output (each is ≥ 1 token)"
        )
    wide_count = wide.get("eval_count")
    assert isinstance(wide_count, int) and wide_count >= last["eval_count"], (
        f"eval_count {wide_count} with num_predict {WIDER_BUDGET} < {last['eval_count']} with {BUDGET} for the same greedy output"
    )


# --- stop sequences -----------------------------------------------------------------------------------------


def stop_candidate(pieces: list[str], full: str) -> str | None:
    """A stop string from the model's own greedy output, beyond its start: a streamed piece, else a word."""
    for piece in [p.strip() for p in pieces[1:]] + full.split()[1:]:
        if piece and full.find(piece) > 0:
            return piece
    return None


def check_stop_sequence(api: Api, send: Callable[[dict[str, Any]], Captured], greedy: dict[str, Any], key: str) -> None:
    """A stop string taken from the model's own greedy output (beyond its start) ends the same greedy output just
    before it, with done_reason "stop". `send(options)` makes the native streamed request."""
    pieces = [piece for piece in (output_of(o, key) for o in api.ndjson(send(greedy))) if piece]
    full = "".join(pieces)
    stop = stop_candidate(pieces, full)
    if stop is None:
        raise Inconclusive(f"the greedy output {full!r} offers no stop string to test with")
    expected = full[: full.find(stop)]
    stopped = api.ndjson(send({**greedy, "stop": [stop]}))
    text = generated_text(stopped, key)
    assert stop not in text, f"the output {text!r} contains the stop sequence {stop!r}"
    assert final(stopped).get("done_reason") == "stop", f"done_reason {final(stopped).get('done_reason')!r}, expected 'stop'"
    assert text == expected, f"with stop {stop!r} the output is {text!r}, expected {expected!r} (same greedy text up to it)"


# --- delivery over time -------------------------------------------------------------------------------------

MIN_OUTPUTS_FOR_DELIVERY = 8
# Outputs that all arrive within this window came in one burst: generated first, then sent. A streaming server
# spaces them by its per-token time (tens of ms on a CPU, a few ms on a fast GPU).
BURST_WINDOW_S = 0.005


def check_incremental_delivery(got: Captured, is_output: Callable[[str], bool]) -> None:
    """A stream's outputs arrive as they are generated, not in one burst at the end (SHOULD).

    `is_output(item)` says whether a stream item (an NDJSON line or an SSE data payload) carries output."""
    timed = got.timed_items()
    record_chunk_times(got)
    times = [at for at, item in timed if is_output(item)]
    if len(times) < MIN_OUTPUTS_FOR_DELIVERY:
        raise Inconclusive(f"only {len(times)} stream items carried output; {MIN_OUTPUTS_FOR_DELIVERY} are needed "
                           "to judge delivery over time")
    span = times[-1] - times[0]
    assert span >= BURST_WINDOW_S, (
        f"buffered, not streamed: all {len(times)} outputs arrived within {BURST_WINDOW_S * 1000:g} ms of each "
        "other (their arrival times are in the results' chunk_times_ms)"
    )


def json_output(field_path: tuple[str, ...]) -> Callable[[str], bool]:
    """An `is_output` for JSON items: the string at `field_path` (list index as int) is non-empty."""

    def check(item: str) -> bool:
        try:
            value: Any = json.loads(item)
        except ValueError:
            return False
        for part in field_path:
            if isinstance(part, int):
                value = value[part] if isinstance(value, list) and len(value) > part else None
            else:
                value = value.get(part) if isinstance(value, dict) else None
        return isinstance(value, str) and value != ""

    return check


# --- tool calls ---------------------------------------------------------------------------------------------


def check_tool_arguments(arguments: Any, tool: dict[str, Any]) -> None:
    """Tool-call arguments are an instance of the tool's JSON Schema (`function.parameters`)."""
    import jsonschema

    schema = (tool.get("function") or {}).get("parameters") or {}
    try:
        jsonschema.validate(arguments, schema)
    except jsonschema.ValidationError as exc:
        raise AssertionError(f"tool-call arguments {json.dumps(arguments)[:200]} do not match the tool's schema: "
                             f"{exc.message}") from exc


def call_left_in_text(content: Any, name: str) -> bool:
    """True when the answer's text holds a call of tool `name` that the server did not turn into tool_calls."""
    if not isinstance(content, str):
        return False
    compact = "".join(content.split())
    return f'"name":"{name}"' in compact
