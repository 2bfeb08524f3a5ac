"""What keeps a run against the real Ollama Cloud cheap: a request budget and a small default model.

`--max-requests N` caps the requests the suite's tests send (discovery's few GET /api/tags and POST /api/show are
not counted): once N are spent, each later test that tries to send one is *not applicable* with the reason, so a
run never costs more than N calls. With pytest-xdist each worker process has its own budget of N.
"""

from __future__ import annotations

from collections.abc import Iterable

import httpx
import pytest

# Small, long-lived cloud models, cheapest first; the first one the cloud lists is the default chat model.
CLOUD_DEFAULT_MODELS = ("gpt-oss:20b", "gpt-oss:120b")


def preferred_cloud_model(names: Iterable[str | None]) -> str | None:
    listed = {n for n in names if n}
    return next((m for m in CLOUD_DEFAULT_MODELS if m in listed), None)


class RequestBudget:
    """Counts requests; past the limit, the request is not sent and the test is skipped (not applicable)."""

    def __init__(self, limit: int | None) -> None:
        if limit is not None and limit < 1:
            raise ValueError("--max-requests must be at least 1")
        self.limit = limit
        self.used = 0

    def spend(self, request: httpx.Request) -> None:
        """An httpx `request` event hook."""
        if self.limit is None:
            return
        if self.used >= self.limit:
            pytest.skip(f"the request budget of {self.limit} is spent (--max-requests); {request.method} "
                        f"{request.url.path} was not sent")  # fmt: skip
        self.used += 1


def session_budget(config: pytest.Config) -> RequestBudget:
    """The one budget of this pytest process, built from `--max-requests` on first use."""
    budget = getattr(config, "_conformance_request_budget", None)
    if budget is None:
        budget = RequestBudget(getattr(config.option, "ollama_max_requests", None))
        config._conformance_request_budget = budget  # type: ignore[attr-defined]
    return budget
