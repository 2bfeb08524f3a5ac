"""Incremental parsers for Ollama's NDJSON streams and the OpenAI SSE streams, fed with (bytes, arrival_ns).

The caller stamps `time.perf_counter_ns()` when a block of bytes comes off the socket, before any parsing; every
event completed by that block carries that stamp (the bytes arrived together). A parser never buffers more than
one incomplete line. For each complete event it records whether it carried output (the glossary's rule: non-empty
`response`, `message.content`, `thinking`, `delta.content`, `delta.reasoning`, a tool call) and keeps the server's
own figures from the final object (`eval_count`, durations, `usage`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

SERVER_FIELDS = ("total_duration", "load_duration", "prompt_eval_count", "prompt_eval_duration", "eval_count",
                 "eval_duration")


@dataclass
class StreamState:
    """What a stream has shown so far: chunk arrivals, output, server figures, errors."""

    # [arrival_ns, tokens]: tokens is 0 for a chunk without output, the server's own count for the chunk where it
    # reports one (OpenAI continuous usage), else None (an output chunk whose token count the server does not say)
    chunks: list[list[int | None]] = field(default_factory=list)
    first_output_ns: int | None = None
    last_output_ns: int | None = None
    output_chunks: int = 0
    done: bool = False
    done_reason: str | None = None
    server: dict[str, int] = field(default_factory=dict)
    usage: dict[str, int] | None = None
    error: str | None = None
    # [arrival_ns, server's x_sent_ns] for chunks that carry the synthetic server's send stamp (calibration)
    server_stamps: list[list[int]] = field(default_factory=list)
    server_arrived_ns: int | None = None
    # the answer's text, kept only when asked (a multi-turn workload resends it as the assistant's turn)
    text: list[str] | None = None

    def decode(self, payload: bytes, what: str) -> dict[str, Any] | None:
        """One stream item as a JSON object, or None (and the first error noted) when it is not one."""
        try:
            obj = json.loads(payload)
        except ValueError:
            self.error = self.error or f"invalid {what}: {payload[:80]!r}"
            return None
        if not isinstance(obj, dict):
            self.error = self.error or f"{what} is not an object: {payload[:80]!r}"
            return None
        if "error" in obj:
            self.error = self.error or f"server error in stream: {obj['error']}"
        return obj

    def record(self, obj: dict[str, Any], arrival_ns: int, *, output: bool, tokens: int | None) -> None:
        """A chunk arrived: its time and token count, the calibration stamps, first/last output."""
        self.chunks.append([arrival_ns, tokens])
        if "x_sent_ns" in obj:
            _server_stamps(self, obj, arrival_ns)
        if output:
            self.output_chunks += 1
            if self.first_output_ns is None:
                self.first_output_ns = arrival_ns
            self.last_output_ns = arrival_ns


def _server_stamps(st: StreamState, obj: dict[str, Any], arrival_ns: int) -> None:
    sent = obj.get("x_sent_ns")
    if isinstance(sent, int):
        st.server_stamps.append([arrival_ns, sent])
        arrived = obj.get("x_arrived_ns")
        if isinstance(arrived, int):
            st.server_arrived_ns = arrived


def _native_has_output(obj: dict[str, Any]) -> bool:
    if obj.get("response") or obj.get("thinking"):
        return True
    msg = obj.get("message")
    if isinstance(msg, dict):
        return bool(msg.get("content") or msg.get("thinking") or msg.get("tool_calls"))
    return False


def _openai_has_output(obj: dict[str, Any]) -> bool:
    for choice in obj.get("choices") or ():
        if not isinstance(choice, dict):
            continue
        if choice.get("text"):
            return True
        delta = choice.get("delta")
        if isinstance(delta, dict) and (
            delta.get("content") or delta.get("reasoning") or delta.get("reasoning_content") or delta.get("tool_calls")
        ):
            return True
    return False


class NdjsonParser:
    """Ollama native stream: one JSON object per line; the last has `done: true` and the metrics."""

    def __init__(self) -> None:
        self.state = StreamState()
        self._tail = b""

    def feed(self, data: bytes, arrival_ns: int) -> None:
        buf = self._tail + data if self._tail else data
        lines = buf.split(b"\n")
        self._tail = lines.pop()
        for line in lines:
            if line.strip():
                self._event(line, arrival_ns)

    def close(self, arrival_ns: int) -> None:
        if self._tail.strip():
            self._event(self._tail, arrival_ns)
        self._tail = b""

    def _event(self, line: bytes, arrival_ns: int) -> None:
        st = self.state
        obj = st.decode(line, "NDJSON line")
        if obj is None:
            return
        out = _native_has_output(obj)
        st.record(obj, arrival_ns, output=out, tokens=None if out else 0)
        if out and st.text is not None:
            msg = obj.get("message")
            piece = msg.get("content") if isinstance(msg, dict) else obj.get("response")
            if isinstance(piece, str):
                st.text.append(piece)
        if obj.get("done"):
            st.done = True
            st.done_reason = obj.get("done_reason")
            for key in SERVER_FIELDS:
                value = obj.get(key)
                if isinstance(value, int):
                    st.server[key] = value


class SseParser:
    """OpenAI stream: `data: {...}` events separated by blank lines, ending with `data: [DONE]`."""

    def __init__(self) -> None:
        self.state = StreamState()
        self._tail = b""

    def feed(self, data: bytes, arrival_ns: int) -> None:
        buf = self._tail + data if self._tail else data
        if b"\r" in buf:  # CRLF line ends (a CR split from its LF by a read boundary is rejoined here)
            buf = buf.replace(b"\r\n", b"\n")
        events = buf.split(b"\n\n")
        self._tail = events.pop()
        for event in events:
            if event.startswith(b"data: ") and b"\n" not in event:  # the common case: one data line
                self._event(event[6:], arrival_ns)
            else:
                self._fields(event, arrival_ns)

    def _fields(self, event: bytes, arrival_ns: int) -> None:
        data = []
        for line in event.split(b"\n"):
            if line.startswith(b"data:"):
                value = line[5:]
                data.append(value[1:] if value.startswith(b" ") else value)
            # other fields (event:, id:, retry:) and comments carry nothing we measure
        if data:
            self._event(b"\n".join(data), arrival_ns)

    def close(self, arrival_ns: int) -> None:
        tail = self._tail.replace(b"\r\n", b"\n").strip(b"\n")
        self._tail = b""
        if tail:
            self._fields(tail, arrival_ns)

    def _event(self, payload: bytes, arrival_ns: int) -> None:
        st = self.state
        if payload == b"[DONE]":
            st.done = True
            return
        obj = st.decode(payload, "SSE data")
        if obj is None:
            return
        out = _openai_has_output(obj)
        usage = obj.get("usage")
        tokens: int | None = None if out else 0
        if isinstance(usage, dict) and isinstance(usage.get("completion_tokens"), int):
            seen = st.usage.get("completion_tokens", 0) if st.usage else 0
            if out:
                tokens = usage["completion_tokens"] - seen
            st.usage = {k: v for k, v in usage.items() if isinstance(v, int)}
        st.record(obj, arrival_ns, output=out, tokens=tokens)
        for choice in obj.get("choices") or ():
            if isinstance(choice, dict) and choice.get("finish_reason"):
                st.done_reason = choice["finish_reason"]
            if out and st.text is not None and isinstance(choice, dict):
                delta = choice.get("delta")
                piece = delta.get("content") if isinstance(delta, dict) else choice.get("text")
                if isinstance(piece, str):
                    st.text.append(piece)


def parser_for(sse: bool, keep_text: bool = False) -> NdjsonParser | SseParser:
    parser = SseParser() if sse else NdjsonParser()
    if keep_text:
        parser.state.text = []
    return parser
