"""/v1/responses against the real reference backend: the openai SDK's Responses client and the raw events."""

from __future__ import annotations

import json
import re
from typing import Any

import httpx
import openai
import pytest

from .wire import CHAT_MODEL, FEW_SHOT, LAST_QUESTION, WEATHER_PARAMETERS, capabilities, post_stream, split_sse

pytestmark = pytest.mark.slow

INPUT = "Name a colour."


def test_sdk_response_non_stream(openai_client: openai.OpenAI) -> None:
    response = openai_client.responses.create(
        model=CHAT_MODEL, input=INPUT, instructions="Be brief.", max_output_tokens=4, temperature=0
    )
    assert re.fullmatch(r"resp_\d+", response.id)
    assert (response.object, response.status, response.model, response.instructions) == (
        "response",
        "completed",
        CHAT_MODEL,
        "Be brief.",
    )
    assert [item.type for item in response.output] == ["message"]
    assert isinstance(response.output_text, str) and response.max_output_tokens == 4
    assert response.usage is not None and 0 < response.usage.output_tokens <= 4
    assert response.usage.total_tokens == response.usage.input_tokens + response.usage.output_tokens


def test_sdk_response_stream(openai_client: openai.OpenAI) -> None:
    events = list(openai_client.responses.create(model=CHAT_MODEL, input=INPUT, max_output_tokens=3, stream=True))
    kinds = [event.type for event in events]
    assert kinds[:2] == ["response.created", "response.in_progress"] and kinds[-1] == "response.completed"
    assert [event.sequence_number for event in events] == list(range(len(events)))
    completed = events[-1].response
    deltas = "".join(event.delta for event in events if event.type == "response.output_text.delta")
    assert completed.output_text == deltas and completed.usage is not None


def test_wire_event_framing(http: httpx.Client) -> None:
    response, raw = post_stream(
        http, "/v1/responses", {"model": CHAT_MODEL, "input": INPUT, "max_output_tokens": 3, "stream": True}
    )
    assert response.status_code == 200, raw
    assert response.headers["content-type"] == "text/event-stream"
    assert response.headers["cache-control"] == "no-cache"
    events = split_sse(raw)
    payloads = [e.json() for e in events]
    assert all(e.name == p["type"] for e, p in zip(events, payloads, strict=True))
    assert [p["sequence_number"] for p in payloads] == list(range(len(payloads)))
    names = [e.name for e in events]
    assert names[-1] == "response.completed" and all(e.data != "[DONE]" for e in events)
    if "response.output_text.delta" in names:
        assert names[2:4] == ["response.output_item.added", "response.content_part.added"]
        assert names[-4:-1] == ["response.output_text.done", "response.content_part.done", "response.output_item.done"]
    assert payloads[0]["response"]["status"] == "in_progress" and payloads[-1]["response"]["status"] == "completed"


def test_token_counts_and_format_agree_with_native(http: httpx.Client) -> None:
    schema = {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]}
    native = http.post(
        "/api/chat",
        json={
            "model": CHAT_MODEL,
            "messages": [{"role": "user", "content": INPUT}],
            "stream": False,
            "format": schema,
            "options": {"num_predict": 8, "temperature": 0},
        },
    ).json()
    response = http.post(
        "/v1/responses",
        json={
            "model": CHAT_MODEL,
            "input": INPUT,
            "max_output_tokens": 8,
            "temperature": 0,
            "text": {"format": {"type": "json_schema", "name": "r", "schema": schema}},
        },
    ).json()
    assert response["usage"]["input_tokens"] == native["prompt_eval_count"]
    assert response["usage"]["output_tokens"] == native["eval_count"]
    assert response["output"][0]["content"][0]["text"] == native["message"]["content"]
    assert response["text"]["format"]["type"] == "json_schema"


def tool_items() -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    for i, (city, result, answer) in enumerate(FEW_SHOT):
        items += [
            {"role": "user", "content": f"Weather in {city}?"},
            {
                "type": "function_call",
                "call_id": f"call_{i}",
                "name": "get_weather",
                "arguments": json.dumps({"city": city}),
            },
            {"type": "function_call_output", "call_id": f"call_{i}", "output": result},
            {"role": "assistant", "content": answer},
        ]
    return [*items, {"role": "user", "content": LAST_QUESTION}]


def test_function_call_items(openai_client: openai.OpenAI, http: httpx.Client) -> None:
    tool = {
        "type": "function",
        "name": "get_weather",
        "description": "Weather.",
        "strict": False,
        "parameters": WEATHER_PARAMETERS,
    }
    if "tools" not in capabilities(http):
        with pytest.raises(openai.BadRequestError) as caught:
            openai_client.responses.create(model=CHAT_MODEL, input=INPUT, tools=[tool], max_output_tokens=2)
        assert str(caught.value.body["message"]).endswith(" does not support tools")  # type: ignore[index]
        return
    response = openai_client.responses.create(
        model=CHAT_MODEL,
        input=tool_items(),
        tools=[tool],  # type: ignore[arg-type]
        max_output_tokens=20,
        temperature=0,
    )
    calls = [item for item in response.output if item.type == "function_call"]
    assert calls, "the few-shot conversation should make the model call get_weather"
    assert calls[0].name == "get_weather" and json.loads(calls[0].arguments) and calls[0].call_id.startswith("call_")
    assert calls[0].status == "completed" and all(item.type != "message" for item in response.output)
    assert response.tools[0].name == "get_weather"


def test_bad_input_is_a_400(http: httpx.Client) -> None:
    response = http.post("/v1/responses", json={"model": CHAT_MODEL, "input": [{"type": "bogus"}]})
    assert response.status_code == 400
    assert response.json()["error"] == {
        "message": 'input[0]: unknown input item type: "bogus"',
        "type": "invalid_request_error",
        "param": None,
        "code": None,
    }
