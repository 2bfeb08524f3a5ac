"""POST /api/chat: streams, non-stream answers, history, limits, stop, seed, format, tools, refusals."""

from __future__ import annotations

import json

import jsonschema
import pytest

from ollama_conformance.conformance.checks import (
    BUDGET_PROMPT,
    Api,
    Inconclusive,
    call_left_in_text,
    check_incremental_delivery,
    check_native_budget,
    check_stop_sequence,
    check_tool_arguments,
    final,
    json_output,
)
from ollama_conformance.conformance.suite.payloads import (
    LONG_PROMPT,
    MESSAGES,
    SCHEMA_BUDGET,
    TOOL_PROBE_CITIES,
    WEATHER_TOOL,
    native_tool_probe,
)
from ollama_conformance.conformance.target import Target, known_capabilities

SMALL = {"num_predict": 4}
GREEDY = {"temperature": 0, "num_predict": 16}
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


@pytest.mark.feature("chat.stream.incremental")
def test_stream_arrives_incrementally(api: Api, chat_model: str) -> None:
    messages = [{"role": "user", "content": LONG_PROMPT}]
    got = chat(api, chat_model, messages, options={"num_predict": 16, "temperature": 0})
    api.ndjson(got)
    check_incremental_delivery(got, json_output(("message", "content")))


@pytest.mark.feature("chat.num_predict")
@pytest.mark.parametrize("stream", [True, False], ids=["stream", "nonstream"])
def test_num_predict_bounds_output(api: Api, chat_model: str, stream: bool) -> None:
    counting = [{"role": "user", "content": BUDGET_PROMPT}]
    check_native_budget(api, lambda options, streamed: chat(api, chat_model, counting, stream=streamed, options=options),
                        "message", stream=stream)


@pytest.mark.feature("chat.stop")
def test_stop_sequence_ends_output(api: Api, chat_model: str) -> None:
    check_stop_sequence(api, lambda options: chat(api, chat_model, options=options), GREEDY, "message")


@pytest.mark.feature("chat.seed")
def test_seed_is_reproducible(api: Api, chat_model: str) -> None:
    options = {"seed": 99, "temperature": 0.9, "top_k": 100, "num_predict": 8}
    first = api.single(chat(api, chat_model, stream=False, options=options))["message"]["content"]
    second = api.single(chat(api, chat_model, stream=False, options=options))["message"]["content"]
    assert first == second, f"the same seed gave two different outputs: {first!r}, {second!r}"
    others = [api.single(chat(api, chat_model, stream=False, options={**options, "seed": seed}))["message"]["content"]
              for seed in (7, 4242)]
    assert any(other != first for other in others), (
        f"seeds 99, 7 and 4242 at temperature 0.9 all gave {first!r}: the seed does not reach the sampler"
    )


@pytest.mark.feature("chat.format.json")
def test_format_json(api: Api, chat_model: str) -> None:
    body = api.single(chat(api, chat_model, stream=False, format="json", options={"num_predict": 24, "temperature": 0}))
    text = body["message"]["content"].strip()
    assert text.startswith("{"), f"format json output does not start a JSON object: {text[:80]!r}"
    if body.get("done_reason") == "stop":
        assert isinstance(json.loads(text), dict), f"format json output is not a JSON object: {text[:80]!r}"


@pytest.mark.feature("chat.format.json_schema")
def test_format_schema(api: Api, chat_model: str) -> None:
    body = api.single(chat(api, chat_model, stream=False, format=BOOL_SCHEMA, options={"num_predict": SCHEMA_BUDGET, "temperature": 0}))
    assert body.get("done_reason") == "stop", f"a tiny schema did not complete in {SCHEMA_BUDGET} tokens: {body['message']['content']!r}"
    jsonschema.validate(json.loads(body["message"]["content"]), BOOL_SCHEMA)


@pytest.mark.feature("chat.tools")
def test_tool_call_shape(api: Api, chat_model: str) -> None:
    # Whether to call a tool is the model's choice (Ollama has no tool_choice): a few-shot probe, up to 3 cities.
    answers = []
    for city in TOOL_PROBE_CITIES:
        got = chat(api, chat_model, native_tool_probe(city), stream=False, tools=[WEATHER_TOOL],
                   options={"num_predict": 24, "temperature": 0})
        body = api.single(got)
        api.contract("POST", "/api/chat", got)
        message = body.get("message") or {}
        calls = message.get("tool_calls")
        if calls:
            break
        assert not call_left_in_text(message.get("content"), "get_weather"), (
            f"the model called get_weather in its text ({message.get('content')!r:.160}) but the answer has no "
            "message.tool_calls: the server ignores `tools` or does not parse calls"
        )
        answers.append(message.get("content"))
    else:
        raise Inconclusive(f"no tool call after the few-shot probe tried {len(TOOL_PROBE_CITIES)} times: {answers!r:.300}")
    for call in calls:
        function = call.get("function") or {}
        assert function.get("name") == "get_weather", f"tool call name {function.get('name')!r}"
        assert isinstance(function.get("arguments"), dict), f"native arguments must be an object: {function.get('arguments')!r}"
        check_tool_arguments(function["arguments"], WEATHER_TOOL)


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
    if "tools" in known_capabilities(target, chat_model):
        pytest.skip(f"{chat_model} supports tools: the refusal does not apply")
    message = api.native_error(chat(api, chat_model, tools=[WEATHER_TOOL], options=SMALL), 400)
    assert "does not support tools" in message, f"message {message!r}"


@pytest.mark.feature("chat.think.refused")
def test_think_refused_without_capability(api: Api, target: Target, chat_model: str) -> None:
    if "thinking" in known_capabilities(target, chat_model):
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
    if "completion" in known_capabilities(target, embed_model):
        pytest.skip(f"{embed_model} can also chat")
    message = api.native_error(chat(api, embed_model, options=SMALL), 400)
    assert "does not support chat" in message, f"message {message!r}"
