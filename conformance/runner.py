"""Run the conformance suite programmatically: `run_check(CheckOptions(...)) -> exit status`.

The suite runs in a child `python -m pytest` so that a caller (the `check` and `run` subcommands, or a test)
keeps a clean process: no pytest state, no plugin registered twice. Progress goes to the caller's terminal.

Exit status: 0 every selected test passed or does not apply; 1 some test failed or errored; 2 bad options;
3 the target could not be used at all (every test is an error, the results file says why).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from ollama_conformance.errors import UsageError

SURFACES = ("native", "openai", "anthropic", "cloud")
LEVELS = ("MUST", "SHOULD", "MAY")
EXIT_PASS, EXIT_FAIL, EXIT_USAGE, EXIT_TARGET = 0, 1, 2, 3


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
    pytest_args: list[str] = field(default_factory=list)  # e.g. ["-k", "stream"], ["-x"]

    def validate(self) -> None:
        unknown = [s for s in self.surfaces if s not in SURFACES]
        if unknown:
            raise UsageError(f"unknown surface {unknown[0]!r}; choose from {', '.join(SURFACES)}")
        if self.level is not None and self.level not in LEVELS:
            raise UsageError(f"unknown level {self.level!r}; choose MUST, SHOULD or MAY")
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
        if self.target is not None:
            from ollama_conformance.conformance.target import normalise_url

            self.target = normalise_url(self.target)


def pytest_command(options: CheckOptions, json_path: Path) -> list[str]:
    """The child pytest command line for these options."""
    cmd = [sys.executable, "-m", "pytest", "--pyargs", "ollama_conformance.conformance.suite", "-p", "no:cacheprovider",
           "-o", "addopts=", "-o", "testpaths=", "-rN", "--conformance-json", str(json_path),
           "--conformance-timeout", str(options.timeout_s)]
    if options.discovery_timeout_s is not None:
        cmd += ["--discovery-timeout", str(options.discovery_timeout_s)]
    if options.target:
        cmd += ["--target", options.target]
    if options.profile:
        cmd += ["--profile", options.profile]
    if options.api_key_env:
        cmd += ["--api-key-env", options.api_key_env]
    if options.model:
        cmd += ["--model", options.model]
    if options.embed_model:
        cmd += ["--embed-model", options.embed_model]
    if options.surfaces:
        cmd += ["--surface", ",".join(options.surfaces)]
    if options.level:
        cmd += ["--level", options.level]
    for glob in options.features:
        cmd += ["--feature", glob]
    if options.allow_mutations:
        cmd.append("--allow-mutations")
    if options.junit:
        cmd += ["--junitxml", str(options.junit)]
    if options.workers:
        cmd += ["-n", str(options.workers)]
    if options.max_requests is not None:
        cmd += ["--max-requests", str(options.max_requests)]
    cmd.append("-q" if options.quiet else "-v")
    return cmd + list(options.pytest_args)


def run_check(options: CheckOptions) -> int:
    """Run the suite against `options.target` (or a fresh reference backend); write the JSON/JUnit asked for."""
    options.validate()
    with tempfile.TemporaryDirectory(prefix="ollama-conformance-") as scratch:
        json_path = options.json or Path(scratch) / "check.json"
        # Run from a neutral folder so no project conftest or pytest.ini of the caller's tree interferes.
        status = subprocess.call(pytest_command(options, Path(json_path).resolve()), cwd=scratch, env=os.environ.copy())
        if status in (2, 3, 4) or not Path(json_path).exists():
            # pytest itself refused (usage error, interrupted, internal error): its message is already printed.
            return EXIT_USAGE if status == 4 else (status if status in (EXIT_FAIL, EXIT_USAGE) else EXIT_FAIL)
        results = json.loads(Path(json_path).read_text(encoding="utf-8"))
    if results["target"].get("error"):
        return EXIT_TARGET
    if status == 5:  # no test selected
        print("ollama-conformance check: no test matches the selection", file=sys.stderr)
        return EXIT_USAGE
    total = results["summary"]["total"]
    return EXIT_FAIL if total["fail"] or total["error"] else EXIT_PASS
