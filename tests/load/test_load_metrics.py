"""Metric definitions of the glossary, checked on hand-built samples with exactly known times."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from ollama_conformance.load.metrics import Slo, dist, output_tokens, request_metrics, step_metrics

MS = 1_000_000


def sample(t0: int = 0, intended: int = 0, start: int | None = None, ttft: int = 100, chunks: int = 5,
           gap: int = 10, k: int = 2, status: str = "ok", warmup: bool = False, **extra: Any) -> dict[str, Any]:
    """A request whose first output chunk arrives `ttft` ms after its intended start, then one every `gap` ms."""
    start = intended if start is None else start
    arrivals = [(intended + ttft + i * gap) * MS for i in range(chunks)]
    end = arrivals[-1] + 1 * MS
    s = {"t0_ns": t0 * MS, "intended_start_ns": intended * MS, "start_ns": start * MS, "end_ns": end,
         "first_output_ns": arrivals[0], "last_output_ns": arrivals[-1],
         "chunks": [[a, None] for a in arrivals] + [[end, 0]], "output_chunks": chunks,
         "output_tokens": chunks * k, "status": status, "warmup": warmup,
         "server": {"eval_count": chunks * k, "eval_duration": 50 * MS, "prompt_eval_count": 10,
                    "prompt_eval_duration": 20 * MS, "total_duration": (end - start * MS) - 3 * MS}}
    s.update(extra)
    return s


def test_dist_matches_numpy_and_is_unrounded() -> None:
    values = [147.3, 3432.1, 58760.9, 1.0, 2.5]
    d = dist(values)
    assert d["n"] == 5 and d["min"] == 1.0 and d["max"] == 58760.9
    assert d["p50"] == pytest.approx(147.3) and d["mean"] == pytest.approx(np.mean(values))
    assert d["p99"] == pytest.approx(np.percentile(values, 99))
    assert dist([None, None]) == {"n": 0, "mean": None, "min": None, "p50": None, "p90": None, "p95": None,
                                  "p99": None, "max": None}


def test_multi_token_chunks_itl_uses_server_token_count() -> None:
    m = request_metrics(sample(ttft=200, chunks=25, gap=20, k=2))
    assert m["ttft_ms"] == pytest.approx(200.0)
    # glossary: (t_last - t_first) / (N_out - 1) with N_out = 50 from eval_count, not 25 chunks
    assert m["itl_ms"] == pytest.approx(480.0 / 49)
    assert m["icl_ms"] == pytest.approx([20.0] * 24)
    assert m["e2e_ms"] == pytest.approx(200 + 480 + 1)
    assert m["server_decode_tokens_per_s"] == pytest.approx(50 / 0.05)
    assert m["server_prefill_tokens_per_s"] == pytest.approx(10 / 0.02)
    assert m["overhead_ms"] == pytest.approx(3.0)


def test_open_loop_latency_counts_from_the_intended_start() -> None:
    m = request_metrics(sample(intended=1000, start=1030, ttft=100))
    assert m["send_lateness_ms"] == pytest.approx(30.0)
    assert m["ttft_ms"] == pytest.approx(100.0)  # first output at intended + 100, including the 30 ms late send


def test_token_count_sources() -> None:
    assert output_tokens({"eval_count": 9}, {"completion_tokens": 4}, 3) == (9, "eval_count")
    assert output_tokens({}, {"completion_tokens": 4}, 3) == (4, "usage")
    assert output_tokens({}, None, 3) == (3, "chunks")


def test_single_token_has_no_itl() -> None:
    s = sample(chunks=1, k=1)
    assert request_metrics(s)["itl_ms"] is None


def test_step_excludes_warmup_and_counts_failures() -> None:
    rows = [sample(intended=i * 100, warmup=i < 3) for i in range(10)]
    rows.append(sample(intended=950, status="error", error="HTTP 500: x"))
    rows.append(sample(intended=960, status="timeout", error="slow"))
    step = step_metrics(rows, warmup_s=0.3)
    assert step["requests"] == {"ok": 7, "error": 1, "timeout": 1}
    assert step["metrics"]["ttft_ms"]["n"] == 7
    # window: from warmup end (300 ms) to the last byte of the last measured request (960 + 100 + 40 + 1 ms)
    assert step["window_s"] == pytest.approx((960 + 141 - 300) / 1000)
    assert step["metrics"]["output_tokens_per_s"] == pytest.approx(7 * 10 / step["window_s"])
    assert step["metrics"]["requests_per_s"] == pytest.approx(7 / step["window_s"])
    assert step["metrics"]["goodput_rps"] is None


def test_goodput_counts_requests_meeting_every_slo() -> None:
    rows = [sample(intended=i * 100, ttft=100 + 50 * (i % 2)) for i in range(10)]
    step = step_metrics(rows, 0.0, Slo(ttft_ms=120.0, e2e_ms=10_000.0))
    assert step["metrics"]["goodput_rps"] == pytest.approx(5 / step["window_s"])
    none_good = step_metrics(rows, 0.0, Slo(itl_ms=1.0))
    assert none_good["metrics"]["goodput_rps"] == 0.0


def test_workers_with_different_clocks_merge() -> None:
    # two processes whose perf_counter origins differ by hours: windows are taken relative to each t0
    a = [sample(t0=0, intended=i * 100) for i in range(5)]
    b = [sample(t0=7_200_000, intended=7_200_000 + i * 100) for i in range(5)]
    step = step_metrics(a + b, 0.0)
    assert step["requests"]["ok"] == 10
    assert step["window_s"] == pytest.approx((400 + 141) / 1000)
