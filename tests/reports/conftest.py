"""Fixtures for the reports tests: the hand-written results files in fixtures/results/ and a private history."""

from __future__ import annotations

from pathlib import Path

import pytest

RESULTS = Path(__file__).resolve().parents[2] / "fixtures" / "results"


@pytest.fixture
def results_dir() -> Path:
    return RESULTS


@pytest.fixture(autouse=True)
def private_history(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Never touch the user's history database from a test."""
    path = tmp_path / "history.sqlite"
    monkeypatch.setenv("OLLAMA_CONFORMANCE_HISTORY", str(path))
    return path
