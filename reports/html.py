"""The self-contained HTML report: one file, inline CSS and inline SVG charts, no script, no network."""

from __future__ import annotations

from html import escape
from typing import Any

from ollama_conformance.reports.badge import badge_svg, badge_text, percent
from ollama_conformance.reports.clients import client_failures, client_headline
from ollama_conformance.reports.results import BenchResults, ResultSet, finite
from ollama_conformance.reports.summary import badge_rates, quoted
from ollama_conformance.reports.svgplot import Band, Chart, Series, cdf_points, histogram_points, pareto_front, render
from ollama_conformance.vocabulary import LEVELS

STATUS_MARK = {"pass": "✔ pass", "fail": "✘ fail", "error": "⚠ error", "inconclusive": "? inconclusive", "not_applicable": "– n/a"}
HIST_BINS = 30

CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px auto;max-width:1200px;color:#222;padding:0 16px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:18px;margin:28px 0 8px;border-bottom:1px solid #ddd;padding-bottom:4px}
h3{font-size:15px;margin:18px 0 6px}.meta{color:#555}
table{border-collapse:collapse;margin:6px 0 12px}th,td{border:1px solid #ddd;padding:3px 8px;text-align:left;vertical-align:top}
th{background:#f4f4f4}td.n{text-align:right;font-variant-numeric:tabular-nums}
td.pass{background:#e6f4e6}td.fail{background:#fbe3e1}td.error{background:#fdf1d8}td.not_applicable{background:#f0f0f0;color:#777}td.inconclusive{background:#eee6f7}
td.none{background:#fff}code{font-size:12px}.msg{max-width:560px;word-break:break-word;font-size:12px}
.charts{display:flex;flex-wrap:wrap;gap:12px}.chart{border:1px solid #e4e4e4;background:#fff}
.chart .ct{font-size:13px;font-weight:600}.chart .tk,.chart .lg,.chart .bl{font-size:11px;fill:#444}
.chart .al{font-size:12px;fill:#333}.chart .grid{stroke:#eee}.chart .axis{stroke:#888}.chart .frame{fill:none;stroke:#bbb}
.chart .empty{font-size:13px;fill:#999}.warn{background:#fff6d6;border-left:4px solid #e0b400;padding:4px 8px;margin:4px 0}
"""


def _rate(rate: float | None) -> str:
    return "–" if rate is None else f"{percent(rate)}%"


def _num(value: float | None, digits: int = 1) -> str:
    return "–" if value is None else f"{value:,.{digits}f}"


def _counts_table(title: str, rows: dict[str, dict[str, Any]]) -> str:
    out = [f"<table><tr><th>{escape(title)}</th><th>pass</th><th>fail</th><th>error</th><th>inconclusive</th><th>n/a</th>"
           "<th>pass rate</th></tr>"]
    for name, c in rows.items():
        out.append(
            f"<tr><td>{escape(name)}</td><td class=n>{c['pass']}</td><td class=n>{c['fail']}</td><td class=n>{c['error']}</td>"
            f"<td class=n>{c.get('inconclusive', 0)}</td><td class=n>{c['not_applicable']}</td><td class=n>{_rate(c['rate'])}</td></tr>"
        )
    out.append("</table>")
    return "".join(out)


def _surfaces_html(surfaces: dict[str, Any]) -> str:
    """Per surface: present, absent (with the request and answer that showed it), or not selected."""
    if not surfaces:
        return ""
    items = []
    for name, info in surfaces.items():
        state = str((info or {}).get("state") or "?")
        evidence = (info or {}).get("evidence") or {}
        why = f": {evidence.get('request', '')} → {evidence.get('status') or evidence.get('detail') or ''}" if evidence else ""
        items.append(f"<li><b>{escape(name)}</b> {escape(state)}{escape(str(why))}</li>")
    return "<ul class=surfaces>" + "".join(items) + "</ul>"


def _matrix(check: dict[str, Any]) -> str:
    """Feature x surface, grouped by level; a cell's tooltip carries the reason and test counts."""
    surfaces = list(check["by_surface"])
    cells: dict[tuple[str, str], dict[str, Any]] = {(f["feature"], f["surface"]): f for f in check["features"]}
    features: list[tuple[str, str]] = []
    for f in check["features"]:
        if (f["level"], f["feature"]) not in features:
            features.append((f["level"], f["feature"]))
    out = ["<table class=matrix><tr><th>Level</th><th>Feature</th>"]
    out += [f"<th>{escape(s)}</th>" for s in surfaces]
    folded = any(f.get("targets") for f in check["features"])  # several servers: each row names its own
    out.append("<th>Ran on</th>" if folded else "")
    out.append("<th>Reason</th></tr>")
    for level, feature in features:
        out.append(f"<tr><td>{escape(level)}</td><td><code>{escape(feature)}</code></td>")
        reasons = []
        ran_on: list[str] = []
        for surface in surfaces:
            row = cells.get((feature, surface))
            if row is None:
                out.append("<td class=none></td>")
                continue
            c = row["counts"]
            ran_on += [t for t in row.get("targets") or [] if t not in ran_on]
            tip = f"{feature} on {surface}: {c['pass']} pass, {c['fail']} fail, {c['error']} error, {c['not_applicable']} n/a"
            if row.get("targets"):  # a folded run: the server(s) its tests ran on
                tip += f"\nran on: {', '.join(row['targets'])}"
            if row["reason"]:
                tip += f"\n{row['reason']}"
                if row["status"] != "pass":
                    reasons.append(f"{surface}: {row['reason']}")
            exact = row.get("exact_status", row["status"])
            if exact != row["status"]:  # compatible, yet not the same as Ollama
                tip += f"\nexact grade: {exact}: {row.get('exact_reason') or ''}"
                reasons.append(f"{surface} (exact): {row.get('exact_reason') or exact}")
            mark = STATUS_MARK.get(row["status"], row["status"]) + (" ≠" if exact != row["status"] else "")
            out.append(f'<td class="{row["status"]}" title="{escape(tip)}">{mark}</td>')
        out.append(f"<td class=msg>{escape(', '.join(ran_on))}</td>" if folded else "")
        out.append(f"<td class=msg>{escape(' · '.join(reasons))}</td></tr>")
    out.append("</table>")
    return "".join(out)


def _targets_html(targets: list[dict[str, Any]]) -> str:
    """The servers a folded run checked (`run` on the reference backend), each with its test count."""
    if not targets:
        return ""
    items = "".join(
        f"<li><b>{escape(str(t.get('label')))}</b> <code>{escape(str(t.get('url')))}</code>, profile "
        f"{escape(str(t.get('profile')))}: {t.get('tests', 0)} tests"
        + (f" (those the first found not applicable with {escape(quoted(t['answers']))})" if t.get("answers") else "")
        + "</li>"
        for t in targets
    )
    return f"<p class=meta>Checked on:</p><ul class=targets>{items}</ul>"


def _clients_html(clients: list[dict[str, Any]]) -> str:
    """Official clients' probes: "ollama-python 0.6.3: 11/12", each failure with the call and the exception."""
    if not clients:
        return ""
    items = []
    for client in clients:
        failures = "".join(f"<li class=msg>{escape(f)}</li>" for f in client_failures(client))
        items.append(f"<li><b>{escape(client_headline(client))}</b>{'<ul>' + failures + '</ul>' if failures else ''}</li>")
    return "<h3>Official clients</h3><ul class=clients>" + "".join(items) + "</ul>"


def conformance_html(check: dict[str, Any]) -> str:
    target = check["target"]
    rates = {level: check["by_level"][level]["rate"] for level in LEVELS}
    exact = {level: c["rate"] for level, c in check["exact_by_level"].items()} if check.get("exact_by_level") else None
    parts = [
        "<h2>Conformance</h2>",
        f"<p class=meta>Target <code>{escape(str(target.get('url') or '?'))}</code> (profile {escape(str(target.get('profile') or '?'))}, "
        f"reports version {escape(str(target.get('version') or 'unknown'))}); the spec describes Ollama "
        f"{escape(str(check.get('spec_version') or '?'))}; run {escape(str(check.get('started_at') or '?'))}, "
        f"{_num(finite(check.get('duration_s')))} s.</p>",
        f"<p>{badge_svg(rates, exact=exact)}</p>",
        f"<p class=warn>target error: {escape(str(target['error']))}</p>" if target.get("error") else "",
        _surfaces_html(check.get("surfaces") or {}),
        _targets_html(check.get("targets") or []),
        _clients_html(check.get("clients") or []),
        "<p class=meta>Pass rate = pass / (pass + fail + inconclusive + error); not-applicable tests are left out. "
        "Compatible grade: what official clients need; exact grade: the same as Ollama (≠ in the matrix).</p>",
        _counts_table("Level (compatible)", {level: check["by_level"][level] for level in LEVELS}),
        _counts_table("Level (exact)", check["exact_by_level"]) if check.get("exact_by_level") else "",
        _counts_table("Surface", check["by_surface"]),
        "<h3>Matrix (hover a cell for its tests and reason)</h3>",
        _matrix(check),
        f"<h3>Failures and errors ({len(check['failures'])})</h3>",
    ]
    if check["failures"]:
        on = any(f.get("target") for f in check["failures"])
        parts.append("<table><tr><th>Level</th><th>Feature</th><th>Surface</th><th>Status</th><th>Test</th>"
                     + ("<th>Target</th>" if on else "") + "<th>Message</th></tr>")
        for f in check["failures"]:
            target = f"<td>{escape(str(f.get('target') or ''))}</td>" if on else ""
            parts.append(
                f"<tr><td>{escape(str(f['level']))}</td><td><code>{escape(str(f['feature']))}</code></td><td>{escape(str(f['surface']))}</td>"
                f'<td class="{escape(str(f["status"]))}">{escape(str(f["status"]))}</td><td><code>{escape(str(f["id"]))}</code></td>'
                f"{target}<td class=msg>{escape(str(f.get('message') or ''))}</td></tr>"
            )
        parts.append("</table>")
    else:
        parts.append("<p>None.</p>")
    return "".join(parts) + f"<!-- badge: {escape(badge_text(rates))} -->"


def _steps_table(bench: dict[str, Any]) -> str:
    out = [
        "<table><tr><th>Step</th><th>ok</th><th>error</th><th>timeout</th><th>TTFT p50</th><th>TTFT p90</th><th>TTFT p99</th>"
        "<th>ITL p50</th><th>ITL p90</th><th>E2E p50</th><th>E2E p90</th><th>output tok/s</th><th>req/s</th><th>server decode tok/s p50</th>"
        "<th>N<sub>out</sub> from</th><th>retried</th></tr>"
    ]
    for s in bench["steps"]:
        r, lat = s["requests"], s["latency"]
        out.append(
            f"<tr><td>{escape(str(s['name']))}</td><td class=n>{r.get('ok', 0)}</td><td class=n>{r.get('error', 0)}</td>"
            f"<td class=n>{r.get('timeout', 0)}</td>"
            + "".join(f"<td class=n>{_num(lat['ttft_ms'][p])}</td>" for p in ("p50", "p90", "p99"))
            + "".join(f"<td class=n>{_num(lat['itl_ms'][p])}</td>" for p in ("p50", "p90"))
            + "".join(f"<td class=n>{_num(lat['e2e_ms'][p], 0)}</td>" for p in ("p50", "p90"))
            + f"<td class=n>{_num(s['output_tokens_per_s'])}</td><td class=n>{_num(s['requests_per_s'], 2)}</td>"
            f"<td class=n>{_num(s['server_decode_tokens_per_s_p50'])}</td>"
            f"<td>{escape(', '.join(f'{k} {v}' for k, v in sorted((s.get('output_tokens_source') or {}).items())) or '-')}</td>"
            f"<td class=n>{(s.get('connections') or {}).get('retries', '-')}</td></tr>"
        )
    out.append("</table><p class=meta>Latencies in milliseconds, percentiles from the raw per-request samples. N<sub>out</sub> "
               "from: where each request's output-token count came from (eval_count, usage: the server's; chunks: counted "
               "output chunks, the server said nothing); retried: requests resent once on a fresh connection because the "
               "server had closed the kept-alive one without reading them.</p>")
    return "".join(out)


def _gpu_memory_series(gpu: dict[str, Any]) -> dict[str, list[tuple[int, float]]]:
    """Per device, (t_ns, bytes) from NVML samples: {"device", "t_ns", "memory_used_bytes"} or [t_ns, bytes]."""
    series: dict[str, list[tuple[int, float]]] = {}
    for sample in gpu.get("samples") or []:
        device = "0"
        if isinstance(sample, list | tuple) and len(sample) >= 2:
            t, v = finite(sample[0]), finite(sample[1])
        elif isinstance(sample, dict):
            t = finite(sample.get("t_ns"))
            v = next((finite(sample[k]) for k in ("memory_used_bytes", "memory_used") if k in sample), None)
            device = str(sample.get("device", "0"))
        else:
            continue
        if t is not None and v is not None:
            series.setdefault(device, []).append((int(t), v))
    return series


def performance_charts(bench: BenchResults) -> list[str]:
    steps = [str(s.get("name")) for s in bench.steps]
    measured = {name: bench.step_samples(name) for name in steps}
    charts: list[str] = []
    for key, title in (("ttft_ms", "TTFT CDF"), ("e2e_ms", "End-to-end latency CDF")):
        series = []
        for name in steps:
            xs, ys = cdf_points([v for s in measured[name] if (v := finite(s.get(key))) is not None])
            series.append(Series(name, xs, ys))
        charts.append(render(Chart(title, f"{key.split('_')[0].upper()} (ms)", "fraction of requests", series, step=True)))
    itl_all = [v for name in steps for s in measured[name] if (v := finite(s.get("itl_ms"))) is not None]
    hist_series = []
    if itl_all:
        lo, hi = min(itl_all), max(itl_all)
        hi = hi if hi > lo else lo + 1.0
        for name in steps:
            values = [v for s in measured[name] if (v := finite(s.get("itl_ms"))) is not None]
            xs, ys = histogram_points(values, lo, hi, HIST_BINS)
            hist_series.append(Series(name, xs, ys))
    charts.append(render(Chart("ITL histogram (per request)", "ITL (ms)", "requests", hist_series, step=True)))

    mode = str((bench.raw.get("config") or {}).get("mode") or (bench.steps[0].get("mode") if bench.steps else "") or "step")
    x_label = "concurrency" if mode == "concurrency" else "request rate (req/s)" if mode == "rate" else mode
    xs = [finite(s.get("value")) for s in bench.steps]
    metrics = [dict(s.get("metrics") or {}) for s in bench.steps]

    def pct(key: str, p: str) -> list[float | None]:
        return [finite((m.get(key) or {}).get(p)) for m in metrics]

    charts.append(
        render(
            Chart(
                f"TTFT vs {x_label}",
                x_label,
                "TTFT (ms)",
                [Series("p50", xs, pct("ttft_ms", "p50"), markers=True), Series("p90", xs, pct("ttft_ms", "p90"), markers=True, dashed=True)],
                x_integer=mode == "concurrency",
            )
        )
    )
    charts.append(
        render(
            Chart(
                f"Throughput vs {x_label}",
                x_label,
                "tokens/s",
                [
                    Series("output tokens/s", xs, [finite(m.get("output_tokens_per_s")) for m in metrics], markers=True),
                    Series("server decode tokens/s p50", xs, pct("server_decode_tokens_per_s", "p50"), markers=True, dashed=True),
                ],
                x_integer=mode == "concurrency",
            )
        )
    )
    charts.append(_pareto_chart(bench, metrics))
    charts.append(_memory_chart(bench, measured))
    return charts


def _capacity_html(c: Any) -> str:
    """The --find-max-rate answer: highest passing rate, the bracket the limit lies in, each probe."""
    if not isinstance(c, dict):
        return ""
    lo, hi = finite(c.get("max_rate_rps")), finite(c.get("lowest_failing_rps"))
    share = finite(c.get("goodput_fraction")) or 0.0
    if lo is None:
        head = f"no rate met the SLOs ({escape(str(c.get('stopped_because') or ''))})"
    elif hi is None:
        head = f"at least {lo:.4g} req/s (no failing rate found: {escape(str(c.get('stopped_because') or ''))})"
    else:
        head = f"{lo:.4g} req/s; the limit lies between {lo:.4g} and {hi:.4g} req/s"
    probes = ", ".join(
        f"{finite(p.get('rate_rps')) or 0:.4g}: {p.get('met_slo')}/{p.get('measured')} {'pass' if p.get('passed') else 'fail'}"
        + (" (marginal)" if p.get("marginal") else "")
        for p in c.get("probes") or [] if isinstance(p, dict)
    )
    return (f"<p><b>Max sustainable rate</b> (at least {share:.0%} of requests within the SLOs): {head}. "
            f"Probes (req/s: within SLO / measured): {escape(probes)}.</p>")


def _pareto_chart(bench: BenchResults, metrics: list[dict[str, Any]]) -> str:
    """Throughput against latency, one point per step of the sweep; the dashed line joins the Pareto front (no
    other step has both more tokens/s and a lower TTFT p90)."""
    xs = [finite(m.get("output_tokens_per_s")) for m in metrics]
    ys = [finite((m.get("ttft_ms") or {}).get("p90")) for m in metrics]
    labels = [str(s.get("name") or "") for s in bench.steps]
    points = [(x, y) for x, y in zip(xs, ys, strict=False) if x is not None and y is not None]
    front = pareto_front(points)
    series = [Series("steps (TTFT p90)", xs, ys, markers=True, labels=labels),
              Series("Pareto front", [p[0] for p in front], [p[1] for p in front], dashed=True)]
    return render(Chart("Throughput vs latency (Pareto)", "output tokens/s", "TTFT p90 (ms)", series))


def _memory_chart(bench: BenchResults, measured: dict[str, list[dict[str, Any]]]) -> str:
    telemetry = dict(bench.raw.get("telemetry") or {})
    gpu = dict(telemetry.get("gpu") or {})
    gpu_devices = _gpu_memory_series(gpu) if gpu.get("available") else {}
    gpu_points = [p for points in gpu_devices.values() for p in points]
    rss_points = [
        (int(t), v)
        for s in (telemetry.get("rss") or {}).get("samples") or []
        if isinstance(s, list | tuple) and len(s) >= 2 and (t := finite(s[0])) is not None and (v := finite(s[1])) is not None
    ]
    spans = {}
    for step in bench.steps:  # the runner's own step clock, when it records one
        a, b = finite(step.get("started_ns")), finite(step.get("ended_ns"))
        if a is not None and b is not None:
            spans[str(step.get("name"))] = (int(a), int(b))
    for name, samples in measured.items():
        if name in spans:
            continue
        starts = [int(v) for s in samples if (v := finite(s.get("start_ns"))) is not None]
        ends = [int(v) for s in samples if (v := finite(s.get("end_ns"))) is not None]
        if starts and ends:
            spans[name] = (min(starts), max(ends))
    stamps = [t for t, _ in gpu_points + rss_points] + [t for span in spans.values() for t in span]
    if not stamps:
        return render(Chart("Memory over time", "time (s)", "MiB", []))
    origin = min(stamps)
    series = []
    for device, points in gpu_devices.items():
        series.append(Series(f"GPU {device} memory used", [(t - origin) / 1e9 for t, _ in points], [v / 2**20 for _, v in points]))
    if rss_points:
        series.append(Series("server RSS", [(t - origin) / 1e9 for t, _ in rss_points], [v / 2**20 for _, v in rss_points]))
    bands = [Band((a - origin) / 1e9, (b - origin) / 1e9, name) for name, (a, b) in spans.items()]
    title = "GPU memory and RSS over time" if gpu_points else "Server RSS over time (no GPU telemetry)"
    return render(Chart(title, "time since start (s), shaded: load steps", "MiB", series, bands=bands, y_min_zero=False))


def performance_html(summary: dict[str, Any], bench: BenchResults) -> str:
    model = summary.get("model") or {}
    hw = summary.get("hardware") or {}
    cfg = summary.get("config") or {}
    target = summary["target"]
    gpu = summary["gpu"]
    parts = [
        "<h2>Performance</h2>",
        f"<p class=meta>Target <code>{escape(str(target.get('url') or '?'))}</code> (version {escape(str(target.get('version') or 'unknown'))}); "
        f"model <code>{escape(str(model.get('name') or '?'))}</code> digest <code>{escape(str(model.get('digest') or '?'))[:16]}</code>; "
        f"{escape(str(cfg.get('surface') or '?'))} {escape(str(cfg.get('endpoint') or '?'))}; "
        f"{escape(str(hw.get('cpu') or '?'))}, {escape(str(hw.get('cores') or '?'))} cores, {escape(str(hw.get('memory_gb') or '?'))} GB; "
        f"run {escape(str(summary.get('started_at') or '?'))}.</p>",
        _steps_table(summary),
        f"<p class=parallelism>{escape(str(summary.get('parallelism') or ''))}</p>",
        _capacity_html(bench.raw.get("capacity")),
    ]
    if not gpu["available"]:
        parts.append(f"<p class=meta>GPU telemetry not available: {escape(str(gpu.get('reason') or 'no reason given'))}; server RSS is shown instead.</p>")
    if bench.samples_note:
        parts.append(f"<p class=warn>{escape(bench.samples_note)}: charts from raw samples are empty.</p>")
    for warning in summary["warnings"]:
        parts.append(f"<p class=warn>{escape(str(warning))}</p>")
    parts.append('<div class="charts">' + "".join(performance_charts(bench)) + "</div>")
    return "".join(parts)


def history_html(charts: list[str]) -> str:
    if not charts:
        return ""
    return "<h2>History</h2><div class=charts>" + "".join(charts) + "</div>"


def render_html(summary: dict[str, Any], results: ResultSet, history_charts: list[str] | None = None) -> str:
    rates = badge_rates(summary)
    title = "ollama-conformance report"
    body = [f"<h1>{title}</h1>", f"<p class=meta>ollama-conformance {escape(summary['tool_version'])}"]
    if rates:
        body.append(f" · {escape(badge_text(rates))}")
    body.append("</p>")
    for note in summary.get("notes") or []:
        body.append(f"<p class=warn>note: {escape(str(note))}</p>")
    for check in summary["conformance"]:
        body.append(conformance_html(check))
    for bench_summary, bench in zip(summary["performance"], results.benches, strict=True):
        body.append(performance_html(bench_summary, bench))
    body.append(history_html(history_charts or []))
    if results.empty():
        body.append("<p>No results.</p>")
    return (
        "<!DOCTYPE html><html lang=en><head><meta charset=utf-8>"
        f"<meta name=viewport content='width=device-width, initial-scale=1'><title>{title}</title>"
        f"<style>{CSS}</style></head><body>{''.join(body)}</body></html>\n"
    )
