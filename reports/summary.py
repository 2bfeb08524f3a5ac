"""The numbers every report shows, computed once from results files: the JSON summary is this, serialised.

Conformance rates count `pass / (pass + fail + inconclusive + error)`: a not-applicable test is left out (a
precondition that is not the feature under test is missing), an error counts against the target (the harness could
not get an answer), and so does an inconclusive one (a probe that did not get what it needs never raises a rate).
Each rate exists for two grades: *compatible* (`status`: what gates) and *exact* (`exact_status`, results v2). Counts are recomputed
from the per-test rows, not copied from the writer's own summary.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any

from ollama_conformance import __version__
from ollama_conformance.reports.clients import clients_of
from ollama_conformance.reports.results import STATUSES, BenchResults, CheckResults, ResultSet, finite
from ollama_conformance.vocabulary import LEVELS, SUMMARY_KIND

SUMMARY_SCHEMA_VERSION = 1
# The latency figures shown per step (metric key in results.json, percentiles shown).
NOT_PASSED = ("fail", "error", "inconclusive")  # applicable results that lower a rate
KEY_LATENCY = (("ttft_ms", ("p50", "p90", "p99")), ("itl_ms", ("p50", "p90")), ("e2e_ms", ("p50", "p90")))


def counts(tests: list[dict[str, Any]]) -> dict[str, int]:
    c = Counter(str(t.get("status")) for t in tests)
    return {status: c.get(status, 0) for status in STATUSES}


def exact_counts(tests: list[dict[str, Any]]) -> dict[str, int]:
    """Counts of the exact grade; a test without `exact_status` (results v1) counts by its own status."""
    c = Counter(str(t.get("exact_status") or t.get("status")) for t in tests)
    return {status: c.get(status, 0) for status in STATUSES}


def pass_rate(c: dict[str, int]) -> float | None:
    """pass / (pass + fail + inconclusive + error); None when nothing applicable ran."""
    applicable = c["pass"] + c["fail"] + c.get("inconclusive", 0) + c["error"]
    return c["pass"] / applicable if applicable else None


def feature_status(statuses: list[str]) -> str:
    """One state per feature: the worst of fail, error, inconclusive, pass; else n/a."""
    for state in ("fail", "error", "inconclusive", "pass"):
        if state in statuses:
            return state
    return "not_applicable"


def _level_order(level: str) -> int:
    return LEVELS.index(level) if level in LEVELS else len(LEVELS)


def features(tests: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (feature, surface): its level, combined status, test counts and the first failure message."""
    grouped: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for test in tests:
        grouped[(str(test.get("feature") or "?"), str(test.get("surface") or "?"))].append(test)
    rows = []
    for (feature, surface), members in grouped.items():
        statuses = [str(t.get("status")) for t in members]
        bad = [t for t in members if t.get("status") in NOT_PASSED]
        reason = next((str(t.get("message") or "") for t in bad if t.get("message")), "")
        if not reason:
            reason = next((str(t.get("message") or "") for t in members if t.get("message")), "")
        rows.append(
            {
                "feature": feature,
                "surface": surface,
                "level": str(members[0].get("level") or "?"),
                "status": feature_status(statuses),
                "exact_status": feature_status([str(t.get("exact_status") or t.get("status")) for t in members]),
                "exact_reason": next((str(t.get("exact_message")) for t in members if t.get("exact_message")), ""),
                "counts": counts(members),
                "reason": reason,
                "tests": [str(t.get("id")) for t in members],
                # the servers its tests ran on, when the results fold several (`run` on the reference backend)
                "targets": sorted({str(t["target"]) for t in members if t.get("target")}),
            }
        )
    rows.sort(key=lambda r: (_level_order(r["level"]), r["feature"], r["surface"]))
    return rows


def check_summary(check: CheckResults) -> dict[str, Any]:
    tests = check.tests
    by_level = {}
    for level in LEVELS:
        c = counts([t for t in tests if t.get("level") == level])
        by_level[level] = {**c, "rate": pass_rate(c)}
    surfaces = sorted({str(t.get("surface") or "?") for t in tests})
    by_surface = {}
    for surface in surfaces:
        c = counts([t for t in tests if str(t.get("surface") or "?") == surface])
        by_surface[surface] = {**c, "rate": pass_rate(c)}
    total = counts(tests)
    graded = any("exact_status" in t for t in tests)
    exact_by_level = None
    if graded:
        exact_by_level = {}
        for level in LEVELS:
            c = exact_counts([t for t in tests if t.get("level") == level])
            exact_by_level[level] = {**c, "rate": pass_rate(c)}
    failures = [
        {k: t.get(k) for k in ("id", "feature", "level", "surface", "status", "message", "curl", "target")}
        for t in tests
        if t.get("status") in NOT_PASSED
    ]
    failures.sort(key=lambda f: (_level_order(str(f["level"])), str(f["feature"]), str(f["id"])))
    return {
        "source": str(check.path),
        "started_at": check.raw.get("started_at"),
        "duration_s": check.raw.get("duration_s"),
        "spec_version": check.raw.get("spec_version"),
        "target": check.target,
        "targets": list(check.raw.get("targets") or []),  # the servers a folded run checked (check_parts.fold)
        "total": {**total, "rate": pass_rate(total)},
        "by_level": by_level,
        "by_surface": by_surface,
        "exact_by_level": exact_by_level,  # None for results without grades (v1)
        "surfaces": dict(check.raw.get("surfaces") or {}),  # present / absent (with evidence) / not_selected
        "gate": check.raw.get("gate"),
        "clients": clients_of(check.raw),  # official clients' probes (check --clients), [] when not run
        "features": features(tests),
        "failures": failures,
    }


