"""POST /api/chat: streams, non-stream answers, history, limits, stop, seed, format, tools, refusals."""

from __future__ import annotations

import json

import jsonschema
import pytest
from ollama_conformance.conformance.checks import Api, check_num_predict_bound, check_stop_sequence, final
from ollama_conformance.conformance.suite.payloads import MESSAGES, WEATHER_TOOL
from ollama_conformance.conformance.target import Target

SMALL = {"num_predict": 4}
GREEDY = {"temperature": 0, "num_predict": 8}
BOOL_SCHEMA = {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"], "additionalProperties": False}


def chat(api: Api, model: str, messages: list | None = None, **fields: object):
    return api.post("/api/chat", {"model": model, "messages": MESSAGES if messages is None else messages, **fields})


@pytest.mark.feature("chat.stream.ndjson")
def test_stream_is_ndjson_by_default(api: Api, chat_model: str) -> None:
    got = chat(api, chat_model, options=SMALL)
    objects = api.ndjson(got)
    api.contract("POST", "/api/chat", got)
    for o in objects:
        message = o.get("message")
        assert isinstance(message, dict) and message.get("role") == "assistant", f"chunk message {message!r}"
        assert isinstance(message.get("content"), str), "every chunk's message carries a content string"


@pytest.mark.feature("chat.stream.false")
def test_stream_false_is_one_json_object(api: Api, chat_model: str) -> None:
    got = chat(api, chat_model, stream=False, options=SMALL)
    body = api.single(got)
    api.contract("POST", "/api/chat", got)
    assert body.get("done") is True, "a non-stream answer has done:true"


@pytest.mark.feature("chat.basic")
def test_non_stream_message(api: Api, chat_model: str) -> None:
    body = api.single(chat(api, chat_model, stream=False, options=SMALL))
    assert body.get("message", {}).get("role") == "assistant", f"message {body.get('message')!r}"
    assert isinstance(body["message"].get("content"), str), "message.content is a string"
    assert body.get("done_reason") in ("stop", "length"), f"done_reason {body.get('done_reason')!r}"
    assert "context" not in body, "chat answers carry no context"


@pytest.mark.feature("chat.metrics")
def test_final_metrics(api: Api, chat_model: str) -> None:
    last = final(api.ndjson(chat(api, chat_model, options=SMALL)))
    for key in ("total_duration", "load_duration", "prompt_eval_duration", "eval_duration", "prompt_eval_count", "eval_count"):
        assert isinstance(last.get(key), int) and last[key] >= 0, f"{key} is {last.get(key)!r}, expected an integer ≥ 0"
    assert last["prompt_eval_count"] > 0, "prompt_eval_count is 0 for a fresh prompt"
    assert last["total_duration"] >= last["eval_duration"], "total_duration < eval_duration"


@pytest.mark.feature("chat.history")
def test_multi_turn_history(api: Api, chat_model: str) -> None:
    history = [
        {"role": "system", "content": "You answer briefly."},
        {"role": "user", "content": "Hello."},
        {"role": "assistant", "content": "Hi."},
        {"role": "user", "content": "Name a colour."},
    ]
    short = api.single(chat(api, chat_model, stream=False, options=SMALL))
    long = api.single(chat(api, chat_model, history, stream=False, options=SMALL))
    assert long["prompt_eval_count"] > short["prompt_eval_count"], "a longer history did not count more prompt tokens"


@pytest.mark.feature("chat.num_predict")
@pytest.mark.parametrize("stream", [True, False], ids=["stream", "nonstream"])
def test_num_predict_bounds_output(api: Api, chat_model: str, stream: bool) -> None:
    limit = 3
    got = chat(api, chat_model, stream=stream, options={"num_predict": limit, "temperature": 0})
    check_num_predict_bound(api.ndjson(got) if stream else [api.single(got)], limit, stream=stream, key="message")


@pytest.mark.feature("chat.stop")
def test_stop_sequence_ends_output(api: Api, chat_model: str) -> None:
    check_stop_sequence(api, lambda options: chat(api, chat_model, options=options), GREEDY, "message")


@pytest.mark.feature("chat.seed")
def test_seed_is_reproducible(api: Api, chat_model: str) -> None:
    options = {"seed": 99, "temperature": 0.9, "top_k": 100, "num_predict": 8}
    first = api.single(chat(api, chat_model, stream=False, options=options))
    second = api.single(chat(api, chat_model, stream=False, options=options))
    assert first["message"]["content"] == second["message"]["content"], "the same seed gave two different outputs"


@pytest.mark.feature("chat.format.json")
def test_format_json(api: Api, chat_model: str) -> None:
    body = api.single(chat(api, chat_model, stream=False, format="json", options={"num_predict": 24, "temperature": 0}))
    text = body["message"]["content"].strip()
    assert text.startswith("{"), f"format json output does not start a JSON object: {text[:80]!r}"
    if body.get("done_reason") == "stop":
        json.loads(text)


@pytest.mark.feature("chat.format.json_schema")
def test_format_schema(api: Api, chat_model: str) -> None:
    body = api.single(chat(api, chat_model, stream=False, format=BOOL_SCHEMA, options={"num_predict": 16, "temperature": 0}))
    assert body.get("done_reason") == "stop", f"a tiny schema did not complete in 16 tokens: {body['message']['content']!r}"
    jsonschema.validate(json.loads(body["message"]["content"]), BOOL_SCHEMA)


@pytest.mark.feature("chat.tools")
def test_tool_call_shape(api: Api, chat_model: str) -> None:
    messages = [{"role": "user", "content": "What is the weather in Paris? Use the tool."}]
    body = api.single(chat(api, chat_model, messages, stream=False, tools=[WEATHER_TOOL], options={"num_predict": 24, "temperature": 0}))
    calls = body["message"].get("tool_calls")
    if not calls:  # whether to call a tool is the model's choice (there is no tool_choice in Ollama)
        pytest.skip(f"the model answered without calling the tool (done_reason {body.get('done_reason')!r}): shape unverified")
    for call in calls:
        function = call.get("function") or {}
        assert function.get("name") == "get_weather", f"tool call name {function.get('name')!r}"
        assert isinstance(function.get("arguments"), dict), f"native arguments must be an object: {function.get('arguments')!r}"


@pytest.mark.feature("chat.tools.roundtrip")
def test_tool_history_accepted(api: Api, chat_model: str) -> None:
    messages = [
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": "", "tool_calls": [{"function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]},
        {"role": "tool", "content": "sunny", "tool_name": "get_weather"},
    ]
    api.single(chat(api, chat_model, messages, stream=False, tools=[WEATHER_TOOL], options=SMALL))


