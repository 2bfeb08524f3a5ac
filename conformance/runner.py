"""Run the conformance suite programmatically: `run_check(CheckOptions(...)) -> exit status`.

The suite runs in a child `python -m pytest` so that a caller (the `check` and `run` subcommands, or a test)
keeps a clean process: no pytest state, no plugin registered twice. Progress goes to the caller's terminal.

Exit status (`conformance.results.gate_exit_code`): 0 no test at or above the gate (`--gate`, default MUST)
failed, errored or was inconclusive; 1 otherwise; 2 bad options; 3 nothing at the URL answers HTTP (the results
file says why); 4 the harness itself broke (the traceback is saved to a file, one line is printed).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

from ollama_conformance.conformance.results import (
    DEFAULT_GATE,
    EXIT_FAIL,
    EXIT_HARNESS,
    EXIT_PASS,
    EXIT_TARGET,
    EXIT_USAGE,
    GATES,
    LEVELS,
    gate_exit_code,
    gate_failures,
)
from ollama_conformance.errors import UsageError

SURFACES = ("native", "openai", "anthropic", "cloud")
__all__ = ["EXIT_FAIL", "EXIT_HARNESS", "EXIT_PASS", "EXIT_TARGET", "EXIT_USAGE", "CheckOptions", "pytest_command",
           "run_check", "save_traceback"]


@dataclass
class CheckOptions:
    target: str | None = None  # None: start the reference backend
    profile: str | None = None  # local | cloud | reference (default: local with a target, reference without)
    api_key_env: str | None = None
    model: str | None = None
    embed_model: str | None = None
    surfaces: list[str] = field(default_factory=list)
    level: str | None = None
    features: list[str] = field(default_factory=list)  # globs over feature ids
    allow_mutations: bool = False
    junit: Path | None = None
    json: Path | None = None
    timeout_s: float = 120.0
    discovery_timeout_s: float | None = None  # None: 300 s for a backend started here, else timeout_s
    max_requests: int | None = None  # request budget of the tests (conformance/cloud_profile.py)
    workers: int = 0  # pytest-xdist processes; 0 = none
    quiet: bool = False
    gate: str = DEFAULT_GATE
    traceback_file: Path | None = None  # where a harness error's traceback goes (default: a temporary file)
    pytest_args: list[str] = field(default_factory=list)  # e.g. ["-k", "stream"], ["-x"]

    def validate(self) -> None:
        unknown = [s for s in self.surfaces if s not in SURFACES]
        if unknown:
            raise UsageError(f"unknown surface {unknown[0]!r}; choose from {', '.join(SURFACES)}")
        if self.level is not None and self.level not in LEVELS:
            raise UsageError(f"unknown level {self.level!r}; choose MUST, SHOULD or MAY")
        if self.gate not in GATES:
            raise UsageError(f"unknown gate {self.gate!r}; choose {', '.join(GATES)}")
        if self.profile is not None and self.profile not in ("local", "cloud", "reference"):
            raise UsageError(f"unknown profile {self.profile!r}; choose local, cloud or reference")
        if self.timeout_s <= 0:
            raise UsageError("--timeout must be a positive number of seconds")
        if self.discovery_timeout_s is not None and self.discovery_timeout_s <= 0:
            raise UsageError("--discovery-timeout must be a positive number of seconds")
        if self.max_requests is not None and self.max_requests < 1:
            raise UsageError("--max-requests must be at least 1")
        if self.workers < 0:
            raise UsageError("the number of workers must be ≥ 0")
        for flag, path in (("--json", self.json), ("--junit", self.junit)):
            parent = Path(path).parent if path is not None else None
            if parent is not None and parent.exists() and not parent.is_dir():
                raise UsageError(f"{flag} {path}: {parent} is not a folder")
        if self.target is not None:
            from ollama_conformance.conformance.target import normalise_url

            self.target = normalise_url(self.target)


def default_traceback_file(command: str) -> Path:
    return Path(tempfile.gettempdir()) / f"ollama-conformance-{command}-traceback-{time.strftime('%Y%m%d-%H%M%S')}.txt"


def save_traceback(command: str, exc: BaseException, path: Path | None = None) -> Path:
    """Write a harness error's traceback to a file; the caller prints one line naming it (exit status 4)."""
    path = path or default_traceback_file(command)
    path.write_text("".join(traceback.format_exception(exc)), encoding="utf-8")
    return path


