"""The native API of the reference backend, through the official ollama client and raw HTTP (real models).

Output content is never asserted (gemma3:270m is a base model): structure, counts, framing, determinism under a
seed, stop and length behaviour are.
"""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import jsonschema
import ollama
import pytest

GEMMA = "gemma3:270m"
MINILM = "all-minilm:22m"
GREEDY = {"temperature": 0, "num_predict": 8}


@pytest.fixture(scope="module")
def client(reference_url: str) -> ollama.Client:
    return ollama.Client(host=reference_url, timeout=300)


@pytest.fixture(scope="module")
def http(reference_url: str) -> httpx.Client:
    with httpx.Client(base_url=reference_url, timeout=300) as session:
        yield session


def ndjson(response: httpx.Response) -> list[dict]:
    assert response.headers["content-type"] == "application/x-ndjson"
    lines = response.text.split("\n")
    assert lines[-1] == "", "the stream ends with a newline"
    return [json.loads(line) for line in lines[:-1]]


# --- the official client ---------------------------------------------------------------------------------------
def test_client_list_show(client: ollama.Client) -> None:
    names = {m.model for m in client.list().models}
    assert {GEMMA, MINILM} <= names
    shown = client.show(GEMMA)
    assert shown.details.family == "gemma3" and shown.details.quantization_level == "Q4_K_M"
    assert shown.details.format == "gguf" and shown.details.parameter_size
    assert "completion" in shown.capabilities
    assert shown.modelinfo["general.architecture"] == "gemma3"
    assert shown.modelinfo["gemma3.context_length"] == 32768
    assert shown.modelinfo["tokenizer.ggml.tokens"] is None  # arrays only with verbose
    assert shown.template and shown.parameters and shown.license
    embedder = client.show(MINILM)
    assert embedder.capabilities == ["embedding"]
    assert embedder.modelinfo["bert.embedding_length"] == 384


def test_client_generate(client: ollama.Client) -> None:
    result = client.generate(model=GEMMA, prompt="The capital of France is", options=GREEDY)
    assert result.done and result.done_reason == "length"
    assert result.eval_count == 8 and result.prompt_eval_count > 0
    assert result.total_duration >= result.eval_duration > 0
    assert isinstance(result.response, str) and result.response
    assert result.context and len(result.context) > result.prompt_eval_count
    chunks = list(client.generate(model=GEMMA, prompt="The capital of France is", options=GREEDY, stream=True))
    assert all(not c.done for c in chunks[:-1]) and chunks[-1].done
    assert "".join(c.response for c in chunks) == result.response  # greedy: same text streamed or not


def test_client_chat(client: ollama.Client) -> None:
    messages = [{"role": "user", "content": "Say hello."}]
    result = client.chat(model=GEMMA, messages=messages, options=GREEDY)
    assert result.message.role == "assistant" and isinstance(result.message.content, str)
    assert result.done_reason in ("stop", "length") and 0 < result.eval_count <= 8
    chunks = list(client.chat(model=GEMMA, messages=messages, options=GREEDY, stream=True))
    assert chunks[-1].done and chunks[-1].eval_count == result.eval_count
    assert "".join(c.message.content for c in chunks) == result.message.content


def test_client_embed(client: ollama.Client) -> None:
    result = client.embed(model=MINILM, input=["The sky is blue.", "Pizza is tasty."])
    assert len(result.embeddings) == 2 and all(len(v) == 384 for v in result.embeddings)
    for vector in result.embeddings:
        assert sum(x * x for x in vector) == pytest.approx(1.0, abs=1e-4)
    assert result.prompt_eval_count > 0
    short = client.embed(model=MINILM, input="The sky is blue.", dimensions=64)
    assert len(short.embeddings[0]) == 64 and sum(x * x for x in short.embeddings[0]) == pytest.approx(1.0, abs=1e-4)
    truncated = client.embed(model=MINILM, input="word " * 40, options={"num_ctx": 8})
    assert truncated.prompt_eval_count == 8 and len(truncated.embeddings[0]) == 384
    legacy = client.embeddings(model=MINILM, prompt="The sky is blue.")
    assert len(legacy.embedding) == 384
    assert sum(x * x for x in legacy.embedding) > 1.5  # the legacy endpoint returns the raw, unnormalised vector


