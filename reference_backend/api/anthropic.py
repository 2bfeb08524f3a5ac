"""The Anthropic-compatible `POST /v1/messages`, as Ollama's `anthropic/anthropic.go` and its middleware serve it.

An adapter over the native chat: `system` and content blocks become native messages, `tool_use`/`tool_result`
blocks native tool calls and tool messages; native objects become a `message` or the SSE events
(`message_start`, `content_block_*`, `message_delta`, `message_stop`; never `ping` or `error`, as upstream).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import AsyncIterable, AsyncIterator
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ollama_conformance.reference_backend.api import core
from ollama_conformance.reference_backend.api.common import (
    NativeStream,
    RequestError,
    collect_final,
    decode_struct,
    parse_json_body,
)
from ollama_conformance.reference_backend.api.errors import ApiError, new_id
from ollama_conformance.reference_backend.api.errors import anthropic_error_body as error_body
from ollama_conformance.reference_backend.api.sse import (
    JSON,
    JSON_UTF8,
    go_json,
    sse_event,
    sse_response,
    writer_json_response,
)

REQUEST_FIELDS = {
    "model": "string",
    "max_tokens": "int",
    "messages": "[]anthropic.MessageParam",
    "system": "any",
    "stream": "bool",
    "temperature": "float64",
    "top_p": "float64",
    "top_k": "int",
    "stop_sequences": "[]string",
    "tools": "[]anthropic.Tool",
    "tool_choice": "*anthropic.ToolChoice",
    "thinking": "*anthropic.ThinkingConfig",
    "metadata": "*anthropic.Metadata",
    "output_config": "*anthropic.OutputConfig",
}
MESSAGE_FIELDS = {"role": "string", "content": "any"}
BLOCK_FIELDS = {
    "type": "string",
    "text": "string",
    "citations": "[]anthropic.Citation",
    "source": "*anthropic.ImageSource",
    "id": "string",
    "name": "string",
    "input": "api.ToolCallFunctionArguments",
    "tool_use_id": "string",
    "content": "any",
    "is_error": "bool",
    "thinking": "string",
    "signature": "string",
}
TOOL_FIELDS = {"type": "string", "name": "string", "description": "string", "input_schema": "any", "max_uses": "int"}


def error_response(status: int, message: str, content_type: str = JSON) -> Response:
    return writer_json_response(error_body(status, message), status_code=status, content_type=content_type)


# --- request translation ---------------------------------------------------------------------------------------


def _b64decode(data: str) -> bytes:
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        alphabet = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=")
        position = next((i for i, ch in enumerate(data) if ch not in alphabet), len(data) - len(data) % 4)
        raise RequestError(f"invalid base64 image data: illegal base64 data at input byte {position}") from None


def _image(source: Any) -> str:
    if not isinstance(source, dict):
        raise RequestError("invalid image source")
    if source.get("type") != "base64":
        raise RequestError(f"invalid image source type: {source.get('type', '')}. Only base64 images are supported.")
    return base64.b64encode(_b64decode(str(source.get("data") or ""))).decode()


def _tool_result_content(content: Any) -> tuple[str, list[str]]:
    if isinstance(content, str):
        return content, []
    if not isinstance(content, list):
        return "", []
    text, images = "", []
    for block in content:
        if not isinstance(block, dict):
            continue
        if block.get("type") == "text" and isinstance(block.get("text"), str):
            text += block["text"]
        elif block.get("type") == "image":
            if not isinstance(block.get("source"), dict):
                raise RequestError("invalid tool_result image source")
            images.append(_image(block["source"]))
    return text, images


def _blocks(content: Any) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    if content is None:
        return []
    if not isinstance(content, list):
        kind = {bool: "bool", int: "number", float: "number", dict: "object"}.get(type(content), "value")
        raise RequestError(
            f"json: cannot unmarshal {kind} into Go struct field MessageParam.messages.content of "
            "type []anthropic.ContentBlock"
        )
    return [decode_struct(block, "anthropic.ContentBlock", BLOCK_FIELDS) for block in content]


def convert_message(raw: Any) -> list[dict[str, Any]]:
    """One Anthropic message -> native messages (anthropic.convertMessage): tool results come first for a
    user turn, the text/images/tool calls/thinking of the turn in one native message."""
    msg = decode_struct(raw, "anthropic.MessageParam", MESSAGE_FIELDS)
    role = str(msg.get("role", "")).lower()
    text, images, calls, thinking = "", [], [], ""
    results: list[dict[str, Any]] = []
    for block in _blocks(msg.get("content")):
        kind = block.get("type")
        if kind == "text":
            text += block.get("text", "")
        elif kind == "image":
            if "source" not in block:
                raise RequestError("invalid image source")
            images.append(_image(block["source"]))
        elif kind in ("tool_use", "server_tool_use"):
            if kind == "tool_use" and not block.get("id"):
                raise RequestError("tool_use block missing required 'id' field")
            if kind == "tool_use" and not block.get("name"):
                raise RequestError("tool_use block missing required 'name' field")
            calls.append(
                {
                    "id": block.get("id", ""),
                    "function": {"name": block.get("name", ""), "arguments": block.get("input") or {}},
                }
            )
        elif kind == "tool_result":
            content, result_images = _tool_result_content(block.get("content"))
            result: dict[str, Any] = {"role": "tool", "content": content, "tool_call_id": block.get("tool_use_id", "")}
            if result_images:
                result["images"] = result_images
            results.append(result)
        elif kind == "web_search_tool_result":
            content = block.get("content")
            results.append(
                {
                    "role": "tool",
                    "content": content if isinstance(content, str) else go_json(content),
                    "tool_call_id": block.get("tool_use_id", ""),
                }
            )
        elif kind == "thinking":
            thinking = block.get("thinking", thinking)
    out: list[dict[str, Any]] = []
    if role == "user" and results:
        out += results
    if text or images or calls or thinking:
        message: dict[str, Any] = {"role": role, "content": text}
        if images:
            message["images"] = images
        if calls:
            message["tool_calls"] = calls
        if thinking:
            message["thinking"] = thinking
        out.append(message)
    if role != "user":
        out += results
    return out


def _system_text(system: Any) -> str:
    if isinstance(system, str):
        return system
    if isinstance(system, list):
        return "".join(
            b["text"]
            for b in system
            if isinstance(b, dict) and b.get("type") == "text" and isinstance(b.get("text"), str)
        )
    return ""


def _convert_tool(raw: Any) -> dict[str, Any]:
    tool = decode_struct(raw, "anthropic.Tool", TOOL_FIELDS)
    if str(tool.get("type", "")).startswith("web_search"):
        parameters = {
            "type": "object",
            "required": ["query"],
            "properties": {"query": {"type": "string", "description": "The search query to look up on the web"}},
        }
        return {
            "type": "function",
            "function": {
                "name": "web_search",
                "description": "Search the web for current information. Use this to find up-to-date information "
                "about any topic.",
                "parameters": parameters,
            },
        }
    schema = tool.get("input_schema")
    if schema is not None and not isinstance(schema, dict):
        raise RequestError(
            f'invalid input_schema for tool "{tool.get("name", "")}": json: cannot unmarshal '
            f"{type(schema).__name__} into Go value of type api.ToolFunctionParameters"
        )
    function: dict[str, Any] = {"name": tool.get("name", ""), "description": tool.get("description", "")}
    if schema is not None:
        function["parameters"] = schema
    return {"type": "function", "function": function}


def messages_request_to_native(req: dict[str, Any]) -> dict[str, Any]:
    """A decoded MessagesRequest -> the native /api/chat request, validated as AnthropicMessagesMiddleware."""
    if not req.get("model"):
        raise RequestError("model is required")
    if req.get("max_tokens", 0) <= 0:
        raise RequestError("max_tokens is required and must be positive")
    if not req.get("messages"):
        raise RequestError("messages is required")
    messages: list[dict[str, Any]] = []
    system = _system_text(req.get("system"))
    if system:
        messages.append({"role": "system", "content": system})
    for raw in req["messages"]:
        messages += convert_message(raw)

    options: dict[str, Any] = {"num_predict": req["max_tokens"]}
    for key in ("temperature", "top_p", "top_k"):
        if key in req:
            options[key] = req[key]
    if req.get("stop_sequences"):
        options["stop"] = req["stop_sequences"]

    raw_tools = req.get("tools") or []
    has_web_search = any(isinstance(t, dict) and str(t.get("type", "")).startswith("web_search") for t in raw_tools)
    tools = [
        _convert_tool(t)
        for t in raw_tools
        if not (
            has_web_search
            and isinstance(t, dict)
            and not str(t.get("type", "")).startswith("web_search")
            and t.get("name") == "web_search"
        )
    ]

    native: dict[str, Any] = {
        "model": req["model"],
        "messages": messages,
        "options": options,
        "stream": bool(req.get("stream", False)),
    }
    if tools:
        native["tools"] = tools
    thinking = (req.get("thinking") or {}).get("type")
    effort = str((req.get("output_config") or {}).get("effort") or "").strip().lower()
    effort = "high" if effort == "xhigh" else effort
    if thinking == "enabled":
        native["think"] = True
    elif thinking == "disabled":
        native["think"] = False
    elif effort in ("high", "medium", "low", "max"):
        native["think"] = effort
    return native


def estimate_input_tokens(req: dict[str, Any]) -> int:
    """anthropic.EstimateInputTokens: a quarter of the request's text length, at least 1 (message_start's
    input_tokens when the first native object carries no prompt count)."""

    def block_length(block: dict[str, Any]) -> int:
        total = len(str(block.get("text") or "").encode()) + len(str(block.get("thinking") or "").encode())
        if block.get("type") in ("tool_use", "tool_result"):
            total += len(go_json(block).encode())
        return total

    def content_length(content: Any) -> int:
        if content is None:
            return 0
        if isinstance(content, str):
            return len(content.encode())
        if isinstance(content, list):
            return sum(block_length(b) for b in content if isinstance(b, dict))
        return len(go_json(content).encode())

    total = content_length(req.get("system"))
    messages = req.get("messages") or []
    for message in messages:
        if isinstance(message, dict):
            content = message.get("content")
            total += len(str(message.get("role", "")).encode())
            total += content_length([{"type": "text", "text": content}] if isinstance(content, str) else content)
    for tool in req.get("tools") or []:
        if isinstance(tool, dict):
            schema = tool.get("input_schema")
            total += len(str(tool.get("name", "")).encode()) + len(str(tool.get("description", "")).encode())
            total += len(go_json(schema).encode()) if schema is not None else 0
    tokens = total // 4
    if tokens == 0 and (messages or req.get("system") is not None):
        tokens = 1
    return tokens


# --- response translation --------------------------------------------------------------------------------------


def stop_reason(done_reason: str | None, tool_calls: bool) -> str:
    if tool_calls:
        return "tool_use"
    if done_reason == "stop":
        return "end_turn"
    if done_reason == "length":
        return "max_tokens"
    return "stop_sequence" if done_reason else ""


def _tool_use(call: dict[str, Any], *, empty_input: bool = False) -> dict[str, Any]:
    function = call.get("function") or {}
    return {
        "type": "tool_use",
        "id": call.get("id", ""),
        "name": function.get("name", ""),
        "input": {} if empty_input else (function.get("arguments") or {}),
    }


def to_message(message_id: str, native: dict[str, Any]) -> dict[str, Any]:
    """The merged native chat object -> an Anthropic `message` (anthropic.ToMessagesResponse)."""
    message = native.get("message") or {}
    content: list[dict[str, Any]] = []
    if message.get("thinking"):
        content.append({"type": "thinking", "thinking": message["thinking"]})
    if message.get("content"):
        content.append({"type": "text", "text": message["content"]})
    calls = message.get("tool_calls") or []
    content += [_tool_use(call) for call in calls]
    body: dict[str, Any] = {
        "id": message_id,
        "type": "message",
        "role": "assistant",
        "model": native.get("model", ""),
        "content": content or None,
    }
    reason = stop_reason(native.get("done_reason"), bool(calls))
    if reason:
        body["stop_reason"] = reason
    body["usage"] = {
        "input_tokens": int(native.get("prompt_eval_count") or 0),
        "output_tokens": int(native.get("eval_count") or 0),
    }
    return body


class MessagesStreamConverter:
    """Native chat objects -> Anthropic SSE events (anthropic.StreamConverter)."""

    def __init__(self, message_id: str, model: str, estimated_input_tokens: int) -> None:
        self.id = message_id
        self.model = model
        self.estimate = estimated_input_tokens
        self.first = True
        self.index = 0
        self.thinking_started = False
        self.thinking_done = False
        self.text_started = False
        self.tool_ids_sent: set[str] = set()
        self.tool_calls_sent = 0

    def _stop(self) -> tuple[str, dict[str, Any]]:
        return "content_block_stop", {"type": "content_block_stop", "index": self.index}

    def _start(self, block: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        return "content_block_start", {"type": "content_block_start", "index": self.index, "content_block": block}

    def _delta(self, delta: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        return "content_block_delta", {"type": "content_block_delta", "index": self.index, "delta": delta}

    def process(self, native: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
        message = native.get("message") or {}
        events: list[tuple[str, dict[str, Any]]] = []
        if self.first:
            self.first = False
            input_tokens = int(native.get("prompt_eval_count") or 0) or self.estimate
            events.append(
                (
                    "message_start",
                    {
                        "type": "message_start",
                        "message": {
                            "id": self.id,
                            "type": "message",
                            "role": "assistant",
                            "model": self.model,
                            "content": [],
                            "usage": {"input_tokens": input_tokens, "output_tokens": 0},
                        },
                    },
                )
            )
        thinking, text = message.get("thinking") or "", message.get("content") or ""
        if thinking and not self.thinking_done:
            if self.text_started:
                events.append(self._stop())
                self.index += 1
                self.text_started = False
            if not self.thinking_started:
                self.thinking_started = True
                events.append(self._start({"type": "thinking", "thinking": ""}))
            events.append(self._delta({"type": "thinking_delta", "thinking": thinking}))
        if text:
            events += self._close_thinking()
            if not self.text_started:
                self.text_started = True
                events.append(self._start({"type": "text", "text": ""}))
            events.append(self._delta({"type": "text_delta", "text": text}))
        for call in message.get("tool_calls") or []:
            call_id = call.get("id", "")
            if call_id in self.tool_ids_sent:
                continue
            events += self._close_thinking()
            if self.text_started:
                events.append(self._stop())
                self.index += 1
                self.text_started = False
            arguments = go_json((call.get("function") or {}).get("arguments") or {})
            events.append(self._start(_tool_use(call, empty_input=True)))
            events.append(self._delta({"type": "input_json_delta", "partial_json": arguments}))
            events.append(self._stop())
            self.tool_ids_sent.add(call_id)
            self.tool_calls_sent += 1
            self.index += 1
        if native.get("done"):
            if self.text_started or (self.thinking_started and not self.thinking_done):
                events.append(self._stop())
            delta: dict[str, Any] = {}
            reason = stop_reason(native.get("done_reason"), self.tool_calls_sent > 0)
            if reason:
                delta["stop_reason"] = reason
            events.append(
                (
                    "message_delta",
                    {
                        "type": "message_delta",
                        "delta": delta,
                        "usage": {
                            "input_tokens": int(native.get("prompt_eval_count") or 0),
                            "output_tokens": int(native.get("eval_count") or 0),
                        },
                    },
                )
            )
            events.append(("message_stop", {"type": "message_stop"}))
        return events

    def _close_thinking(self) -> list[tuple[str, dict[str, Any]]]:
        if self.thinking_started and not self.thinking_done:
            self.thinking_done = True
            event = self._stop()
            self.index += 1
            return [event]
        return []


async def messages_sse(
    items: AsyncIterable[dict[str, Any]], converter: MessagesStreamConverter
) -> AsyncIterator[bytes]:
    """The SSE bytes of the stream. A native error object reads as an empty response upstream: the stream
    ends there, without message_stop."""
    async for item in items:
        failed = "error" in item
        for kind, data in converter.process({} if failed else item):
            yield sse_event(kind, data)
        if failed:
            return


# --- HTTP handler ----------------------------------------------------------------------------------------------


async def _open_chat(request: Request, native_request: dict[str, Any]) -> NativeStream:
    state = request.app.state.server
    try:
        return await NativeStream(core.chat(state, native_request)).start()
    except ApiError as exc:
        # Ollama relaxes thinking for /v1/messages: a model that cannot think answers without thinking
        # instead of refusing (the "relax_thinking" flag of its middleware).
        if "think" not in native_request or exc.status != 400 or "does not support thinking" not in exc.message:
            raise
        relaxed = {key: value for key, value in native_request.items() if key != "think"}
        return await NativeStream(core.chat(state, relaxed)).start()


async def create_message(request: Request) -> Response:
    try:
        req = decode_struct(parse_json_body(await request.body()), "anthropic.MessagesRequest", REQUEST_FIELDS)
        native_request = messages_request_to_native(req)
        stream = await _open_chat(request, native_request)
    except RequestError as exc:
        return error_response(exc.status, exc.message, JSON_UTF8)
    except ApiError as exc:
        return error_response(exc.status, exc.message)
    message_id = new_id("msg")
    if not req.get("stream"):
        merged = await collect_final(request, stream, "chat", bool(native_request.get("tools")), error_response)
        if isinstance(merged, Response):
            return merged
        return writer_json_response(to_message(message_id, merged))

    converter = MessagesStreamConverter(message_id, req["model"], estimate_input_tokens(req))

    headers = {"Cache-Control": "no-cache", "Connection": "keep-alive"}
    return sse_response(messages_sse(stream, converter), headers=headers)


def routes() -> list[Route]:
    return [Route("/v1/messages", create_message, methods=["POST"])]
