"""The compatibility matrix (reports/matrix.py, `ollama-conformance matrix`).

Inputs: fixtures/results/matrix/*.json, check results written by real `check` runs (fixtures/results/matrix/README.md
says against what and with which command), and the hand-written schema-1 files of fixtures/results.
The Chromium test renders the page offline, checks the screenshot's structure (one column of cells per target),
and drives the inline filter script through the URL fragment, reading the DOM Chromium ends with.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
from png_pixels import decode, rgb

from ollama_conformance.cli import main
from ollama_conformance.errors import UsageError
from ollama_conformance.reports import matrix
from ollama_conformance.reports.screenshot import HEADLESS_FLAGS, find_chromium, screenshot

MATRIX_FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "results" / "matrix"
CELL_COLOURS = {rgb(c) for c in ("#b9e4b9", "#f4a49c", "#f7d28a", "#c9c2f0")}  # grade badges (matrix.CSS); not grey: text antialiasing makes greys
HEADER, BAR = rgb("#eeeeee"), rgb("#333333")  # th background, surface group bar (matrix.CSS)
WIDTH, HEIGHT = 1400, 1400
TOP_ROWS = 700  # what is decoded of the screenshot (header, first group bar, first rows of cells)


def real_runs() -> list[Path]:
    return sorted(MATRIX_FIXTURES.glob("*.json"))


def test_there_are_at_least_four_real_targets() -> None:
    runs = real_runs()
    assert len(runs) >= 4, f"fixtures/results/matrix has {len(runs)} results files"
    urls = {json.loads(p.read_text())["target"]["url"] for p in runs}
    assert len(urls) == len(runs), "each fixture is a different target"


def test_v1_and_v2_side_by_side(results_dir: Path) -> None:
    v2 = real_runs()[0]
    built = matrix.build_matrix([results_dir / "check_baseline.json", v2], ["old", "new"])
    assert [t.label for t in built.targets] == ["old", "new"]
    assert built.targets[0].schema_version == 1 and built.targets[1].schema_version == 2
    old = [r.cells[0] for r in built.rows if r.cells[0].status == "pass"]
    assert old and all(c.exact == matrix.UNKNOWN for c in old), "schema 1 has no exact grade: unknown, never pass"
    assert "surfaces unknown" in matrix.surface_line(built.targets[0])
    assert any(r.cells[1].exact in matrix.STATES for r in built.rows)
    # a feature one file lacks is "not run" there, not a pass
    assert any(r.cells[0].status == matrix.MISSING for r in built.rows)


def test_cells_carry_reasons_and_labels_default_to_version_and_url() -> None:
    built = matrix.build_matrix(real_runs())
    for target in built.targets:
        assert target.url in target.label or target.url.split("//")[-1].split("/")[0] in target.label
    failing = [c for r in built.rows for c in r.cells if c.status in ("fail", "error")]
    assert failing and all(c.reason for c in failing), "every failing cell says why"
    text = matrix.render_markdown(built)
    assert text.count("### Surface:") >= 2
    for target in built.targets:
        assert target.label.replace("|", "\\|") in text


def test_bad_inputs_are_one_line_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    not_json = tmp_path / "x.json"
    not_json.write_text("{nope")
    bench = tmp_path / "b.json"
    bench.write_text(json.dumps({"kind": "ollama-conformance.bench", "schema_version": 1, "steps": []}))
    future = tmp_path / "f.json"
    future.write_text(json.dumps({"kind": "ollama-conformance.check", "schema_version": 9, "tests": []}))
    one = str(real_runs()[0])
    for argv in ([str(not_json)], [str(bench)], [str(future)], [str(tmp_path / "missing.json")], [one, "--label", "a", "--label", "b"]):
        assert main(["matrix", *argv, "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 5


def test_docs_splice_keeps_the_hand_written_text() -> None:
    first = matrix.splice_docs("# Compatibility\n\nHand-written verdicts.\n", "| a |", "cmd")
    assert first.startswith("# Compatibility\n\nHand-written verdicts.") and "| a |" in first
    second = matrix.splice_docs(first + "\nMore text after.\n", "| b |", "cmd")
    assert "| a |" not in second and "| b |" in second and second.endswith("More text after.\n")
    assert second.count(matrix.BEGIN_MARK) == 1
    with pytest.raises(UsageError):
        matrix.splice_docs(f"text {matrix.END_MARK} {matrix.BEGIN_MARK}", "x", "cmd")


def _dump_dom(page: Path, fragment: str) -> str:
    chromium = find_chromium()
    assert chromium is not None
    with tempfile.TemporaryDirectory(prefix="ollama-conformance-chromium-") as profile:
        proc = subprocess.run([chromium, *HEADLESS_FLAGS, f"--user-data-dir={profile}", "--dump-dom",
                               page.resolve().as_uri() + fragment], capture_output=True, text=True, timeout=90, check=False)
    assert proc.returncode == 0, proc.stderr[-500:]
    return proc.stdout


def _runs(row: bytes, width: int, colour: tuple[int, int, int], min_len: int) -> list[tuple[int, int]]:
    """x-intervals of at least min_len pixels of exactly `colour` on one pixel row."""
    runs: list[tuple[int, int]] = []
    start = None
    for x in range(width + 1):
        inside = x < width and (row[3 * x], row[3 * x + 1], row[3 * x + 2]) == colour
        if inside and start is None:
            start = x
        elif not inside and start is not None:
            if x - start >= min_len:
                runs.append((start, x - 1))
            start = None
    return runs


def _structure(png: bytes) -> tuple[list[tuple[int, int]], int | None, list[bool]]:
    """From the top of the screenshot: the header cells (x-intervals), the first surface bar's y, and for each
    header cell whether grade badges are drawn below it (a column of cells)."""
    width, _, rows = decode(png, max_rows=TOP_ROWS)
    header_top = next((y for y, row in enumerate(rows) if len(_runs(row, width, HEADER, 30)) >= 3), None)
    if header_top is None:
        return [], None, []
    cells = _runs(rows[header_top + 1], width, HEADER, 30)  # the padding line above the header text: no glyphs
    bar = next((y for y, row in enumerate(rows) if y > header_top and sum(b - a for a, b in _runs(row, width, BAR, 50)) > width // 2), None)
    drawn = [False] * len(cells)
    for row in rows[(bar or len(rows)) + 1:]:
        for x in range(width):
            if (row[3 * x], row[3 * x + 1], row[3 * x + 2]) in CELL_COLOURS:
                for i, (a, b) in enumerate(cells):
                    if a <= x <= b:
                        drawn[i] = True
    return cells, bar, drawn


def test_matrix_renders_in_chromium(tmp_path: Path) -> None:
    if find_chromium() is None:
        pytest.fail("Chromium is required for this test (Debian: apt-get install -y chromium)")
    runs = real_runs()
    out = tmp_path / "matrix"
    assert main(["matrix", *map(str, runs), "--out", str(out)]) == 0
    page = out / "matrix.html"
    html = page.read_text()
    assert "<link" not in html and "src=" not in html and "fetch(" not in html, "self-contained: nothing to load"

    png = screenshot(page, tmp_path / "matrix.png", WIDTH, HEIGHT).read_bytes()
    cells, bar, drawn = _structure(png)
    assert len(cells) == 2 + len(runs), f"header cells {cells}: Level, Feature and one per target ({len(runs)})"
    assert bar is not None, "no surface group bar under the header"
    assert drawn == [False, False] + [True] * len(runs), "every target column has grade cells; Level and Feature none"

    # the filters, run by Chromium from the fragment: only failing openai features stay
    built = matrix.build_matrix(runs)
    expected = sum(1 for r in built.rows if r.surface == "openai" and any(c.status == "fail" for c in r.cells))
    assert expected > 0
    dom = _dump_dom(page, "#surface=openai&state=fail")
    shown = dom.count('<tr class="feature"')
    hidden = dom.count('<tr class="feature hidden"')
    assert (shown, shown + hidden) == (expected, len(built.rows))
    assert f"{expected} of {len(built.rows)} features shown" in dom

    keep = os.environ.get("OLLAMA_CONFORMANCE_SCREENSHOT_DIR")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        shutil.copy(tmp_path / "matrix.png", Path(keep) / "matrix.png")


def test_every_report_shows_the_clients(tmp_path: Path) -> None:
    """The `clients` section of a real run reaches report.md, report.html, summary.json and the matrix."""
    run = next(p for p in real_runs() if json.loads(p.read_text()).get("clients"))
    clients = json.loads(run.read_text())["clients"]
    assert main(["report", str(run), "--out", str(tmp_path / "r")]) == 0
    assert main(["matrix", str(run), "--out", str(tmp_path / "m")]) == 0
    md = (tmp_path / "r" / "report.md").read_text()
    page = (tmp_path / "r" / "report.html").read_text()
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    for client in clients:
        line = f"{client['client']} {client['version']}: {client['passed']}/{client['total']}" if client["state"] == "ran" else client["client"]
        assert line in md and line in page and line in (tmp_path / "m" / "matrix.md").read_text()
    assert summary["conformance"][0]["clients"] == clients


def test_report_of_several_checks_adds_the_matrix(tmp_path: Path) -> None:
    runs = real_runs()[:2]
    assert main(["report", *map(str, runs), "--out", str(tmp_path)]) == 0
    side_by_side = (tmp_path / "matrix.md").read_text()
    for target in matrix.build_matrix(runs).targets:
        assert target.label in side_by_side
