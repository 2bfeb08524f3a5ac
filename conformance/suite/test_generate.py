"""POST /api/generate: streams, non-stream answers, limits, stop, determinism, format, refusals.

Model output content is never asserted: only framing, counts, reasons, and a model's agreement with itself
(the same request at temperature 0 or under one seed gives the same text).
"""

from __future__ import annotations

import json

import jsonschema
import pytest

from ollama_conformance.conformance.checks import (
    Api,
    check_incremental_delivery,
    check_native_budget,
    check_stop_sequence,
    final,
    json_output,
)
from ollama_conformance.conformance.suite.payloads import LONG_PROMPT, SCHEMA_BUDGET
from ollama_conformance.conformance.target import Target, known_capabilities

PROMPT = "The capital of France is"
SMALL = {"num_predict": 4}
GREEDY = {"temperature": 0, "num_predict": 16}
BOOL_SCHEMA = {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"], "additionalProperties": False}


def generate(api: Api, model: str, **fields: object):
    return api.post("/api/generate", {"model": model, "prompt": PROMPT, **fields})


@pytest.mark.feature("generate.stream.ndjson")
def test_stream_is_ndjson_by_default(api: Api, chat_model: str) -> None:
    got = generate(api, chat_model, options=SMALL)
    objects = api.ndjson(got)
    api.contract("POST", "/api/generate", got)
    assert all(isinstance(o.get("response"), str) for o in objects), "every chunk carries a `response` string"
    assert all(o.get("model") for o in objects), "every chunk names the model"


@pytest.mark.feature("generate.stream.false")
def test_stream_false_is_one_json_object(api: Api, chat_model: str) -> None:
    got = generate(api, chat_model, stream=False, options=SMALL)
    body = api.single(got)
    api.contract("POST", "/api/generate", got)
    assert body.get("done") is True, "a non-stream answer has done:true"
    assert isinstance(body.get("response"), str), "a non-stream answer carries the whole `response`"


@pytest.mark.feature("generate.basic")
def test_non_stream_has_reason_and_metrics(api: Api, chat_model: str) -> None:
    body = api.single(generate(api, chat_model, stream=False, options=SMALL))
    assert body.get("done_reason") in ("stop", "length"), f"done_reason {body.get('done_reason')!r}"
    assert body.get("eval_count", 0) >= 1, "eval_count counts the generated tokens"


@pytest.mark.feature("generate.metrics")
def test_final_metrics_are_consistent(api: Api, chat_model: str) -> None:
    last = final(api.ndjson(generate(api, chat_model, options=SMALL)))
    for key in ("total_duration", "load_duration", "prompt_eval_duration", "eval_duration", "prompt_eval_count", "eval_count"):
        assert isinstance(last.get(key), int) and last[key] >= 0, f"{key} is {last.get(key)!r}, expected an integer ≥ 0"
    assert last["total_duration"] >= last["eval_duration"], "total_duration < eval_duration"
    assert last["total_duration"] >= last["prompt_eval_duration"], "total_duration < prompt_eval_duration"


@pytest.mark.feature("generate.stream.incremental")
def test_stream_arrives_incrementally(api: Api, chat_model: str) -> None:
    got = api.post("/api/generate", {"model": chat_model, "prompt": LONG_PROMPT,
                                     "options": {"num_predict": 16, "temperature": 0}})
    api.ndjson(got)
    check_incremental_delivery(got, json_output(("response",)))


@pytest.mark.feature("generate.num_predict")
@pytest.mark.parametrize("stream", [True, False], ids=["stream", "nonstream"])
def test_num_predict_bounds_output(api: Api, chat_model: str, stream: bool) -> None:
    # Digits and commas: a token count and a word count of this output differ, so a proxy that reports words fails.
    def send(options: dict, streamed: bool):
        return api.post("/api/generate", {"model": chat_model, "prompt": "1, 2, 3, 4,", "stream": streamed, "options": options})

    check_native_budget(api, send, "response", stream=stream)


@pytest.mark.feature("generate.stop")
def test_stop_sequence_ends_output(api: Api, chat_model: str) -> None:
    check_stop_sequence(api, lambda options: generate(api, chat_model, options=options), GREEDY, "response")


@pytest.mark.feature("generate.temperature_zero")
def test_temperature_zero_is_deterministic(api: Api, chat_model: str) -> None:
    first = api.single(generate(api, chat_model, stream=False, options=GREEDY))
    second = api.single(generate(api, chat_model, stream=False, options=GREEDY))
    assert first["response"] == second["response"], "temperature 0 gave two different outputs"


@pytest.mark.feature("generate.seed")
def test_seed_is_reproducible(api: Api, chat_model: str) -> None:
    options = {"seed": 1234, "temperature": 0.9, "top_k": 100, "num_predict": 8}
    first = api.single(generate(api, chat_model, stream=False, options=options))["response"]
    second = api.single(generate(api, chat_model, stream=False, options=options))["response"]
    assert first == second, f"the same seed gave two different outputs: {first!r}, {second!r}"
    others = [api.single(generate(api, chat_model, stream=False, options={**options, "seed": seed}))["response"]
              for seed in (7, 4242)]
    assert any(other != first for other in others), (
        f"seeds 1234, 7 and 4242 at temperature 0.9 all gave {first!r}: the seed does not reach the sampler"
    )


@pytest.mark.feature("generate.options.sampling")
def test_sampling_options_are_accepted(api: Api, chat_model: str) -> None:
    options = {"num_predict": 2, "top_k": 20, "top_p": 0.5, "min_p": 0.05, "typical_p": 0.9, "repeat_penalty": 1.1,
               "repeat_last_n": 16, "presence_penalty": 0.1, "frequency_penalty": 0.1, "num_ctx": 512, "seed": 3}
    api.single(generate(api, chat_model, stream=False, options=options))


@pytest.mark.feature("generate.format.json")
def test_format_json_gives_json(api: Api, chat_model: str) -> None:
    body = api.single(generate(api, chat_model, stream=False, format="json", options={"num_predict": 24, "temperature": 0}))
    text = body["response"].strip()
    assert text.startswith("{"), f"format json output does not start a JSON object: {text[:80]!r}"
    if body.get("done_reason") == "stop":
        assert isinstance(json.loads(text), dict), f"format json output is not a JSON object: {text[:80]!r}"


@pytest.mark.feature("generate.format.json_schema")
def test_format_schema_gives_an_instance(api: Api, chat_model: str) -> None:
    body = api.single(generate(api, chat_model, stream=False, format=BOOL_SCHEMA, options={"num_predict": SCHEMA_BUDGET, "temperature": 0}))
    assert body.get("done_reason") == "stop", f"a tiny schema did not complete within {SCHEMA_BUDGET} tokens: {body['response']!r}"
    value = json.loads(body["response"])
    jsonschema.validate(value, BOOL_SCHEMA)


@pytest.mark.feature("generate.format.invalid")
def test_invalid_format_is_refused(api: Api, chat_model: str) -> None:
    got = generate(api, chat_model, stream=False, format="yaml", options=SMALL)
    api.native_error(got, (400, 500))


@pytest.mark.feature("generate.raw")
def test_raw_returns_no_context(api: Api, chat_model: str) -> None:
    body = api.single(generate(api, chat_model, stream=False, raw=True, options=SMALL))
    assert "context" not in body, "raw mode returned a context"


@pytest.mark.feature("generate.raw.conflict")
def test_raw_with_system_is_refused(api: Api, chat_model: str) -> None:
    message = api.native_error(generate(api, chat_model, raw=True, system="be brief", options=SMALL), 400)
    assert "raw" in message, f"message {message!r}"


@pytest.mark.feature("generate.context")
def test_context_is_returned(api: Api, chat_model: str) -> None:
    body = api.single(generate(api, chat_model, stream=False, options=SMALL))
    context = body.get("context")
    assert isinstance(context, list) and context and all(isinstance(t, int) for t in context), f"context {context!r}"


@pytest.mark.feature("generate.logprobs")
def test_logprobs_per_token(api: Api, chat_model: str) -> None:
    body = api.single(generate(api, chat_model, stream=False, logprobs=True, top_logprobs=3, options={"num_predict": 3}))
    logprobs = body.get("logprobs")
    assert isinstance(logprobs, list), f"no logprobs list in the answer: {list(body)}"
    assert len(logprobs) == body.get("eval_count"), f"{len(logprobs)} logprobs for {body.get('eval_count')} tokens"
    for entry in logprobs:
        assert entry["logprob"] <= 0, f"logprob {entry['logprob']} > 0"
        tops = [t["logprob"] for t in entry.get("top_logprobs") or []]
        assert 1 <= len(tops) <= 3 and tops == sorted(tops, reverse=True), f"top_logprobs {tops} not ≤3 sorted"


@pytest.mark.feature("generate.top_logprobs.range")
def test_top_logprobs_out_of_range(api: Api, chat_model: str) -> None:
    api.native_error(generate(api, chat_model, logprobs=True, top_logprobs=21, options=SMALL), 400)


@pytest.mark.feature("generate.think.refused")
def test_think_refused_without_capability(api: Api, target: Target, chat_model: str) -> None:
    if "thinking" in known_capabilities(target, chat_model):
        pytest.skip(f"{chat_model} can think: the refusal does not apply")
    message = api.native_error(generate(api, chat_model, think=True, options=SMALL), 400)
    assert "does not support thinking" in message, f"message {message!r}"


@pytest.mark.feature("generate.suffix.refused")
def test_suffix_refused_without_insert(api: Api, target: Target, chat_model: str) -> None:
    if "insert" in known_capabilities(target, chat_model):
        pytest.skip(f"{chat_model} supports insert: the refusal does not apply")
    message = api.native_error(generate(api, chat_model, suffix=" and so on", options=SMALL), 400)
    assert "does not support insert" in message, f"message {message!r}"


@pytest.mark.feature("generate.not_capable")
def test_generate_refused_on_embedding_model(api: Api, target: Target, embed_model: str) -> None:
    if "completion" in known_capabilities(target, embed_model):
        pytest.skip(f"{embed_model} can also generate")
    message = api.native_error(generate(api, embed_model, options=SMALL), 400)
    assert "does not support generate" in message, f"message {message!r}"
