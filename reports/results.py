"""Reading the results files that `check` and `bench` write (contract: docs/internals.md, "Results files").

A reader refuses, with one clear line (UsageError, exit 2), a file that is missing, not JSON, of a kind it does
not know, or of a major schema version it does not know. Everything else is read tolerantly: a field a newer
writer adds is ignored, a field an older writer lacks reads as empty.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ollama_conformance.errors import UsageError
from ollama_conformance.vocabulary import BENCH_KIND, CHECK_KIND, RESULT_STATES

KNOWN_MAJOR = {CHECK_KIND: (1, 2), BENCH_KIND: (1,)}  # check 2: surfaces, grades, inconclusive

STATUSES = RESULT_STATES
# Names a `run` folder uses for its inputs (reports/run_command.py writes them).
RUN_CHECK_FILE = "check.json"
RUN_BENCH_DIR = "bench"


@dataclass
class ResultsFile:
    """What every results file has: where it was read from, its JSON, the target and the start time."""

    path: Path
    raw: dict[str, Any]

    @property
    def target(self) -> dict[str, Any]:
        return dict(self.raw.get("target") or {})

    @property
    def started_at(self) -> str:
        return str(self.raw.get("started_at") or "")


@dataclass
class CheckResults(ResultsFile):
    @property
    def tests(self) -> list[dict[str, Any]]:
        return list(self.raw.get("tests") or [])


@dataclass
class BenchResults(ResultsFile):
    samples: list[dict[str, Any]] = field(default_factory=list)
    samples_note: str = ""  # why no samples were read, if none were

    @property
    def steps(self) -> list[dict[str, Any]]:
        return list(self.raw.get("steps") or [])

    def step_samples(self, step: str, *, ok_only: bool = True) -> list[dict[str, Any]]:
        """The measured samples of one step (not warmup, inside the window); by default only successful requests."""
        return [
            s
            for s in self.samples
            if s.get("step") == step
            and not s.get("warmup")
            and not s.get("after_window")  # sent after the step's window closed: not measured (load.metrics)
            and (not ok_only or s.get("status") == "ok")
        ]


@dataclass
class ResultSet:
    """What one or more paths given on the command line hold."""

    checks: list[CheckResults] = field(default_factory=list)
    benches: list[BenchResults] = field(default_factory=list)

    def empty(self) -> bool:
        return not self.checks and not self.benches


def _read_json(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror or exc}") from exc
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(f"{path} is not JSON ({exc.msg} at line {exc.lineno})") from exc
    if not isinstance(data, dict):
        raise UsageError(f"{path} is not a results file (top level is not an object)")
    return data


def _check_kind(path: Path, data: dict[str, Any]) -> str:
    kind = data.get("kind")
    if kind not in KNOWN_MAJOR:
        raise UsageError(f"{path}: unknown results kind {kind!r} (expected {CHECK_KIND} or {BENCH_KIND})")
    version = data.get("schema_version")
    major = int(version) if isinstance(version, int | float) and not isinstance(version, bool) else None
    if major is None and isinstance(version, str):
        head = version.split(".", 1)[0]
        major = int(head) if head.isdigit() else None
    if major is None:
        raise UsageError(f"{path}: missing or invalid schema_version {version!r}")
    if major not in KNOWN_MAJOR[kind]:
        known = ", ".join(map(str, KNOWN_MAJOR[kind]))
        raise UsageError(f"{path}: {kind} schema_version {version} is not supported (this reader knows {known})")
    return str(kind)


def _validate_check(path: Path, data: dict[str, Any]) -> None:
    tests = data.get("tests")
    if not isinstance(tests, list):
        raise UsageError(f"{path}: 'tests' must be a list")
    for i, test in enumerate(tests):
        if not isinstance(test, dict) or test.get("status") not in STATUSES:
            raise UsageError(f"{path}: tests[{i}] has no valid status (one of {', '.join(STATUSES)})")


def _validate_bench(path: Path, data: dict[str, Any]) -> None:
    steps = data.get("steps")
    if not isinstance(steps, list):
        raise UsageError(f"{path}: 'steps' must be a list")
    for i, step in enumerate(steps):
        if not isinstance(step, dict) or not isinstance(step.get("name"), str):
            raise UsageError(f"{path}: steps[{i}] has no name")


def _read_samples(results_path: Path, data: dict[str, Any]) -> tuple[list[dict[str, Any]], str]:
    name = data.get("samples_file") or "samples.jsonl"
    samples_path = results_path.parent / str(name)
    if not samples_path.is_file():
        return [], f"no samples file at {samples_path}"
    samples: list[dict[str, Any]] = []
    with samples_path.open(encoding="utf-8") as handle:
        for lineno, line in enumerate(handle, 1):
            line = line.strip()
            if not line:
                continue
            try:
                item = json.loads(line)
            except json.JSONDecodeError as exc:
                raise UsageError(f"{samples_path}:{lineno} is not JSON ({exc.msg})") from exc
            if isinstance(item, dict):
                samples.append(item)
    return samples, ""


def load_file(path: Path) -> CheckResults | BenchResults:
    data = _read_json(path)
    kind = _check_kind(path, data)
    if kind == CHECK_KIND:
        _validate_check(path, data)
        return CheckResults(path=path, raw=data)
    _validate_bench(path, data)
    samples, note = _read_samples(path, data)
    return BenchResults(path=path, raw=data, samples=samples, samples_note=note)


def load_paths(paths: list[Path]) -> ResultSet:
    """Files are read as results files; a folder is a bench --out folder (results.json) or a run folder."""
    found = ResultSet()
    for path in paths:
        candidates: list[Path]
        if path.is_dir():
            candidates = [
                p
                for p in (path / "results.json", path / RUN_CHECK_FILE, path / RUN_BENCH_DIR / "results.json")
                if p.is_file()
            ]
            if not candidates:
                raise UsageError(f"{path} holds no results (looked for results.json, {RUN_CHECK_FILE}, {RUN_BENCH_DIR}/results.json)")
        elif path.exists():
            candidates = [path]
        else:
            raise UsageError(f"{path} does not exist")
        for candidate in candidates:
            loaded = load_file(candidate)
            if isinstance(loaded, CheckResults):
                found.checks.append(loaded)
            else:
                found.benches.append(loaded)
    return found


def finite(value: Any) -> float | None:
    """A number from a results file, or None for null, missing, NaN or a non-number."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    value = float(value)
    return value if math.isfinite(value) else None
