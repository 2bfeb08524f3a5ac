"""Micro-benchmarks (pytest-benchmark) of the hot paths: NDJSON and SSE parsing, metric computation.

They print figures under `pytest --benchmark-only tests/load/test_microbench.py`; in the plain test run they are
quick tests that also check the result, never a timed assertion.
"""

from __future__ import annotations

import json

from ollama_conformance.load.metrics import step_metrics
from ollama_conformance.load.streams import NdjsonParser, SseParser

N_CHUNKS = 2000
NDJSON_CHUNK = json.dumps({"model": "gemma3:270m", "created_at": "2026-01-01T00:00:00.000000000Z",
                           "message": {"role": "assistant", "content": " tok tok"}, "done": False}).encode() + b"\n"
NDJSON_FINAL = json.dumps({"model": "gemma3:270m", "created_at": "2026-01-01T00:00:00Z", "message":
                           {"role": "assistant", "content": ""}, "done": True, "done_reason": "length",
                           "total_duration": 5, "eval_count": 2 * N_CHUNKS, "eval_duration": 4}).encode() + b"\n"
SSE_CHUNK = b"data: " + json.dumps({"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 0,
                                    "model": "gemma3:270m", "system_fingerprint": "fp_ollama",
                                    "choices": [{"index": 0, "delta": {"content": " tok tok"},
                                                 "finish_reason": None}]}).encode() + b"\n\n"


def _blocks(wire: bytes, size: int = 4096) -> list[bytes]:
    return [wire[i:i + size] for i in range(0, len(wire), size)]


NDJSON_BLOCKS = _blocks(NDJSON_CHUNK * N_CHUNKS + NDJSON_FINAL)
SSE_BLOCKS = _blocks(SSE_CHUNK * N_CHUNKS + b"data: [DONE]\n\n")


def parse(parser_type: type, blocks: list[bytes]) -> int:
    p = parser_type()
    for i, block in enumerate(blocks):
        p.feed(block, i)
    p.close(len(blocks))
    return p.state.output_chunks


def test_ndjson_parser_throughput(benchmark) -> None:
    assert benchmark(parse, NdjsonParser, NDJSON_BLOCKS) == N_CHUNKS


def test_sse_parser_throughput(benchmark) -> None:
    assert benchmark(parse, SseParser, SSE_BLOCKS) == N_CHUNKS


def test_step_metrics_over_1000_requests(benchmark) -> None:
    ms = 1_000_000
    rows = []
    for r in range(1000):
        t = r * 10 * ms
        arrivals = [t + 200 * ms + i * 20 * ms for i in range(25)]
        rows.append({"t0_ns": 0, "intended_start_ns": t, "start_ns": t, "end_ns": arrivals[-1] + ms,
                     "first_output_ns": arrivals[0], "last_output_ns": arrivals[-1], "status": "ok",
                     "chunks": [[a, None] for a in arrivals], "output_chunks": 25, "output_tokens": 50,
                     "server": {"eval_count": 50, "eval_duration": 480 * ms, "total_duration": 680 * ms}})
    step = benchmark(step_metrics, rows, 0.0)
    assert step["requests"]["ok"] == 1000 and step["metrics"]["icl_ms"]["n"] == 24_000
