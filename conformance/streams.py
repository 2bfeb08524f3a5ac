"""Reading streamed answers off the wire (NDJSON and SSE) with a deadline, and checking their grammar.

Readers keep the raw framing (lines, event fields) so that the grammar checks can see exactly what was sent.
The checkers are pure functions returning a list of problems (empty = conforming): the suite asserts on them and
the project's own tests run them over recordings of real Ollama traffic.
"""

from __future__ import annotations

import contextlib
import json
import queue
import re
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import httpx

NDJSON = "application/x-ndjson"
SSE = "text/event-stream"


class StreamStalled(Exception):
    """The target never finished answering within the test's deadline (reported as an error: nothing to judge)."""


class StreamIdle(AssertionError):
    """A body that had started stopped arriving: no byte for the idle timeout. A failure, not an error: the
    server answered and then went silent, which a client sees as a hung stream."""


@dataclass
class Captured:
    """One HTTP exchange as received: status, headers and body, plus when each piece of the body arrived.

    `reads` holds one (seconds since the request was sent, body bytes received so far) pair per network read, so
    the arrival time of every stream item (`item_arrivals`) can be judged: a server that generates the whole
    answer and then sends it at once shows every item arriving in the same instant.
    """

    status: int
    headers: httpx.Headers
    text: str
    elapsed_s: float
    reads: list[tuple[float, int]] = field(default_factory=list)
    raw: bytes = b""
    request_body: Any = None  # the JSON request body that was sent, when there was one
    method: str = ""
    path: str = ""
    exchange_index: int | None = None  # where the suite's session recorded this exchange

    @property
    def media_type(self) -> str:
        return self.headers.get("content-type", "").split(";")[0].strip().lower()

    def json(self) -> Any:
        return json.loads(self.text)

    def arrival_s(self, byte_end: int) -> float:
        """When the body byte at offset `byte_end - 1` had arrived (seconds since the request was sent)."""
        for at, received in self.reads:
            if received >= byte_end:
                return at
        return self.elapsed_s

    def item_arrivals(self) -> list[float]:
        """Arrival time of each stream item (seconds since the request was sent)."""
        return [at for at, _ in self.timed_items()]

    def timed_items(self) -> list[tuple[float, str]]:
        """Each stream item with its arrival time: NDJSON lines, or the data of SSE events (comments skipped)."""
        out: list[tuple[float, str]] = []
        if self.media_type == SSE:
            start = 0
            for match in re.finditer(rb"\r?\n\r?\n", self.raw):
                block = self.raw[start:match.start()].decode("utf-8", errors="replace")
                start = match.end()
                data = [line[5:].removeprefix(" ") for line in block.splitlines() if line.startswith("data:")]
                if data:
                    out.append((self.arrival_s(match.end()), "\n".join(data)))
            return out
        start = 0
        for match in re.finditer(rb"\n", self.raw):
            line = self.raw[start:match.start()].decode("utf-8", errors="replace")
            start = match.end()
            if line.strip():
                out.append((self.arrival_s(match.end()), line))
        return out


# After a stream's last item (done:true, [DONE], message_stop, response.completed) the body must end: a client
# iterating the stream (`for part in ollama.chat(..., stream=True)`) waits for the close, not for the item.
CLOSE_WAIT_S = 2.0


class StreamNotClosed(AssertionError):
    """The stream's final item came, but the connection kept the body open past CLOSE_WAIT_S."""