def _dist(metrics: dict[str, Any], key: str) -> dict[str, float | None]:
    raw = metrics.get(key)
    if not isinstance(raw, dict):
        return {}
    return {k: finite(v) for k, v in raw.items()}


def bench_summary(bench: BenchResults) -> dict[str, Any]:
    steps = []
    for step in bench.steps:
        metrics = dict(step.get("metrics") or {})
        latency = {key: {p: _dist(metrics, key).get(p) for p in pcts} for key, pcts in KEY_LATENCY}
        steps.append(
            {
                "name": step.get("name"),
                "mode": step.get("mode"),
                "value": finite(step.get("value")),
                "window_s": finite(step.get("window_s")),
                "requests": dict(step.get("requests") or {}),
                "latency": latency,
                "output_tokens_per_s": finite(metrics.get("output_tokens_per_s")),
                "requests_per_s": finite(metrics.get("requests_per_s")),
                "goodput_rps": finite(metrics.get("goodput_rps")),
                "server_decode_tokens_per_s_p50": _dist(metrics, "server_decode_tokens_per_s").get("p50"),
                # where N_out came from (eval_count / usage / chunks), and connection retries (load harness)
                "output_tokens_source": dict(step.get("output_tokens_source") or {}),
                "connections": dict(step.get("connections") or {}),
                "parallelism": _parallelism(bench, step, metrics),
            }
        )
    telemetry = dict(bench.raw.get("telemetry") or {})
    gpu = dict(telemetry.get("gpu") or {})
    rss_samples = (telemetry.get("rss") or {}).get("samples") or []
    rss_values = [finite(s[1]) for s in rss_samples if isinstance(s, list | tuple) and len(s) >= 2]
    rss_values = [v for v in rss_values if v is not None]
    return {
        "source": str(bench.path),
        "started_at": bench.raw.get("started_at"),
        "target": bench.target,
        "model": bench.raw.get("model"),
        "hardware": bench.raw.get("hardware"),
        "config": bench.raw.get("config"),
        "steps": steps,
        "gpu": {"available": bool(gpu.get("available")), "reason": gpu.get("reason")},
        "rss_peak_bytes": max(rss_values) if rss_values else None,
        "warnings": list((bench.raw.get("harness") or {}).get("warnings") or []),
        "parallelism": parallelism_statement(steps),
    }


def _parallelism(bench: BenchResults, step: dict[str, Any], metrics: dict[str, Any]) -> dict[str, Any] | None:
    """Streams decoded together in one step (load.metrics.parallelism): from the results, or, for results written
    before it was measured, from the step's raw samples; None when neither is there."""
    found = metrics.get("parallelism")
    if isinstance(found, dict) and found.get("max") is not None:
        return dict(found)
    samples = bench.step_samples(str(step.get("name")))
    if not samples:
        return None
    from ollama_conformance.load.metrics import parallelism

    return parallelism(samples)


def quoted(answers: list[str] | str) -> str:
    """The not-applicable reasons a folded run's part answers, quoted: “needs the cloud profile” or “…”."""
    return " or ".join(f"“{a}”" for a in ([answers] if isinstance(answers, str) else answers))


def parallelism_statement(steps: list[dict[str, Any]]) -> str:
    """One sentence: the server's parallelism as measured, and where it was below the concurrency offered."""
    measured = [(s, s["parallelism"]) for s in steps if s.get("parallelism") and s["parallelism"].get("requests")]
    if not measured:
        return "Parallelism: not measured (no request produced two outputs)."
    peak = max(p["max"] for _, p in measured)
    per_step = "; ".join(
        f"{s['name']}: max {p['max']}" + (f", mean {p['mean']:.2f}" if p.get("mean") is not None else "")
        for s, p in measured
    )
    text = (f"Parallelism (measured from the timing, overlapping [first output, last output] of the requests): the "
            f"server decoded at most {peak} stream{'s' if peak != 1 else ''} together ({per_step}).")
    queued = [s for s, p in measured if s.get("mode") == "concurrency" and s.get("value") and p["max"] < s["value"]]
    if queued:
        names = ", ".join(str(s["name"]) for s in queued)
        text += f" At {names} more requests were in flight than it decoded: the others waited in its queue."
    return text


def build_summary(results: ResultSet) -> dict[str, Any]:
    return {
        "kind": SUMMARY_KIND,
        "schema_version": SUMMARY_SCHEMA_VERSION,
        "tool_version": __version__,
        "conformance": [check_summary(c) for c in results.checks],
        "performance": [bench_summary(b) for b in results.benches],
    }


def exact_badge_rates(summary: dict[str, Any]) -> dict[str, float | None]:
    """The exact-grade rates of the first conformance results ({} when they carry no grades)."""
    if not summary["conformance"] or not summary["conformance"][0].get("exact_by_level"):
        return {}
    return {level: summary["conformance"][0]["exact_by_level"][level]["rate"] for level in LEVELS}


def badge_rates(summary: dict[str, Any]) -> dict[str, float | None]:
    """MUST/SHOULD/MAY pass rates of the first conformance results in a summary (what the badge shows)."""
    if not summary["conformance"]:
        return {}
    return {level: summary["conformance"][0]["by_level"][level]["rate"] for level in LEVELS}
