"""Parallelism measured from the timing (load.metrics.parallelism) and stated in every report's benchmark section.

A legal variant must be counted (streams whose decode intervals overlap) and a dodge must not (queued requests
that arrive together but are decoded one after the other: touching intervals are not overlap)."""

from __future__ import annotations

from ollama_conformance.load.metrics import parallelism
from ollama_conformance.reports.summary import parallelism_statement

MS = 1_000_000


def sample(first_ms: float, last_ms: float) -> dict:
    return {"status": "ok", "first_output_ns": int(first_ms * MS), "last_output_ns": int(last_ms * MS)}


def test_two_streams_decoded_together_count_two() -> None:
    got = parallelism([sample(0, 100), sample(10, 110), sample(200, 300), sample(210, 310)])
    assert got["max"] == 2 and got["requests"] == 4
    assert 1.8 < got["mean"] < 1.9  # 180 ms of 220 busy ms with two open


def test_a_queue_decodes_one_at_a_time_whatever_was_in_flight() -> None:
    # a one-slot server: both requests were sent at once, the second's first output comes after the first's last
    got = parallelism([sample(0, 100), sample(100, 200), sample(200, 300)])
    assert got == {"max": 1, "mean": 1.0, "requests": 3}


def test_requests_without_a_decode_interval_are_left_out() -> None:
    got = parallelism([sample(0, 0), {"status": "ok", "first_output_ns": None, "last_output_ns": None}])
    assert got == {"max": 0, "mean": None, "requests": 0}


def step(name: str, value: int, measured: dict | None) -> dict:
    return {"name": name, "mode": "concurrency", "value": value, "parallelism": measured}


def test_the_statement_says_when_requests_queued() -> None:
    one_slot = parallelism_statement([step("concurrency=1", 1, {"max": 1, "mean": 1.0, "requests": 10}),
                                      step("concurrency=2", 2, {"max": 1, "mean": 1.0, "requests": 10})])
    assert "decoded at most 1 stream together" in one_slot
    assert "At concurrency=2 more requests were in flight than it decoded" in one_slot
    two_slots = parallelism_statement([step("concurrency=2", 2, {"max": 2, "mean": 1.98, "requests": 10})])
    assert "decoded at most 2 streams together" in two_slots and "waited" not in two_slots
    assert parallelism_statement([step("concurrency=1", 1, None)]).startswith("Parallelism: not measured")