def capture(client: httpx.Client, method: str, path: str, *, deadline_s: float, idle_s: float | None = None,
            **kwargs: Any) -> Captured:
    """Send one request and read the body read by read, noting when each piece arrived.

    Gives up with StreamStalled once `deadline_s` has passed, with StreamIdle when, after the headers, the body
    sends nothing for `idle_s` (Ollama sends its headers with the first item, so the wait for a model load comes
    before them and keeps the client's own read timeout), and with StreamNotClosed when a stream's final item
    came but the body did not end within CLOSE_WAIT_S. The body is read in a thread so that those waits are
    bounded by this function, not by the socket's read timeout."""
    start = time.monotonic()
    pieces: list[bytes] = []
    reads: list[tuple[float, int]] = []
    received = 0
    with client.stream(method, path, **kwargs) as response:
        if idle_s is not None:
            # httpcore takes the read timeout when the body iteration starts: every body read waits at most idle_s.
            _set_read_timeout(response, idle_s)
        media_type = response.headers.get("content-type", "").split(";")[0].strip().lower()
        arrivals: queue.Queue[bytes | BaseException | None] = queue.Queue()
        reader = threading.Thread(target=_read_body, args=(response, arrivals), name="capture-body", daemon=True)
        reader.start()
        final_at: float | None = None
        try:
            while True:
                wait = deadline_s - (time.monotonic() - start)
                if final_at is not None:
                    wait = min(wait, CLOSE_WAIT_S - (time.monotonic() - final_at))
                try:
                    piece = arrivals.get(timeout=max(wait, 0.0))
                except queue.Empty:
                    if final_at is not None:
                        raise StreamNotClosed(
                            f"{method} {path}: the stream's final item came but the connection did not end the body "
                            f"within {CLOSE_WAIT_S:.0f} s: a client iterating the stream hangs until it closes"
                        ) from None
                    raise StreamStalled(f"{method} {path}: the body was still arriving after {deadline_s:.0f} s") from None
                if piece is None:
                    break
                if isinstance(piece, httpx.ReadTimeout) and idle_s is not None:
                    raise StreamIdle(
                        f"{method} {path}: the answer went silent: no byte for {idle_s:.0f} s after the headers and "
                        f"{received} body bytes"
                    ) from piece
                if isinstance(piece, BaseException):
                    raise piece
                pieces.append(piece)
                received += len(piece)
                reads.append((time.monotonic() - start, received))
                if time.monotonic() - start > deadline_s:
                    raise StreamStalled(f"{method} {path}: the body was still arriving after {deadline_s:.0f} s")
                if final_at is None and ends_with_final_item(media_type, b"".join(pieces)):
                    final_at = time.monotonic()
        finally:
            if reader.is_alive():
                _hang_up(response)
                reader.join(timeout=5)
        raw = b"".join(pieces)
        encoding = response.encoding or "utf-8"
        return Captured(response.status_code, response.headers, raw.decode(encoding, errors="replace"),
                        time.monotonic() - start, reads, raw)


def _read_body(response: httpx.Response, arrivals: queue.Queue[bytes | BaseException | None]) -> None:
    try:
        for piece in response.iter_bytes():
            arrivals.put(piece)
        arrivals.put(None)
    except BaseException as exc:  # handed to the reading function, which raises it
        arrivals.put(exc)


def _hang_up(response: httpx.Response) -> None:
    """Shut the connection's socket so that the reader thread's blocked read returns."""
    stream = response.extensions.get("network_stream")
    sock = stream.get_extra_info("socket") if stream is not None else None
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)


def ends_with_final_item(media_type: str, raw: bytes) -> bool:
    """Whether the body read so far ends with a stream's final item: a native done:true (or error) object, an
    OpenAI `[DONE]`, an Anthropic message_stop, a Responses response.completed."""
    if media_type == NDJSON:
        if not raw.endswith(b"\n"):
            return False
        lines = raw.rstrip(b"\n").rsplit(b"\n", 1)
        try:
            last = json.loads(lines[-1])
        except ValueError:
            return False
        return isinstance(last, dict) and (last.get("done") is True or "error" in last)
    if media_type == SSE:
        events = parse_sse(raw.decode("utf-8", errors="replace")).events
        if not events or not raw.endswith((b"\n\n", b"\r\n\r\n", b"\r\r")):
            return False
        last = events[-1]
        return last.data == "[DONE]" or last.event in ("message_stop", "response.completed")
    return False


def _set_read_timeout(response: httpx.Response, seconds: float) -> None:
    timeouts = dict(response.request.extensions.get("timeout") or {})
    timeouts["read"] = seconds
    response.request.extensions["timeout"] = timeouts


# --- NDJSON -------------------------------------------------------------------------------------------------


