"""The official clients as judges of the compatible grade: the bytes a server really sent, fed to the SDKs.

A captured answer is replayed through an `httpx.MockTransport` into the real client (openai, anthropic,
ollama-python), which decodes it as it would off the wire (its SSE decoder, its NDJSON loop, its error
handling); every item is then validated against the SDK's own pydantic types. What an SDK refuses is a
compatible-grade failure; what it accepts may still differ from Ollama (the exact grade judges that).

Each function returns a list of problems (empty: the client reads the answer without complaint). An SDK that is
not installed gives no opinion (an empty list): the spec's compatible schema still judges the answer.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable
from typing import Any

import httpx

from ollama_conformance.conformance.streams import Captured

REPLAY_BASE = "http://replay.invalid"
# Marks a problem found by validating an item against the SDK's pydantic type (not by the SDK's own decoding,
# which builds its objects without validation): see `Api.contract` for how such a problem is graded.
TYPE_REFUSAL = "is refused by the SDK's type"
MESSAGES = [{"role": "user", "content": "hi"}]


def _replay_transport(got: Captured, http: Any = httpx) -> Any:
    """A transport that answers every request with the captured status, headers and body. `http` is the HTTP
    package the SDK is built on (httpx, or httpx2 for the anthropic SDK): its MockTransport and Response."""
    headers = [(k, v) for k, v in got.headers.multi_items() if k.lower() not in ("content-length", "content-encoding",
                                                                               "transfer-encoding")]

    def answer(request: Any) -> Any:
        return http.Response(got.status, headers=headers, content=got.raw or got.text.encode(), request=request)

    return http.MockTransport(answer)


def _replay(got: Captured, http: Any = httpx) -> Any:
    return http.Client(transport=_replay_transport(got, http), base_url=REPLAY_BASE)


def _http_package_of(sdk: Any) -> Any:
    """The HTTP package an SDK takes its `http_client` from (newer anthropic SDKs use httpx2)."""
    base = importlib.import_module(f"{sdk.__name__}._base_client")
    for name in ("httpx2", "httpx"):
        if hasattr(base, name):
            return getattr(base, name)
    return httpx


def _validate_each(items: list[Any], validate: Callable[[Any], Any], what: str) -> list[str]:
    problems: list[str] = []
    for index, item in enumerate(items):
        try:
            validate(item)
        except Exception as exc:  # pydantic.ValidationError and whatever the type's validators raise
            problems.append(f"{what} {index} {TYPE_REFUSAL}: {_first_line(exc)}")
            break
    return problems


def _first_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:300]}"


def _sse_json(got: Captured) -> list[Any]:
    from ollama_conformance.conformance.streams import parse_sse

    out = []
    for event in parse_sse(got.text).events:
        if event.data == "[DONE]":
            continue
        try:
            out.append(json.loads(event.data))
        except ValueError:
            continue  # the SDK's own decoder reports bad JSON below
    return out


def openai_chat(got: Captured, *, stream: bool) -> list[str]:
    """The openai SDK reads a /v1/chat/completions answer: its stream decoder, then ChatCompletion(Chunk) types."""
    import openai
    from openai.types.chat import ChatCompletion, ChatCompletionChunk
    client = openai.OpenAI(api_key="replay", base_url=f"{REPLAY_BASE}/v1", http_client=_replay(got, _http_package_of(openai)),
                           max_retries=0)
    try:
        if stream:
            chunks = list(client.chat.completions.create(model="m", messages=MESSAGES, stream=True))
            if not chunks:
                return ["the openai SDK read no chunk from the stream"]
            return _validate_each(_sse_json(got), ChatCompletionChunk.model_validate, "chunk")
        client.chat.completions.create(model="m", messages=MESSAGES)
        return _validate_each([json.loads(got.text)], ChatCompletion.model_validate, "the body")
    except Exception as exc:
        return [f"the openai SDK fails on the answer: {_first_line(exc)}"]
    finally:
        client.close()


def openai_completion(got: Captured, *, stream: bool) -> list[str]:
    import openai
    from openai.types import Completion
    client = openai.OpenAI(api_key="replay", base_url=f"{REPLAY_BASE}/v1", http_client=_replay(got, _http_package_of(openai)),
                           max_retries=0)
    try:
        if stream:
            list(client.completions.create(model="m", prompt="hi", stream=True))
            # The SDK's Completion type declares finish_reason non-null, yet OpenAI streams null on every chunk but
            # the last (the SDK builds chunks without validating): only the finishing chunks are typed here.
            items = [c for c in _sse_json(got) if c.get("choices") and c["choices"][0].get("finish_reason")]
            return _validate_each(items, Completion.model_validate, "chunk")
        client.completions.create(model="m", prompt="hi")
        return _validate_each([json.loads(got.text)], Completion.model_validate, "the body")
    except Exception as exc:
        return [f"the openai SDK fails on the answer: {_first_line(exc)}"]
    finally:
        client.close()


def anthropic_messages(got: Captured, *, stream: bool) -> list[str]:
    """The anthropic SDK reads a /v1/messages answer: its stream accumulator (`messages.stream`), then its types."""
    import anthropic
    import pydantic
    from anthropic.types import Message, RawMessageStreamEvent
    client = anthropic.Anthropic(api_key="replay", base_url=REPLAY_BASE, http_client=_replay(got, _http_package_of(anthropic)),
                                 max_retries=0)
    try:
        if stream:
            with client.messages.stream(model="m", max_tokens=4, messages=MESSAGES) as events:
                final = events.get_final_message()
            if final is None:
                return ["the anthropic SDK assembled no message from the stream"]
            adapter = pydantic.TypeAdapter(RawMessageStreamEvent)
            return _validate_each(_sse_json(got), adapter.validate_python, "event")
        client.messages.create(model="m", max_tokens=4, messages=MESSAGES)
        return _validate_each([json.loads(got.text)], Message.model_validate, "the body")
    except Exception as exc:
        return [f"the anthropic SDK fails on the answer: {_first_line(exc)}"]
    finally:
        client.close()


def ollama_native(got: Captured, path: str, *, stream: bool) -> list[str]:
    """ollama-python reads a /api/chat or /api/generate answer: its NDJSON loop and ChatResponse/GenerateResponse."""
    import ollama
    client = ollama.Client(host=REPLAY_BASE, transport=_replay_transport(got))
    try:
        if path == "/api/chat":
            answers = client.chat(model="m", messages=MESSAGES, stream=stream)
        else:
            answers = client.generate(model="m", prompt="hi", stream=stream)
        items = list(answers) if stream else [answers]
        if not items:
            return ["ollama-python read no object from the stream"]
    except Exception as exc:
        return [f"ollama-python fails on the answer: {_first_line(exc)}"]
    return []


def ollama_models(got: Captured, path: str) -> list[str]:
    """ollama-python reads a /api/tags, /api/ps or /api/show answer into ListResponse, ProcessResponse or
    ShowResponse (pydantic: a field it declares Optional may be missing, one it parses must parse)."""
    import ollama
    client = ollama.Client(host=REPLAY_BASE, transport=_replay_transport(got))
    try:
        if path == "/api/tags":
            client.list()
        elif path == "/api/ps":
            client.ps()
        else:
            client.show("m")
    except Exception as exc:
        return [f"ollama-python fails on the answer: {_first_line(exc)}"]
    return []


MODEL_ROUTES = {("GET", "/api/tags"), ("GET", "/api/ps"), ("POST", "/api/show")}


def sdk_problems(method: str, path: str, got: Captured, *, stream: bool) -> list[str]:
    """The official client's verdict on a successful answer of the routes they cover; [] for the others."""
    if got.status != 200:
        return []
    if (method, path) in MODEL_ROUTES:
        return ollama_models(got, path)
    if method != "POST":
        return []
    if path == "/v1/chat/completions":
        return openai_chat(got, stream=stream)
    if path == "/v1/completions":
        return openai_completion(got, stream=stream)
    if path == "/v1/messages":
        return anthropic_messages(got, stream=stream)
    if path in ("/api/chat", "/api/generate"):
        return ollama_native(got, path, stream=stream)
    return []
