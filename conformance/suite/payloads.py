"""Request payloads that several test modules send (the native, OpenAI and Anthropic surfaces take the same ones)."""

from __future__ import annotations

from typing import Any

MESSAGES: list[dict[str, Any]] = [{"role": "user", "content": "Name a colour."}]
WEATHER_TOOL: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