def pytest_command(options: CheckOptions, json_path: Path) -> list[str]:
    # Failures are reported by the plugin, one line each with a curl line: pytest's tracebacks would repeat them.
    # schemathesis's pytest plugin (when installed) is not used by the suite (test_properties calls schemathesis
    # itself) and costs about a second of imports at every start
    cmd = [sys.executable, "-m", "pytest", "--pyargs", "ollama_conformance.conformance.suite", "-p", "no:cacheprovider",
           "-p", "no:schemathesis", "-o", "addopts=", "-o", "testpaths=", "-rN", "--tb=no", "--ollama-json", str(json_path),
           "--ollama-timeout", str(options.timeout_s), "--ollama-gate", options.gate]
    if options.discovery_timeout_s is not None:
        cmd += ["--ollama-discovery-timeout", str(options.discovery_timeout_s)]
    if options.target:
        cmd += ["--ollama-target", options.target]
    if options.profile:
        cmd += ["--ollama-profile", options.profile]
    if options.api_key_env:
        cmd += ["--ollama-api-key-env", options.api_key_env]
    if options.model:
        cmd += ["--ollama-model", options.model]
    if options.embed_model:
        cmd += ["--ollama-embed-model", options.embed_model]
    if options.surfaces:
        cmd += ["--ollama-surface", ",".join(options.surfaces)]
    if options.level:
        cmd += ["--ollama-level", options.level]
    for glob in options.features:
        cmd += ["--ollama-feature", glob]
    if options.allow_mutations:
        cmd.append("--ollama-allow-mutations")
    if options.junit:
        cmd += ["--junitxml", str(options.junit)]
    if options.workers:
        cmd += ["-n", str(options.workers)]
    if options.max_requests is not None:
        cmd += ["--ollama-max-requests", str(options.max_requests)]
    if options.traceback_file is not None:
        cmd += ["--ollama-traceback-file", str(options.traceback_file)]
    cmd.append("-q" if options.quiet else "-v")
    return cmd + list(options.pytest_args)


def run_check(options: CheckOptions) -> int:
    """Run the suite against `options.target` (or a fresh reference backend); write the JSON/JUnit asked for."""
    options.validate()
    if options.traceback_file is None:
        options.traceback_file = default_traceback_file("check")
    with tempfile.TemporaryDirectory(prefix="ollama-conformance-") as scratch:
        json_path = options.json or Path(scratch) / "check.json"
        # Run from a neutral folder so no project conftest or pytest.ini of the caller's tree interferes.
        status = subprocess.call(pytest_command(options, Path(json_path).resolve()), cwd=scratch, env=os.environ.copy())
        if status == 3 or (status not in (2, 4, 5) and not Path(json_path).exists()):
            # pytest's internal error: the plugin wrote the traceback to the file and printed one line.
            if not options.traceback_file.exists():  # pytest's own output above says what happened
                print(f"ollama-conformance check: internal error: pytest exit status {status} and no results", file=sys.stderr)
            return EXIT_HARNESS
        if status in (2, 4) or not Path(json_path).exists():
            # pytest refused (usage error, interrupted): its one-line message is already printed.
            return EXIT_USAGE if status == 4 else EXIT_FAIL
        results = json.loads(Path(json_path).read_text(encoding="utf-8"))
    if status == 5 and not results.get("target", {}).get("error"):  # no test selected
        print("ollama-conformance check: no test matches the selection", file=sys.stderr)
        return EXIT_USAGE
    code = gate_exit_code(results, options.gate)
    if code == EXIT_FAIL:
        failing = gate_failures(results, options.gate)
        print(f"ollama-conformance check: {len(failing)} test(s) at or above the {options.gate} gate did not pass "
              "(exit 1; --gate none, SHOULD or MAY changes what counts)", file=sys.stderr)
    return code
