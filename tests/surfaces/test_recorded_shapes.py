"""Every /v1 and /v1/messages response shape recorded from a real Ollama daemon can be produced by the backend.

A shape is the set of JSON paths with the types found there (`choices[].delta.content: string`). For each
recording (../shared/recordings: crmne__ruby_llm cassettes, llamastack__llama-stack records) the backend answers
an analogous request; every recorded path must occur in our answer with a compatible type (a recorded null
matches any type). llama-stack stored the openai client's parsed objects, so ours go through the same client
model first. Shapes that need a thinking model (`reasoning`, `thinking` blocks) cannot come from the bundled
gemma3:270m: for those, our answer is joined with what our translation makes of the native objects a thinking
model yields (the engine side of thinking is the native core's). Ollama Cloud recordings are not ours to match.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import httpx
import openai.types
import openai.types.chat
import pytest
import yaml

from ollama_conformance.reference_backend.api.anthropic import MessagesStreamConverter, to_message
from ollama_conformance.reference_backend.api.openai import ChatChunker, to_chat_completion

from .wire import CHAT_MODEL, FEW_SHOT, LAST_QUESTION, WEATHER_PARAMETERS, capabilities, post_stream, split_sse

pytestmark = pytest.mark.slow

Shape = dict[str, set[str]]
USER = [{"role": "user", "content": "Say hi."}]


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    return {str: "string", list: "array", dict: "object"}[type(value)]


def shape_of(values: Iterable[Any]) -> Shape:
    shape: Shape = {}

    def walk(value: Any, path: str) -> None:
        shape.setdefault(path, set()).add(_kind(value))
        if isinstance(value, dict):
            for key, item in value.items():
                walk(item, f"{path}.{key}")
        elif isinstance(value, list):
            for item in value:
                walk(item, f"{path}[]")

    for value in values:
        walk(value, "$")
    return shape


def missing(recorded: Shape, ours: Shape) -> list[str]:
    gaps = []
    for path, kinds in sorted(recorded.items()):
        if path not in ours:
            gaps.append(f"{path} (absent)")
        elif not (kinds - {"null"}) <= ours[path]:
            gaps.append(f"{path}: recorded {sorted(kinds)}, ours {sorted(ours[path])}")
    return gaps


# --- reading the recordings ------------------------------------------------------------------------------------


class _CassetteLoader(yaml.SafeLoader):
    pass


_CassetteLoader.add_constructor(
    "!binary", lambda loader, node: base64.b64decode(loader.construct_scalar(node)).decode()
)


def cassette_bodies(path: Path) -> list[str]:
    """Response bodies of the local-daemon interactions of a Ruby VCR cassette."""
    data = yaml.load(path.read_text(encoding="utf-8"), Loader=_CassetteLoader)
    return [
        i["response"]["body"]["string"] for i in data["http_interactions"] if "<OLLAMA_API_BASE>" in i["request"]["uri"]
    ]


def sse_data(body: str) -> list[Any]:
    return [json.loads(line[6:]) for line in body.splitlines() if line.startswith("data: ") and line[6:] != "[DONE]"]


def llamastack(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))["response"]


def client_data(body: Any) -> list[Any]:
    return [item["__data__"] for item in (body if isinstance(body, list) else [body])]


def client_object(model: type, wire: Any) -> Any:
    """What the openai client makes of a wire object (it constructs without validating), as llama-stack stored it."""
    from openai._models import construct_type

    return construct_type(value=wire, type_=model).model_dump()


def events_by_name(lines: list[str]) -> dict[str, list[Any]]:
    grouped: dict[str, list[Any]] = {}
    name = ""
    for line in lines:
        if line.startswith("event: "):
            name = line[7:]
        elif line.startswith("data: "):
            grouped.setdefault(name, []).append(json.loads(line[6:]))
    return grouped


# --- producing ours --------------------------------------------------------------------------------------------

OPENAI_TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": WEATHER_PARAMETERS}}]


def openai_tool_conversation() -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []
    for i, (city, result, answer) in enumerate(FEW_SHOT):
        messages += [
            {"role": "user", "content": f"Weather in {city}?"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": f"call_{i}",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": json.dumps({"city": city})},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": f"call_{i}", "content": result},
            {"role": "assistant", "content": answer},
        ]
    return [*messages, {"role": "user", "content": LAST_QUESTION}]


THINKING_NATIVE = [
    {
        "model": CHAT_MODEL,
        "created_at": "2026-11-21T10:00:00.1Z",
        "message": {"role": "assistant", "content": "", "thinking": "Let me see."},
        "done": False,
    },
    {
        "model": CHAT_MODEL,
        "created_at": "2026-11-21T10:00:00.2Z",
        "message": {"role": "assistant", "content": "Hi"},
        "done": False,
    },
    {
        "model": CHAT_MODEL,
        "created_at": "2026-11-21T10:00:00.3Z",
        "message": {"role": "assistant", "content": ""},
        "done": True,
        "done_reason": "stop",
        "prompt_eval_count": 9,
        "eval_count": 4,
    },
]
THINKING_MERGED = {**THINKING_NATIVE[-1], "message": {"role": "assistant", "content": "Hi", "thinking": "Let me see."}}


def thinking_chat_chunks() -> list[Any]:
    chunker = ChatChunker("chatcmpl-1", include_usage=True)
    return [c for item in THINKING_NATIVE for c in chunker.feed(item) if isinstance(c, dict)]


def thinking_message_events() -> dict[str, list[Any]]:
    converter = MessagesStreamConverter("msg_1", CHAT_MODEL, 3)
    grouped: dict[str, list[Any]] = {}
    for item in THINKING_NATIVE:
        for name, data in converter.process(item):
            grouped.setdefault(name, []).append(data)
    return grouped


class Ours:
    """Our answers, each produced once per session."""

    def __init__(self, http: httpx.Client) -> None:
        self.http = http
        self.cache: dict[str, Any] = {}

    def get(self, key: str, make: Callable[[], Any]) -> Any:
        if key not in self.cache:
            self.cache[key] = make()
        return self.cache[key]

    def post(self, path: str, body: dict[str, Any]) -> Any:
        response = self.http.post(path, json=body)
        assert response.status_code in (200, 400, 404), response.text
        return response.json()

    def stream(self, path: str, body: dict[str, Any]) -> list[Any]:
        response, raw = post_stream(self.http, path, {**body, "stream": True})
        assert response.status_code == 200, raw
        return [e.json() for e in split_sse(raw) if e.data != "[DONE]"]

    def chat(self) -> Any:
        return self.get(
            "chat", lambda: self.post("/v1/chat/completions", {"model": CHAT_MODEL, "messages": USER, "max_tokens": 3})
        )

    def chat_tools(self) -> list[Any]:
        if "tools" not in capabilities(self.http):
            return []
        return [
            self.get(
                "chat_tools",
                lambda: self.post(
                    "/v1/chat/completions",
                    {
                        "model": CHAT_MODEL,
                        "messages": openai_tool_conversation(),
                        "tools": OPENAI_TOOLS,
                        "max_tokens": 20,
                        "temperature": 0,
                    },
                ),
            )
        ]

    def chat_stream(self, **extra: Any) -> list[Any]:
        key = "chat_stream" + json.dumps(extra, sort_keys=True)
        return self.get(
            key,
            lambda: self.stream(
                "/v1/chat/completions", {"model": CHAT_MODEL, "messages": USER, "max_tokens": 3, **extra}
            ),
        )


@pytest.fixture(scope="module")
def ours(http: httpx.Client) -> Ours:
    return Ours(http)


def assert_producible(recorded: Iterable[Any], produced: Iterable[Any]) -> None:
    gaps = missing(shape_of(recorded), shape_of(produced))
    assert not gaps, "recorded shape not produced:\n" + "\n".join(gaps)


CRMNE = "crmne__ruby_llm"
LLAMASTACK = "llamastack__llama-stack"


def test_crmne_non_stream_chat(recordings: Path, ours: Ours) -> None:
    thinking = to_chat_completion("chatcmpl-1", THINKING_MERGED)
    for name in (
        "chat_basic_chat_functionality_ollama_qwen3_can_have_a_basic_conversation.yml",
        "chat_vision_models_ollama_granite3_2-vision_can_understand_local_images.yml",
    ):
        recorded = [json.loads(body) for body in cassette_bodies(recordings / CRMNE / name)]
        assert_producible(recorded, [ours.chat(), thinking])


def test_crmne_tool_calls(recordings: Path, ours: Ours) -> None:
    recorded = [
        json.loads(body)
        for body in cassette_bodies(recordings / CRMNE / "chat_function_calling_ollama_qwen3_can_use_tools.yml")
    ]
    tools = ours.chat_tools()
    if not tools:
        pytest.skip(
            "the bundled model has no tools capability here; the tool_calls shape is covered by the translation tests"
        )
    assert_producible(recorded, [*tools, ours.chat(), to_chat_completion("chatcmpl-1", THINKING_MERGED)])


def test_crmne_response_format(recordings: Path, ours: Ours) -> None:
    recorded = [
        json.loads(body)
        for body in cassette_bodies(
            recordings / CRMNE / "chat_with_params_ollama_qwen3_supports_response_format_param.yml"
        )
    ]
    produced = ours.get(
        "json",
        lambda: ours.post(
            "/v1/chat/completions",
            {"model": CHAT_MODEL, "messages": USER, "max_tokens": 6, "response_format": {"type": "json_object"}},
        ),
    )
    assert_producible(recorded, [produced, to_chat_completion("chatcmpl-1", THINKING_MERGED)])


def test_crmne_stream_with_usage(recordings: Path, ours: Ours) -> None:
    (body,) = cassette_bodies(
        recordings / CRMNE / "chat_streaming_responses_ollama_qwen3_supports_streaming_responses.yml"
    )
    produced = ours.chat_stream(stream_options={"include_usage": True})
    assert_producible(sse_data(body), [*produced, *thinking_chat_chunks()])


def test_crmne_models(recordings: Path, ours: Ours) -> None:
    name = "models_local_provider_model_fetching_fetch_from_providers_can_include_local_providers_with_remote_only_false.yml"
    recorded = [json.loads(body) for body in cassette_bodies(recordings / CRMNE / name)]
    assert_producible(recorded, [ours.get("models", lambda: ours.http.get("/v1/models").json())])


def test_llamastack_models_and_completions(recordings: Path, ours: Ours) -> None:
    folder = recordings / LLAMASTACK
    models = llamastack(next(folder.glob("models-*.json")))["body"]
    produced_models = [
        client_object(openai.types.Model, m)
        for m in ours.get("models", lambda: ours.http.get("/v1/models").json())["data"]
    ]
    assert_producible(client_data(models), produced_models)

    plain = ours.get(
        "completion",
        lambda: ours.post("/v1/completions", {"model": CHAT_MODEL, "prompt": "Roses are", "max_tokens": 3}),
    )
    recorded = client_data(
        llamastack(folder / "f0f863b7a3527d2848b81dfcc05c898a7a2a1ab5e1213f100aeae00b8a5e1ba3.json")["body"]
    )
    assert_producible(recorded, [client_object(openai.types.Completion, plain)])

    chunks = ours.get(
        "completion_stream",
        lambda: ours.stream("/v1/completions", {"model": CHAT_MODEL, "prompt": "Roses are", "max_tokens": 3}),
    )
    recorded = client_data(
        llamastack(folder / "c03bc36fc4c19495050b64122ffa310f812e2ab2aa32f5e01ad0ac9b7ae046e2.json")["body"]
    )
    assert_producible(recorded, [client_object(openai.types.Completion, c) for c in chunks])


def test_llamastack_chat_stream_and_image_error(recordings: Path, ours: Ours) -> None:
    folder = recordings / LLAMASTACK
    recorded = client_data(
        llamastack(folder / "37e10e6ac4dccb3a91333fcfe9a17806950b21da9470c98960495f3b9fe94ecd.json")["body"]
    )
    produced = [client_object(openai.types.chat.ChatCompletionChunk, c) for c in ours.chat_stream()]
    assert_producible(recorded, produced)

    error = llamastack(folder / "28a43dc80443ccae98eee165c58522090fd6f0637031153b0105399093d39c52.json")
    ours_error = ours.post(
        "/v1/chat/completions",
        {
            "model": CHAT_MODEL,
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "What is in this image?"},
                        {"type": "image_url", "image_url": {"url": "data:image/png;base64,not_valid_base64_data!!!"}},
                    ],
                }
            ],
        },
    )
    assert ours_error["error"] == error["exception_data"]["body"]


def test_llamastack_messages(recordings: Path, ours: Ours) -> None:
    folder = recordings / LLAMASTACK
    refused = llamastack(folder / "cf0be7f9e2ebfc78903aa4ada30204585952f77bc5acb3ff7702bd7878d44b44.json")
    ours_refused = ours.post("/v1/messages", {"model": CHAT_MODEL, "messages": [], "max_tokens": 64})
    assert shape_of([ours_refused]) == shape_of([refused["body"]])
    assert ours_refused["error"] == refused["body"]["error"]

    round_trip = json.loads(
        (folder / "f55988509902a617d2f547a1518bb84c3c8784ea1e1ac139e2f0623449dfa047.json").read_text()
    )
    ours_message = ours.post(
        "/v1/messages", {**round_trip["request"]["payload"], "model": CHAT_MODEL, "max_tokens": 4, "tools": []}
    )
    assert_producible([round_trip["response"]["body"]], [ours_message, to_message("msg_1", THINKING_MERGED)])

    streamed = events_by_name(
        llamastack(folder / "f22657bfd86db6348c0a0d0b17332dcfc038b345d2a7be8da4b880a433d36a52.json")["body"]
    )
    _, raw = post_stream(
        ours.http,
        "/v1/messages",
        {
            "model": CHAT_MODEL,
            "max_tokens": 3,
            "stream": True,
            "messages": [{"role": "user", "content": "Count to 5."}],
        },
    )
    produced: dict[str, list[Any]] = {}
    for event in split_sse(raw):
        produced.setdefault(event.name or "", []).append(event.json())
    for name, data in thinking_message_events().items():
        produced.setdefault(name, []).extend(data)
    assert set(streamed) == set(produced)
    for name, recorded in streamed.items():
        assert_producible(recorded, produced[name])


def test_shape_comparison_finds_gaps() -> None:
    recorded = shape_of([{"id": "x", "choices": [{"finish_reason": None, "delta": {"content": "a"}}]}])
    assert (
        missing(recorded, shape_of([{"id": "y", "choices": [{"finish_reason": "stop", "delta": {"content": ""}}]}]))
        == []
    )
    assert missing(recorded, shape_of([{"id": 1, "choices": [{"delta": {}}]}])) == [
        "$.choices[].delta.content (absent)",
        "$.choices[].finish_reason (absent)",
        "$.id: recorded ['string'], ours ['number']",
    ]
