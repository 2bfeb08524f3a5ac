"""The whole harness (locust child processes, client, samples, metrics, results.json) against the synthetic server.

The synthetic server's schedule is the ground truth; tolerances cover real scheduling jitter on a busy shared
machine (a few ms), never a wrong definition (which would be off by whole chunk intervals or token counts).
"""

from __future__ import annotations

import itertools
import json
import sys
from pathlib import Path

import jsonschema
import pytest

from ollama_conformance.load.telemetry import nvml_probe

SCHEMA = json.loads((Path(__file__).resolve().parents[2] / "load" / "results.schema.json").read_text())
SAMPLE_KEYS = {"step", "warmup", "status", "error", "intended_start_ns", "start_ns", "first_byte_ns",
               "first_output_ns", "end_ns", "output_tokens", "ttft_ms", "itl_ms", "e2e_ms", "chunks"}
JITTER_MS = 25.0


CLOCK_MAPPING_TOLERANCE_NS = 50_000


@pytest.mark.parametrize("surface", ["native", "openai"])
def test_metrics_on_a_known_schedule_with_multi_token_chunks(synthetic, bench, surface) -> None:
    server = synthetic("--ttft-ms", "100", "--interval-ms", "10", "--chunks", "6", "--tokens-per-chunk", "3")
    run = bench(target=server.url, surface=surface, concurrency=[2], duration_s=1.5, server_pid=server.pid)
    assert run.status == 0
    jsonschema.validate(run.results, SCHEMA)
    step = run.results["steps"][0]
    assert step["requests"]["error"] == 0 and step["requests"]["ok"] >= 4
    m = step["metrics"]
    assert 100.0 <= m["ttft_ms"]["p50"] <= 100.0 + JITTER_MS
    # Exactness per request, against the server's own send stamps (x_sent_ns, same monotonic clock), so that a
    # busy machine delaying the server cannot fail a correct definition: ITL = (last - first) / (N_out - 1) with
    # N_out = 6 chunks x 3 tokens = 18 from the server, never the 6 chunks.
    itl_diffs, gap_diffs = [], []
    for s in run.step_samples():
        stamps = s["server_stamps"]
        assert len(stamps) == 6
        server_itl = (stamps[-1][1] - stamps[0][1]) / 17 / 1e6
        itl_diffs.append(abs(s["itl_ms"] - server_itl))
        gap_diffs += [abs((b[0] - a[0]) - (b[1] - a[1])) / 1e6 for a, b in itertools.pairwise(stamps)]
        assert s["ttft_ms"] >= (stamps[0][1] - s["server_arrived_ns"]) / 1e6
        # on Linux every read carries the kernel's arrival time, never later than the process saw the bytes
        assert s["stamps_from"] == ("kernel" if sys.platform.startswith("linux") else "process")
        assert s["read_delay_max_ms"] >= 0.0
        # arrival after the server's send, on the one clock, up to the error of mapping the kernel's
        # CLOCK_REALTIME stamp onto perf_counter (two adjacent clock reads: well under 50 µs)
        assert all(rx >= tx - CLOCK_MAPPING_TOLERANCE_NS for rx, tx in stamps)
    assert sorted(itl_diffs)[len(itl_diffs) // 2] < 0.3
    assert sorted(gap_diffs)[len(gap_diffs) // 2] < 2.0
    assert m["icl_ms"]["n"] == 5 * m["ttft_ms"]["n"]
    assert m["output_tokens"]["min"] == m["output_tokens"]["max"] == 18
    assert m["tokens_per_output_chunk"]["p50"] == 3.0
    for s in run.step_samples():
        assert s.keys() >= SAMPLE_KEYS
        assert s["output_tokens_source"] == ("eval_count" if surface == "native" else "usage")
        assert s["output_chunks"] == 6
    if surface == "native":
        assert m["server_decode_tokens_per_s"]["n"] == m["ttft_ms"]["n"]
        assert m["overhead_ms"]["p50"] is not None and m["overhead_ms"]["p50"] > -JITTER_MS


def test_warmup_requests_are_kept_but_excluded(synthetic, bench) -> None:
    server = synthetic("--ttft-ms", "20", "--interval-ms", "5", "--chunks", "4", "--tokens-per-chunk", "1")
    run = bench(target=server.url, concurrency=[1], duration_s=1.0, warmup_s=1.0)
    warm = [s for s in run.samples if s["warmup"]]
    measured = [s for s in run.samples if not s["warmup"]]
    assert warm and measured
    assert run.results["steps"][0]["requests"]["ok"] == len(measured)
    assert all(s["intended_start_ns"] - s["t0_ns"] < 1e9 for s in warm)
    assert all(s["intended_start_ns"] - s["t0_ns"] >= 1e9 for s in measured)


def test_errors_and_drops_are_counted_not_crashed_on(synthetic, bench) -> None:
    server = synthetic("--ttft-ms", "10", "--interval-ms", "5", "--chunks", "3", "--error-every", "3",
                       "--drop-every", "5")
    run = bench(target=server.url, concurrency=[2], duration_s=1.5)
    assert run.status == 0
    req = run.results["steps"][0]["requests"]
    assert req["ok"] > 0 and req["error"] > 0
    errors = [s["error"] for s in run.samples if s["status"] == "error"]
    assert any("HTTP 500: synthetic failure" in e for e in errors)
    assert any("closed" in e or "ended before" in e or "Error" in e for e in errors if "HTTP 500" not in e)


def test_a_stalled_stream_is_a_timeout(synthetic, bench) -> None:
    server = synthetic("--ttft-ms", "10", "--interval-ms", "5", "--chunks", "3", "--stall-every", "2",
                       "--stall-s", "30")
    run = bench(target=server.url, concurrency=[1], requests=3, duration_s=None, request_timeout_s=1.0)
    req = run.results["steps"][0]["requests"]
    assert req["timeout"] >= 1 and req["ok"] >= 1
    assert any("no data for 1 s" in (s["error"] or "") for s in run.samples)


def test_open_loop_rate_records_intended_starts(synthetic, bench) -> None:
    server = synthetic("--ttft-ms", "10", "--interval-ms", "5", "--chunks", "3")
    run = bench(target=server.url, rate=[20.0], arrival="constant", duration_s=2.0)
    step = run.results["steps"][0]
    assert step["mode"] == "rate" and step["name"] == "rate=20"
    rows = sorted(run.step_samples(), key=lambda s: s["intended_start_ns"])
    assert 30 <= len(rows) <= 42
    gaps = [(b["intended_start_ns"] - a["intended_start_ns"]) / 1e6 for a, b in itertools.pairwise(rows)]
    assert all(g == pytest.approx(50.0, abs=0.01) for g in gaps)  # constant arrivals: exactly 1/rate apart
    assert step["metrics"]["send_lateness_ms"]["n"] == len(rows)
    assert step["metrics"]["send_lateness_ms"]["min"] >= 0.0


def test_goodput_and_sweep_over_concurrency(synthetic, bench) -> None:
    server = synthetic("--ttft-ms", "30", "--interval-ms", "5", "--chunks", "3")
    run = bench(target=server.url, concurrency=[1, 3], duration_s=1.0, slo={"ttft_ms": 1000.0, "e2e_ms": 1.0})
    names = [s["name"] for s in run.results["steps"]]
    assert names == ["concurrency=1", "concurrency=3"]
    for step in run.results["steps"]:
        assert step["metrics"]["goodput_rps"] == 0.0  # no request can finish within 1 ms


def test_telemetry_without_a_gpu_records_why_and_samples_rss(synthetic, bench) -> None:
    server = synthetic("--ttft-ms", "10", "--interval-ms", "5", "--chunks", "3")
    run = bench(target=server.url, concurrency=[1], duration_s=1.0, server_pid=server.pid)
    tel = run.results["telemetry"]
    nv, reason = nvml_probe()
    if nv is None:
        assert tel["gpu"]["available"] is False and tel["gpu"]["reason"] == reason and tel["gpu"]["samples"] == []
    else:
        assert tel["gpu"]["available"] is True and tel["gpu"]["samples"]
    assert tel["rss"]["pid"] == server.pid and tel["rss"]["samples"]
    assert all(b > 1_000_000 for _, b in tel["rss"]["samples"])
    assert tel["ps"] and tel["ps"][0][1] == 0  # the synthetic server reports size_vram 0
    harness = run.results["harness"]
    assert 0.0 < harness["client_cpu_percent"] < 400.0 and harness["loop_lag_ms"]["n"] > 0


def test_open_loop_over_two_workers_draws_independent_arrivals(synthetic, bench) -> None:
    server = synthetic("--ttft-ms", "10", "--interval-ms", "5", "--chunks", "3")
    run = bench(target=server.url, rate=[10.0], arrival="poisson", duration_s=2.0, workers=2, seed=3)
    step = run.results["steps"][0]
    assert len(step["workers"]) == 2 and step["requests"]["ok"] > 0
    offsets = {w: [s["intended_start_ns"] - s["t0_ns"] for s in run.samples if s["worker"] == w]
               for w in step["workers"]}
    first, second = offsets.values()
    assert first and second and first != second  # each worker its own seeded schedule, not the same one twice


@pytest.mark.parametrize("surface", ["native", "openai"])
def test_garbage_in_a_stream_is_an_error_of_that_request(synthetic, bench, surface) -> None:
    server = synthetic("--ttft-ms", "10", "--interval-ms", "5", "--chunks", "3", "--garbage-every", "2")
    run = bench(target=server.url, surface=surface, concurrency=[1], requests=4, duration_s=None)
    req = run.results["steps"][0]["requests"]
    assert req["ok"] >= 1 and req["error"] >= 1
    assert all("invalid" in s["error"] for s in run.samples if s["status"] == "error")
