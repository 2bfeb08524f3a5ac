"""Compare a baseline run with a candidate run: conformance by test and feature, performance by metric.

A performance regression needs both: the metric moved beyond the threshold in the bad direction (point
estimate), and the bootstrap confidence interval of the ratio excludes 1 (it is not noise). The confidence
level is Bonferroni-corrected over the number of metrics compared, so twenty noisy metrics do not give one
false alarm in three runs. A conformance regression is a test that passed (or was not applicable) and now
fails or errors. Differences that make the two runs not comparable are warnings, never silent.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import numpy as np

from ollama_conformance.reports.results import BenchResults, CheckResults, ResultSet, finite
from ollama_conformance.reports.stats import bootstrap_ratio, quantile_statistic, rate_statistic

COMPARE_KIND = "ollama-conformance.compare"
ALPHA = 0.05
MIN_SAMPLES = 5
# An output-length shift beyond this makes latency figures not comparable (E2E scales with it).
OUTPUT_LENGTH_TOLERANCE = 0.10
BAD = ("fail", "error")
# Bench options that say where things went, not what was measured (the reference backend's port changes each run).
CONFIG_KEYS_NOT_COMPARED = frozenset({"out_dir", "server_pid", "quiet", "target"})


@dataclass(frozen=True)
class MetricSpec:
    key: str  # per-request sample field, or "output_tokens" for the rate
    statistic: str  # "p50", "p90", or "rate"
    lower_is_better: bool

    @property
    def name(self) -> str:
        return "output_tokens_per_s" if self.statistic == "rate" else f"{self.key} {self.statistic}"


METRICS = (
    MetricSpec("ttft_ms", "p50", True),
    MetricSpec("ttft_ms", "p90", True),
    MetricSpec("itl_ms", "p50", True),
    MetricSpec("itl_ms", "p90", True),
    MetricSpec("e2e_ms", "p50", True),
    MetricSpec("e2e_ms", "p90", True),
    MetricSpec("output_tokens", "rate", False),
)


def compare_checks(baseline: CheckResults, candidate: CheckResults) -> dict[str, Any]:
    base = {str(t.get("id")): t for t in baseline.tests}
    cand = {str(t.get("id")): t for t in candidate.tests}
    new_failures, new_passes, still_failing, no_longer_applicable, added_failing = [], [], [], [], []
    for test_id, c in cand.items():
        b = base.get(test_id)
        row = {
            "id": test_id,
            "feature": c.get("feature"),
            "level": c.get("level"),
            "surface": c.get("surface"),
            "baseline": b.get("status") if b else None,
            "candidate": c.get("status"),
            "message": c.get("message") or "",
        }
        if b is None:
            if c.get("status") in BAD:
                added_failing.append(row)
            continue
        if c.get("status") in BAD and b.get("status") not in BAD:
            new_failures.append(row)
        elif c.get("status") == "pass" and b.get("status") in BAD:
            new_passes.append(row)
        elif c.get("status") in BAD:
            still_failing.append(row)
        elif c.get("status") == "not_applicable" and b.get("status") == "pass":
            no_longer_applicable.append(row)
    by_feature: dict[str, dict[str, list[str]]] = defaultdict(lambda: {"new_failures": [], "new_passes": []})
    for row in new_failures:
        by_feature[str(row["feature"])]["new_failures"].append(row["id"])
    for row in new_passes:
        by_feature[str(row["feature"])]["new_passes"].append(row["id"])
    return {
        "baseline": str(baseline.path),
        "candidate": str(candidate.path),
        "new_failures": new_failures,
        "new_passes": new_passes,
        "still_failing": still_failing,
        "no_longer_applicable": no_longer_applicable,
        "added": sorted(set(cand) - set(base)),
        "added_failing": added_failing,
        "removed": sorted(set(base) - set(cand)),
        "by_feature": dict(sorted(by_feature.items())),
        "regression": bool(new_failures),
    }


def _values(samples: list[dict[str, Any]], key: str) -> np.ndarray:
    values = [finite(s.get(key)) for s in samples]
    return np.asarray([v for v in values if v is not None], dtype=float)


def _steps_by_name(bench: BenchResults) -> dict[str, dict[str, Any]]:
    return {str(s.get("name")): s for s in bench.steps}


def _error_fraction(step: dict[str, Any]) -> float | None:
    req = step.get("requests") or {}
    ok, err, timeout = (int(req.get(k) or 0) for k in ("ok", "error", "timeout"))
    total = ok + err + timeout
    return (err + timeout) / total if total else None


def compare_benches(
    baseline: BenchResults, candidate: BenchResults, threshold: float, warnings: list[str]
) -> dict[str, Any]:
    base_steps, cand_steps = _steps_by_name(baseline), _steps_by_name(candidate)
    common = [name for name in base_steps if name in cand_steps]
    if not common:
        warnings.append("the two benchmarks share no step name: no performance metric could be compared")
    for name in sorted(set(base_steps) ^ set(cand_steps)):
        warnings.append(f"step {name!r} is in only one of the two benchmarks")
    if not baseline.samples or not candidate.samples:
        missing = baseline if not baseline.samples else candidate
        warnings.append(f"no raw samples for {missing.path} ({missing.samples_note}): no confidence interval, no regression verdict")

    plans: list[tuple[str, MetricSpec, np.ndarray, np.ndarray, float, float]] = []
    rows: list[dict[str, Any]] = []
    errors: list[dict[str, Any]] = []
    for name in common:
        b_samples, c_samples = baseline.step_samples(name), candidate.step_samples(name)
        b_step, c_step = base_steps[name], cand_steps[name]
        b_err, c_err = _error_fraction(b_step), _error_fraction(c_step)
        error_regression = b_err is not None and c_err is not None and c_err - b_err > threshold
        errors.append({"step": name, "baseline": b_err, "candidate": c_err, "regression": error_regression})
        _check_output_lengths(name, b_samples, c_samples, warnings)
        for spec in METRICS:
            b, c = _values(b_samples, spec.key), _values(c_samples, spec.key)
            if b.size < MIN_SAMPLES or c.size < MIN_SAMPLES:
                rows.append(_not_testable(name, spec, f"fewer than {MIN_SAMPLES} samples ({b.size} vs {c.size})"))
                continue
            b_window, c_window = finite(b_step.get("window_s")), finite(c_step.get("window_s"))
            if spec.statistic == "rate" and not (b_window and c_window):
                rows.append(_not_testable(name, spec, "no window_s for the step"))
                continue
            plans.append((name, spec, b, c, b_window or 1.0, c_window or 1.0))
    confidence = 1.0 - ALPHA / max(1, len(plans))
    for seed, (name, spec, b, c, b_window, c_window) in enumerate(plans):
        if spec.statistic == "rate":
            ci = bootstrap_ratio(b, c, rate_statistic(b_window), rate_statistic(c_window), confidence=confidence, seed=seed)
            b_value, c_value = b.sum() / b_window, c.sum() / c_window
        else:
            q = int(spec.statistic[1:]) / 100.0
            ci = bootstrap_ratio(b, c, quantile_statistic(q), confidence=confidence, seed=seed)
            b_value, c_value = float(np.quantile(b, q)), float(np.quantile(c, q))
        rows.append(_verdict_row(name, spec, float(b_value), float(c_value), ci, threshold))
    if rows and all(r["verdict"] == "not_testable" for r in rows):
        warnings.append(f"no performance metric could be tested (each needs {MIN_SAMPLES}+ samples per side): no performance verdict")
    regression = any(r["verdict"] == "regression" for r in rows) or any(e["regression"] for e in errors)
    return {
        "baseline": str(baseline.path),
        "candidate": str(candidate.path),
        "confidence": confidence,
        "metrics": rows,
        "errors": errors,
        "regression": regression,
    }


def _not_testable(step: str, spec: MetricSpec, reason: str) -> dict[str, Any]:
    return {
        "step": step,
        "metric": spec.name,
        "lower_is_better": spec.lower_is_better,
        "baseline": None,
        "candidate": None,
        "ratio": None,
        "ci_low": None,
        "ci_high": None,
        "n_baseline": None,
        "n_candidate": None,
        "verdict": "not_testable",
        "reason": reason,
    }


def _verdict_row(step: str, spec: MetricSpec, b_value: float, c_value: float, ci: Any, threshold: float) -> dict[str, Any]:
    worse = ci.ratio > 1 + threshold if spec.lower_is_better else ci.ratio < 1 - threshold
    better = ci.ratio < 1 - threshold if spec.lower_is_better else ci.ratio > 1 + threshold
    significant = ci.low > 1.0 or ci.high < 1.0
    if worse and significant:
        verdict, reason = "regression", "beyond the threshold and significant"
    elif better and significant:
        verdict, reason = "improvement", "beyond the threshold and significant"
    elif (worse or better) and not significant:
        verdict, reason = "unchanged", "beyond the threshold but within noise"
    elif significant:
        verdict, reason = "unchanged", "significant but within the threshold"
    else:
        verdict, reason = "unchanged", "within the threshold and within noise"
    return {
        "step": step,
        "metric": spec.name,
        "lower_is_better": spec.lower_is_better,
        "baseline": b_value,
        "candidate": c_value,
        "ratio": ci.ratio,
        "ci_low": ci.low,
        "ci_high": ci.high,
        "n_baseline": ci.n_baseline,
        "n_candidate": ci.n_candidate,
        "verdict": verdict,
        "reason": reason,
    }


def _check_output_lengths(step: str, b_samples: list[dict], c_samples: list[dict], warnings: list[str]) -> None:
    b, c = _values(b_samples, "output_tokens"), _values(c_samples, "output_tokens")
    if b.size < MIN_SAMPLES or c.size < MIN_SAMPLES or not b.mean():
        return
    ci = bootstrap_ratio(b, c, lambda a: a.mean(axis=-1), confidence=0.99, seed=99)
    if abs(ci.ratio - 1.0) > OUTPUT_LENGTH_TOLERANCE and (ci.low > 1.0 or ci.high < 1.0):
        warnings.append(
            f"step {step!r}: output lengths differ (mean {b.mean():.1f} vs {c.mean():.1f} tokens): "
            "latency and throughput are not directly comparable"
        )


def _digests(models: Any) -> dict[str, Any]:
    return {str(m.get("name")): m.get("digest") for m in models or [] if isinstance(m, dict)}


def comparability_warnings(baseline: ResultSet, candidate: ResultSet) -> list[str]:
    warnings: list[str] = []
    if baseline.checks and candidate.checks:
        b, c = baseline.checks[0].raw, candidate.checks[0].raw
        _differs(warnings, "target version", (b.get("target") or {}).get("version"), (c.get("target") or {}).get("version"))
        _differs(warnings, "spec version", b.get("spec_version"), c.get("spec_version"))
        b_d, c_d = _digests((b.get("target") or {}).get("models")), _digests((c.get("target") or {}).get("models"))
        for name in sorted(set(b_d) & set(c_d)):
            _differs(warnings, f"model digest of {name}", b_d[name], c_d[name])
    if baseline.benches and candidate.benches:
        b, c = baseline.benches[0].raw, candidate.benches[0].raw
        _differs(warnings, "bench target version", (b.get("target") or {}).get("version"), (c.get("target") or {}).get("version"))
        _differs(warnings, "model", (b.get("model") or {}).get("name"), (c.get("model") or {}).get("name"))
        _differs(warnings, "model digest", (b.get("model") or {}).get("digest"), (c.get("model") or {}).get("digest"))
        b_hw, c_hw = b.get("hardware") or {}, c.get("hardware") or {}
        for key in sorted(set(b_hw) | set(c_hw)):
            _differs(warnings, f"hardware {key}", b_hw.get(key), c_hw.get(key))
        b_cfg, c_cfg = b.get("config") or {}, c.get("config") or {}
        for key in sorted((set(b_cfg) | set(c_cfg)) - CONFIG_KEYS_NOT_COMPARED):
            _differs(warnings, f"bench config {key}", b_cfg.get(key), c_cfg.get(key))
    return warnings


def _differs(warnings: list[str], what: str, b: Any, c: Any) -> None:
    if b != c:
        warnings.append(f"{what} differs: baseline {b!r}, candidate {c!r}")


def compare(baseline: ResultSet, candidate: ResultSet, threshold: float) -> dict[str, Any]:
    """The whole comparison; raises ValueError when the two hold nothing comparable."""
    has_check = bool(baseline.checks and candidate.checks)
    has_bench = bool(baseline.benches and candidate.benches)
    if not has_check and not has_bench:
        raise ValueError(
            f"nothing to compare: baseline has {len(baseline.checks)} check and {len(baseline.benches)} bench results, "
            f"candidate has {len(candidate.checks)} and {len(candidate.benches)}"
        )
    warnings = comparability_warnings(baseline, candidate)
    conformance = compare_checks(baseline.checks[0], candidate.checks[0]) if has_check else None
    performance = (
        compare_benches(baseline.benches[0], candidate.benches[0], threshold, warnings) if has_bench else None
    )
    regression = bool((conformance and conformance["regression"]) or (performance and performance["regression"]))
    return {
        "kind": COMPARE_KIND,
        "schema_version": 1,
        "threshold": threshold,
        "verdict": "regression" if regression else "ok",
        "warnings": warnings,
        "conformance": conformance,
        "performance": performance,
    }


def render_compare_markdown(result: dict[str, Any]) -> str:
    """The comparison as a pull-request comment."""
    verdict = "**regression**" if result["verdict"] == "regression" else "no regression"
    lines = ["# ollama-conformance compare", "", f"Verdict: {verdict} (threshold {result['threshold'] * 100:g}%).", ""]
    for warning in result["warnings"]:
        lines.append(f"> warning: {warning}")
    if result["warnings"]:
        lines.append("")
    conf = result["conformance"]
    if conf:
        lines += ["## Conformance", ""]
        lines.append(
            f"{len(conf['new_failures'])} new failures, {len(conf['new_passes'])} new passes, "
            f"{len(conf['still_failing'])} still failing, {len(conf['added'])} tests added, {len(conf['removed'])} removed."
        )
        for title, key in (("New failures", "new_failures"), ("New passes", "new_passes")):
            if conf[key]:
                lines += ["", f"### {title}", "", "| Level | Feature | Test | baseline → candidate | Message |", "|---|---|---|---|---|"]
                for row in conf[key]:
                    message = " ".join(str(row["message"]).split()).replace("|", "\\|")[:200]
                    lines.append(
                        f"| {row['level']} | `{row['feature']}` | `{row['id']}` | {row['baseline']} → {row['candidate']} | {message} |"
                    )
        lines.append("")
    perf = result["performance"]
    if perf:
        lines += [
            "## Performance",
            "",
            f"Ratio candidate / baseline with a {perf['confidence'] * 100:.2f}% bootstrap interval (Bonferroni-corrected).",
            "",
            "| Step | Metric | baseline | candidate | ratio | interval | verdict |",
            "|---|---|---:|---:|---:|---|---|",
        ]
        for row in perf["metrics"]:
            if row["verdict"] == "not_testable":
                lines.append(f"| {row['step']} | {row['metric']} | – | – | – | – | not testable: {row['reason']} |")
                continue
            mark = "**regression**" if row["verdict"] == "regression" else row["verdict"]
            lines.append(
                f"| {row['step']} | {row['metric']} | {row['baseline']:,.2f} | {row['candidate']:,.2f} | {row['ratio']:.3f} "
                f"| [{row['ci_low']:.3f}, {row['ci_high']:.3f}] | {mark} |"
            )
        for err in perf["errors"]:
            if err["regression"]:
                lines.append(
                    f"\n**regression**: step {err['step']} failed requests rose from {err['baseline']:.1%} to {err['candidate']:.1%}."
                )
        lines.append("")
    return "\n".join(lines) + "\n"
