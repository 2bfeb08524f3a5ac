"""The OpenAI Responses API, `POST /v1/responses`, as Ollama's `openai/responses.go` serves it.

A stateless adapter over the native chat: `input` items and `instructions` become native messages, the native
objects become a `response` object or the SSE event sequence (`response.created` ... `response.completed`, each
with a `sequence_number`). No `previous_response_id`, no storage, no server-side web search (the reference
backend has no cloud), exactly the subset a local Ollama serves.
"""

from __future__ import annotations

import json
import random
import time
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
    unix_seconds,
)
from ollama_conformance.reference_backend.api.errors import ApiError
from ollama_conformance.reference_backend.api.openai import error_response, think_from_effort, to_tool_calls
from ollama_conformance.reference_backend.api.sse import JSON_UTF8, sse_event, sse_response, writer_json_response

REQUEST_FIELDS = {
    "model": "string",
    "background": "bool",
    "conversation": "any",
    "include": "[]string",
    "input": "any",
    "instructions": "string",
    "max_output_tokens": "int",
    "reasoning": "openai.ResponsesReasoning",
    "temperature": "float64",
    "text": "*openai.ResponsesText",
    "top_p": "float64",
    "truncation": "string",
    "tools": "[]openai.ResponsesTool",
    "stream": "bool",
}
CONTENT_TYPES = ("input_text", "input_image", "output_text", "input_file")


def _go_number(value: float) -> float | int:
    """Go prints an integral float64 without a fraction (1.0 -> 1)."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


# --- request translation ---------------------------------------------------------------------------------------


def _content_list(raw: Any, where: str) -> list[dict[str, Any]]:
    """A message's (or function output's) content: a string is one input_text part."""
    if isinstance(raw, str):
        return [{"type": "input_text", "text": raw}]
    if not isinstance(raw, list):
        kind = {bool: "bool", int: "number", float: "number", dict: "object"}.get(type(raw), "value")
        raise RequestError(
            f"{where} must be a string or array: json: cannot unmarshal {kind} into Go value of type []json.RawMessage"
        )
    parts = []
    for j, part in enumerate(raw):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind not in CONTENT_TYPES:
            raise RequestError(f"{where}[{j}]: unknown content type: {kind or ''}")
        parts.append(part)
    return parts


def _convert_content(parts: list[dict[str, Any]]) -> tuple[str, list[str]]:
    from ollama_conformance.reference_backend.api.openai import decode_image_url

    text, images = "", []
    for part in parts:
        kind = part["type"]
        if kind in ("input_text", "output_text"):
            text += str(part.get("text") or "")
        elif kind == "input_image":
            if part.get("image_url"):
                images.append(decode_image_url(str(part["image_url"])))
        elif kind == "input_file":
            raise RequestError("file inputs are not currently supported")
    return text, images


def _parse_items(raw: Any) -> list[dict[str, Any]]:
    if not isinstance(raw, list):
        kind = {bool: "bool", int: "number", float: "number", dict: "object"}.get(type(raw), "value")
        raise RequestError(
            f"input must be a string or array: json: cannot unmarshal {kind} into Go value of type []json.RawMessage"
        )
    items = []
    for i, item in enumerate(raw):
        if not isinstance(item, dict):
            raise RequestError(
                f"input[{i}]: json: cannot unmarshal {type(item).__name__} into Go value of type"
                ' struct { Type string "json:\\"type\\""; Role string "json:\\"role\\"" }'
            )
        kind = item.get("type") or ("message" if item.get("role") else "")
        if kind == "message":
            content = _content_list(item["content"], f"input[{i}]: content") if item.get("content") is not None else []
            items.append({"kind": "message", "role": item.get("role", ""), "content": content})
        elif kind == "function_call":
            items.append(
                {
                    "kind": kind,
                    "call_id": item.get("call_id", ""),
                    "name": item.get("name", ""),
                    "arguments": item.get("arguments", ""),
                }
            )
        elif kind == "function_call_output":
            output = item.get("output")
            parts = _content_list(output, f"input[{i}]: output") if isinstance(output, list) else None
            items.append(
                {
                    "kind": kind,
                    "call_id": item.get("call_id", ""),
                    "output": output if isinstance(output, str) else "",
                    "parts": parts,
                }
            )
        elif kind == "reasoning":
            items.append({"kind": kind, "encrypted_content": item.get("encrypted_content", "")})
        elif kind == "web_search_call":
            items.append({"kind": kind})
        elif kind == "":
            raise RequestError(f"input[{i}]: input item missing required 'type' field")
        else:
            raise RequestError(f'input[{i}]: unknown input item type: "{kind}"')
    return items


def _input_to_messages(items: list[dict[str, Any]], messages: list[dict[str, Any]]) -> None:
    """openai.FromResponsesRequest's item loop: function calls join the preceding assistant message,
    reasoning items become the next assistant message's thinking."""
    pending_thinking = ""
    for i, item in enumerate(items):
        kind = item["kind"]
        if kind == "reasoning":
            pending_thinking = item["encrypted_content"]
        elif kind == "message":
            text, images = _convert_content(item["content"])
            msg: dict[str, Any] = {"role": item["role"], "content": text}
            if images:
                msg["images"] = images
            if item["role"] == "assistant" and pending_thinking:
                msg["thinking"], pending_thinking = pending_thinking, ""
            following = items[i + 1] if i + 1 < len(items) else None
            output_call_id = following["call_id"] if following and following["kind"] == "function_call_output" else ""
            last = messages[-1] if messages else None
            if (
                item["role"] == "assistant"
                and output_call_id
                and last
                and last["role"] == "assistant"
                and any(c.get("id") == output_call_id for c in last.get("tool_calls", []))
            ):
                if last.get("content") and text:
                    last["content"] += "\n"
                last["content"] = last.get("content", "") + text
                if images:
                    last.setdefault("images", []).extend(images)
                if msg.get("thinking"):
                    last["thinking"] = msg["thinking"]
                continue
            messages.append(msg)
        elif kind == "function_call":
            args: dict[str, Any] = {}
            if item["arguments"]:
                try:
                    args = json.loads(item["arguments"])
                except json.JSONDecodeError as exc:
                    raise RequestError(f"failed to parse function call arguments: {exc.msg}") from None
            call = {"id": item["call_id"], "function": {"name": item["name"], "arguments": args}}
            if messages and messages[-1]["role"] == "assistant":
                messages[-1].setdefault("tool_calls", []).append(call)
                if pending_thinking:
                    messages[-1]["thinking"], pending_thinking = pending_thinking, ""
            else:
                msg = {"role": "assistant", "content": "", "tool_calls": [call]}
                if pending_thinking:
                    msg["thinking"], pending_thinking = pending_thinking, ""
                messages.append(msg)
        elif kind == "function_call_output":
            content, images = item["output"], []
            if item["parts"]:
                content, images = _convert_content(item["parts"])
            tool_msg: dict[str, Any] = {"role": "tool", "content": content, "tool_call_id": item["call_id"]}
            if images:
                tool_msg["images"] = images
            messages.append(tool_msg)
    if pending_thinking:
        messages.append({"role": "assistant", "content": "", "thinking": pending_thinking})


