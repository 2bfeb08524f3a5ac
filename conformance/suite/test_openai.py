"""The OpenAI-compatible surface: /v1/chat/completions, /v1/completions, /v1/embeddings, /v1/models, /v1/responses."""

from __future__ import annotations

import base64
import json
import math
import struct

import jsonschema
import pytest

from ollama_conformance.conformance.checks import (
    BUDGET,
    BUDGET_PROMPT,
    WIDER_BUDGET,
    Api,
    Inconclusive,
    call_left_in_text,
    check_incremental_delivery,
    check_tool_arguments,
    exact,
    json_output,
    judge_budget,
)
from ollama_conformance.conformance.streams import (
    chat_sse_exact_differences,
    check_chat_sse_grammar,
    check_responses_sse_grammar,
)
from ollama_conformance.conformance.suite.payloads import (
    LONG_PROMPT,
    MESSAGES,
    SCHEMA_BUDGET,
    TOOL_PROBE_CITIES,
    WEATHER_TOOL,
    openai_tool_probe,
)
from ollama_conformance.conformance.target import Target

SMALL = {"max_tokens": 4}


def chat(api: Api, model: str, **fields: object):
    return api.post("/v1/chat/completions", {"model": model, "messages": MESSAGES, **fields})


def chunks(api: Api, got) -> list[dict]:
    return [json.loads(e.data) for e in api.sse(got) if e.data != "[DONE]"]


@pytest.mark.feature("v1.chat.basic")
def test_chat_completion_object(api: Api, chat_model: str) -> None:
    got = chat(api, chat_model, **SMALL)
    (body,) = api.contract("POST", "/v1/chat/completions", got)
    assert got.status == 200, f"status {got.status}: {got.text[:200]!r}"
    assert body["object"] == "chat.completion", f"object {body['object']!r}"
    choice = body["choices"][0]
    assert choice["message"]["role"] == "assistant" and isinstance(choice["message"]["content"], str), f"{choice!r}"
    usage = body["usage"]
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"], f"usage {usage}"


@pytest.mark.feature("v1.chat.stream")
def test_chat_stream_grammar(api: Api, chat_model: str) -> None:
    got = chat(api, chat_model, stream=True, **SMALL)
    events = api.sse(got)
    problems = check_chat_sse_grammar(events, include_usage=False)
    assert not problems, "SSE stream grammar: " + "; ".join(problems)
    api.contract("POST", "/v1/chat/completions", got)
    created = {json.loads(e.data)["created"] for e in events if e.data != "[DONE]"}
    assert len(created) == 1, f"`created` changes between chunks: {sorted(created)}"
    for difference in chat_sse_exact_differences(events):
        exact(False, difference)


@pytest.mark.feature("v1.chat.stream.incremental")
def test_chat_stream_arrives_incrementally(api: Api, chat_model: str) -> None:
    got = api.post("/v1/chat/completions", {"model": chat_model, "messages": [{"role": "user", "content": LONG_PROMPT}],
                                            "stream": True, "max_tokens": 16, "temperature": 0})
    api.sse(got)
    check_incremental_delivery(got, json_output(("choices", 0, "delta", "content")))


@pytest.mark.feature("v1.chat.stream.include_usage")
def test_chat_stream_usage_chunk(api: Api, chat_model: str) -> None:
    got = chat(api, chat_model, stream=True, stream_options={"include_usage": True}, **SMALL)
    events = api.sse(got)
    problems = check_chat_sse_grammar(events, include_usage=True)
    assert not problems, "SSE stream grammar: " + "; ".join(problems)
    items = chunks(api, got)
    usage = items[-1]["usage"]
    assert usage["completion_tokens"] <= SMALL["max_tokens"], f"usage {usage} exceeds max_tokens"
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"], f"usage {usage}"
    with_content = [c for c in items if c.get("choices") and (c["choices"][0].get("delta") or {}).get("content")]
    assert usage["completion_tokens"] >= len(with_content), (
        f"usage.completion_tokens {usage['completion_tokens']} < the {len(with_content)} chunks that carried content"
    )