def test_client_ps_copy_delete(client: ollama.Client, http: httpx.Client) -> None:
    client.generate(model=GEMMA, prompt="Hi", options={"num_predict": 1})
    loaded = client.ps().models
    assert any(m.model == GEMMA for m in loaded)
    entry = next(m for m in loaded if m.model == GEMMA)
    assert entry.expires_at is not None and entry.size > 0 and entry.digest
    copy_name = f"conformance-copy-{uuid.uuid4().hex[:8]}:latest"
    client.copy(GEMMA, copy_name)
    tags = {m.model: m for m in client.list().models}
    assert tags[copy_name].digest == tags[GEMMA].digest
    client.delete(copy_name)
    assert copy_name not in {m.model for m in client.list().models}
    # the original still works: deleting the copy kept the shared weights blob
    assert http.post("/api/show", json={"model": GEMMA}).status_code == 200
    assert client.generate(model=GEMMA, prompt="Hi", options={"num_predict": 1}).done
    with pytest.raises(ollama.ResponseError) as info:
        client.delete(copy_name)
    assert info.value.status_code == 404


# --- framing and generation semantics --------------------------------------------------------------------------
def test_ndjson_framing(http: httpx.Client) -> None:
    response = http.post("/api/generate", json={"model": GEMMA, "prompt": "Once upon a time", "options": GREEDY})
    assert response.status_code == 200
    objects = ndjson(response)
    assert len(objects) >= 2
    for item in objects[:-1]:
        assert item["done"] is False and item["model"] == GEMMA and isinstance(item["response"], str)
        assert item["created_at"].endswith("Z")
    final = objects[-1]
    assert final["done"] is True and final["done_reason"] == "length" and final["response"] == ""
    for key in (
        "total_duration",
        "load_duration",
        "prompt_eval_count",
        "prompt_eval_duration",
        "eval_count",
        "eval_duration",
    ):
        assert isinstance(final[key], int) and final[key] > 0, key
    assert final["eval_count"] == 8
    chat = http.post(
        "/api/chat", json={"model": GEMMA, "messages": [{"role": "user", "content": "Hi"}], "options": GREEDY}
    )
    objects = ndjson(chat)
    assert all(o["message"]["role"] == "assistant" for o in objects)
    assert objects[-1]["done"] and "context" not in objects[-1]
    single = http.post("/api/generate", json={"model": GEMMA, "prompt": "Hi", "stream": False, "options": GREEDY})
    assert single.headers["content-type"] == "application/json; charset=utf-8"
    assert single.json()["done"] is True


@pytest.mark.parametrize("num_predict", [1, 3])
def test_num_predict_limits_output(http: httpx.Client, num_predict: int) -> None:
    body = {"model": GEMMA, "prompt": "Count: one, two,", "stream": False, "options": {"num_predict": num_predict}}
    result = http.post("/api/generate", json=body).json()
    assert result["eval_count"] <= num_predict and result["done_reason"] == "length"


def test_stop_sequence_ends_output(http: httpx.Client) -> None:
    prompt = "Question: Why is the sky blue?\nAnswer:"
    free = http.post(
        "/api/generate",
        json={"model": GEMMA, "prompt": prompt, "stream": False, "options": {"temperature": 0, "num_predict": 16}},
    ).json()
    text = free["response"]
    words = text.split()
    assert len(words) >= 4, text
    stop = words[2]
    cut = text.index(stop)
    stopped = http.post(
        "/api/generate",
        json={
            "model": GEMMA,
            "prompt": prompt,
            "stream": False,
            "options": {"temperature": 0, "num_predict": 16, "stop": [stop]},
        },
    ).json()
    assert stopped["done_reason"] == "stop"
    assert stopped["response"] == text[:cut]
    assert stop not in stopped["response"]


