"""Created models behave as Ollama's, checked from what the server does rather than what /api/show echoes:
a created SYSTEM, TEMPLATE, PARAMETER or MESSAGE changes the prompt the model evaluates (prompt_eval_count, which
a server cannot keep right without rendering the prompt) or the output it streams; and a generation longer than
the context completes (context shift). The create tests are mutations (--allow-mutations) and delete their
models whatever happens."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from ollama_conformance.conformance.checks import Api

GREEDY = {"temperature": 0, "num_predict": 1}
HI = [{"role": "user", "content": "Hi"}]
COUNTING = ", ".join(str(n) for n in range(1, 30)) + ","


def _create(api: Api, base: str, **fields: Any) -> str:
    name = f"conformance-made-{uuid.uuid4().hex[:8]}:latest"
    got = api.post("/api/create", {"model": name, "from": base, "stream": False, **fields})
    body = api.single(got)
    assert body.get("status") == "success", f"/api/create answered {body!r}"
    return name


@pytest.fixture
def made(api: Api, chat_model: str) -> Iterator[list[str]]:
    """Names of the models a test creates; each is deleted afterwards."""
    names: list[str] = []
    yield names
    for name in names:
        api.call("DELETE", "/api/delete", {"model": name})


def _prompt_count(api: Api, path: str, body: dict[str, Any]) -> int:
    answer = api.single(api.post(path, {"stream": False, "options": GREEDY, **body}))
    count = answer.get("prompt_eval_count")
    assert isinstance(count, int) and count > 0, f"{path}: prompt_eval_count is {count!r}"
    return count


def _generate_count(api: Api, model: str, **fields: Any) -> int:
    return _prompt_count(api, "/api/generate", {"model": model, "prompt": "Hi", **fields})


def _chat_count(api: Api, model: str, messages: list[dict[str, str]]) -> int:
    return _prompt_count(api, "/api/chat", {"model": model, "messages": messages})


def _streamed_pieces(api: Api, body: dict[str, Any], *, uncapped: bool = False) -> tuple[int, dict[str, Any]]:
    """How many non-empty text pieces a streamed generate sent, and its final object. `uncapped` sends the body
    as bytes, past the suite's default output cap (payloads.capped), so that only the model's own num_predict
    bounds the output."""
    body = {**body, "stream": True}
    if uncapped:
        got = api.post("/api/generate", raw=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    else:
        got = api.post("/api/generate", body)
    objects = api.ndjson(got)
    pieces = sum(1 for o in objects if not o.get("done") and o.get("response"))
    return pieces, objects[-1]


@pytest.mark.mutating
@pytest.mark.feature("create.system_applied")
def test_created_system_is_applied(api: Api, chat_model: str, made: list[str]) -> None:
    made.append(name := _create(api, chat_model, system="You are a terse assistant. Answer in one word."))
    base_generate, base_chat = _generate_count(api, chat_model), _chat_count(api, chat_model, HI)
    assert _generate_count(api, name) > base_generate, (
        "/api/generate: the created model's SYSTEM does not reach the prompt (prompt_eval_count is the base model's)"
    )
    assert _chat_count(api, name, HI) > base_chat, (
        "/api/chat: the created model's SYSTEM does not reach the prompt (prompt_eval_count is the base model's)"
    )
    own = _generate_count(api, chat_model, system="Be kind.")
    assert _generate_count(api, name, system="Be kind.") == own, (
        "/api/generate: a request's system does not replace the created model's SYSTEM"
    )


@pytest.mark.mutating
@pytest.mark.feature("create.template_applied")
def test_created_template_is_rendered(api: Api, chat_model: str, made: list[str]) -> None:
    made.append(name := _create(api, chat_model, template="{{ .Prompt }}"))
    prompt = "Hello there, how are you?"
    raw = _prompt_count(api, "/api/generate", {"model": chat_model, "prompt": prompt, "raw": True})
    rendered = _generate_count(api, name, prompt=prompt)
    assert rendered == raw, (
        f"a created TEMPLATE {{{{ .Prompt }}}} evaluates {rendered} prompt tokens, raw:true {raw}: the template is "
        "not the one rendered"
    )


@pytest.mark.mutating
@pytest.mark.feature("create.parameters_applied")
def test_created_parameters_are_defaults(api: Api, chat_model: str, made: list[str]) -> None:
    made.append(name := _create(api, chat_model, parameters={"num_predict": 2, "temperature": 0}))
    # no num_predict in the request: a server that drops the created one stops only at the (small) context
    body = {"model": name, "prompt": COUNTING, "raw": True, "shift": False, "options": {"num_ctx": 256}}
    pieces, final = _streamed_pieces(api, body, uncapped=True)
    assert pieces <= 2 and final.get("eval_count", 0) <= 2, (
        f"a created PARAMETER num_predict 2 streamed {pieces} pieces (eval_count {final.get('eval_count')})"
    )
    pieces, final = _streamed_pieces(api, {**body, "options": {"num_predict": 6}})
    assert pieces > 2, f"a request's num_predict 6 did not override the created num_predict 2 ({pieces} pieces)"


@pytest.mark.mutating
@pytest.mark.feature("create.messages_applied")
def test_created_messages_are_prepended(api: Api, chat_model: str, made: list[str]) -> None:
    history = [{"role": "user", "content": "My name is Ada."}, {"role": "assistant", "content": "Hello Ada."}]
    made.append(name := _create(api, chat_model, messages=history))
    created, base = _chat_count(api, name, HI), _chat_count(api, chat_model, HI)
    assert created > base, "/api/chat: the created model's MESSAGE history does not reach the prompt"
    explicit = _chat_count(api, chat_model, [*history, *HI])
    assert created == explicit, (
        f"/api/chat: with the created MESSAGE history the prompt has {created} tokens, with that history sent "
        f"explicitly {explicit}"
    )


@pytest.mark.feature("context.shift")
def test_generation_longer_than_the_context_completes(api: Api, chat_model: str) -> None:
    num_ctx = 128
    body = {"model": chat_model, "prompt": COUNTING, "raw": True,
            "options": {"temperature": 0, "num_ctx": num_ctx, "num_predict": 2 * num_ctx}}  # fmt: skip
    got = api.post("/api/generate", {**body, "stream": True})
    objects = api.ndjson(got, allow_error_end=True)
    errors = [o["error"] for o in objects if "error" in o]
    assert not errors, f"a generation past num_ctx {num_ctx} broke off: {errors[0]!r}"
    pieces = sum(1 for o in objects if not o.get("done") and o.get("response"))
    assert pieces > num_ctx, (
        f"a generation asked for {2 * num_ctx} tokens with num_ctx {num_ctx} streamed only {pieces} pieces "
        f"(done_reason {objects[-1].get('done_reason')!r}): the context did not shift"
    )
