"""Fixtures for the load harness's tests: synthetic servers with known schedules, and bench runs against them.

Locust is never imported in this process (it monkey-patches at import): benches run it as child processes.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from ollama_conformance.load.runner import BenchOptions, read_samples, run_bench
from ollama_conformance.load.synthetic import SyntheticProcess


@pytest.fixture
def synthetic() -> Iterator[Callable[..., SyntheticProcess]]:
    """Start synthetic servers with the given CLI arguments; all are stopped after the test."""
    started: list[SyntheticProcess] = []

    def start(*args: str) -> SyntheticProcess:
        server = SyntheticProcess(list(args))
        server.start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


class BenchRun:
    def __init__(self, out: Path, status: int) -> None:
        self.out = out
        self.status = status
        self.results: dict[str, Any] = json.loads((out / "results.json").read_text())
        self.samples = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines() if line]

    def step_samples(self, index: int = 0) -> list[dict[str, Any]]:
        name = self.results["steps"][index]["name"]
        return [s for s in self.samples if s["step"] == name]


@pytest.fixture
def bench(tmp_path: Path) -> Callable[..., BenchRun]:
    """Run `run_bench` with short defaults into a fresh folder; returns the parsed outputs."""
    counter = iter(range(1000))

    def run(**overrides: Any) -> BenchRun:
        out = tmp_path / f"bench-{next(counter)}"
        defaults: dict[str, Any] = {"model": "synthetic", "duration_s": 2.0, "warmup_s": 0.0, "output_tokens": None,
                                    "request_timeout_s": 20.0, "quiet": True, "out_dir": str(out)}
        status = run_bench(BenchOptions(**{**defaults, **overrides}))
        return BenchRun(out, status)

    return run


__all__ = ["BenchRun", "read_samples"]
