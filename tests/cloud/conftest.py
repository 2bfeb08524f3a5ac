"""Reference backends on loopback for the cloud tests: one `--cloud` upstream and daemons routed to it.

Package-scoped: they start once for tests/cloud and stop when its last test has run.

The daemons never load a model (every request they get is forwarded or refused), so only the cloud loads one.
"""

from __future__ import annotations

import secrets
import socket
from collections.abc import Iterator

import pytest

from ollama_conformance.reference_backend.launcher import ReferenceBackend

KEY_ENV = "OLLAMA_CONFORMANCE_TEST_CLOUD_KEYS"


@pytest.fixture(scope="package")
def cloud_key() -> str:
    return "test-" + secrets.token_urlsafe(24)


@pytest.fixture(scope="package")
def cloud_url(cloud_key: str) -> Iterator[str]:
    """The reference backend in cloud mode, accepting `cloud_key` (and a second key, to show several work)."""
    env = {KEY_ENV: f"{cloud_key},second-{cloud_key}"}
    with ReferenceBackend(args=["--cloud", "--api-key-env", KEY_ENV], env=env) as backend:
        yield backend.url


def _daemon(cloud_base_url: str, api_key: str | None, no_cloud: bool) -> ReferenceBackend:
    env = {"OLLAMA_CLOUD_BASE_URL": cloud_base_url, "OLLAMA_NO_CLOUD": "1" if no_cloud else "0", "OLLAMA_API_KEY": api_key or ""}
    return ReferenceBackend(env=env)


@pytest.fixture(scope="package")
def daemon_url(cloud_url: str, cloud_key: str) -> Iterator[str]:
    """A daemon that forwards cloud models to `cloud_url` with the key, as `ollama serve` does to ollama.com."""
    with _daemon(cloud_url, cloud_key, no_cloud=False) as backend:
        yield backend.url


@pytest.fixture(scope="package")
def no_cloud_url(cloud_url: str, cloud_key: str) -> Iterator[str]:
    """A daemon with OLLAMA_NO_CLOUD=1: every cloud path answers 403."""
    with _daemon(cloud_url, cloud_key, no_cloud=True) as backend:
        yield backend.url


@pytest.fixture(scope="package")
def dead_upstream_url() -> Iterator[str]:
    """A daemon whose cloud upstream refuses connections: a closed loopback port."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with _daemon(f"http://127.0.0.1:{port}", "unused-key", no_cloud=False) as backend:
        yield backend.url