@dataclass
class NdjsonStream:
    objects: list[Any] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def parse_ndjson(text: str) -> NdjsonStream:
    """Every line must be one JSON object; the body ends with a newline (each object is flushed as a line)."""
    out = NdjsonStream()
    if text and not text.endswith("\n"):
        out.problems.append("the NDJSON body does not end with a newline (last line cut short?)")
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()  # the newline that ends the last object
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            out.problems.append(f"line {number} is blank (clients parse every line as JSON)")
            continue
        try:
            value = json.loads(line)
        except ValueError as exc:
            out.problems.append(f"line {number} is not JSON ({exc}): {line[:80]!r}")
            continue
        if not isinstance(value, dict):
            out.problems.append(f"line {number} is JSON but not an object: {line[:80]!r}")
            continue
        out.objects.append(value)
    return out


METRIC_KEYS = ("total_duration", "load_duration", "prompt_eval_count", "eval_count", "eval_duration")


def check_ndjson_grammar(objects: list[dict[str, Any]], *, allow_error_end: bool = False) -> list[str]:
    """Ollama's native stream: `done:false`* then exactly one `done:true` (with done_reason, metrics), nothing after.

    An `{"error": ...}` object ends a stream early; it is a conforming *error* stream only when `allow_error_end`.
    """
    problems: list[str] = []
    if not objects:
        return ["the stream carried no object at all"]
    for index, obj in enumerate(objects):
        last = index == len(objects) - 1
        if "error" in obj:
            if not last:
                problems.append(f"object {index} is an error but the stream goes on after it")
            elif not allow_error_end:
                problems.append(f"the stream ended with an error object: {obj.get('error')!r}")
            continue
        done = obj.get("done")
        if not isinstance(done, bool):
            problems.append(f"object {index} has no boolean `done` (got {done!r})")
            continue
        if done and not last:
            problems.append(f"object {index} has done:true but {len(objects) - index - 1} object(s) follow it")
        if not done and last:
            problems.append("the last object has done:false: the stream ended without its final done:true object")
        if done:
            if not obj.get("done_reason"):
                problems.append("the final object has no done_reason")
            if obj.get("done_reason") in ("stop", "length"):
                missing = [k for k in METRIC_KEYS if k not in obj]
                if missing:
                    problems.append(f"the final object lacks metrics {missing}")
        elif "done_reason" in obj:
            problems.append(f"object {index} has done:false and a done_reason")
    problems.extend(final_repeats_output(objects))
    return problems


def _native_output(obj: dict[str, Any]) -> tuple[str, str]:
    """(field name, output) of one native object: generate's `response` or chat's `message.content`."""
    if isinstance(obj.get("message"), dict):
        content = obj["message"].get("content")
        return "message.content", content if isinstance(content, str) else ""
    response = obj.get("response")
    return "response", response if isinstance(response, str) else ""


def final_repeats_output(objects: list[dict[str, Any]]) -> list[str]:
    """A final done:true object that carries the whole output again (clients that join the chunks show it twice).
    Ollama's final object carries no output; one last token there is fine, all the earlier ones are not."""
    if len(objects) < 3 or objects[-1].get("done") is not True:
        return []
    name, last = _native_output(objects[-1])
    earlier = [_native_output(o)[1] for o in objects[:-1]]
    if last and len([e for e in earlier if e]) >= 2 and last == "".join(earlier):
        return [f"the final done:true object repeats the whole output in `{name}` ({len(last)} characters): "
                "clients that join the chunks show it twice"]
    return []


# --- SSE ----------------------------------------------------------------------------------------------------


@dataclass
class SseEvent:
    event: str | None
    data: str


@dataclass
class SseStream:
    events: list[SseEvent] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # what an official client breaks on or misreads
    wire: list[str] = field(default_factory=list)  # legal framing Ollama does not use (the exact grade)


_LINE_BREAK = re.compile(r"\r\n|\r|\n")


