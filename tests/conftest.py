"""Fixtures shared by the project's own tests: the recordings folder and one reference backend per session."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent


def recordings_dir() -> Path:
    """Third-party recordings of real Ollama traffic: ../shared/recordings, or $OLLAMA_CONFORMANCE_RECORDINGS."""
    configured = os.environ.get("OLLAMA_CONFORMANCE_RECORDINGS")
    return Path(configured) if configured else REPO_ROOT.parent / "shared" / "recordings"


def missing_outside_pypi(message: str) -> None:
    """A test needs something that pip does not install (Debian's chromium, Redocly from npm, the recordings):
    skipped with one line on a fresh clone, failed where CI=true (.ci/run provides it, so absent is a bug)."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message)
    pytest.skip(message)


def require_recordings() -> Path:
    """The recordings folder; absent, the test skips with one line (a fresh clone), or fails where CI=true."""
    path = recordings_dir()
    if not path.is_dir():
        missing_outside_pypi(f"third-party recordings not found at {path}: set OLLAMA_CONFORMANCE_RECORDINGS to that folder")
    return path


@pytest.fixture(scope="session")
def recordings() -> Path:
    return require_recordings()


@pytest.fixture(scope="session")
def reference_url() -> Iterator[str]:
    """One reference backend for the whole session (models load once). OLLAMA_CONFORMANCE_TEST_TARGET reuses one."""
    external = os.environ.get("OLLAMA_CONFORMANCE_TEST_TARGET")
    if external:
        yield external.rstrip("/")
        return
    from ollama_conformance.reference_backend.launcher import ReferenceBackend

    with ReferenceBackend() as backend:
        yield backend.url
