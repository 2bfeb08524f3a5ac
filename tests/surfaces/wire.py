"""Shared by the surface tests: the models they use and strict readers of SSE bytes as Ollama writes them."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import httpx

CHAT_MODEL = "gemma3:270m"
EMBED_MODEL = "all-minilm:22m"


@dataclass
class Event:
    name: str | None  # the `event:` line, None for OpenAI's data-only events
    data: str

    def json(self) -> Any:
        return json.loads(self.data)


def split_sse(raw: bytes) -> list[Event]:
    """Every event is `[event: NAME\\n]data: ONE-LINE\\n\\n`; anything else fails the caller's test."""
    text = raw.decode("utf-8")
    assert text.endswith("\n\n"), f"stream does not end with a blank line: {text[-80:]!r}"
    events = []
    for block in text[:-2].split("\n\n"):
        lines = block.split("\n")
        name = None
        if lines[0].startswith("event: "):
            name = lines.pop(0).removeprefix("event: ")
        assert len(lines) == 1 and lines[0].startswith("data: "), f"malformed SSE block: {block!r}"
        events.append(Event(name, lines[0].removeprefix("data: ")))
    return events


def post_stream(http: httpx.Client, path: str, body: dict[str, Any]) -> tuple[httpx.Response, bytes]:
    with http.stream("POST", path, json=body) as response:
        raw = response.read()
    return response, raw


def capabilities(http: httpx.Client, model: str = CHAT_MODEL) -> list[str]:
    """The model's capabilities as /api/tags lists them."""
    for entry in http.get("/api/tags").json()["models"]:
        if entry["model"] == model:
            return list(entry.get("capabilities") or [])
    raise AssertionError(f"{model} is not listed by /api/tags")


# A few-shot tool conversation: under greedy decoding the bundled base model answers the last turn with a call
# of get_weather (the template renders earlier calls as `{"name": ..., "arguments": ...}`). Each surface's test
# writes it in that surface's own message format.
WEATHER_PARAMETERS = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
FEW_SHOT = [("Oslo", "cold", "Cold."), ("Rome", "warm", "Warm.")]
LAST_QUESTION = "Weather in Paris?"
