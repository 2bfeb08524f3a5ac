"""A pytest plugin that follows the suite for `ollama-conformance run`: one JSON line per event into a file.

Loaded only on request (`-p ollama_conformance.conformance.progress --ollama-progress PATH`), so it costs other
pytest runs nothing. Events: `{"event": "collected", "total": N}` once, then `{"event": "test", "nodeid": ...,
"outcome": "passed|failed|skipped"}` per finished test (with pytest-xdist, the controller writes them all).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import IO, Any

import pytest

OPTION = "--ollama-progress"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(OPTION, dest="ollama_progress", metavar="PATH", default=None,
                     help="append one JSON line per collected suite and finished test to PATH")


def pytest_configure(config: pytest.Config) -> None:
    path = config.getoption("ollama_progress")
    if path and not hasattr(config, "workerinput"):  # the xdist controller reports for every worker
        config.pluginmanager.register(ProgressWriter(Path(path)), "ollama-conformance-progress")


class ProgressWriter:
    def __init__(self, path: Path) -> None:
        self.handle: IO[str] = path.open("a", encoding="utf-8")

    def _write(self, event: dict[str, Any]) -> None:
        self.handle.write(json.dumps(event) + "\n")
        self.handle.flush()  # the reader follows the file while the suite runs

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        self._write({"event": "collected", "total": len(session.items)})

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        # one event per test: the call phase, or the setup phase when it did not pass (skip, error)
        if report.when == "call" or (report.when == "setup" and report.outcome != "passed"):
            self._write({"event": "test", "nodeid": report.nodeid, "outcome": report.outcome})

    def pytest_unconfigure(self, config: pytest.Config) -> None:
        self.handle.close()