def _convert_tools(tool: dict[str, Any]) -> list[dict[str, Any]]:
    if tool.get("type") != "namespace":
        function: dict[str, Any] = {"name": tool.get("name", ""), "description": tool.get("description") or ""}
        if tool.get("parameters") is not None:
            function["parameters"] = tool["parameters"]
        return [{"type": tool.get("type", ""), "function": function}]
    expanded = []
    prefix = f"{tool.get('name', '')}."
    for member in tool.get("tools") or []:
        for converted in _convert_tools(member):
            name = converted["function"]["name"]
            if tool.get("name") and not name.startswith(prefix):
                converted["function"]["name"] = prefix + name
            expanded.append(converted)
    return expanded


def responses_request_to_native(req: dict[str, Any]) -> dict[str, Any]:
    """A decoded ResponsesRequest -> the native /api/chat request (openai.FromResponsesRequest)."""
    messages: list[dict[str, Any]] = []
    if req.get("instructions"):
        messages.append({"role": "system", "content": req["instructions"]})
    raw_input = req.get("input")
    if isinstance(raw_input, str):
        if raw_input:
            messages.append({"role": "user", "content": raw_input})
    elif raw_input is not None:
        _input_to_messages(_parse_items(raw_input), messages)

    options: dict[str, Any] = {"temperature": req.get("temperature", 1.0)}
    if "top_p" in req:
        options["top_p"] = req["top_p"]
    if "max_output_tokens" in req:
        options["num_predict"] = req["max_output_tokens"]
    native: dict[str, Any] = {
        "model": req.get("model", ""),
        "messages": messages,
        "options": options,
        "stream": bool(req.get("stream", False)),
    }
    think = think_from_effort(str((req.get("reasoning") or {}).get("effort") or ""))
    if think is not None:
        native["think"] = think
    tools = [
        converted for tool in req.get("tools") or [] if isinstance(tool, dict) for converted in _convert_tools(tool)
    ]
    if tools:
        native["tools"] = tools
    text_format = (req.get("text") or {}).get("format") or {}
    if text_format.get("type") == "json_schema" and text_format.get("schema") is not None:
        native["format"] = text_format["schema"]
    return native