def test_seed_gives_same_output(http: httpx.Client) -> None:
    body = {
        "model": GEMMA,
        "prompt": "My favourite animal is",
        "stream": False,
        "options": {"seed": 42, "temperature": 1.0, "num_predict": 12},
    }
    first = http.post("/api/generate", json=body).json()["response"]
    second = http.post("/api/generate", json=body).json()["response"]
    assert first == second


def test_format_json_parses(http: httpx.Client) -> None:
    body = {
        "model": GEMMA,
        "prompt": "A person as JSON:",
        "format": "json",
        "stream": False,
        "options": {"temperature": 0, "num_predict": 64},
    }
    result = http.post("/api/generate", json=body).json()
    # Ollama's JSON mode is an object grammar (`root ::= object`), never an array or a bare value
    if result["done_reason"] == "stop":
        assert isinstance(json.loads(result["response"]), dict)
    else:  # cut by num_predict: still a JSON object prefix, never free text
        assert result["response"].lstrip().startswith("{")


def test_format_schema_validates(http: httpx.Client) -> None:
    schema = {
        "type": "object",
        "properties": {"name": {"type": "string", "maxLength": 12}, "age": {"type": "integer"}},
        "required": ["name", "age"],
        "additionalProperties": False,
    }
    prompt = "Extract the person as JSON.\nText: Alice is 31 years old and lives in Paris.\nJSON:"
    body = {
        "model": GEMMA,
        "prompt": prompt,
        "format": schema,
        "stream": False,
        "options": {"temperature": 0, "num_predict": 48},
    }
    result = http.post("/api/generate", json=body).json()
    assert result["done_reason"] == "stop"
    jsonschema.validate(json.loads(result["response"]), schema)


def test_tool_call_shape(client: ollama.Client) -> None:
    tool = {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Current weather in a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
        },
    }
    call = {"function": {"name": "get_weather", "arguments": {"city": "Berlin"}}}
    messages = [
        {"role": "user", "content": "What is the weather in Berlin?"},
        {"role": "assistant", "content": "", "tool_calls": [call]},
        {"role": "tool", "content": "12 degrees, rain"},
        {"role": "user", "content": "What is the weather in Rome?"},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [{"function": {"name": "get_weather", "arguments": {"city": "Rome"}}}],
        },
        {"role": "tool", "content": "25 degrees, sun"},
        {"role": "user", "content": "What is the weather in Paris?"},
    ]
    result = client.chat(model=GEMMA, messages=messages, tools=[tool], options={"temperature": 0, "num_predict": 40})
    calls = result.message.tool_calls
    assert calls, f"no tool call in {result.message.content!r}"
    first = calls[0]
    assert first.function.name == "get_weather"
    assert isinstance(first.function.arguments, dict)
    jsonschema.validate(dict(first.function.arguments), tool["function"]["parameters"])
    raw = client._client.post(
        "/api/chat",
        json={
            "model": GEMMA,
            "messages": messages,
            "tools": [tool],
            "stream": False,
            "options": {"temperature": 0, "num_predict": 40},
        },
    ).json()
    raw_call = raw["message"]["tool_calls"][0]
    assert raw_call["id"].startswith("call_") and raw_call["function"]["index"] == 0


def test_logprobs(http: httpx.Client) -> None:
    body = {
        "model": GEMMA,
        "prompt": "Hello",
        "stream": False,
        "logprobs": True,
        "top_logprobs": 3,
        "options": {"num_predict": 4, "temperature": 0},
    }
    result = http.post("/api/generate", json=body).json()
    assert len(result["logprobs"]) == result["eval_count"] == 4
    for entry in result["logprobs"]:
        assert entry["logprob"] <= 0 and isinstance(entry["token"], str)
        tops = entry["top_logprobs"]
        assert len(tops) == 3 and [t["logprob"] for t in tops] == sorted((t["logprob"] for t in tops), reverse=True)