@pytest.mark.feature("chat.tools.refused")
def test_tools_refused_without_capability(api: Api, target: Target, chat_model: str) -> None:
    if "tools" in target.capabilities(chat_model):
        pytest.skip(f"{chat_model} supports tools: the refusal does not apply")
    message = api.native_error(chat(api, chat_model, tools=[WEATHER_TOOL], options=SMALL), 400)
    assert "does not support tools" in message, f"message {message!r}"


@pytest.mark.feature("chat.think.refused")
def test_think_refused_without_capability(api: Api, target: Target, chat_model: str) -> None:
    if "thinking" in target.capabilities(chat_model):
        pytest.skip(f"{chat_model} can think: the refusal does not apply")
    message = api.native_error(chat(api, chat_model, think=True, options=SMALL), 400)
    assert "does not support thinking" in message, f"message {message!r}"


@pytest.mark.feature("chat.think.invalid")
def test_invalid_think_value(api: Api, chat_model: str) -> None:
    message = api.native_error(chat(api, chat_model, think="sometimes", options=SMALL), 400)
    assert "think" in message, f"message {message!r}"


@pytest.mark.feature("chat.logprobs")
def test_logprobs(api: Api, chat_model: str) -> None:
    body = api.single(chat(api, chat_model, stream=False, logprobs=True, top_logprobs=2, options={"num_predict": 3}))
    logprobs = body.get("logprobs")
    assert isinstance(logprobs, list) and len(logprobs) == body.get("eval_count"), f"logprobs {logprobs!r}"
    for entry in logprobs:
        tops = [t["logprob"] for t in entry.get("top_logprobs") or []]
        assert entry["logprob"] <= 0 and 1 <= len(tops) <= 2 and tops == sorted(tops, reverse=True), f"entry {entry!r}"


@pytest.mark.feature("chat.not_capable")
def test_chat_refused_on_embedding_model(api: Api, target: Target, embed_model: str) -> None:
    if "completion" in target.capabilities(embed_model):
        pytest.skip(f"{embed_model} can also chat")
    message = api.native_error(chat(api, embed_model, options=SMALL), 400)
    assert "does not support chat" in message, f"message {message!r}"