# --- response translation --------------------------------------------------------------------------------------


def _echo_tools(req: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        {
            "type": t.get("type", ""),
            "name": t.get("name", ""),
            "description": t.get("description"),
            "strict": t.get("strict"),
            "parameters": t.get("parameters"),
        }
        for t in req.get("tools") or []
        if isinstance(t, dict)
    ]


def _text_format(req: dict[str, Any]) -> dict[str, Any]:
    given = (req.get("text") or {}).get("format")
    if not isinstance(given, dict):
        return {"type": "text"}
    fmt: dict[str, Any] = {"type": given.get("type", "")}
    for key in ("name", "schema", "strict"):
        if given.get(key) not in (None, ""):
            fmt[key] = given[key]
    return fmt


def _reasoning_echo(req: dict[str, Any], *, with_nulls: bool) -> dict[str, Any] | None:
    reasoning = req.get("reasoning") or {}
    effort, summary = reasoning.get("effort") or "", reasoning.get("summary") or ""
    if not effort and not summary:
        return None
    if with_nulls:
        return {"effort": effort or None, "summary": summary or None}
    return {key: value for key, value in (("effort", effort), ("summary", summary)) if value}


def _usage(native: dict[str, Any]) -> dict[str, Any]:
    prompt, output = int(native.get("prompt_eval_count") or 0), int(native.get("eval_count") or 0)
    return {
        "input_tokens": prompt,
        "output_tokens": output,
        "total_tokens": prompt + output,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens_details": {"reasoning_tokens": 0},
    }


def _response_object(
    req: dict[str, Any],
    response_id: str,
    created_at: int,
    status: str,
    output: list[Any],
    usage: dict[str, Any] | None,
    *,
    with_nulls: bool,
) -> dict[str, Any]:
    return {
        "id": response_id,
        "object": "response",
        "created_at": created_at,
        "completed_at": None,
        "status": status,
        "incomplete_details": None,
        "model": req.get("model", ""),
        "previous_response_id": None,
        "instructions": req.get("instructions") or None,
        "output": output,
        "error": None,
        "tools": _echo_tools(req),
        "tool_choice": "auto",
        "truncation": req.get("truncation") or "disabled",
        "parallel_tool_calls": True,
        "text": {"format": _text_format(req)},
        "top_p": _go_number(req.get("top_p", 1.0)),
        "presence_penalty": 0,
        "frequency_penalty": 0,
        "top_logprobs": 0,
        "temperature": _go_number(req.get("temperature", 1.0)),
        "reasoning": _reasoning_echo(req, with_nulls=with_nulls),
        "usage": usage,
        "max_output_tokens": req.get("max_output_tokens"),
        "max_tool_calls": None,
        "store": False,
        "background": bool(req.get("background", False)),
        "service_tier": "default",
        "metadata": {},
        "safety_identifier": None,
        "prompt_cache_key": None,
    }


def _message_item(item_id: str, text: str, status: str = "completed") -> dict[str, Any]:
    return {
        "id": item_id,
        "type": "message",
        "status": status,
        "role": "assistant",
        "content": [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}],
    }