def parse_sse(text: str) -> SseStream:
    """A text/event-stream body read as the WHATWG event-stream rules (and the openai/anthropic SDKs' decoder)
    read it: lines end with CRLF, CR or LF; `:` starts a comment; `field: value` or `field:value` (one space
    dropped); data lines of one event are joined with newlines; a blank line dispatches the event when it has
    data; id, retry and unknown fields are ignored. Legal framing that Ollama does not send (it writes
    `data: <json>` and, on /v1/messages, `event: <type>` before it, each event ended by a blank line) is listed
    in `wire` for the exact grade."""
    out = SseStream()
    wire: dict[str, None] = {}  # ordered, without repeats
    if "\r" in text:
        wire["lines end with CR or CRLF, Ollama ends them with LF"] = None
    lines = _LINE_BREAK.split(text)
    ended = lines[-1] == ""  # the body ends with a line break
    lines = lines[:-1] if ended else lines
    event: str | None = None
    data: list[str] = []
    fields_seen = False
    for line in lines:
        if line == "":
            if data:
                out.events.append(SseEvent(event, "\n".join(data)))
                if len(data) > 1:
                    wire["an event's data spans several `data:` lines, Ollama sends one"] = None
            elif fields_seen:
                # the SDKs dispatch it with empty data and then fail to parse "" as JSON
                out.problems.append(f"an SSE event without data (event {event!r}): the official clients parse its "
                                    "empty data as JSON and fail")
            event, data, fields_seen = None, [], False
            continue
        if line.startswith(":"):
            wire["comment lines (`:`), Ollama sends none"] = None
            continue
        name, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        elif colon and name in ("data", "event"):
            wire[f"`{name}:` without the space after the colon, Ollama writes `{name}: `"] = None
        if name == "event":
            event, fields_seen = value, True
        elif name == "data":
            data.append(value)
        elif name in ("id", "retry"):
            wire[f"`{name}:` fields, Ollama sends none"] = None
        else:
            wire[f"unknown field {name!r} (ignored by clients), Ollama sends none"] = None
    if data or fields_seen or (lines and not ended):
        out.problems.append("the SSE body does not end with a blank line: the last event is never dispatched "
                            "(the official clients drop it)")
    elif text and not text.endswith(("\n\n", "\r\n\r\n", "\r\r")):
        out.problems.append("the SSE body does not end with a blank line (last event not terminated)")
    out.wire = list(wire)
    return out


def _json_data(event: SseEvent, index: int, problems: list[str]) -> dict[str, Any] | None:
    try:
        value = json.loads(event.data)
    except ValueError:
        problems.append(f"event {index} data is not JSON: {event.data[:80]!r}")
        return None
    if not isinstance(value, dict):
        problems.append(f"event {index} data is not a JSON object")
        return None
    return value


def check_chat_sse_grammar(events: list[SseEvent], *, include_usage: bool, object_name: str = "chat.completion.chunk") -> list[str]:
    """OpenAI chat/completions stream: role first, one id, exactly one finish chunk, usage chunk iff asked, [DONE] last."""
    problems: list[str] = []
    if not events:
        return ["the stream carried no event"]
    if events[-1].data != "[DONE]":
        problems.append("the stream does not end with `data: [DONE]`")
    chunks: list[dict[str, Any]] = []
    for index, event in enumerate(events):
        if event.data == "[DONE]":
            if index != len(events) - 1:
                problems.append(f"[DONE] at event {index} is not the last event")
            continue
        chunk = _json_data(event, index, problems)
        if chunk is not None:
            chunks.append(chunk)
    if not chunks:
        return [*problems, "the stream carried no JSON chunk"]
    ids = {c.get("id") for c in chunks}
    if len(ids) != 1:
        problems.append(f"chunks carry {len(ids)} different ids: {sorted(map(str, ids))[:4]}")
    bad_object = [c.get("object") for c in chunks if c.get("object") != object_name]
    if bad_object:
        problems.append(f"chunk object is {bad_object[0]!r}, expected {object_name!r}")
    with_choices = [c for c in chunks if c.get("choices")]
    usage_chunks = [c for c in chunks if c.get("usage")]
    if object_name == "chat.completion.chunk" and with_choices:
        first_delta = with_choices[0]["choices"][0].get("delta") or {}
        # the openai SDK types the delta's role Optional (ChoiceDelta.role): absent is Ollama-exact only
        if first_delta.get("role") not in ("assistant", None):
            problems.append(f"the first chunk's delta has role {first_delta.get('role')!r}, expected 'assistant'")
    finishes = [i for i, c in enumerate(with_choices) if c["choices"][0].get("finish_reason") is not None]
    if len(finishes) != 1:
        problems.append(f"{len(finishes)} chunks carry a finish_reason, expected exactly one")
    elif finishes[0] != len(with_choices) - 1:
        problems.append("a chunk with choices follows the finish chunk")
    if include_usage:
        if len(usage_chunks) != 1:
            problems.append(f"include_usage was asked: expected one usage chunk, got {len(usage_chunks)}")
        elif chunks[-1] is not usage_chunks[0] or usage_chunks[0].get("choices"):
            problems.append("the usage chunk must be the last chunk and have empty choices")
    elif usage_chunks and object_name == "chat.completion.chunk":
        problems.append("a usage chunk was sent although stream_options.include_usage was not asked")
    return problems


