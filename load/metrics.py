"""Metrics of the glossary (docs in ../shared/DESIGN.md, "Load metrics"), computed from raw per-request samples.

Per request (`request_metrics`): TTFT from the intended start to the first output chunk; ITL =
(t_last_output - t_first_output) / (N_out - 1) with N_out from the server (`eval_count`, `usage.completion_tokens`);
ICL = raw gaps between output chunks; E2E from the intended start to the last byte; send lateness = actual start -
intended start; overhead = client time from the actual send to the last byte - server `total_duration`.
Per step (`step_metrics`): distributions (`dist`) of those, throughputs over the measurement window, goodput
against the SLOs. Percentiles are numpy's linear interpolation over every raw value, never bucketed.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

PERCENTILES = (50, 90, 95, 99)


def dist(values: Iterable[float | None]) -> dict[str, Any]:
    """`{"n", "mean", "min", "p50", "p90", "p95", "p99", "max"}` over the non-null values (null stats when none)."""
    arr = np.fromiter((v for v in values if v is not None), dtype=np.float64)
    if arr.size == 0:
        return {"n": 0, "mean": None, "min": None, "p50": None, "p90": None, "p95": None, "p99": None, "max": None}
    pct = np.percentile(arr, PERCENTILES)
    out: dict[str, Any] = {"n": int(arr.size), "mean": float(arr.mean()), "min": float(arr.min())}
    for p, v in zip(PERCENTILES, pct, strict=True):
        out[f"p{p}"] = float(v)
    out["max"] = float(arr.max())
    return out


def _ms(later: int | None, earlier: int | None) -> float | None:
    if later is None or earlier is None:
        return None
    return (later - earlier) / 1e6


def output_tokens(server: Mapping[str, int], usage: Mapping[str, int] | None, output_chunks: int) -> tuple[int, str]:
    """N_out and where it came from: the server's `eval_count`, else `usage.completion_tokens`, else the chunk count."""
    if "eval_count" in server:
        return server["eval_count"], "eval_count"
    if usage and "completion_tokens" in usage:
        return usage["completion_tokens"], "usage"
    return output_chunks, "chunks"


def request_metrics(s: Mapping[str, Any]) -> dict[str, Any]:
    """The per-request figures of one sample (fields of load.client.Sample), in ms and tokens/s."""
    intended = s["intended_start_ns"]
    first, last = s.get("first_output_ns"), s.get("last_output_ns")
    n_out = s.get("output_tokens")
    itl = None
    if first is not None and last is not None and n_out is not None and n_out > 1:
        itl = (last - first) / (n_out - 1) / 1e6
    out_times = [t for t, tokens in s.get("chunks") or () if tokens != 0]
    icl = [(b - a) / 1e6 for a, b in itertools.pairwise(out_times)]
    server = s.get("server") or {}
    decode = prefill = overhead = None
    if server.get("eval_duration") and "eval_count" in server:
        decode = server["eval_count"] / server["eval_duration"] * 1e9
    if server.get("prompt_eval_duration") and "prompt_eval_count" in server:
        prefill = server["prompt_eval_count"] / server["prompt_eval_duration"] * 1e9
    if "total_duration" in server and s.get("end_ns") is not None:
        overhead = (s["end_ns"] - s["start_ns"]) / 1e6 - server["total_duration"] / 1e6
    return {
        "ttft_ms": _ms(first, intended),
        "itl_ms": itl,
        "icl_ms": icl,
        "e2e_ms": _ms(s.get("end_ns"), intended),
        "send_lateness_ms": _ms(s["start_ns"], intended),
        "connect_ms": _ms(s.get("connect_end_ns"), s.get("connect_start_ns")),
        "tls_ms": _ms(s.get("tls_end_ns"), s.get("tls_start_ns")),
        "request_written_ms": _ms(s.get("request_written_ns"), intended),
        "first_byte_ms": _ms(s.get("first_byte_ns"), intended),
        "server_decode_tokens_per_s": decode,
        "server_prefill_tokens_per_s": prefill,
        "overhead_ms": overhead,
    }


@dataclass(frozen=True)
class Slo:
    """Service-level objectives: a request is good when it meets every one given (DistServe's goodput)."""

    ttft_ms: float | None = None
    itl_ms: float | None = None
    e2e_ms: float | None = None

    @property
    def given(self) -> bool:
        return any(v is not None for v in (self.ttft_ms, self.itl_ms, self.e2e_ms))

    def met(self, m: Mapping[str, Any]) -> bool:
        for key, limit in (("ttft_ms", self.ttft_ms), ("itl_ms", self.itl_ms), ("e2e_ms", self.e2e_ms)):
            if limit is None:
                continue
            value = m.get(key)
            # a request without the figure (e.g. one output token: no ITL) cannot be shown to miss that SLO
            if value is not None and value > limit:
                return False
        return True


