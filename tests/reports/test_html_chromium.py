"""The HTML report renders in headless Chromium (Debian's `chromium`) with no network; a screenshot is taken.

Set OLLAMA_CONFORMANCE_SCREENSHOT_DIR to keep the PNG for a human to look at.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from ollama_conformance.cli import main
from ollama_conformance.reports.screenshot import find_chromium, png_size, screenshot
from tests.conftest import missing_outside_pypi

WIDTH, HEIGHT = 1280, 2400


def test_html_report_screenshot(results_dir: Path, tmp_path: Path) -> None:
    if find_chromium() is None:
        missing_outside_pypi("Chromium is required for this test (Debian: apt-get install -y chromium)")
    out = tmp_path / "report"
    args = [str(results_dir / "check_candidate.json"), str(results_dir / "bench_baseline"), "--out", str(out)]
    assert main(["report", *args]) == 0
    png = screenshot(out / "report.html", tmp_path / "report.png", WIDTH, HEIGHT)
    data = png.read_bytes()
    assert png_size(data) == (WIDTH, HEIGHT)
    # A blank page of this size compresses to a few kB; tables, badge and six charts make it far larger.
    assert len(data) > 100_000
    keep = os.environ.get("OLLAMA_CONFORMANCE_SCREENSHOT_DIR")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        shutil.copy(png, Path(keep) / "report.png")


def test_screenshot_of_a_blank_page_is_small(tmp_path: Path) -> None:
    """The size floor above means something: an empty page stays far below it."""
    if find_chromium() is None:
        missing_outside_pypi("Chromium is required for this test (Debian: apt-get install -y chromium)")
    page = tmp_path / "blank.html"
    page.write_text("<!DOCTYPE html><html><body></body></html>")
    data = screenshot(page, tmp_path / "blank.png", WIDTH, HEIGHT).read_bytes()
    assert png_size(data) == (WIDTH, HEIGHT)
    assert len(data) < 100_000
