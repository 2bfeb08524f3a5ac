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


@pytest.fixture(scope="session")
def recordings() -> Path:
    path = recordings_dir()
    if not path.is_dir():
        pytest.fail(f"recordings not found at {path}; set OLLAMA_CONFORMANCE_RECORDINGS to the recordings folder")
    return path


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