def to_response(req: dict[str, Any], response_id: str, item_id: str, native: dict[str, Any]) -> dict[str, Any]:
    """The merged native chat object -> a completed `response` (openai.ToResponse); the message item is left
    out when the model called tools, as upstream."""
    message = native.get("message") or {}
    output: list[dict[str, Any]] = []
    if message.get("thinking"):
        output.append(
            {
                "id": f"rs_{response_id}",
                "type": "reasoning",
                "summary": [{"type": "summary_text", "text": message["thinking"]}],
                "encrypted_content": message["thinking"],
            }
        )
    calls = to_tool_calls(message.get("tool_calls"))
    if calls:
        for i, call in enumerate(calls):
            item: dict[str, Any] = {
                "id": f"fc_{response_id}_{i}",
                "type": "function_call",
                "status": "completed",
                "call_id": call["id"],
                "name": call["function"]["name"],
            }
            if call["id"] == "":
                del item["call_id"]
            if call["function"]["arguments"]:
                item["arguments"] = call["function"]["arguments"]
            output.append(item)
    else:
        output.append(_message_item(item_id, message.get("content", "")))
    response = _response_object(
        req, response_id, unix_seconds(native.get("created_at")), "completed", output, _usage(native), with_nulls=False
    )
    response["completed_at"] = int(time.time())
    return response