def measured(samples: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Samples inside the measurement window (users send nothing after it): those not flagged as warmup."""
    return [s for s in samples if not s.get("warmup")]


def step_metrics(samples: Sequence[Mapping[str, Any]], warmup_s: float, slo: Slo | None = None) -> dict[str, Any]:
    """The `requests`, `window_s` and `metrics` of one step, from all its samples (warmup ones are excluded here).

    The window starts when warmup ends (each process's own start + warmup, so workers on other machines with
    other clocks merge) and ends at the last byte of the last measured request: every request counted in the
    throughputs lies wholly inside it.
    """
    rows = measured(samples)
    counts = {"ok": 0, "error": 0, "timeout": 0}
    for s in rows:
        counts[s["status"]] = counts.get(s["status"], 0) + 1
    ok = [s for s in rows if s["status"] == "ok"]
    per = [request_metrics(s) for s in ok]
    window_s = 0.0
    ends = [(s["end_ns"] - s["t0_ns"]) / 1e9 - warmup_s for s in rows if s.get("end_ns") is not None]
    if ends:
        window_s = max(max(ends), 1e-9)
    tokens = sum(s.get("output_tokens") or 0 for s in ok)
    goodput = None
    slo_counts = None
    if slo is not None and slo.given:
        good = sum(1 for m in per if slo.met(m))
        goodput = good / window_s if window_s else 0.0
        # requests that succeeded within every SLO, of all measured ones (errors and timeouts are misses)
        slo_counts = {"met": good, "measured": len(rows)}
    metrics: dict[str, Any] = {
        "ttft_ms": dist(m["ttft_ms"] for m in per),
        "itl_ms": dist(m["itl_ms"] for m in per),
        "icl_ms": dist(v for m in per for v in m["icl_ms"]),
        "e2e_ms": dist(m["e2e_ms"] for m in per),
        "output_tokens_per_s": tokens / window_s if window_s else 0.0,
        "requests_per_s": len(ok) / window_s if window_s else 0.0,
        "goodput_rps": goodput,
        "server_decode_tokens_per_s": dist(m["server_decode_tokens_per_s"] for m in per),
        "server_prefill_tokens_per_s": dist(m["server_prefill_tokens_per_s"] for m in per),
        "overhead_ms": dist(m["overhead_ms"] for m in per),
        "send_lateness_ms": dist(request_metrics(s)["send_lateness_ms"] for s in rows),
        "connect_ms": dist(m["connect_ms"] for m in per),
        "tls_ms": dist(m["tls_ms"] for m in per),
        "request_written_ms": dist(m["request_written_ms"] for m in per),
        "first_byte_ms": dist(m["first_byte_ms"] for m in per),
        "output_tokens": dist(s.get("output_tokens") for s in ok),
        # per request, the longest time bytes waited in the kernel before the client read them (client lag)
        "read_delay_max_ms": dist(s.get("read_delay_max_ms") for s in rows),
        # streams the server decoded together, from the timing: overlap of [first output, last output] intervals
        "parallelism": parallelism(ok),
        "tokens_per_output_chunk": dist(
            s["output_tokens"] / s["output_chunks"] for s in ok if s.get("output_chunks") and s.get("output_tokens")
        ),
    }
    return {"requests": counts, "window_s": window_s, "metrics": metrics,
            "output_tokens_source": token_sources(ok), "connections": connection_counts(rows),
            **({"slo": slo_counts} if slo_counts is not None else {})}


def parallelism(ok: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """How many streams the server decoded at the same time, measured rather than configured: each request's
    decode interval is [first output, last output] (perf_counter ns: one machine's clock); `max` is the most
    intervals open at one instant, `mean` the time-weighted average while at least one is open. A server with one
    decode slot queues the others, whose first output comes after the previous last: max 1 at any concurrency.
    Requests with fewer than two outputs have no decode interval and are left out (`requests` counts the rest)."""
    events: list[tuple[int, int]] = []
    for s in ok:
        first, last = s.get("first_output_ns"), s.get("last_output_ns")
        if first is not None and last is not None and last > first:
            events += [(int(first), 1), (int(last), -1)]
    events.sort()  # at equal times the end (-1) sorts first: touching intervals do not overlap
    open_now = peak = 0
    busy_ns = weighted = 0
    previous: int | None = None
    for at, change in events:
        if previous is not None and open_now > 0:
            busy_ns += at - previous
            weighted += (at - previous) * open_now
        open_now += change
        peak = max(peak, open_now)
        previous = at
    return {"max": peak, "mean": weighted / busy_ns if busy_ns else None, "requests": len(events) // 2}


def token_sources(ok: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    """How many successful requests took N_out from each source (eval_count, usage, chunks): the report says it."""
    out: dict[str, int] = {}
    for s in ok:
        source = s.get("output_tokens_source")
        if source:
            out[source] = out.get(source, 0) + 1
    return out


def connection_counts(rows: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    """Connections of a step: opened, reused, requests retried on a fresh one, idle ones found closed and dropped."""
    out = {"new": 0, "reused": 0, "retries": 0, "stale_discarded": 0, "reuse_turned_off": 0}
    for s in rows:
        if s.get("connection") in ("new", "reused"):
            out[s["connection"]] += 1
        out["retries"] += s.get("retries") or 0
        out["stale_discarded"] += s.get("stale_discarded") or 0
        # clients (users) that found the server closing connections after responses, and stopped reusing them
        out["reuse_turned_off"] += 1 if s.get("reuse_turned_off") else 0
    return out
