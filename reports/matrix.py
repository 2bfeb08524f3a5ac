"""The compatibility matrix: features × targets from several check results files, both grades, each cell's reason.

One row per (surface, level, feature); one column per target. A cell holds the feature's *compatible* state (what
gates: does a real client work) and its *exact* state (sameness with Ollama), combined over the feature's tests,
and the first reason a test gave. Results files of schema 1 (no exact grade, no surfaces, no inconclusive state)
are read too: what they lack shows as *unknown*, never as a pass.

Targets are labelled by `--label`, else by what `GET /api/version` answered and the URL.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from html import escape
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ollama_conformance.errors import UsageError
from ollama_conformance.reports.results import CHECK_KIND, _read_json

# Majors of the check results schema this reader understands (2 adds grades, surfaces, inconclusive, clients).
KNOWN_MAJORS = (1, 2)
STATES = ("pass", "fail", "inconclusive", "error", "not_applicable")
UNKNOWN = "unknown"  # a grade the results file does not carry (schema 1 has no exact grade)
MISSING = "not_run"  # the target's results have no test of this feature
# A feature's state over its tests: the worst one wins (a failing test is not hidden by a passing one).
WORST_FIRST = ("fail", "error", "inconclusive", "pass", "not_applicable")
SURFACE_ORDER = ("native", "openai", "anthropic", "cloud")
LEVEL_ORDER = ("MUST", "SHOULD", "MAY")
MARK = {
    "pass": "✔",
    "fail": "✘",
    "error": "⚠",
    "inconclusive": "?",
    "not_applicable": "–",
    UNKNOWN: "·",
    MISSING: " ",
}
MAX_REASON_MD = 110


@dataclass
class TargetColumn:
    """One results file: who was checked, and what the file says about surfaces and clients."""

    source: Path
    label: str
    url: str
    version: str | None
    schema_version: int
    surfaces: dict[str, dict[str, Any]] = field(default_factory=dict)
    clients: list[dict[str, Any]] = field(default_factory=list)
    error: str = ""


@dataclass
class Cell:
    status: str  # compatible grade, one of STATES or MISSING
    exact: str  # exact grade, one of STATES, UNKNOWN or MISSING
    reason: str
    tests: int


@dataclass
class Row:
    surface: str
    level: str
    feature: str
    cells: list[Cell]


@dataclass
class Matrix:
    targets: list[TargetColumn]
    rows: list[Row]


def _major(path: Path, data: dict[str, Any]) -> int:
    version = data.get("schema_version")
    if isinstance(version, bool) or not isinstance(version, int | float | str):
        raise UsageError(f"{path}: missing or invalid schema_version {version!r}")
    head = str(version).split(".", 1)[0]
    if not head.isdigit() or int(head) not in KNOWN_MAJORS:
        raise UsageError(f"{path}: check schema_version {version} is not supported (this reader knows {KNOWN_MAJORS})")
    return int(head)


def load_check(path: Path) -> tuple[dict[str, Any], int]:
    """A check results file of a known major, its tests well-formed enough to tabulate; else one clear UsageError."""
    if path.is_dir():
        for name in ("check.json", "results.json"):
            if (path / name).is_file():
                path = path / name
                break
        else:
            raise UsageError(f"{path} holds no check results (looked for check.json, results.json)")
    data = _read_json(path)
    if data.get("kind") != CHECK_KIND:
        raise UsageError(f"{path}: not check results (kind {data.get('kind')!r}, expected {CHECK_KIND})")
    major = _major(path, data)
    tests = data.get("tests")
    if not isinstance(tests, list):
        raise UsageError(f"{path}: 'tests' must be a list")
    for i, test in enumerate(tests):
        if not isinstance(test, dict) or test.get("status") not in STATES:
            raise UsageError(f"{path}: tests[{i}] has no valid status (one of {', '.join(STATES)})")
    return data, major


def default_label(url: str, version: str | None) -> str:
    host = urlsplit(url).netloc or url or "?"
    path = urlsplit(url).path.strip("/")
    where = f"{host}/{path}" if path else host
    return f"{where} (version {version})" if version else f"{where} (no /api/version)"


def _target_column(path: Path, data: dict[str, Any], major: int, label: str | None) -> TargetColumn:
    target = data.get("target") if isinstance(data.get("target"), dict) else {}
    url = str(target.get("url") or "")
    version = target.get("version") if isinstance(target.get("version"), str) else None
    surfaces = data.get("surfaces") if isinstance(data.get("surfaces"), dict) else {}
    clients = data.get("clients") if isinstance(data.get("clients"), list) else []
    return TargetColumn(
        source=path,
        label=label or default_label(url, version),
        url=url,
        version=version,
        schema_version=major,
        surfaces={str(k): v for k, v in surfaces.items() if isinstance(v, dict)},
        clients=[c for c in clients if isinstance(c, dict)],
        error=str(target.get("error") or ""),
    )


def combine(states: list[str]) -> str:
    for state in WORST_FIRST:
        if state in states:
            return state
    return UNKNOWN


def _cell(tests: list[dict[str, Any]]) -> Cell:
    status = combine([str(t["status"]) for t in tests])
    exacts = [t.get("exact_status") for t in tests]
    # A file without the exact grade on every test cannot say the feature is exact: unknown, not pass.
    exact = combine([str(e) for e in exacts]) if all(e in STATES for e in exacts) else UNKNOWN
    if exact == UNKNOWN and status != "pass" and status in STATES:
        exact = status  # the exact grade equals the compatible one whenever that is not a pass (brief, schema 2)
    bad = [t for t in tests if t["status"] not in ("pass",)]
    reason = next((str(t.get("message") or "") for t in bad if t.get("message")), "")
    if not reason and exact not in ("pass", UNKNOWN):
        reason = next((str(t.get("exact_message") or "") for t in tests if t.get("exact_message")), "")
        reason = f"exact: {reason}" if reason else ""
    return Cell(status=status, exact=exact, reason=reason, tests=len(tests))


def _order(value: str, order: tuple[str, ...]) -> int:
    return order.index(value) if value in order else len(order)


def build_matrix(paths: list[Path], labels: list[str] | None = None) -> Matrix:
    labels = list(labels or [])
    if len(labels) > len(paths):
        raise UsageError(f"{len(labels)} --label given for {len(paths)} results files")
    targets: list[TargetColumn] = []
    per_target: list[dict[tuple[str, str, str], list[dict[str, Any]]]] = []
    for index, path in enumerate(paths):
        data, major = load_check(path)
        targets.append(_target_column(path, data, major, labels[index] if index < len(labels) else None))
        grouped: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
        for test in data["tests"]:
            key = (str(test.get("surface") or "?"), str(test.get("level") or "?"), str(test.get("feature") or "?"))
            grouped.setdefault(key, []).append(test)
        per_target.append(grouped)
    keys = sorted(
        {key for grouped in per_target for key in grouped},
        key=lambda k: (_order(k[0], SURFACE_ORDER), k[0], _order(k[1], LEVEL_ORDER), k[2]),
    )
    rows = []
    for surface, level, feature in keys:
        cells = []
        for grouped in per_target:
            tests = grouped.get((surface, level, feature))
            cells.append(_cell(tests) if tests else Cell(status=MISSING, exact=MISSING, reason="", tests=0))
        rows.append(Row(surface=surface, level=level, feature=feature, cells=cells))
    return Matrix(targets=targets, rows=rows)


# --- per-target summaries -----------------------------------------------------------------------------------


def grade_counts(matrix: Matrix, index: int, level: str, grade: str) -> tuple[int, int]:
    """(features passing, features judged) of one target at one level; a judged feature is not n/a, not run or unknown."""
    states = [getattr(r.cells[index], "status" if grade == "compatible" else "exact") for r in matrix.rows if r.level == level]
    judged = [s for s in states if s not in ("not_applicable", MISSING, UNKNOWN)]
    return sum(1 for s in judged if s == "pass"), len(judged)


def grade_line(matrix: Matrix, index: int) -> str:
    """'compatible MUST 40/41, SHOULD 50/58; exact MUST 38/41, …': features passing / features judged."""
    parts = []
    for grade in ("compatible", "exact"):
        if grade == "exact" and matrix.targets[index].schema_version < 2:
            parts.append("exact unknown (schema 1 results)")
            continue
        counts = [(level, *grade_counts(matrix, index, level, grade)) for level in LEVEL_ORDER]
        shown = [f"{level} {passed}/{judged}" for level, passed, judged in counts if judged]
        parts.append(f"{grade} " + (", ".join(shown) if shown else "nothing judged"))
    return "; ".join(parts)


def surface_line(target: TargetColumn) -> str:
    if not target.surfaces:
        return "surfaces unknown (schema 1 results)"
    parts = []
    for name in sorted(target.surfaces, key=lambda s: _order(s, SURFACE_ORDER)):
        info = target.surfaces[name]
        state = str(info.get("state") or UNKNOWN)
        evidence = info.get("evidence") if isinstance(info.get("evidence"), dict) else None
        if state == "absent" and evidence:
            parts.append(f"{name} absent ({evidence.get('request')} → {evidence.get('status')})")
        else:
            parts.append(f"{name} {state}")
    return ", ".join(parts)


def client_line(target: TargetColumn) -> str:
    if not target.clients:
        return "clients not probed"
    parts = []
    for client in target.clients:
        name = f"{client.get('client')} {client.get('version') or ''}".strip()
        if client.get("state") == "not_applicable":
            parts.append(f"{name}: n/a ({client.get('reason') or ''})")
        else:
            parts.append(f"{name}: {client.get('passed', 0)}/{client.get('total', 0)}")
    return ", ".join(parts)


# --- Markdown -----------------------------------------------------------------------------------------------


def _md(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def _short(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _md_cell(cell: Cell) -> str:
    if cell.status == MISSING:
        return "not run"
    text = f"{MARK[cell.status]} {cell.status}"
    if cell.exact != cell.status:
        text += f" / exact {MARK.get(cell.exact, '')} {cell.exact}"
    if cell.reason:
        text += f": {_short(cell.reason, MAX_REASON_MD)}"
    return _md(text)


def render_markdown(matrix: Matrix) -> str:
    lines = ["| # | Target | Version | URL | Grades (features passing / judged) | Surfaces | Clients |", "|---|---|---|---|---|---|---|"]
    for i, t in enumerate(matrix.targets, 1):
        lines.append(
            f"| {i} | **{_md(t.label)}** | {_md(t.version or 'unknown')} | `{_md(t.url or '?')}` | {_md(grade_line(matrix, i - 1))} "
            f"| {_md(surface_line(t))} | {_md(client_line(t))} |"
        )
    lines += ["", "Cells: the compatible state (then / the exact state where it differs), then the first reason. "
              "✔ pass · ✘ fail · ⚠ error · ? inconclusive · – not applicable · · unknown (not in the results file).", ""]
    for surface in dict.fromkeys(r.surface for r in matrix.rows):
        lines += [f"### Surface: {surface}", "", "| Level | Feature | " + " | ".join(f"{i}. {_md(t.label)}" for i, t in enumerate(matrix.targets, 1)) + " |",
                  "|---|---|" + "---|" * len(matrix.targets)]
        for row in (r for r in matrix.rows if r.surface == surface):
            lines.append(f"| {row.level} | `{_md(row.feature)}` | " + " | ".join(_md_cell(c) for c in row.cells) + " |")
        lines.append("")
    return "\n".join(lines)


# --- HTML ---------------------------------------------------------------------------------------------------

CSS = """
body{font:13px/1.4 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:20px;color:#222}
h1{font-size:20px;margin:0 0 6px}.meta{color:#555}table{border-collapse:collapse}
th,td{border:1px solid #ccc;padding:3px 6px;text-align:left;vertical-align:top}th{background:#eee}
td.c{min-width:150px;max-width:240px}th.target{min-width:150px;max-width:240px;word-break:break-word;font-weight:normal}.g{display:inline-block;padding:0 5px;margin-right:3px;border-radius:3px;font-weight:600}
.pass{background:#b9e4b9}.fail{background:#f4a49c}.error{background:#f7d28a}.inconclusive{background:#c9c2f0}
.not_applicable{background:#dcdcdc;color:#555}.unknown{background:#fff;border:1px dashed #999}.not_run{background:#fafafa;color:#999}
.why{display:block;font-size:11px;color:#333;word-break:break-word}tr.grp td{background:#333;color:#fff;font-weight:600}
#filters{margin:10px 0;padding:6px;background:#f6f6f6;border:1px solid #ddd}#filters label{margin-right:14px}
tr.hidden{display:none}
"""

SCRIPT = """
(function(){
  var sel = {surface: document.getElementById('f-surface'), level: document.getElementById('f-level'),
             state: document.getElementById('f-state'), grade: document.getElementById('f-grade')};
  function apply(){
    var s = sel.surface.value, l = sel.level.value, st = sel.state.value, g = sel.grade.value, shown = 0;
    var rows = document.querySelectorAll('tr.feature');
    rows.forEach(function(r){
      var ok = (!s || r.dataset.surface === s) && (!l || r.dataset.level === l);
      if (ok && st) { ok = (' ' + r.getAttribute('data-' + g) + ' ').indexOf(' ' + st + ' ') >= 0; }
      r.classList.toggle('hidden', !ok); if (ok) shown++;
    });
    document.querySelectorAll('tr.grp').forEach(function(h){
      var any = document.querySelector('tr.feature[data-surface="' + h.dataset.surface + '"]:not(.hidden)');
      h.classList.toggle('hidden', !any);
    });
    document.getElementById('shown').textContent = shown + ' of ' + rows.length + ' features shown';
    var q = []; ['surface','level','state','grade'].forEach(function(k){ if (sel[k].value && !(k==='grade' && sel[k].value==='compatible')) q.push(k + '=' + sel[k].value); });
    if (history.replaceState) history.replaceState(null, '', q.length ? '#' + q.join('&') : location.pathname);
  }
  // Filters can be given in the URL fragment (#surface=openai&state=fail): links into a filtered view, offline.
  location.hash.replace(/^#/, '').split('&').forEach(function(kv){
    var p = kv.split('='); if (p.length === 2 && sel[p[0]]) sel[p[0]].value = decodeURIComponent(p[1]);
  });
  Object.keys(sel).forEach(function(k){ sel[k].addEventListener('change', apply); });
  apply();
})();
"""


def _options(name: str, values: list[str], first: str | None = "all") -> str:
    out = [f'<select id="f-{name}">']
    if first is not None:
        out.append(f'<option value="">{first}</option>')
    out += [f'<option value="{escape(v)}">{escape(v)}</option>' for v in values]
    out.append("</select>")
    return "".join(out)


def _html_cell(cell: Cell) -> str:
    if cell.status == MISSING:
        return '<td class="c not_run">not run</td>'
    tip = f"{cell.tests} test(s); compatible {cell.status}, exact {cell.exact}"
    why = f'<span class="why">{escape(cell.reason)}</span>' if cell.reason else ""
    return (
        f'<td class="c" title="{escape(tip)}"><span class="g {cell.status}">C {MARK[cell.status]} {escape(cell.status)}</span>'
        f'<span class="g {cell.exact}">E {MARK.get(cell.exact, "")} {escape(cell.exact)}</span>{why}</td>'
    )


def render_html(matrix: Matrix, title: str = "ollama-conformance compatibility matrix") -> str:
    surfaces = list(dict.fromkeys(r.surface for r in matrix.rows))
    levels = [lv for lv in LEVEL_ORDER if any(r.level == lv for r in matrix.rows)]
    head = ["<tr><th>Level</th><th>Feature</th>"]
    for i, t in enumerate(matrix.targets, 1):
        head.append(
            f'<th class="target"><b>{i}. {escape(t.label)}</b><br><span class=meta>version {escape(t.version or "unknown")}<br>'
            f"<code>{escape(t.url or '?')}</code><br>{escape(grade_line(matrix, i - 1))}<br>{escape(surface_line(t))}<br>"
            f"{escape(client_line(t))}</span></th>"
        )
    head.append("</tr>")
    body = []
    for surface in surfaces:
        body.append(f'<tr class="grp" data-surface="{escape(surface)}"><td colspan="{2 + len(matrix.targets)}">surface: {escape(surface)}</td></tr>')
        for row in (r for r in matrix.rows if r.surface == surface):
            compat = " ".join(c.status for c in row.cells)
            exact = " ".join(c.exact for c in row.cells)
            body.append(
                f'<tr class="feature" data-surface="{escape(row.surface)}" data-level="{escape(row.level)}" '
                f'data-compatible="{escape(compat)}" data-exact="{escape(exact)}"><td>{escape(row.level)}</td>'
                f"<td><code>{escape(row.feature)}</code></td>{''.join(_html_cell(c) for c in row.cells)}</tr>"
            )
    filters = (
        '<div id="filters">'
        f"<label>surface {_options('surface', surfaces)}</label>"
        f"<label>level {_options('level', levels)}</label>"
        f"<label>state {_options('state', [*STATES, UNKNOWN, MISSING], 'any')}</label>"
        f"<label>of grade {_options('grade', ['compatible', 'exact'], None)}</label>"
        '<span id="shown" class=meta></span></div>'
    )
    legend = ("<p class=meta>Each cell: <b>C</b> the compatible grade (does a real client work; what gates), <b>E</b> the "
              "Ollama-exact grade, then the first reason. <i>unknown</i>: the results file does not carry that grade "
              "(schema 1). A state filter keeps the features where at least one target is in that state.</p>")
    return (
        "<!DOCTYPE html><html lang=en><head><meta charset=utf-8>"
        f"<title>{escape(title)}</title><style>{CSS}</style></head><body>"
        f"<h1>{escape(title)}</h1><p class=meta>{len(matrix.targets)} targets × {len(matrix.rows)} features.</p>"
        f"{legend}{filters}<table id=matrix><thead>{''.join(head)}</thead><tbody>{''.join(body)}</tbody></table>"
        f"<script>{SCRIPT}</script></body></html>\n"
    )


# --- docs/compatibility.md ----------------------------------------------------------------------------------

BEGIN_MARK = "<!-- matrix:begin -->"
END_MARK = "<!-- matrix:end -->"


def splice_docs(existing: str, generated: str, command: str) -> str:
    """`existing` with the text between the matrix markers replaced (markers appended when absent)."""
    block = (f"{BEGIN_MARK}\n<!-- generated by `{command}`; edit outside the markers -->\n\n{generated.rstrip()}\n\n{END_MARK}")
    start, end = existing.find(BEGIN_MARK), existing.find(END_MARK)
    if start >= 0 and end > start:
        return existing[:start] + block + existing[end + len(END_MARK):]
    if start >= 0 or end >= 0:
        raise UsageError("the matrix markers are broken (one without the other, or in the wrong order)")
    return (existing.rstrip() + "\n\n" if existing.strip() else "") + "## Compatibility matrix\n\n" + block + "\n"


def to_json(matrix: Matrix) -> dict[str, Any]:
    return {
        "kind": "ollama-conformance.matrix",
        "schema_version": 1,
        "targets": [
            {"label": t.label, "url": t.url, "version": t.version, "source": str(t.source), "results_schema": t.schema_version,
             "grades": grade_line(matrix, i), "surfaces": surface_line(t), "clients": client_line(t)}
            for i, t in enumerate(matrix.targets)
        ],
        "rows": [
            {"surface": r.surface, "level": r.level, "feature": r.feature,
             "cells": [{"status": c.status, "exact": c.exact, "reason": c.reason, "tests": c.tests} for c in r.cells]}
            for r in matrix.rows
        ],
    }


def dump_json(matrix: Matrix) -> str:
    return json.dumps(to_json(matrix), indent=2) + "\n"