class ResponsesStreamConverter:
    """Native chat objects -> Responses SSE events (openai.ResponsesStreamConverter)."""

    def __init__(self, req: dict[str, Any], response_id: str, item_id: str) -> None:
        self.req = req
        self.response_id = response_id
        self.item_id = item_id
        self.first = True
        self.sequence = 0
        self.output_index = 0
        self.content_started = False
        self.tool_calls_sent = False
        self.text = ""
        self.thinking = ""
        self.reasoning_id = ""
        self.reasoning_started = False
        self.completed: list[dict[str, Any]] = []

    def _event(self, kind: str, data: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        data["type"] = kind
        data["sequence_number"] = self.sequence
        self.sequence += 1
        return kind, data

    def _response(self, status: str, output: list[Any], usage: dict[str, Any] | None) -> dict[str, Any]:
        return _response_object(self.req, self.response_id, int(time.time()), status, output, usage, with_nulls=True)

    def process(self, native: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
        message = native.get("message") or {}
        events: list[tuple[str, dict[str, Any]]] = []
        if self.first:
            self.first = False
            events.append(self._event("response.created", {"response": self._response("in_progress", [], None)}))
            events.append(self._event("response.in_progress", {"response": self._response("in_progress", [], None)}))
        if message.get("thinking"):
            events += self._thinking(message["thinking"])
        if message.get("tool_calls"):
            events += self._finish_reasoning()
            events += self._function_calls(message["tool_calls"])
            self.tool_calls_sent = True
        if not message.get("tool_calls") and not self.tool_calls_sent and message.get("content"):
            events += self._text(message["content"])
        if native.get("done"):
            events += self._completion(native)
        return events

    def _thinking(self, thinking: str) -> list[tuple[str, dict[str, Any]]]:
        events = []
        if not self.reasoning_started:
            self.reasoning_started = True
            self.reasoning_id = f"rs_{random.randrange(999999)}"
            events.append(
                self._event(
                    "response.output_item.added",
                    {
                        "output_index": self.output_index,
                        "item": {"id": self.reasoning_id, "type": "reasoning", "summary": []},
                    },
                )
            )
        self.thinking += thinking
        events.append(
            self._event(
                "response.reasoning_summary_text.delta",
                {
                    "item_id": self.reasoning_id,
                    "output_index": self.output_index,
                    "summary_index": 0,
                    "delta": thinking,
                },
            )
        )
        return events

    def _finish_reasoning(self) -> list[tuple[str, dict[str, Any]]]:
        if not self.reasoning_started:
            return []
        item = {
            "id": self.reasoning_id,
            "type": "reasoning",
            "summary": [{"type": "summary_text", "text": self.thinking}],
            "encrypted_content": self.thinking,
        }
        self.completed.append(item)
        index, item_id, text = self.output_index, self.reasoning_id, self.thinking
        self.thinking, self.reasoning_id, self.reasoning_started = "", "", False
        self.output_index += 1
        return [
            self._event(
                "response.reasoning_summary_text.done",
                {"item_id": item_id, "output_index": index, "summary_index": 0, "text": text},
            ),
            self._event("response.output_item.done", {"output_index": index, "item": item}),
        ]

    def _function_calls(self, native_calls: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
        events = []
        converted = to_tool_calls(native_calls)
        for i, call in enumerate(converted):
            index = self.output_index + i
            item_id = f"fc_{random.randrange(999999)}_{i}"
            name, arguments = call["function"]["name"], call["function"]["arguments"]
            done_item = {
                "id": item_id,
                "type": "function_call",
                "status": "completed",
                "call_id": call["id"],
                "name": name,
                "arguments": arguments,
            }
            self.completed.append(done_item)
            events += [
                self._event(
                    "response.output_item.added",
                    {"output_index": index, "item": {**done_item, "status": "in_progress", "arguments": ""}},
                ),
                self._event(
                    "response.function_call_arguments.delta",
                    {"item_id": item_id, "output_index": index, "delta": arguments},
                ),
                self._event(
                    "response.function_call_arguments.done",
                    {"item_id": item_id, "output_index": index, "arguments": arguments},
                ),
                self._event("response.output_item.done", {"output_index": index, "item": done_item}),
            ]
        self.output_index += len(converted)
        return events

    def _text(self, content: str) -> list[tuple[str, dict[str, Any]]]:
        events = self._finish_reasoning()
        if not self.content_started:
            self.content_started = True
            events.append(
                self._event(
                    "response.output_item.added",
                    {
                        "output_index": self.output_index,
                        "item": {
                            "id": self.item_id,
                            "type": "message",
                            "status": "in_progress",
                            "role": "assistant",
                            "content": [],
                        },
                    },
                )
            )
            events.append(
                self._event(
                    "response.content_part.added",
                    {
                        "item_id": self.item_id,
                        "output_index": self.output_index,
                        "content_index": 0,
                        "part": {"type": "output_text", "text": "", "annotations": [], "logprobs": []},
                    },
                )
            )
        self.text += content
        events.append(
            self._event(
                "response.output_text.delta",
                {
                    "item_id": self.item_id,
                    "output_index": self.output_index,
                    "content_index": 0,
                    "delta": content,
                    "logprobs": [],
                },
            )
        )
        return events

    def _completion(self, native: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
        events = self._finish_reasoning()
        if not self.tool_calls_sent and self.content_started:
            part = {"type": "output_text", "text": self.text, "annotations": [], "logprobs": []}
            events += [
                self._event(
                    "response.output_text.done",
                    {
                        "item_id": self.item_id,
                        "output_index": self.output_index,
                        "content_index": 0,
                        "text": self.text,
                        "logprobs": [],
                    },
                ),
                self._event(
                    "response.content_part.done",
                    {"item_id": self.item_id, "output_index": self.output_index, "content_index": 0, "part": part},
                ),
                self._event(
                    "response.output_item.done",
                    {"output_index": self.output_index, "item": _message_item(self.item_id, self.text)},
                ),
            ]
        output = list(self.completed)
        if self.content_started:
            output.append(_message_item(self.item_id, self.text))
        response = self._response("completed", output, _usage(native))
        response["completed_at"] = int(time.time())
        events.append(self._event("response.completed", {"response": response}))
        return events


async def responses_sse(
    items: AsyncIterable[dict[str, Any]], converter: ResponsesStreamConverter
) -> AsyncIterator[bytes]:
    """The SSE bytes of the stream. A native error object reads as an empty response upstream: the stream
    ends there, without response.completed."""
    async for item in items:
        failed = "error" in item
        for kind, data in converter.process({} if failed else item):
            yield sse_event(kind, data, sort_keys=True)
        if failed:
            return


# --- HTTP handler ----------------------------------------------------------------------------------------------


async def create_response(request: Request) -> Response:
    try:
        req = decode_struct(parse_json_body(await request.body()), "openai.ResponsesRequest", REQUEST_FIELDS)
        native_request = responses_request_to_native(req)
        stream = await NativeStream(core.chat(request.app.state.server, native_request)).start()
    except RequestError as exc:
        return error_response(exc.status, exc.message, JSON_UTF8)
    except ApiError as exc:
        return error_response(exc.status, exc.message)
    response_id = f"resp_{random.randrange(999999)}"
    item_id = f"msg_{random.randrange(999999)}"
    if not req.get("stream"):
        merged = await collect_final(request, stream, "chat", bool(native_request.get("tools")), error_response)
        if isinstance(merged, Response):
            return merged
        return writer_json_response(to_response(req, response_id, item_id, merged))

    converter = ResponsesStreamConverter(req, response_id, item_id)

    headers = {"Cache-Control": "no-cache", "Connection": "keep-alive"}
    return sse_response(responses_sse(stream, converter), headers=headers)


def routes() -> list[Route]:
    return [Route("/v1/responses", create_response, methods=["POST"])]
