"""The OpenAI-compatible /v1 surface: chat completions, completions, embeddings, models.

An adapter over the native core, as Ollama's `openai/openai.go` and `middleware/openai.go` are: each request is
rewritten into a native /api/chat, /api/generate or /api/embed request, and each native object into OpenAI
chunks or bodies. The pure translation functions come first; the Starlette handlers at the end only wire them.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import random
import struct
import time
from collections.abc import AsyncIterable, AsyncIterator
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ollama_conformance.reference_backend.api import catalog, core
from ollama_conformance.reference_backend.api.common import (
    NativeStream,
    RequestError,
    collect_final,
    decode_struct,
    json_type,
    model_namespace,
    parse_json_body,
    unix_seconds,
)
from ollama_conformance.reference_backend.api.errors import ApiError
from ollama_conformance.reference_backend.api.errors import openai_error_body as error_body
from ollama_conformance.reference_backend.api.sse import (
    DONE_SENTINEL,
    JSON,
    JSON_UTF8,
    go_json,
    sse_data,
    sse_response,
    writer_json_response,
)

FINGERPRINT = "fp_ollama"
log = logging.getLogger("ollama_conformance.reference_backend.surfaces")

CHAT_FIELDS = {
    "model": "string",
    "messages": "[]openai.Message",
    "stream": "bool",
    "stream_options": "*openai.StreamOptions",
    "max_tokens": "int",
    "seed": "int",
    "stop": "any",
    "temperature": "float64",
    "frequency_penalty": "float64",
    "presence_penalty": "float64",
    "top_p": "float64",
    "response_format": "*openai.ResponseFormat",
    "tools": "[]api.Tool",
    "reasoning": "*openai.Reasoning",
    "reasoning_effort": "string",
    "logprobs": "bool",
    "top_logprobs": "int",
    "_debug_render_only": "bool",
}
MESSAGE_FIELDS = {
    "role": "string",
    "content": "any",
    "reasoning": "string",
    "tool_calls": "[]openai.ToolCall",
    "name": "string",
    "tool_call_id": "string",
}
TOOL_CALL_FIELDS = {"id": "string", "index": "int", "type": "string", "function": "struct"}
FUNCTION_FIELDS = {"name": "string", "arguments": "string"}
COMPLETION_FIELDS = {
    "model": "string",
    "prompt": "string",
    "frequency_penalty": "float32",
    "max_tokens": "int",
    "presence_penalty": "float32",
    "seed": "int",
    "stop": "any",
    "stream": "bool",
    "stream_options": "*openai.StreamOptions",
    "temperature": "float32",
    "top_p": "float32",
    "suffix": "string",
    "logprobs": "int",
    "_debug_render_only": "bool",
}
EMBED_FIELDS = {"input": "any", "model": "string", "dimensions": "int", "encoding_format": "string"}

REASONING_VALUES = (
    'invalid reasoning value: "{}" (must be "minimal", "low", "medium", "high", "xhigh", "ultra", "max", or "none")'
)


# --- errors ------------------------------------------------------------------------------------------------------


def error_response(status: int, message: str, content_type: str = JSON) -> Response:
    return writer_json_response(error_body(status, message), status_code=status, content_type=content_type)


# --- request translation ---------------------------------------------------------------------------------------


def think_from_effort(effort: str) -> bool | str | None:
    """OpenAI reasoning effort -> native `think` (None leaves the model's default)."""
    if effort == "":
        return None
    if effort == "none":
        return False
    if effort == "minimal":
        return "low"
    if effort in ("low", "medium", "high", "max"):
        return effort
    if effort in ("xhigh", "ultra"):
        return "max"
    raise RequestError(REASONING_VALUES.format(effort))


def decode_image_url(url: str) -> str:
    """A data URI -> the plain base64 the native request carries (validated as Ollama does)."""
    if url.startswith(("http://", "https://")):
        raise RequestError("image URLs are not currently supported, please use base64 encoded data instead")
    if url.startswith("data:;base64,"):
        payload = url.removeprefix("data:;base64,")
    else:
        for kind in ("jpeg", "jpg", "png", "webp"):
            prefix = f"data:image/{kind};base64,"
            if url.startswith(prefix):
                payload = url.removeprefix(prefix)
                break
        else:
            raise RequestError("invalid image input")
    try:
        raw = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise RequestError("invalid image input") from None
    return base64.b64encode(raw).decode()


def tool_calls_to_native(calls: list[Any]) -> list[dict[str, Any]]:
    """OpenAI tool calls (arguments as a JSON string) -> native ones (arguments as an object)."""
    native = []
    for raw in calls:
        call = decode_struct(raw, "openai.ToolCall", TOOL_CALL_FIELDS)
        function = decode_struct(call.get("function"), "openai.ToolCall", FUNCTION_FIELDS)
        try:
            arguments = json.loads(function.get("arguments", ""))
        except json.JSONDecodeError:
            raise RequestError("invalid tool call arguments") from None
        if arguments is not None and not isinstance(arguments, dict):
            raise RequestError("invalid tool call arguments")
        entry: dict[str, Any] = {"function": {"name": function.get("name", ""), "arguments": arguments or {}}}
        if call.get("id"):
            entry = {"id": call["id"], **entry}
        native.append(entry)
    return native


def _native_message(role: str, **fields: Any) -> dict[str, Any]:
    message: dict[str, Any] = {"role": role, "content": fields.pop("content", "")}
    message.update({key: value for key, value in fields.items() if value})
    return message


def _tool_name_from_id(messages: list[dict[str, Any]], call_id: str) -> str:
    for message in reversed(messages):
        for call in message.get("tool_calls") or []:
            if isinstance(call, dict) and call.get("id") == call_id:
                return str((call.get("function") or {}).get("name", ""))
    return ""


def messages_to_native(raw_messages: list[Any]) -> list[dict[str, Any]]:
    """OpenAI messages -> native ones; each content part becomes its own native message, as in Ollama."""
    decoded = [decode_struct(m, "openai.Message", MESSAGE_FIELDS) for m in raw_messages]
    out: list[dict[str, Any]] = []
    for msg in decoded:
        role = msg.get("role", "")
        tool_name = ""
        if role.lower() == "tool":
            tool_name = msg.get("name", "") or _tool_name_from_id(decoded, msg.get("tool_call_id", ""))
        content = msg.get("content")
        raw_calls = msg.get("tool_calls")
        if isinstance(content, str):
            out.append(
                _native_message(
                    role,
                    content=content,
                    thinking=msg.get("reasoning"),
                    tool_calls=tool_calls_to_native(raw_calls or []),
                    tool_name=tool_name,
                    tool_call_id=msg.get("tool_call_id"),
                )
            )
        elif isinstance(content, list):
            for part in content:
                out.append(_content_part_to_native(role, part))
            if out and raw_calls:
                last = out[-1]
                last["tool_calls"] = tool_calls_to_native(raw_calls)
                for key, value in (
                    ("tool_name", tool_name),
                    ("tool_call_id", msg.get("tool_call_id")),
                    ("thinking", msg.get("reasoning")),
                ):
                    if value:
                        last[key] = value
        else:
            if raw_calls is None:
                shown = (
                    "<nil>"
                    if content is None
                    else {bool: "bool", int: "float64", float: "float64", dict: "map[string]interface {}"}.get(
                        type(content), "?"
                    )
                )
                raise RequestError(f"invalid message content type: {shown}")
            out.append(
                _native_message(
                    role,
                    thinking=msg.get("reasoning"),
                    tool_calls=tool_calls_to_native(raw_calls),
                    tool_call_id=msg.get("tool_call_id"),
                )
            )
    return out


def _content_part_to_native(role: str, part: Any) -> dict[str, Any]:
    if not isinstance(part, dict):
        raise RequestError("invalid message format")
    kind = part.get("type")
    if kind == "text":
        if not isinstance(part.get("text"), str):
            raise RequestError("invalid message format")
        return {"role": role, "content": part["text"]}
    if kind == "image_url":
        image = part.get("image_url")
        url = image.get("url") if isinstance(image, dict) else image
        if not isinstance(url, str):
            raise RequestError("invalid message format")
        return {"role": role, "content": "", "images": [decode_image_url(url)]}
    if kind == "input_audio":
        audio = part.get("input_audio")
        if not isinstance(audio, dict):
            raise RequestError("invalid input_audio format")
        if not isinstance(audio.get("data"), str):
            raise RequestError("invalid input_audio format: missing data")
        try:
            raw = base64.b64decode(audio["data"], validate=True)
        except (binascii.Error, ValueError) as exc:
            raise RequestError(f"invalid input_audio base64 data: {exc}") from None
        return {"role": role, "content": "", "images": [base64.b64encode(raw).decode()]}
    raise RequestError("invalid message format")


def _stops(stop: Any, *, strict: bool) -> list[str] | None:
    if isinstance(stop, str):
        return [stop]
    if isinstance(stop, list):
        stops = []
        for item in stop:
            if isinstance(item, str):
                stops.append(item)
            elif strict:
                kind = (
                    "float64" if isinstance(item, int | float) and not isinstance(item, bool) else type(item).__name__
                )
                raise RequestError(f"invalid type for 'stop' field: {kind}")
        return stops
    return None


def _base_options(req: dict[str, Any], *, strict_stop: bool) -> dict[str, Any]:
    """The options both /v1 requests map alike: stop, max_tokens -> num_predict, temperature (default 1), seed."""
    options: dict[str, Any] = {}
    stops = _stops(req.get("stop"), strict=strict_stop)
    if stops is not None:
        options["stop"] = stops
    if "max_tokens" in req:
        options["num_predict"] = req["max_tokens"]
    options["temperature"] = req.get("temperature", 1.0)
    if "seed" in req:
        options["seed"] = req["seed"]
    return options


def chat_request_to_native(req: dict[str, Any]) -> dict[str, Any]:
    """A decoded ChatCompletionRequest -> the native /api/chat request (openai.FromChatRequest)."""
    if not req.get("messages"):
        raise RequestError("[] is too short - 'messages'")
    messages = messages_to_native(req["messages"])
    options = _base_options(req, strict_stop=False)
    for key in ("frequency_penalty", "presence_penalty"):
        if key in req:
            options[key] = req[key]
    options["top_p"] = req.get("top_p", 1.0)

    native: dict[str, Any] = {
        "model": req.get("model", ""),
        "messages": messages,
        "options": options,
        "stream": bool(req.get("stream", False)),
    }
    response_format = req.get("response_format") or {}
    kind = str(response_format.get("type") or "").strip().lower()
    if kind == "json_object":
        native["format"] = "json"
    elif kind == "json_schema":
        schema = (response_format.get("json_schema") or {}).get("schema")
        if schema is not None:
            native["format"] = schema
    for tool in req.get("tools") or []:
        if not isinstance(tool, dict):
            raise RequestError(
                f"json: cannot unmarshal {json_type(tool)} into Go struct field ChatCompletionRequest.tools of type api.Tool"
            )
    if req.get("tools"):
        native["tools"] = req["tools"]
    reasoning = req.get("reasoning")
    effort = str(reasoning.get("effort") or "") if reasoning is not None else str(req.get("reasoning_effort", ""))
    think = think_from_effort(effort)
    if think is not None:
        native["think"] = think
    if req.get("logprobs"):
        native["logprobs"] = True
    if req.get("top_logprobs"):
        native["top_logprobs"] = req["top_logprobs"]
    if req.get("_debug_render_only"):
        native["_debug_render_only"] = True
    return native


def completion_request_to_native(req: dict[str, Any]) -> dict[str, Any]:
    """A decoded CompletionRequest -> the native /api/generate request (openai.FromCompleteRequest)."""
    options = _base_options(req, strict_stop=True)
    options["frequency_penalty"] = req.get("frequency_penalty", 0)
    options["presence_penalty"] = req.get("presence_penalty", 0)
    options["top_p"] = req.get("top_p") or 1.0
    native: dict[str, Any] = {
        "model": req.get("model", ""),
        "prompt": req.get("prompt", ""),
        "options": options,
        "stream": bool(req.get("stream", False)),
    }
    if req.get("suffix"):
        native["suffix"] = req["suffix"]
    if req.get("logprobs", 0) > 0:
        native["logprobs"] = True
        native["top_logprobs"] = req["logprobs"]
    if req.get("_debug_render_only"):
        native["_debug_render_only"] = True
    return native


def embed_request_to_native(req: dict[str, Any]) -> dict[str, Any]:
    """A decoded EmbedRequest -> the native /api/embed request, validated as EmbeddingsMiddleware does."""
    fmt = req.get("encoding_format", "")
    if fmt and fmt.lower() not in ("float", "base64"):
        raise RequestError(f"Invalid value for 'encoding_format' = {fmt}. Supported values: ['float', 'base64'].")
    value = req.get("input")
    if value == "":
        value = [""]
    if value is None or value == []:
        raise RequestError("invalid input")
    native: dict[str, Any] = {"model": req.get("model", ""), "input": value}
    if req.get("dimensions"):
        native["dimensions"] = req["dimensions"]
    return native


# --- response translation --------------------------------------------------------------------------------------


def new_id(prefix: str) -> str:
    """Ollama's ids: a prefix and a random number below 999 (not unique, as upstream)."""
    return f"{prefix}-{random.randrange(999)}"


def to_tool_calls(calls: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    """Native tool calls -> OpenAI's: arguments as a JSON string, `type` and the native `index`."""
    out = []
    for call in calls or []:
        function = call.get("function") or {}
        out.append(
            {
                "id": call.get("id", ""),
                "index": function.get("index", 0),
                "type": "function",
                "function": {"name": function.get("name", ""), "arguments": go_json(function.get("arguments") or {})},
            }
        )
    return out


def usage_of(native: dict[str, Any]) -> dict[str, int]:
    prompt, completion = int(native.get("prompt_eval_count") or 0), int(native.get("eval_count") or 0)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def _finish_reason(reason: str | None, tool_calls: bool) -> str | None:
    if reason == "stop" and tool_calls:
        return "tool_calls"
    return reason or None


def to_chat_completion(completion_id: str, native: dict[str, Any]) -> dict[str, Any]:
    """The merged native chat object -> a `chat.completion` (openai.ToChatCompletion)."""
    message_in = native.get("message") or {}
    calls = to_tool_calls(message_in.get("tool_calls"))
    message: dict[str, Any] = {"role": message_in.get("role", "assistant"), "content": message_in.get("content", "")}
    if message_in.get("thinking"):
        message["reasoning"] = message_in["thinking"]
    if calls:
        message["tool_calls"] = calls
    choice: dict[str, Any] = {
        "index": 0,
        "message": message,
        "finish_reason": _finish_reason(native.get("done_reason"), bool(calls)),
    }
    if native.get("logprobs"):
        choice["logprobs"] = {"content": native["logprobs"]}
    body = {
        "id": completion_id,
        "object": "chat.completion",
        "created": unix_seconds(native.get("created_at")),
        "model": native.get("model", ""),
        "system_fingerprint": FINGERPRINT,
        "choices": [choice],
        "usage": usage_of(native),
    }
    if native.get("_debug_info"):
        body["_debug_info"] = native["_debug_info"]
    return body


class ChatChunker:
    """Native chat objects -> `chat.completion.chunk` events, with the state Ollama's ChatWriter keeps:
    role on the first chunk only, `created` pinned to the first object, thinking and content split, the
    metrics-only trailer dropped, a separate finish chunk, the optional usage chunk, then `[DONE]`."""

    def __init__(self, completion_id: str, include_usage: bool) -> None:
        self.id = completion_id
        self.include_usage = include_usage
        self.created: int | None = None
        self.first_sent = False
        self.tool_call_sent = False

    def _chunk(self, native: dict[str, Any], delta: dict[str, Any], logprobs: list[Any] | None) -> dict[str, Any]:
        choice: dict[str, Any] = {"index": 0, "delta": delta, "finish_reason": None}
        if logprobs:
            choice["logprobs"] = {"content": logprobs}
        return {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": native.get("model", ""),
            "system_fingerprint": FINGERPRINT,
            "choices": [choice],
        }

    def feed(self, native: dict[str, Any]) -> list[dict[str, Any] | bytes]:
        """The events for one native object: chunk dicts, and the `[DONE]` sentinel bytes at the end."""
        if self.created is None:
            self.created = unix_seconds(native.get("created_at"))
        message = native.get("message") or {}
        content = message.get("content") or ""
        thinking = message.get("thinking") or ""
        calls = to_tool_calls(message.get("tool_calls"))
        logprobs = native.get("logprobs") or None
        done = bool(native.get("done"))
        out: list[dict[str, Any] | bytes] = []

        empty_trailer = done and self.first_sent and not content and not thinking and not calls and not logprobs
        if not empty_trailer:
            role = {} if self.first_sent else {"role": "assistant"}
            if thinking and (content or calls):
                out.append(self._chunk(native, {**role, "reasoning": thinking}, logprobs))
                rest: dict[str, Any] = {"content": content}
                if calls:
                    rest["tool_calls"] = calls
                out.append(self._chunk(native, rest, None))
            else:
                delta: dict[str, Any] = {**role, "content": content}
                if thinking:
                    delta["reasoning"] = thinking
                if calls:
                    delta["tool_calls"] = calls
                out.append(self._chunk(native, delta, logprobs))
            self.tool_call_sent = self.tool_call_sent or bool(calls)
            self.first_sent = True

        if done:
            reason = native.get("done_reason") or "stop"
            if reason == "stop" and self.tool_call_sent:
                reason = "tool_calls"
            finish = self._chunk(native, {}, None)
            finish["choices"][0]["finish_reason"] = reason
            out.append(finish)
            if self.include_usage:
                out.append({**finish, "choices": [], "usage": usage_of(native)})
            out.append(DONE_SENTINEL)
        return out


def to_completion(completion_id: str, native: dict[str, Any]) -> dict[str, Any]:
    """The merged native generate object -> a `text_completion` (openai.ToCompletion; no logprobs, as upstream)."""
    return {
        "id": completion_id,
        "object": "text_completion",
        "created": unix_seconds(native.get("created_at")),
        "model": native.get("model", ""),
        "system_fingerprint": FINGERPRINT,
        "choices": [
            {"text": native.get("response", ""), "index": 0, "finish_reason": native.get("done_reason") or None}
        ],
        "usage": usage_of(native),
    }


def completion_chunks(completion_id: str, native: dict[str, Any], include_usage: bool) -> list[dict[str, Any] | bytes]:
    """One native generate object -> completion chunks. With include_usage every chunk carries zeroed usage
    and the final object adds a `choices: []` chunk with the real counts (Ollama's quirk), then `[DONE]`."""
    chunk: dict[str, Any] = {
        "id": completion_id,
        "object": "text_completion",
        "created": int(time.time()),
        "choices": [
            {"text": native.get("response", ""), "index": 0, "finish_reason": native.get("done_reason") or None}
        ],
        "model": native.get("model", ""),
        "system_fingerprint": FINGERPRINT,
    }
    if include_usage:
        chunk["usage"] = {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}
    out: list[dict[str, Any] | bytes] = [chunk]
    if native.get("done"):
        if include_usage:
            out.append({**chunk, "choices": [], "usage": usage_of(native)})
        out.append(DONE_SENTINEL)
    return out


def floats_to_base64(values: list[float]) -> str:
    """Little-endian float32, base64: what the openai SDK decodes for encoding_format=base64."""
    return base64.b64encode(struct.pack(f"<{len(values)}f", *values)).decode()


def to_embedding_list(model: str, native: dict[str, Any], encoding_format: str) -> dict[str, Any]:
    """A native /api/embed response -> an OpenAI embedding list (openai.ToEmbeddingList)."""
    embeddings = native.get("embeddings")
    if embeddings is None:
        return {"object": "", "data": None, "model": "", "usage": {"prompt_tokens": 0, "total_tokens": 0}}
    as_base64 = encoding_format.lower() == "base64"
    data = [
        {"object": "embedding", "embedding": floats_to_base64(e) if as_base64 else e, "index": i}
        for i, e in enumerate(embeddings)
    ]
    count = int(native.get("prompt_eval_count") or 0)
    return {
        "object": "list",
        "data": data or None,
        "model": model,
        "usage": {"prompt_tokens": count, "total_tokens": count},
    }


def to_model_list(tags: dict[str, Any]) -> dict[str, Any]:
    """A native /api/tags response -> `/v1/models` (`data: null` when there are no models, as upstream)."""
    data = []
    for entry in tags.get("models") or []:
        model_id = entry.get("model") or entry.get("name", "")
        data.append(
            {
                "id": model_id,
                "object": "model",
                "created": unix_seconds(entry.get("modified_at")),
                "owned_by": model_namespace(model_id),
            }
        )
    return {"object": "list", "data": data or None}


def to_model(show: dict[str, Any], name: str) -> dict[str, Any]:
    """A native /api/show response -> `/v1/models/{model}` (the id echoes the name as sent)."""
    return {
        "id": name,
        "object": "model",
        "created": unix_seconds(show.get("modified_at")),
        "owned_by": model_namespace(name),
    }


def _frame(events: list[dict[str, Any] | bytes]) -> list[bytes]:
    return [event if isinstance(event, bytes) else sse_data(event) for event in events]


async def chat_sse(items: AsyncIterable[dict[str, Any]], chunker: ChatChunker) -> AsyncIterator[bytes]:
    """The SSE bytes of a chat stream. A native error object reads as an empty response upstream: one empty
    chunk, then the stream ends with no finish chunk and no [DONE]."""
    async for item in items:
        if "error" in item:
            for data in _frame(chunker.feed({"model": "", "message": {"role": "", "content": ""}})):
                yield data
            return
        for data in _frame(chunker.feed(item)):
            yield data


async def completion_sse(
    items: AsyncIterable[dict[str, Any]], completion_id: str, include_usage: bool
) -> AsyncIterator[bytes]:
    """The SSE bytes of a completions stream; a native error ends it the same way as a chat stream."""
    async for item in items:
        failed = "error" in item
        for data in _frame(
            completion_chunks(completion_id, {"model": "", "response": ""} if failed else item, include_usage)
        ):
            yield data
        if failed:
            return


# --- HTTP handlers ---------------------------------------------------------------------------------------------


async def _open(kind: str, request: Request, native_request: dict[str, Any]) -> NativeStream:
    call = core.chat if kind == "chat" else core.generate
    return await NativeStream(call(request.app.state.server, native_request)).start()


async def chat_completions(request: Request) -> Response:
    try:
        req = decode_struct(parse_json_body(await request.body()), "openai.ChatCompletionRequest", CHAT_FIELDS)
        native_request = chat_request_to_native(req)
        stream = await _open("chat", request, native_request)
    except RequestError as exc:
        return error_response(exc.status, exc.message, JSON_UTF8)
    except ApiError as exc:
        return error_response(exc.status, exc.message)
    completion_id = new_id("chatcmpl")
    if not req.get("stream"):
        merged = await collect_final(request, stream, "chat", bool(native_request.get("tools")), error_response)
        if isinstance(merged, Response):
            return merged
        return writer_json_response(to_chat_completion(completion_id, merged))

    include_usage = bool((req.get("stream_options") or {}).get("include_usage"))
    chunker = ChatChunker(completion_id, include_usage)

    return sse_response(chat_sse(stream, chunker))


async def completions(request: Request) -> Response:
    try:
        req = decode_struct(parse_json_body(await request.body()), "openai.CompletionRequest", COMPLETION_FIELDS)
        stream = await _open("generate", request, completion_request_to_native(req))
    except RequestError as exc:
        return error_response(exc.status, exc.message, JSON_UTF8)
    except ApiError as exc:
        return error_response(exc.status, exc.message)
    completion_id = new_id("cmpl")
    if not req.get("stream"):
        merged = await collect_final(request, stream, "generate", False, error_response)
        if isinstance(merged, Response):
            return merged
        return writer_json_response(to_completion(completion_id, merged))

    include_usage = bool((req.get("stream_options") or {}).get("include_usage"))

    return sse_response(completion_sse(stream, completion_id, include_usage))


async def embeddings(request: Request) -> Response:
    try:
        req = decode_struct(parse_json_body(await request.body()), "openai.EmbedRequest", EMBED_FIELDS)
        native_request = embed_request_to_native(req)
    except RequestError as exc:
        return error_response(exc.status, exc.message, JSON_UTF8)
    try:
        native = await core.embed(request.app.state.server, native_request)
    except ApiError as exc:
        return error_response(exc.status, exc.message)
    except Exception as exc:  # a native-side bug: a clear 500 rather than a bare crash
        log.exception("native embed failed")
        return error_response(500, str(exc) or type(exc).__name__)
    return writer_json_response(to_embedding_list(req.get("model", ""), native, req.get("encoding_format", "")))


async def list_models(request: Request) -> Response:
    """ListMiddleware: the native /api/tags answer, rewritten."""
    return writer_json_response(to_model_list(catalog.tags(request.app.state.server)))


async def retrieve_model(request: Request) -> Response:
    """RetrieveMiddleware: the native /api/show answer for the path's name, rewritten (its errors in OpenAI's
    shape)."""
    name = request.path_params["model"]
    try:
        show = catalog.show(request.app.state.server, {"model": name})
    except ApiError as exc:
        return error_response(exc.status, exc.message)
    return writer_json_response(to_model(show, name))


def _get_only(route: Route) -> Route:
    # Starlette answers HEAD wherever GET is allowed; gin (Ollama's router) does not: HEAD there is a 405.
    assert route.methods is not None
    route.methods.discard("HEAD")
    return route


def routes() -> list[Route]:
    return [
        Route("/v1/chat/completions", chat_completions, methods=["POST"]),
        Route("/v1/completions", completions, methods=["POST"]),
        Route("/v1/embeddings", embeddings, methods=["POST"]),
        _get_only(Route("/v1/models", list_models, methods=["GET"])),
        _get_only(Route("/v1/models/{model}", retrieve_model, methods=["GET"])),
    ]
