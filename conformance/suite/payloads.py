"""Request payloads that several test modules send (the native, OpenAI and Anthropic surfaces take the same ones)."""

from __future__ import annotations

import json
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

# A few-shot probe for tool calls: two earlier turns show the model answering a weather question with a call, so
# a model that can call tools at all (our bundled base model included) calls the tool on the third. Whether to
# call is still the model's choice (Ollama has no tool_choice): probes try up to TOOL_PROBE_TRIES cities.
TOOL_PROBE_CITIES = ("Paris", "Madrid", "Tokyo")
TOOL_PROBE_TRIES = 3
_SYSTEM = "You are a function-calling assistant. For every question about the weather, reply with only a function call JSON object."
_SHOTS = (("Berlin", "cloudy, 12 C", "It is cloudy in Berlin."), ("Rome", "sunny, 25 C", "It is sunny in Rome."))


def native_tool_probe(city: str) -> list[dict[str, Any]]:
    """/api/chat messages: the few-shot history (native tool_calls, arguments as objects), then the question."""
    messages: list[dict[str, Any]] = [{"role": "system", "content": _SYSTEM}]
    for shot_city, result, answer in _SHOTS:
        messages += [
            {"role": "user", "content": f"What is the weather in {shot_city}?"},
            {"role": "assistant", "content": "", "tool_calls": [{"function": {"name": "get_weather", "arguments": {"city": shot_city}}}]},
            {"role": "tool", "content": result, "tool_name": "get_weather"},
            {"role": "assistant", "content": answer},
        ]
    return [*messages, {"role": "user", "content": f"What is the weather in {city}?"}]


def openai_tool_probe(city: str) -> list[dict[str, Any]]:
    """/v1/chat/completions messages: the same history in OpenAI's shape (ids, JSON-string arguments)."""
    messages: list[dict[str, Any]] = [{"role": "system", "content": _SYSTEM}]
    for index, (shot_city, result, answer) in enumerate(_SHOTS):
        call_id = f"call_{index}"
        call = {"id": call_id, "type": "function",
                "function": {"name": "get_weather", "arguments": json.dumps({"city": shot_city})}}
        messages += [
            {"role": "user", "content": f"What is the weather in {shot_city}?"},
            {"role": "assistant", "content": "", "tool_calls": [call]},
            {"role": "tool", "content": result, "tool_call_id": call_id},
            {"role": "assistant", "content": answer},
        ]
    return [*messages, {"role": "user", "content": f"What is the weather in {city}?"}]


# A prompt a base model continues at length (delivery checks need ≥ 8 outputs).
LONG_PROMPT = "Here is a list of the numbers from one to fifty, separated by commas: 1, 2, 3, 4,"

# Every generating request carries an output cap, so a server that wrongly accepts a request the suite expects
# to be refused (or one that should only load a model) answers in a second, not after thousands of tokens.
# Tests that check a limit set their own; the cap is added only where the request names none.
DEFAULT_OUTPUT_CAP = 8
CAP_FIELDS: dict[str, tuple[str, ...]] = {
    "/v1/chat/completions": ("max_tokens", "max_completion_tokens"),
    "/v1/completions": ("max_tokens",),
    "/v1/responses": ("max_output_tokens",),
}
NATIVE_GENERATING = ("/api/generate", "/api/chat")


def capped(path: str, body: Any) -> Any:
    """The request body with an output cap where it has none. /v1/messages is left alone: max_tokens is required
    there, and a request without it is a refusal test."""
    if not isinstance(body, dict):
        return body
    route = path.split("?", 1)[0]
    if route in NATIVE_GENERATING:
        options = body.get("options", {})
        if isinstance(options, dict) and "num_predict" not in options:
            return {**body, "options": {**options, "num_predict": DEFAULT_OUTPUT_CAP}}
        return body
    fields = CAP_FIELDS.get(route)
    if fields and not any(name in body for name in fields):
        return {**body, fields[0]: DEFAULT_OUTPUT_CAP}
    return body


# A schema-constrained answer's output budget: room for pretty-printed JSON, since a grammar lets a model put
# whitespace anywhere (llama.cpp's does; a base model fills it). A server that closes the JSON early stops early,
# so a generous budget costs a well-behaved server nothing.
SCHEMA_BUDGET = 256
