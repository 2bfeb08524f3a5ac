"""Clients of the session's reference backend: the official openai and anthropic SDKs, and raw httpx."""

from __future__ import annotations

from collections.abc import Iterator

import anthropic
import httpx
import openai
import pytest

TIMEOUT_S = 180.0


@pytest.fixture(scope="session")
def openai_client(reference_url: str) -> Iterator[openai.OpenAI]:
    client = openai.OpenAI(base_url=f"{reference_url}/v1", api_key="ollama", max_retries=0, timeout=TIMEOUT_S)
    yield client
    client.close()


@pytest.fixture(scope="session")
def anthropic_client(reference_url: str) -> Iterator[anthropic.Anthropic]:
    client = anthropic.Anthropic(base_url=reference_url, api_key="ollama", max_retries=0, timeout=TIMEOUT_S)
    yield client
    client.close()


@pytest.fixture(scope="session")
def http(reference_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=reference_url, timeout=TIMEOUT_S) as client:
        yield client
