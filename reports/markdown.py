"""The Markdown report: short enough for a pull-request comment (GitHub caps a comment at 65,536 characters)."""

from __future__ import annotations

from typing import Any

from ollama_conformance.reports.badge import badge_text, percent
from ollama_conformance.reports.clients import client_failures, client_headline
from ollama_conformance.reports.summary import quoted
from ollama_conformance.vocabulary import LEVELS

MAX_MESSAGE = 240
MAX_FAILURES = 60


def cell(value: Any) -> str:
    """Text safe inside a Markdown table cell: one line, pipes escaped."""
    text = " ".join(str(value if value is not None else "").split())
    return text.replace("|", "\\|")


def fmt_rate(rate: float | None) -> str:
    return "–" if rate is None else f"{percent(rate)}%"


def fmt_num(value: float | None, digits: int = 1) -> str:
    return "–" if value is None else f"{value:,.{digits}f}"


def _target_line(target: dict[str, Any]) -> str:
    url = target.get("url") or "?"
    profile = target.get("profile") or "?"
    version = target.get("version") or "unknown"
    return f"`{url}` (profile {profile}, reports version {version})"


def _surface_lines(surfaces: dict[str, Any]) -> list[str]:
    """One line per surface: present, absent (with the request and answer that showed it), not selected."""
    if not surfaces:
        return []
    lines = []
    for name, info in surfaces.items():
        evidence = (info or {}).get("evidence") or {}
        why = f"{evidence.get('request', '')} → {evidence.get('status') or evidence.get('detail') or ''}" if evidence else ""
        lines.append(f"- surface **{cell(name)}**: {cell((info or {}).get('state'))}" + (f" ({cell(why)})" if why else ""))
    return [*lines, ""]


def _targets_lines(targets: list[dict[str, Any]]) -> list[str]:
    """The servers a folded run checked, each with the tests that ran on it."""
    if not targets:
        return []
    lines = ["Checked on:"]
    for t in targets:
        answers = f" (those the first found not applicable with {cell(quoted(t['answers']))})" if t.get("answers") else ""
        lines.append(f"- **{cell(t.get('label'))}** `{cell(t.get('url'))}`, profile {cell(t.get('profile'))}: "
                     f"{t.get('tests', 0)} tests{answers}")
    return [*lines, ""]


def client_lines(clients: list[dict[str, Any]]) -> list[str]:
    """Official clients: one line each, then each failed scenario with the client call and exception."""
    lines = []
    for client in clients:
        lines.append(f"- client **{cell(client_headline(client))}**")
        lines += [f"  - {cell(failure)}" for failure in client_failures(client)]
    return [*lines, ""] if lines else []


def conformance_section(check: dict[str, Any]) -> list[str]:
    rates = {level: check["by_level"][level]["rate"] for level in LEVELS}
    exact = {level: c["rate"] for level, c in check["exact_by_level"].items()} if check.get("exact_by_level") else None
    lines = [
        "## Conformance",
        "",
        f"Target {_target_line(check['target'])}; spec describes Ollama {check.get('spec_version') or '?'}.",
        "",
        f"**{badge_text(rates, exact)}**",
        "",
        *([f"> target error: {cell(check['target']['error'])}", ""] if check["target"].get("error") else []),
        *_surface_lines(check.get("surfaces") or {}),
        *_targets_lines(check.get("targets") or []),
        *client_lines(check.get("clients") or []),
        f"| Level | pass | fail | error | inconclusive | n/a | pass rate |{' exact |' if exact else ''}",
        f"|---|---:|---:|---:|---:|---:|---:|{'---:|' if exact else ''}",
    ]
    for level in LEVELS:
        c = check["by_level"][level]
        row = f"| {level} | {c['pass']} | {c['fail']} | {c['error']} | {c.get('inconclusive', 0)} | {c['not_applicable']} | {fmt_rate(c['rate'])} |"
        lines.append(row + (f" {fmt_rate(exact[level])} |" if exact else ""))
    lines += ["", "| Surface | pass | fail | error | inconclusive | n/a | pass rate |", "|---|---:|---:|---:|---:|---:|---:|"]
    for surface, c in check["by_surface"].items():
        lines.append(f"| {cell(surface)} | {c['pass']} | {c['fail']} | {c['error']} | {c.get('inconclusive', 0)} | {c['not_applicable']} | {fmt_rate(c['rate'])} |")
    failures = check["failures"]
    lines += ["", f"### Failures ({len(failures)})", ""]
    if not failures:
        lines.append("None.")
    else:
        on = any(f.get("target") for f in failures)
        lines += [f"| Level | Feature | Surface | Status | Test |{' Target |' if on else ''} Message |",
                  f"|---|---|---|---|---|{'---|' if on else ''}---|"]
        for f in failures[:MAX_FAILURES]:
            message = str(f.get("message") or "")
            if len(message) > MAX_MESSAGE:
                message = message[: MAX_MESSAGE - 1] + "…"
            target = f" {cell(f.get('target'))} |" if on else ""
            lines.append(
                f"| {cell(f['level'])} | `{cell(f['feature'])}` | {cell(f['surface'])} | {cell(f['status'])} "
                f"| `{cell(f['id'])}` |{target} {cell(message)} |"
            )
        if len(failures) > MAX_FAILURES:
            lines.append(f"\n… and {len(failures) - MAX_FAILURES} more (see the HTML or JSON report).")
    return lines


