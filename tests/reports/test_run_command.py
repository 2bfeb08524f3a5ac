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

LOCAL = "reference backend (throw-away store)"
CLOUD = "reference backend in cloud mode (serve --cloud, generated key)"
NO_CLOUD = "reference backend with OLLAMA_NO_CLOUD=1"
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
    assert {t["label"] for t in check["targets"]} == {LOCAL, CLOUD, NO_CLOUD}
    # measured, not configured: the backend run starts has 2 decode slots for concurrency 2, and says what it did
    assert bench["parallelism"].startswith("Parallelism (measured from the timing")
    assert bench["parallelism"] in (out / "report.md").read_text() and "Parallelism (measured" in proc.stdout
    assert all(s["parallelism"]["max"] >= 1 for s in bench["steps"])
    memory = re.search(r"reference backend memory: RSS (\d+) MB at the end .* peak (\d+) MB during the run", proc.stdout)
    assert memory and 0 < int(memory[1]) <= int(memory[2]), proc.stdout[-2000:]
    badge = (out / "badge.svg").read_text()
    assert f"MUST {int(must['rate'] * 100 + 1e-9)}%" in badge
    with sqlite3.connect(private_history) as conn:
        assert conn.execute("SELECT count(*) FROM runs").fetchone()[0] == 2


@pytest.mark.slow
def test_run_covers_lifecycle_cloud_and_no_cloud(tmp_path: Path, private_history: Path) -> None:
    """The embedded default checks what the bundled backend serves: the lifecycle on a throw-away store, the cloud
    profile on a cloud-mode backend, the refusals on an OLLAMA_NO_CLOUD=1 one; one result, each row its target."""
    out = tmp_path / "run"
    features = ["copy.basic", "delete.basic", "create.from", "pull.stream", "cloud.auth.*", "cloud.tags",
                "cloud.disabled", "cloud.errors.shape", "chat.tools.refused"]
    scratch = tmp_path / "tmp"  # the run's temporary folders (the throw-away stores among them) go here
    scratch.mkdir()
    proc = _run(["--out", str(out), "--skip-bench", "--no-history", *[a for f in features for a in ("--feature", f)]],
                {"TMPDIR": str(scratch)}, timeout_s=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    check = json.loads((out / "check.json").read_text())
    ran_on: dict[str, set[str]] = {}
    for test in check["tests"]:
        assert test["status"] == "pass", (test["id"], test["status"], test["message"])
        ran_on.setdefault(test["feature"], set()).add(test["target"])
    assert ran_on["copy.basic"] == ran_on["create.from"] == ran_on["pull.stream"] == {LOCAL}
    assert ran_on["cloud.auth.missing"] == ran_on["cloud.tags"] == {CLOUD}
    assert ran_on["cloud.disabled"] == ran_on["cloud.errors.shape"] == {NO_CLOUD}
    assert ran_on["chat.tools.refused"] == {NO_CLOUD}  # on a model created there without the tools capability
    assert [t["label"] for t in check["targets"]] == [LOCAL, CLOUD, NO_CLOUD]
    assert (out / "check-parts" / "check-cloud.json").is_file() and (out / "check-parts" / "check-no-cloud.json").is_file()
    report = (out / "report.md").read_text()
    assert f"**{CLOUD}**" in report and f"**{NO_CLOUD}**" in report
    junit = (out / "junit.xml").read_text()
    assert "<skipped" not in junit  # the JUnit file says what check.json says
    # the throw-away stores are gone with the run
    assert not list(scratch.glob("ollama-conformance-store-*")), list(scratch.iterdir())


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


def test_fold_replaces_only_the_rows_an_extra_run_answers(results_dir: Path) -> None:
    """check_parts.fold: the main run's rows that were not applicable for the stated reason take the extra run's
    result (a pass, and a fail: folding must not hide one); other rows stay, every row names its target, the
    counts follow, and the document still matches the results schema."""
    import copy

    from ollama_conformance.check_parts import Part, fold
    from ollama_conformance.conformance.results import validate_results

    main = json.loads((results_dir / "check_graded.json").read_text())
    main["schema_version"] = 2
    by_id = {t["id"]: t for t in main["tests"]}
    cloud_ids = ["conformance/tests/test_chat.py::test_thinking", "conformance/tests/test_chat.py::test_vision"]
    for test_id in cloud_ids:
        by_id[test_id]["message"] = "needs the cloud profile: --profile cloud with the key in OLLAMA_API_KEY"
    extra = copy.deepcopy(main)
    for test in extra["tests"]:
        test["status"] = test["exact_status"] = "pass"
        test["message"] = ""
    extra_by_id = {t["id"]: t for t in extra["tests"]}
    extra_by_id[cloud_ids[1]].update(status="fail", exact_status="fail", message="401 expected")
    folded = fold(Part("local", (), main), [Part("cloud mode", ("needs the cloud profile",), extra)])
    got = {t["id"]: t for t in folded["tests"]}
    assert got[cloud_ids[0]]["status"] == "pass" and got[cloud_ids[0]]["target"] == "cloud mode"
    assert got[cloud_ids[1]]["status"] == "fail" and got[cloud_ids[1]]["target"] == "cloud mode"
    failed = "conformance/tests/test_errors.py::test_unknown_model_message"  # the extra run's pass does not replace it
    assert got[failed]["status"] == "fail" and got[failed]["target"] == "local"
    assert folded["summary"]["total"]["not_applicable"] == 0
    assert folded["summary"]["total"]["fail"] == main["summary"]["total"]["fail"] + 1
    assert [(t["label"], t["tests"]) for t in folded["targets"]] == [("local", 14), ("cloud mode", 2)]
    assert all(t["target"] for t in folded["tests"])
    assert validate_results(folded) == []
    other_reason = fold(Part("local", (), main), [Part("no-cloud", ("cloud is enabled on the target",), extra)])
    assert {t["id"]: t["status"] for t in other_reason["tests"]} == {t["id"]: t["status"] for t in main["tests"]}
