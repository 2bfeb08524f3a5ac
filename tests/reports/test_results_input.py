"""Reading results files: unusable input is refused with one clear line and exit status 2."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from ollama_conformance.cli import main
from ollama_conformance.errors import UsageError
from ollama_conformance.reports.results import load_paths

SCHEMA = Path(__file__).resolve().parents[2] / "conformance" / "results.schema.json"


def test_fixture_check_files_follow_the_check_schema(results_dir: Path) -> None:
    """check_graded.json is results v2 (the schema's version); the other two stay v1, which readers still accept."""
    schema = json.loads(SCHEMA.read_text())
    graded = json.loads((results_dir / "check_graded.json").read_text())
    assert graded["schema_version"] == schema["properties"]["schema_version"]["const"]
    jsonschema.validate(graded, schema)
    for name in ("check_baseline.json", "check_candidate.json"):
        assert json.loads((results_dir / name).read_text())["schema_version"] == 1
        assert load_paths([results_dir / name]).checks  # read all the same


def test_folders_are_read_as_bench_or_run_folders(results_dir: Path, tmp_path: Path) -> None:
    bench = load_paths([results_dir / "bench_baseline"])
    assert len(bench.benches) == 1 and not bench.checks
    assert len(bench.benches[0].samples) == 2 * 50  # 2 warmup + 48 measured per step
    run_folder = tmp_path / "run"
    (run_folder / "bench").mkdir(parents=True)
    (run_folder / "check.json").write_text((results_dir / "check_baseline.json").read_text())
    (run_folder / "bench" / "results.json").write_text((results_dir / "bench_baseline" / "results.json").read_text())
    both = load_paths([run_folder])
    assert len(both.checks) == 1 and len(both.benches) == 1
    assert both.benches[0].samples == []  # no samples.jsonl copied: read as "no samples", with the reason
    assert "no samples file" in both.benches[0].samples_note


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        ("not json", "is not JSON"),
        ("[]", "not a results file"),
        ('{"kind": "something.else", "schema_version": 1}', "unknown results kind"),
        ('{"kind": "ollama-conformance.check", "schema_version": 3, "tests": []}', "schema_version 3 is not supported"),
        ('{"kind": "ollama-conformance.check", "tests": []}', "missing or invalid schema_version"),
        ('{"kind": "ollama-conformance.check", "schema_version": 1, "tests": [{"status": "maybe"}]}', "no valid status"),
        ('{"kind": "ollama-conformance.bench", "schema_version": 1, "steps": {}}', "'steps' must be a list"),
    ],
)
def test_bad_files_are_refused(tmp_path: Path, content: str, fragment: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(UsageError, match=fragment):
        load_paths([path])


def test_bad_input_exits_2_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "bad.json"
    path.write_text('{"kind": "ollama-conformance.bench", "schema_version": 7, "steps": []}')
    assert main(["report", str(path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "schema_version 7 is not supported" in err
    assert main(["report", str(tmp_path / "missing.json")]) == 2
    assert main(["report", str(tmp_path)]) == 2  # a folder with no results in it
    assert not (tmp_path / "out").exists()


def test_broken_samples_line_is_refused(results_dir: Path, tmp_path: Path) -> None:
    folder = tmp_path / "bench"
    folder.mkdir()
    (folder / "results.json").write_text((results_dir / "bench_baseline" / "results.json").read_text())
    (folder / "samples.jsonl").write_text('{"step": "concurrency=1"}\n{broken\n')
    with pytest.raises(UsageError, match=r"samples.jsonl:2 is not JSON"):
        load_paths([folder])


def test_fixture_bench_files_follow_the_bench_schema(results_dir: Path) -> None:
    schema = json.loads((SCHEMA.parent.parent / "load" / "results.schema.json").read_text())
    for name in ("bench_baseline", "bench_noise", "bench_regressed"):
        jsonschema.validate(json.loads((results_dir / name / "results.json").read_text()), schema)
