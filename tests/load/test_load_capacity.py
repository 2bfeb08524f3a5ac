"""`bench --find-max-rate`: the bounded search, and the capacity it finds against a synthetic server of known capacity."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from ollama_conformance.load.capacity import SearchOptions, find_max_rate, wilson

SCHEMA = json.loads((Path(__file__).resolve().parents[2] / "load" / "results.schema.json").read_text())


def step_at(limit: float, n: int = 200):
    """A step whose requests all meet the SLO below `limit` req/s and none above (the search's logic alone)."""
    calls: list[float] = []

    def run(rate: float) -> dict[str, Any]:
        calls.append(rate)
        return {"name": f"rate={rate:.4g}", "slo": {"met": n if rate <= limit else 0, "measured": n}}

    return run, calls


def test_wilson_interval() -> None:
    lo, hi = wilson(45, 50)
    assert 0.78 < lo < 0.8 and 0.95 < hi < 0.97
    assert wilson(0, 0) == (0.0, 1.0)


def test_search_brackets_the_limit_within_the_tolerance() -> None:
    run, calls = step_at(37.0)
    r = find_max_rate(run, SearchOptions(start_rps=1.0, tolerance=0.05))
    assert r.converged and r.max_rate_rps is not None and r.lowest_failing_rps is not None
    assert r.max_rate_rps <= 37.0 < r.lowest_failing_rps and r.relative_uncertainty <= 0.05
    assert calls[:7] == [1, 2, 4, 8, 16, 32, 64]


def test_search_goes_down_when_the_start_fails_and_stops_at_its_bounds() -> None:
    run, calls = step_at(0.3)
    r = find_max_rate(run, SearchOptions(start_rps=4.0, tolerance=0.1))
    assert calls[:5] == [4, 2, 1, 0.5, 0.25] and r.max_rate_rps is not None and r.max_rate_rps <= 0.3
    run, _ = step_at(1e9)
    r = find_max_rate(run, SearchOptions(start_rps=1.0, max_rps=8.0))
    assert r.max_rate_rps == 8.0 and r.lowest_failing_rps is None and "max-rate" in r.stopped_because
    run, _ = step_at(0.0)
    r = find_max_rate(run, SearchOptions(start_rps=1.0, min_rps=0.1))
    assert r.max_rate_rps is None and "fails even at" in r.stopped_because


def test_search_stops_before_overrunning_its_budget() -> None:
    import time

    run, _calls = step_at(37.0)

    def slow(rate: float) -> dict[str, Any]:
        time.sleep(0.05)
        return run(rate)

    r = find_max_rate(slow, SearchOptions(start_rps=1.0, budget_s=0.3, tolerance=0.01))
    assert "time budget" in r.stopped_because and not r.converged and len(r.probes) >= 1
    # a probe starts only when the longest one so far still fits: the overrun is at most one probe's jitter
    walls = [p.wall_s for p in r.probes]
    assert sum(walls) <= 0.3 + max(walls)


def test_find_max_rate_finds_the_synthetic_servers_capacity(synthetic, bench) -> None:
    # 2 slots, each busy 200 ms + 4 x 50 ms = 400 ms per request: capacity 2 / 0.4 = 5 requests/s. With constant
    # arrivals nothing queues below it; above it the queue (and TTFT) grows without bound. The SLO leaves 150 ms
    # over the 200 ms first chunk, room for a busy machine's late sends (counted in TTFT from the intended start).
    server = synthetic("--slots", "2", "--ttft-ms", "200", "--chunks", "5", "--per-token-ms", "25",
                       "--tokens-per-chunk", "2")
    capacity = 2 / 0.400
    run = bench(target=server.url, surface="openai", arrival="constant", slo={"ttft_ms": 350.0}, duration_s=4.0,
                warmup_s=0.5, find_max_rate=True,
                search=SearchOptions(start_rps=3.0, goodput_fraction=0.8, tolerance=0.08, budget_s=200.0))
    assert run.status == 0
    jsonschema.validate(run.results, SCHEMA)
    c = run.results["capacity"]
    assert c["max_rate_rps"] is not None, c
    assert abs(c["max_rate_rps"] / capacity - 1) <= 0.10, c
    assert c["lowest_failing_rps"] is None or c["lowest_failing_rps"] >= 0.95 * capacity, c
    assert [p["step"] for p in c["probes"]] == [s["name"] for s in run.results["steps"]]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [({"find_max_rate": True}, "needs --slo"),
     ({"find_max_rate": True, "slo": {"ttft_ms": 100.0}, "search": SearchOptions(goodput_fraction=1.5)},
      "--goodput-fraction")],
)
def test_search_usage_errors(bench, overrides: dict[str, Any], message: str) -> None:
    from ollama_conformance.errors import UsageError

    with pytest.raises(UsageError, match=message):
        bench(target="http://127.0.0.1:9", **overrides)
