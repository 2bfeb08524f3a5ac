"""The reference backend with its models loaded before the suite runs against it.

The first load of a model may include its one-time conversion (a minute or more on two cores); that must not be
charged to a suite test's timeout.
"""

from __future__ import annotations

import httpx
import pytest


@pytest.fixture(scope="session")
def warm_reference_url(reference_url: str) -> str:
    with httpx.Client(base_url=reference_url, timeout=httpx.Timeout(900.0, connect=10.0)) as client:
        models = [m["model"] for m in client.get("/api/tags").json()["models"]]
        for model in models:
            capabilities = client.post("/api/show", json={"model": model}).json().get("capabilities") or []
            if "completion" in capabilities:
                client.post("/api/generate", json={"model": model, "prompt": "", "stream": False}).raise_for_status()
            elif "embedding" in capabilities:
                client.post("/api/embed", json={"model": model, "input": []}).raise_for_status()
    return reference_url