@pytest.mark.feature("v1.chat.max_tokens")
def test_max_tokens_bounds_output(api: Api, chat_model: str) -> None:
    counting = [{"role": "user", "content": BUDGET_PROMPT}]
    # the wide run first: the exchange a failure shows is then the small run it judged
    wide = api.single(chat(api, chat_model, messages=counting, max_tokens=WIDER_BUDGET, temperature=0, seed=1))
    body = api.single(chat(api, chat_model, messages=counting, max_tokens=BUDGET, temperature=0, seed=1))
    judge_budget(BUDGET, WIDER_BUDGET, body["choices"][0]["message"]["content"] or "",
                 wide["choices"][0]["message"]["content"] or "", reason=body["choices"][0]["finish_reason"],
                 count=body["usage"]["completion_tokens"], length_reason="length", stop_reasons=("stop",),
                 count_name="usage.completion_tokens", reason_name="finish_reason",
                 wide_reason=wide["choices"][0]["finish_reason"])


@pytest.mark.feature("v1.chat.stop")
def test_stop_string(api: Api, chat_model: str) -> None:
    base = api.single(chat(api, chat_model, max_tokens=16, temperature=0))["choices"][0]["message"]["content"]
    words = [w for w in base.split() if base.find(w) > 0]
    if not words:
        raise Inconclusive(f"the greedy output {base!r} offers no stop string to test with")
    stop = words[0]
    body = api.single(chat(api, chat_model, max_tokens=16, temperature=0, stop=stop))
    choice = body["choices"][0]
    assert stop not in choice["message"]["content"], f"output {choice['message']['content']!r} contains stop {stop!r}"
    assert choice["finish_reason"] == "stop", f"finish_reason {choice['finish_reason']!r}"


@pytest.mark.feature("v1.chat.seed")
def test_seed(api: Api, chat_model: str) -> None:
    fields = {"seed": 7, "temperature": 0.9, "max_tokens": 8}
    first = api.single(chat(api, chat_model, **fields))["choices"][0]["message"]["content"]
    second = api.single(chat(api, chat_model, **fields))["choices"][0]["message"]["content"]
    assert first == second, f"the same seed gave two different outputs: {first!r}, {second!r}"
    others = [api.single(chat(api, chat_model, **{**fields, "seed": seed}))["choices"][0]["message"]["content"]
              for seed in (99, 4242)]
    assert any(other != first for other in others), (
        f"seeds 7, 99 and 4242 at temperature 0.9 all gave {first!r}: the seed does not reach the sampler"
    )


