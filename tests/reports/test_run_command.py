"""`ollama-conformance run`: the main job, end to end against the reference backend (a short configuration)."""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from ollama_conformance.cli import main

ARTEFACTS = ("check.json", "junit.xml", "check.log", "bench/results.json", "bench/samples.jsonl",
             "report.md", "report.html", "summary.json", "badge.svg")


def _run(args: list[str], env: dict[str, str], timeout_s: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ollama_conformance.cli", "run", *args],
        capture_output=True, text=True, timeout=timeout_s, env={**os.environ, **env}, check=False,
    )


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--skip-check", "--skip-bench"], "leave nothing to run"),
        (["--concurrency", "one"], "--concurrency must be a comma-separated list"),
        (["--concurrency", "0"], "each ≥ 1"),
        (["--target", "ftp://example"], "--target must be an http(s) URL"),
        (["--requests", "0"], "must be ≥ 1"),
    ],
)
def test_bad_options_exit_2(args: list[str], fragment: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--out", str(tmp_path / "out"), *args]) == 2
    assert fragment in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_non_empty_out_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "keep.txt").write_text("mine")
    assert main(["run", "--out", str(tmp_path)]) == 2
    assert "is not empty" in capsys.readouterr().err


@pytest.mark.slow
def test_unreachable_target_is_reported_not_hung(tmp_path: Path, private_history: Path) -> None:
    out = tmp_path / "run"
    proc = _run(["--target", "http://127.0.0.1:9", "--out", str(out), "--level", "MUST", "--check-timeout", "10"],
                {"OLLAMA_CONFORMANCE_HISTORY": str(private_history)}, timeout_s=300)
    assert proc.returncode == 3, proc.stderr[-2000:]
    summary = json.loads((out / "summary.json").read_text())
    check = summary["conformance"][0]
    assert check["target"]["error"]  # the reports say why
    assert check["total"]["pass"] == 0 and check["total"]["error"] > 0
    assert summary["performance"] == []  # no benchmark against a target that does not answer
    assert "target error" in (out / "report.md").read_text()


@pytest.mark.slow
def test_run_end_to_end_on_the_reference_backend(tmp_path: Path, private_history: Path) -> None:
    """No --target: run starts the reference backend itself, as the README's first command does."""
    out = tmp_path / "run"
    proc = _run(
        ["--out", str(out), "--level", "MUST", "--surface", "native",
         "--concurrency", "1,2", "--requests", "2", "--output-tokens", "8"],
        {"OLLAMA_CONFORMANCE_HISTORY": str(private_history)}, timeout_s=900,
    )
    assert proc.returncode in (0, 1), proc.stderr[-3000:]
    for name in ARTEFACTS:
        assert (out / name).is_file(), f"missing {name}"
    summary = json.loads((out / "summary.json").read_text())
    check = summary["conformance"][0]
    assert not check["target"].get("error")
    assert check["target"]["profile"] == "reference"
    assert check["total"]["pass"] > 0
    assert set(check["by_surface"]) == {"native"}
    must = check["by_level"]["MUST"]
    assert proc.returncode == (1 if must["fail"] or must["error"] else 0)  # the exit status follows MUST
    bench = summary["performance"][0]
    assert [s["name"] for s in bench["steps"]] == ["concurrency=1", "concurrency=2"]
    assert all(s["requests"]["ok"] >= 1 for s in bench["steps"])
    assert (bench.get("model") or {}).get("name") == "gemma3:270m"
    assert str(out / "report.html") in proc.stdout  # the summary says where the reports are
    assert "Conformance" in proc.stdout and "Performance" in proc.stdout
    memory = re.search(r"reference backend memory: RSS (\d+) MB at the end .* peak (\d+) MB during the run", proc.stdout)
    assert memory and 0 < int(memory[1]) <= int(memory[2]), proc.stdout[-2000:]
    badge = (out / "badge.svg").read_text()
    assert f"MUST {int(must['rate'] * 100 + 1e-9)}%" in badge
    with sqlite3.connect(private_history) as conn:
        assert conn.execute("SELECT count(*) FROM runs").fetchone()[0] == 2


def test_plain_progress_prints_lines_for_logs() -> None:
    """Without a terminal (CI logs), progress is plain lines: each phase's start and completion at least."""
    from rich.console import Console

    from ollama_conformance.run_command import PlainProgress

    console = Console(record=True, width=200, force_terminal=False)
    progress = PlainProgress(console)
    task = progress.add_task("conformance", total=100, detail="collecting")
    for pct in (10, 20, 100):
        progress.update(task, completed=pct, detail=f"[red]passed {pct}")
    text = console.export_text()
    assert "conformance 0% collecting" in text
    assert "conformance 100% passed 100" in text and "[red]" not in text
    assert text.count("conformance") == 2  # throttled: the 10% and 20% updates fall inside the interval


def test_suite_progress_follows_the_plugin_events(tmp_path: Path) -> None:
    """`run` moves its bar from the progress plugin's JSON lines, reading a half-written last line only once whole."""
    import subprocess
    import sys

    from ollama_conformance.run_command import SuiteProgress

    suite = tmp_path / "test_three.py"
    suite.write_text("import pytest\ndef test_a(): pass\ndef test_b(): assert False\n"
                     "def test_c(): pytest.skip('n/a')\n")
    events = tmp_path / "progress.jsonl"
    subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p",
                    "ollama_conformance.conformance.progress", "--ollama-progress", str(events), str(suite)],
                   cwd=tmp_path, capture_output=True, check=False, timeout=120)
    updates: list[dict] = []

    class Bar:
        def update(self, task: int, **kw: object) -> None:
            updates.append(kw)

    whole = events.read_text()
    events.write_text(whole + '{"event": "te')  # a line the plugin is still writing
    follower = SuiteProgress(events, Bar(), 0)
    follower.poll()
    assert follower.total == 3 and follower.done == 3
    assert follower.counts == {"passed": 1, "failed": 1, "skipped": 1}
    assert updates[-1]["detail"] == "failed 1 passed 1 skipped 1"
    with events.open("a") as handle:
        handle.write('st", "nodeid": "x", "outcome": "passed"}\n')
    follower.poll()
    assert follower.done == 4