def performance_section(bench: dict[str, Any]) -> list[str]:
    model = bench.get("model") or {}
    hardware = bench.get("hardware") or {}
    config = bench.get("config") or {}
    lines = [
        "## Performance",
        "",
        f"Target {_target_line(bench['target'])}; model `{model.get('name', '?')}`; "
        f"{config.get('surface', '?')} {config.get('endpoint', '?')}, {config.get('mode', '?')} steps; "
        f"{hardware.get('cpu', '?')}, {hardware.get('cores', '?')} cores.",
        "",
        "| Step | ok / error / timeout | TTFT p50 / p90 / p99 ms | ITL p50 / p90 ms | E2E p50 / p90 ms | output tok/s | req/s |",
        "|---|---|---|---|---|---:|---:|",
    ]
    for step in bench["steps"]:
        req = step["requests"]
        lat = step["latency"]
        ttft = " / ".join(fmt_num(lat["ttft_ms"][p]) for p in ("p50", "p90", "p99"))
        itl = " / ".join(fmt_num(lat["itl_ms"][p]) for p in ("p50", "p90"))
        e2e = " / ".join(fmt_num(lat["e2e_ms"][p], 0) for p in ("p50", "p90"))
        lines.append(
            f"| {cell(step['name'])} | {req.get('ok', 0)} / {req.get('error', 0)} / {req.get('timeout', 0)} "
            f"| {ttft} | {itl} | {e2e} | {fmt_num(step['output_tokens_per_s'])} | {fmt_num(step['requests_per_s'], 2)} |"
        )
    lines.append("")
    if bench.get("parallelism"):
        lines += [cell(bench["parallelism"]), ""]
    gpu = bench["gpu"]
    if gpu["available"]:
        lines.append("GPU telemetry: sampled (see the HTML report).")
    else:
        lines.append(f"GPU telemetry: not available ({cell(gpu.get('reason') or 'no reason given')}).")
    if bench["rss_peak_bytes"] is not None:
        lines.append(f"Peak server RSS: {bench['rss_peak_bytes'] / 2**20:,.0f} MiB.")
    for warning in bench["warnings"]:
        lines.append(f"> warning: {cell(warning)}")
    return lines


def render_markdown(summary: dict[str, Any]) -> str:
    lines = ["# ollama-conformance report", ""]
    for note in summary.get("notes") or []:
        lines.append(f"> **note:** {cell(note)}")
    if summary.get("notes"):
        lines.append("")
    for check in summary["conformance"]:
        lines += [*conformance_section(check), ""]
    for bench in summary["performance"]:
        lines += [*performance_section(bench), ""]
    if not summary["conformance"] and not summary["performance"]:
        lines.append("No results.")
    lines.append(f"<sub>ollama-conformance {summary['tool_version']}</sub>")
    return "\n".join(lines) + "\n"