@pytest.mark.feature("v1.chat.response_format")
def test_response_format_json_schema(api: Api, chat_model: str) -> None:
    schema = {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"], "additionalProperties": False}
    # room for pretty-printed JSON (a grammar lets the model put whitespace anywhere): not tuned to one server
    body = api.single(chat(api, chat_model, max_tokens=SCHEMA_BUDGET, temperature=0,
                           response_format={"type": "json_schema", "json_schema": {"name": "r", "schema": schema}}))
    content = body["choices"][0]["message"]["content"]
    assert body["choices"][0]["finish_reason"] == "stop", f"a tiny schema did not complete in {SCHEMA_BUDGET} tokens: {content!r}"
    jsonschema.validate(json.loads(content), schema)


@pytest.mark.feature("v1.chat.tools")
def test_tool_calls_have_string_arguments(api: Api, chat_model: str) -> None:
    # Whether to call a tool is the model's choice (Ollama ignores tool_choice): a few-shot probe, up to 3 cities.
    max_tokens = 24
    answers = []
    for city in TOOL_PROBE_CITIES:
        got = api.post("/v1/chat/completions", {"model": chat_model, "messages": openai_tool_probe(city),
                                                "tools": [WEATHER_TOOL], "max_tokens": max_tokens, "temperature": 0})
        (body,) = api.contract("POST", "/v1/chat/completions", got)
        assert got.status == 200, f"status {got.status}: {got.text[:200]!r}"
        choice = body["choices"][0]
        calls = choice["message"].get("tool_calls")
        if calls:
            break
        assert not call_left_in_text(choice["message"].get("content"), "get_weather"), (
            f"the model called get_weather in its text ({choice['message'].get('content')!r:.160}) but the answer "
            "has no tool_calls: the server ignores `tools` or does not parse calls"
        )
        answers.append(choice["message"].get("content"))
    else:
        raise Inconclusive(f"no tool call after the few-shot probe tried {len(TOOL_PROBE_CITIES)} times: {answers!r:.300}")
    # Ollama: "tool_calls" when the model stopped after calling; "length" when the budget cut what followed.
    cut = body["usage"]["completion_tokens"] == max_tokens
    assert choice["finish_reason"] in (("tool_calls", "length") if cut else ("tool_calls",)), (
        f"finish_reason {choice['finish_reason']!r} for an answer with tool calls "
        f"({body['usage']['completion_tokens']} of {max_tokens} tokens)"
    )
    for call in calls:
        assert call.get("type") == "function" and call.get("id"), f"call {call!r}"
        assert isinstance(call["function"]["arguments"], str), "on /v1 arguments are a JSON string"
        assert call["function"]["name"] == "get_weather", f"tool call name {call['function']['name']!r}"
        check_tool_arguments(json.loads(call["function"]["arguments"]), WEATHER_TOOL)


@pytest.mark.feature("v1.chat.logprobs")
def test_chat_logprobs(api: Api, chat_model: str) -> None:
    body = api.single(chat(api, chat_model, max_tokens=3, logprobs=True, top_logprobs=2))
    content = (body["choices"][0].get("logprobs") or {}).get("content")
    assert isinstance(content, list) and content, f"no choices[0].logprobs.content: {body['choices'][0]!r}"
    assert all(entry["logprob"] <= 0 for entry in content), "a logprob > 0"


@pytest.mark.feature("v1.completions.basic")
def test_completion_object(api: Api, chat_model: str) -> None:
    got = api.post("/v1/completions", {"model": chat_model, "prompt": "The sky is", "max_tokens": 4})
    (body,) = api.contract("POST", "/v1/completions", got)
    assert got.status == 200, f"status {got.status}: {got.text[:200]!r}"
    assert body["object"] == "text_completion" and isinstance(body["choices"][0]["text"], str), f"{body!r}"
    assert body["usage"]["completion_tokens"] <= 4, f"usage {body['usage']}"


@pytest.mark.feature("v1.completions.stream")
def test_completion_stream(api: Api, chat_model: str) -> None:
    got = api.post("/v1/completions", {"model": chat_model, "prompt": "The sky is", "max_tokens": 4, "stream": True})
    problems = check_chat_sse_grammar(api.sse(got), include_usage=False, object_name="text_completion")
    assert not problems, "SSE stream grammar: " + "; ".join(problems)
    api.contract("POST", "/v1/completions", got)


@pytest.mark.feature("v1.embeddings.float")
def test_embeddings_float(api: Api, embed_model: str) -> None:
    got = api.post("/v1/embeddings", {"model": embed_model, "input": ["one", "two"]})
    (body,) = api.contract("POST", "/v1/embeddings", got)
    assert got.status == 200, f"status {got.status}: {got.text[:200]!r}"
    assert [d["index"] for d in body["data"]] == [0, 1], f"indexes {[d['index'] for d in body['data']]}"
    assert all(d["object"] == "embedding" and isinstance(d["embedding"], list) for d in body["data"]), "data items"


@pytest.mark.feature("v1.embeddings.base64")
def test_embeddings_base64(api: Api, embed_model: str) -> None:
    floats = api.single(api.post("/v1/embeddings", {"model": embed_model, "input": "same"}))["data"][0]["embedding"]
    body = api.single(api.post("/v1/embeddings", {"model": embed_model, "input": "same", "encoding_format": "base64"}))
    raw = base64.b64decode(body["data"][0]["embedding"])
    decoded = struct.unpack(f"<{len(raw) // 4}f", raw)
    assert len(decoded) == len(floats), f"base64 carries {len(decoded)} floats, the float form {len(floats)}"
    assert all(math.isclose(a, b, abs_tol=1e-5) for a, b in zip(decoded, floats, strict=True)), "values differ"


@pytest.mark.feature("v1.embeddings.dimensions")
def test_embeddings_dimensions(api: Api, embed_model: str) -> None:
    body = api.single(api.post("/v1/embeddings", {"model": embed_model, "input": "x", "dimensions": 8}))
    assert len(body["data"][0]["embedding"]) == 8, f"dimensions 8 gave {len(body['data'][0]['embedding'])} values"


@pytest.mark.feature("v1.models.list")
def test_models_list(api: Api, target: Target) -> None:
    got = api.get("/v1/models")
    (body,) = api.contract("GET", "/v1/models", got)
    ids = [m["id"] for m in body.get("data") or []]
    if target.chat_model and target.profile != "cloud":
        assert target.chat_model in ids, f"{target.chat_model} missing from /v1/models {ids}"


@pytest.mark.feature("v1.models.get")
def test_models_get(api: Api, chat_model: str) -> None:
    got = api.get(f"/v1/models/{chat_model}")
    (body,) = api.contract("GET", f"/v1/models/{chat_model}", got)
    assert got.status == 200 and body["id"] == chat_model, f"{got.status} {body!r}"
    missing = api.get("/v1/models/no-such-model-xyz")
    api.contract("GET", "/v1/models/no-such-model-xyz", missing)
    assert missing.status == 404, f"unknown model answered {missing.status}"


@pytest.mark.feature("v1.responses.basic")
def test_responses_object(api: Api, chat_model: str) -> None:
    got = api.post("/v1/responses", {"model": chat_model, "input": "Name a colour.", "max_output_tokens": 4})
    (body,) = api.contract("POST", "/v1/responses", got)
    assert got.status == 200, f"status {got.status}: {got.text[:200]!r}"
    assert body["object"] == "response" and body["status"] in ("completed", "incomplete"), f"{body.get('status')!r}"
    assert any(item.get("type") == "message" for item in body["output"]), "no message output item"


@pytest.mark.feature("v1.responses.stream")
def test_responses_stream_events(api: Api, chat_model: str) -> None:
    got = api.post("/v1/responses", {"model": chat_model, "input": "Name a colour.", "max_output_tokens": 4, "stream": True})
    problems = check_responses_sse_grammar(api.sse(got))
    assert not problems, "Responses event order: " + "; ".join(problems)


UNKNOWN_MODEL = [
    ("/v1/chat/completions", {"messages": MESSAGES, "max_tokens": 4}),
    ("/v1/completions", {"prompt": "hi", "max_tokens": 4}),
    ("/v1/embeddings", {"input": "hi"}),
]


@pytest.mark.feature("v1.errors.model_not_found")
@pytest.mark.parametrize(("path", "body"), UNKNOWN_MODEL, ids=[p for p, _ in UNKNOWN_MODEL])
def test_unknown_model(api: Api, path: str, body: dict) -> None:
    got = api.post(path, {"model": "no-such-model-xyz", **body})
    api.openai_error(got, 404, "not_found_error")
    api.contract("POST", path, got)


@pytest.mark.feature("v1.errors.messages_empty")
def test_empty_messages(api: Api, chat_model: str) -> None:
    got = api.post("/v1/chat/completions", {"model": chat_model, "messages": []})
    api.openai_error(got, 400, "invalid_request_error")


@pytest.mark.feature("v1.errors.shape")
@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/completions", "/v1/embeddings"])
def test_malformed_json_error_shape(api: Api, path: str) -> None:
    got = api.post(path, raw=b'{"model": ', headers={"Content-Type": "application/json"})
    api.openai_error(got, 400, "invalid_request_error")


@pytest.mark.feature("v1.chat.usage_matches_native")
@pytest.mark.requires_surface("native")
def test_token_counts_agree_with_native(api: Api, chat_model: str) -> None:
    # /v1 defaults temperature and top_p to 1.0; pin them so both surfaces run the same greedy request.
    native = api.single(api.post("/api/chat", {"model": chat_model, "messages": MESSAGES, "stream": False,
                                               "options": {"num_predict": 4, "temperature": 0, "seed": 1}}))
    openai = api.single(chat(api, chat_model, max_tokens=4, temperature=0, seed=1))
    usage = openai["usage"]
    assert usage["prompt_tokens"] == native["prompt_eval_count"], (
        f"prompt tokens: /v1 {usage['prompt_tokens']}, /api {native['prompt_eval_count']}")
    assert usage["completion_tokens"] == native["eval_count"], (
        f"completion tokens: /v1 {usage['completion_tokens']}, /api {native['eval_count']}")