MESSAGES_ORDER = ("message_start", "content_block_start", "content_block_delta", "content_block_stop", "message_delta", "message_stop")


def check_messages_sse_grammar(events: list[SseEvent]) -> list[str]:
    """Anthropic /v1/messages: message_start, blocks (start, delta*, stop) in index order, message_delta, message_stop."""
    problems: list[str] = []
    names: list[str] = []
    for index, event in enumerate(events):
        data = _json_data(event, index, problems)
        if data is None:
            continue
        if event.event != data.get("type"):
            problems.append(f"event {index}: `event: {event.event}` but data.type is {data.get('type')!r}")
        names.append(str(data.get("type")))
        if data.get("type") == "error":
            problems.append(f"an error event: {event.data[:120]}")
    names = [n for n in names if n != "ping"]
    if not names or names[0] != "message_start":
        problems.append(f"the first event is {names[:1]}, expected message_start")
    if not names or names[-1] != "message_stop":
        problems.append("the stream does not end with message_stop")
    if names.count("message_delta") != 1:
        problems.append(f"{names.count('message_delta')} message_delta events, expected one")
    elif names[-2:] != ["message_delta", "message_stop"]:
        problems.append("message_delta must come just before message_stop")
    open_block = False
    for name in names[1:-2]:
        if name == "content_block_start":
            if open_block:
                problems.append("a content block starts before the previous one stopped")
            open_block = True
        elif name in ("content_block_delta", "content_block_stop"):
            if not open_block:
                problems.append(f"{name} outside a content block")
            elif name == "content_block_stop":
                open_block = False
        else:
            problems.append(f"unexpected event {name!r} between message_start and message_delta")
    if open_block:
        problems.append("a content block was never stopped")
    return problems


def check_responses_sse_grammar(events: list[SseEvent]) -> list[str]:
    """/v1/responses: created, in_progress, ..., completed; increasing sequence_number; event name = data.type."""
    problems: list[str] = []
    names: list[str] = []
    last_seq = -1
    for index, event in enumerate(events):
        if event.data == "[DONE]":
            problems.append("/v1/responses streams carry no [DONE]")
            continue
        data = _json_data(event, index, problems)
        if data is None:
            continue
        if event.event != data.get("type"):
            problems.append(f"event {index}: `event: {event.event}` but data.type is {data.get('type')!r}")
        seq = data.get("sequence_number")
        if not isinstance(seq, int) or seq <= last_seq:
            problems.append(f"event {index}: sequence_number {seq!r} does not increase")
        else:
            last_seq = seq
        names.append(str(data.get("type")))
    if names[:2] != ["response.created", "response.in_progress"]:
        problems.append(f"the stream starts with {names[:2]}, expected response.created, response.in_progress")
    if not names or names[-1] != "response.completed":
        problems.append("the stream does not end with response.completed")
    return problems


def chat_sse_exact_differences(events: list[SseEvent]) -> list[str]:
    """Where an OpenAI chat stream that clients read fine still differs from Ollama ≥ 0.32.6: the finish_reason
    comes in a chunk of its own whose delta is `{}`, after the last content chunk (exact grade only)."""
    chunks = []
    for event in events:
        if event.data == "[DONE]":
            continue
        try:
            chunk = json.loads(event.data)
        except ValueError:
            continue
        if isinstance(chunk, dict) and chunk.get("choices"):
            chunks.append(chunk)
    out: list[str] = []
    if chunks and (chunks[0]["choices"][0].get("delta") or {}).get("role") != "assistant":
        out.append("the first chunk's delta has no role 'assistant', Ollama sends it")
    finishes = [c for c in chunks if c["choices"][0].get("finish_reason") is not None]
    if not finishes:
        return out
    delta = finishes[-1]["choices"][0].get("delta")
    if delta != {}:
        out.append(f"the finish_reason came with delta {json.dumps(delta)[:120]}; Ollama sends it in a separate finish "
                   "chunk with delta {} (since 0.32.6)")
    return out
