"""The Anthropic-compatible surface: POST /v1/messages (message objects, named SSE events, errors)."""

from __future__ import annotations

import json

import pytest

from ollama_conformance.conformance.checks import (
    BUDGET,
    BUDGET_PROMPT,
    WIDER_BUDGET,
    Api,
    Inconclusive,
    check_incremental_delivery,
    exact,
    json_output,
    judge_budget,
)
from ollama_conformance.conformance.streams import check_messages_sse_grammar
from ollama_conformance.conformance.suite.payloads import LONG_PROMPT, MESSAGES


def messages(api: Api, model: str, **fields: object):
    return api.post("/v1/messages", {"model": model, "messages": MESSAGES, "max_tokens": 4, **fields})


@pytest.mark.feature("anthropic.messages.basic")
def test_message_object(api: Api, chat_model: str) -> None:
    got = messages(api, chat_model)
    (body,) = api.contract("POST", "/v1/messages", got)
    assert got.status == 200, f"status {got.status}: {got.text[:200]!r}"
    assert body["type"] == "message" and body["role"] == "assistant", f"{body!r}"
    assert body["stop_reason"] in ("end_turn", "max_tokens", "stop_sequence"), f"stop_reason {body['stop_reason']!r}"
    assert all(block.get("type") in ("text", "thinking", "tool_use") for block in body.get("content") or []), "blocks"


@pytest.mark.feature("anthropic.messages.stream")
def test_stream_event_order(api: Api, chat_model: str) -> None:
    got = messages(api, chat_model, stream=True)
    events = api.sse(got)
    problems = check_messages_sse_grammar(events)
    assert not problems, "/v1/messages event order: " + "; ".join(problems)
    api.contract("POST", "/v1/messages", got)


@pytest.mark.feature("anthropic.messages.stream.incremental")
def test_stream_arrives_incrementally(api: Api, chat_model: str) -> None:
    got = api.post("/v1/messages", {"model": chat_model, "messages": [{"role": "user", "content": LONG_PROMPT}],
                                    "max_tokens": 16, "temperature": 0, "stream": True})
    api.sse(got)
    check_incremental_delivery(got, json_output(("delta", "text")))


@pytest.mark.feature("anthropic.messages.max_tokens")
def test_max_tokens(api: Api, chat_model: str) -> None:
    def text(body: dict) -> str:
        return "".join(block.get("text", "") for block in body.get("content") or [])

    counting = [{"role": "user", "content": BUDGET_PROMPT}]
    wide = api.single(messages(api, chat_model, max_tokens=WIDER_BUDGET, temperature=0, messages=counting))
    body = api.single(messages(api, chat_model, max_tokens=BUDGET, temperature=0, messages=counting))
    judge_budget(BUDGET, WIDER_BUDGET, text(body), text(wide), reason=body["stop_reason"],
                 count=body["usage"]["output_tokens"], length_reason="max_tokens", stop_reasons=("end_turn",),
                 count_name="usage.output_tokens", reason_name="stop_reason", wide_reason=wide["stop_reason"])
    # without max_tokens: a server that wrongly accepts would generate to its context's end, so the first probe
    # streams and hangs up once the status is known; only a refusal (immediate) is then fetched whole and judged
    request = {"model": chat_model, "messages": MESSAGES, "stream": True}
    with api.client.stream("POST", "/v1/messages", json=request) as first:
        status = first.status_code
    # the official SDK cannot send this request (max_tokens is a required argument): accepting it is a difference
    # from Ollama, not something a client breaks on
    exact(status == 400, f"POST /v1/messages without max_tokens answered {status}, Ollama answers 400 (required)")
    if status == 400:
        missing = api.post("/v1/messages", {"model": chat_model, "messages": MESSAGES})
        api.anthropic_error(missing, 400, "invalid_request_error")


@pytest.mark.feature("anthropic.messages.stop_sequences")
def test_stop_sequences(api: Api, chat_model: str) -> None:
    base = api.single(messages(api, chat_model, max_tokens=16, temperature=0))
    text = "".join(b.get("text", "") for b in base.get("content") or [])
    words = [w for w in text.split() if text.find(w) > 0]
    if not words:
        raise Inconclusive(f"the greedy output {text!r} offers no stop string to test with")
    body = api.single(messages(api, chat_model, max_tokens=16, temperature=0, stop_sequences=[words[0]]))
    out = "".join(b.get("text", "") for b in body.get("content") or [])
    assert words[0] not in out, f"output {out!r} contains the stop sequence {words[0]!r}"
    assert body["stop_reason"] in ("stop_sequence", "end_turn"), f"stop_reason {body['stop_reason']!r}"


@pytest.mark.feature("anthropic.messages.system")
def test_system_string_and_blocks(api: Api, chat_model: str) -> None:
    api.single(messages(api, chat_model, system="Answer briefly."))
    api.single(messages(api, chat_model, system=[{"type": "text", "text": "Answer briefly."}]))


@pytest.mark.feature("anthropic.errors.shape")
def test_error_shape(api: Api) -> None:
    got = api.post("/v1/messages", {"model": "no-such-model-xyz", "messages": MESSAGES, "max_tokens": 4})
    api.anthropic_error(got, 404, "not_found_error")
    body = json.loads(got.text)
    exact(str(body.get("request_id", "")).startswith("req_"), f"request_id {body.get('request_id')!r}, Ollama sends req_<24 hex>")