def test_load_and_unload(http: httpx.Client) -> None:
    loaded = http.post("/api/generate", json={"model": GEMMA, "prompt": ""}).json()
    assert loaded["done"] is True and loaded["done_reason"] == "load"
    chat_loaded = http.post("/api/chat", json={"model": GEMMA, "messages": []}).json()
    assert chat_loaded["done_reason"] == "load" and chat_loaded["message"] == {"role": "assistant", "content": ""}
    unloaded = http.post("/api/generate", json={"model": MINILM, "prompt": "", "keep_alive": 0}).json()
    assert unloaded["done_reason"] == "unload"
    assert MINILM not in {m["model"] for m in http.get("/api/ps").json()["models"]}


def test_context_shift_keeps_generating(http: httpx.Client) -> None:
    body = {"model": GEMMA, "prompt": "Once upon a time", "raw": True, "stream": False}
    shifted = http.post(
        "/api/generate", json={**body, "options": {"num_ctx": 24, "num_predict": 30, "temperature": 0}}
    ).json()
    assert shifted["eval_count"] == 30 and shifted["done_reason"] == "length"
    stopped = http.post(
        "/api/generate", json={**body, "shift": False, "options": {"num_ctx": 24, "num_predict": 30, "temperature": 0}}
    ).json()
    assert stopped["eval_count"] < 30 and stopped["done_reason"] == "length"


def test_keep_alive_sets_expiry(http: httpx.Client) -> None:
    def expiry() -> datetime | None:
        for model in http.get("/api/ps").json()["models"]:
            if model["model"] == MINILM:
                return datetime.fromisoformat(model["expires_at"].replace("Z", "+00:00"))
        return None

    now = datetime.now(UTC)
    http.post("/api/embed", json={"model": MINILM, "input": "x", "keep_alive": "1h"}).raise_for_status()
    hour = expiry()
    assert hour is not None and timedelta(minutes=59) < hour - now < timedelta(minutes=61)
    http.post("/api/embed", json={"model": MINILM, "input": "x", "keep_alive": -1}).raise_for_status()
    forever = expiry()
    assert forever is not None and forever.year > 2200
    http.post("/api/embed", json={"model": MINILM, "input": "x", "keep_alive": 0}).raise_for_status()
    for _ in range(50):  # unloads right after the request; bounded wait
        if expiry() is None:
            break
        time.sleep(0.1)
    assert expiry() is None


def test_raw_template_system_and_context(http: httpx.Client) -> None:
    def generate(**body: object) -> dict:
        response = http.post("/api/generate", json={"model": GEMMA, "stream": False, **body})
        assert response.status_code == 200, response.text
        return response.json()

    rendered = generate(prompt="Hi", system="Be brief.", _debug_render_only=True)["_debug_info"]["rendered_template"]
    assert (
        rendered
        == "<start_of_turn>user\nBe brief.<end_of_turn>\n<start_of_turn>user\nHi<end_of_turn>\n<start_of_turn>model\n"
    )
    custom = generate(
        prompt="Hi", template="{{ if .System }}[{{ .System }}] {{ end }}Q: {{ .Prompt }}\nA:", _debug_render_only=True
    )
    assert custom["_debug_info"]["rendered_template"] == "Q: Hi\nA:"
    raw = generate(prompt="The sky is", raw=True, options=GREEDY)
    assert "context" not in raw and raw["eval_count"] == 8
    first = generate(prompt="My name is Sam.", options=GREEDY)
    follow = generate(prompt="What is my name?", context=first["context"], options=GREEDY)
    assert follow["prompt_eval_count"] > len(first["context"]) - 2
    assert follow["context"][:2] == first["context"][:2]
