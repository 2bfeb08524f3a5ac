"""The NDJSON and SSE parsers: framing across arbitrary byte splits, output detection, server figures."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from ollama_conformance.load.streams import NdjsonParser, SseParser

NATIVE = [
    {"model": "m", "created_at": "t", "message": {"role": "assistant", "content": ""}, "done": False},
    {"model": "m", "created_at": "t", "message": {"role": "assistant", "content": "Hel"}, "done": False},
    {"model": "m", "created_at": "t", "message": {"role": "assistant", "content": "", "thinking": "hm"},
     "done": False},
    {"model": "m", "created_at": "t", "message": {"role": "assistant", "content": "lo"}, "done": False},
    {"model": "m", "created_at": "t", "message": {"role": "assistant", "content": ""}, "done": True,
     "done_reason": "stop", "total_duration": 9, "load_duration": 1, "prompt_eval_count": 3,
     "prompt_eval_duration": 2, "eval_count": 7, "eval_duration": 5},
]
NATIVE_WIRE = b"".join(json.dumps(o).encode() + b"\n" for o in NATIVE)

OPENAI = [
    {"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]},
    {"choices": [{"index": 0, "delta": {"content": "Hi"}, "finish_reason": None}]},
    {"choices": [{"index": 0, "delta": {"reasoning": "x"}, "finish_reason": None}]},
    {"choices": [{"index": 0, "delta": {}, "finish_reason": "length"}]},
    {"choices": [], "usage": {"prompt_tokens": 4, "completion_tokens": 6, "total_tokens": 10}},
]
SSE_WIRE = b"".join(b"data: " + json.dumps(o).encode() + b"\r\n\r\n" for o in OPENAI) + b": keep-alive\n\ndata: [DONE]\n\n"


def feed_split(parser: NdjsonParser | SseParser, wire: bytes, cuts: list[int]) -> None:
    points = sorted({c % (len(wire) + 1) for c in cuts})
    start = 0
    for i, point in enumerate([*points, len(wire)]):
        parser.feed(wire[start:point], 1000 + i)
        start = point
    parser.close(10_000)


def test_ndjson_whole_stream() -> None:
    p = NdjsonParser()
    p.feed(NATIVE_WIRE, 5)
    p.close(6)
    st_ = p.state
    assert len(st_.chunks) == 5
    assert [c[1] for c in st_.chunks] == [0, None, None, None, 0]  # output chunks: content and thinking
    assert st_.output_chunks == 3
    assert st_.done and st_.done_reason == "stop"
    assert st_.server == {"total_duration": 9, "load_duration": 1, "prompt_eval_count": 3,
                          "prompt_eval_duration": 2, "eval_count": 7, "eval_duration": 5}
    assert st_.error is None


def test_ndjson_stamps_each_event_with_the_block_that_completed_it() -> None:
    p = NdjsonParser()
    first = json.dumps(NATIVE[1]).encode() + b"\n"
    p.feed(first[:10], 100)
    p.feed(first[10:] + json.dumps(NATIVE[3]).encode()[:5], 200)
    p.feed(json.dumps(NATIVE[3]).encode()[5:] + b"\n", 300)
    assert p.state.chunks == [[200, None], [300, None]]
    assert p.state.first_output_ns == 200 and p.state.last_output_ns == 300


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=4000), max_size=12))
def test_ndjson_any_split_gives_the_same_events(cuts: list[int]) -> None:
    p = NdjsonParser()
    feed_split(p, NATIVE_WIRE, cuts)
    assert p.state.output_chunks == 3 and p.state.done and p.state.server["eval_count"] == 7
    assert p.state.error is None


def test_ndjson_garbage_and_error_objects_are_reported() -> None:
    p = NdjsonParser()
    p.feed(b'{"response":"a","done":false}\nnot json\n{"error":"boom"}\n', 1)
    assert p.state.error is not None and "invalid NDJSON" in p.state.error
    q = NdjsonParser()
    q.feed(b'{"error":"model not found"}\n', 1)
    assert q.state.error == "server error in stream: model not found" and not q.state.done


def test_sse_whole_stream() -> None:
    p = SseParser()
    p.feed(SSE_WIRE, 7)
    p.close(8)
    s = p.state
    assert s.done and s.done_reason == "length"
    assert s.output_chunks == 2  # the role-only opening chunk is not output; reasoning is
    assert s.usage == {"prompt_tokens": 4, "completion_tokens": 6, "total_tokens": 10}
    assert s.chunks[-1] == [7, 0]  # the usage chunk carries no output, whatever its count


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=4000), max_size=12))
def test_sse_any_split_gives_the_same_events(cuts: list[int]) -> None:
    p = SseParser()
    feed_split(p, SSE_WIRE, cuts)
    assert p.state.output_chunks == 2 and p.state.done and p.state.usage["completion_tokens"] == 6
    assert p.state.error is None


def test_sse_continuous_usage_gives_per_chunk_token_counts() -> None:
    events = [
        {"choices": [{"delta": {"content": "ab"}}], "usage": {"completion_tokens": 2}},
        {"choices": [{"delta": {"content": "cde"}}], "usage": {"completion_tokens": 5}},
        {"choices": [{"delta": {}, "finish_reason": "stop"}], "usage": {"completion_tokens": 5}},
    ]
    p = SseParser()
    for i, e in enumerate(events):
        p.feed(b"data: " + json.dumps(e).encode() + b"\n\n", i)
    p.feed(b"data: [DONE]\n\n", 9)
    assert [c[1] for c in p.state.chunks] == [2, 3, 0]


def test_sse_multiline_data_and_tool_calls() -> None:
    p = SseParser()
    p.feed(b'data: {"choices":[{"delta":\ndata: {"tool_calls":[{"id":"1"}]}}]}\n\n', 3)
    assert p.state.output_chunks == 1 and p.state.first_output_ns == 3
