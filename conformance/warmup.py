"""Load a freshly started reference backend's models before anything is measured or checked.

A fresh backend answers its first /api/show and first generation only once the model is converted and loaded
(50-90 s on a busy CPU), past the suite's per-request timeouts. `check` and `run` both warm it up here when they
start the backend themselves; a `--target` is never warmed up (its models are the user's business).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx

DEFAULT_CHAT_MODEL = "gemma3:270m"
DEFAULT_EMBED_MODEL = "all-minilm:22m"
WARM_UP_TIMEOUT_S = 600.0


def warm_up_requests(chat_model: str | None = None, embed_model: str | None = None) -> list[tuple[str, dict[str, Any]]]:
    """The requests that load the models: /api/show of each, a one-token generation, one embedding."""
    chat = chat_model or DEFAULT_CHAT_MODEL
    embed = embed_model or DEFAULT_EMBED_MODEL
    return [
        ("/api/show", {"model": chat}),
        ("/api/show", {"model": embed}),
        ("/api/generate", {"model": chat, "prompt": "Hello", "stream": False, "options": {"num_predict": 1}}),
        ("/api/embed", {"model": embed, "input": "Hello"}),
    ]


def warm_up(
    url: str,
    *,
    chat_model: str | None = None,
    embed_model: str | None = None,
    timeout_s: float = WARM_UP_TIMEOUT_S,
    on_request: Callable[[int, str, dict[str, Any]], None] | None = None,
) -> str:
    """Send the warm-up requests in order; `on_request(i, path, body)` before each. Returns a problem, or ""."""
    requests = warm_up_requests(chat_model, embed_model)
    try:
        with httpx.Client(base_url=url, timeout=httpx.Timeout(timeout_s, connect=10.0)) as client:
            for i, (path, body) in enumerate(requests):
                if on_request is not None:
                    on_request(i, path, body)
                response = client.post(path, json=body)
                if response.status_code != 200:
                    return f"warm-up {path} {body['model']}: HTTP {response.status_code} {response.text[:200]}"
    except httpx.TimeoutException as exc:
        return f"warm-up: no answer within {timeout_s:g} s ({type(exc).__name__})"
    except httpx.HTTPError as exc:
        return f"warm-up failed: {type(exc).__name__}: {exc}"
    return ""
