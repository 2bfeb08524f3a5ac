"""A deliberately broken Ollama: a proxy in front of a real server that injects one defect per URL prefix.

`http://HOST:PORT/defect/<name>/api/chat` forwards to `<upstream>/api/chat` and applies defect `<name>` to the
request and/or the answer, so the defect is the only difference from the faithful server behind it
(`/defect/none/...` forwards untouched: the control). The control and the request defects stream answers through
as they arrive (the suite judges arrival times); answer defects buffer, rewrite, then send (`buffered_stream`
does only that: the whole stream in one burst); `drop_connection` streams half a body and breaks the connection.
Defects in COMPATIBLE_ONLY are differences from Ollama that official clients accept: they must pass the
compatible grade and fail only the exact one.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

HOP_HEADERS = {"content-length", "transfer-encoding", "connection", "content-encoding", "keep-alive"}


@dataclass
class Exchange:
    """What a defect may rewrite: the request on its way up, the answer on its way down."""

    path: str
    body: Any  # parsed JSON request body, or None
    status: int = 0
    media_type: str = ""
    text: str = ""


async def pass_through(answer: httpx.Response) -> AsyncIterator[bytes]:
    """An upstream answer's body as it arrives, the upstream response closed at the end."""
    try:
        async for chunk in answer.aiter_bytes():
            yield chunk
    finally:
        await answer.aclose()


def _json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def _ndjson(objects: list[dict[str, Any]]) -> str:
    return "".join(json.dumps(o) + "\n" for o in objects)


def _sse_blocks(text: str) -> list[str]:
    return [b for b in text.split("\n\n") if b.strip()]


# --- request defects ----------------------------------------------------------------------------------------


def ignore_num_predict(ex: Exchange) -> None:
    """Generates a few tokens past num_predict / max_tokens."""
    if isinstance(ex.body, dict):
        options = ex.body.get("options")
        if isinstance(options, dict) and isinstance(options.get("num_predict"), int) and options["num_predict"] > 0:
            options["num_predict"] += 4
        if isinstance(ex.body.get("max_tokens"), int):
            ex.body["max_tokens"] += 4


def ignore_stop(ex: Exchange) -> None:
    if isinstance(ex.body, dict):
        (ex.body.get("options") or {}).pop("stop", None)
        ex.body.pop("stop", None)
        ex.body.pop("stop_sequences", None)


def ignore_seed(ex: Exchange) -> None:
    if isinstance(ex.body, dict):
        options = ex.body.get("options")
        if isinstance(options, dict) and "seed" in options:
            options["seed"] = random.randint(0, 2**31)
        if "seed" in ex.body:
            ex.body["seed"] = random.randint(0, 2**31)


def ignore_keep_alive(ex: Exchange) -> None:
    if isinstance(ex.body, dict):
        ex.body.pop("keep_alive", None)


def ignore_dimensions(ex: Exchange) -> None:
    if isinstance(ex.body, dict):
        ex.body.pop("dimensions", None)


def ignore_format(ex: Exchange) -> None:
    if isinstance(ex.body, dict):
        ex.body.pop("format", None)
        ex.body.pop("response_format", None)


def ignore_tools(ex: Exchange) -> None:
    """Drops `tools`: the model may still write a call as text, which then stays text."""
    if isinstance(ex.body, dict):
        ex.body.pop("tools", None)


def ignore_stream_false(ex: Exchange) -> None:
    """Streams although `stream: false` was asked (clients then parse NDJSON as one JSON document)."""
    if isinstance(ex.body, dict) and ex.body.get("stream") is False:
        ex.body["stream"] = True


REQUEST_DEFECTS: dict[str, Callable[[Exchange], None]] = {
    "ignore_num_predict": ignore_num_predict,
    "ignore_stop": ignore_stop,
    "ignore_seed": ignore_seed,
    "ignore_keep_alive": ignore_keep_alive,
    "ignore_dimensions": ignore_dimensions,
    "ignore_format": ignore_format,
    "ignore_tools": ignore_tools,
    "ignore_stream_false": ignore_stream_false,
}


# --- answer defects -----------------------------------------------------------------------------------------


def sse_no_done(ex: Exchange) -> None:
    if ex.media_type == "text/event-stream":
        ex.text = "".join(b + "\n\n" for b in _sse_blocks(ex.text) if b.strip() != "data: [DONE]")


def sse_no_role(ex: Exchange) -> None:
    if ex.media_type == "text/event-stream" and ex.path.endswith("chat/completions"):
        blocks = _sse_blocks(ex.text)
        first = json.loads(blocks[0].removeprefix("data: "))
        first["choices"][0]["delta"].pop("role", None)
        blocks[0] = "data: " + json.dumps(first)
        ex.text = "".join(b + "\n\n" for b in blocks)


def sse_two_finishes(ex: Exchange) -> None:
    """Repeats the finish chunk (clients would see two finish_reasons)."""
    if ex.media_type == "text/event-stream" and ex.path.endswith("chat/completions"):
        blocks = _sse_blocks(ex.text)
        finish = next(i for i, b in enumerate(blocks) if '"finish_reason":"' in b.replace(" ", ""))
        blocks.insert(finish, blocks[finish])
        ex.text = "".join(b + "\n\n" for b in blocks)


def sse_changing_id(ex: Exchange) -> None:
    """Gives every chunk its own id (clients stitch a stream together by id)."""
    if ex.media_type == "text/event-stream" and ex.path.endswith("chat/completions"):
        blocks = _sse_blocks(ex.text)
        for index, block in enumerate(blocks):
            if block.startswith("data: {"):
                chunk = json.loads(block.removeprefix("data: "))
                chunk["id"] = f"{chunk.get('id')}-{index}"
                blocks[index] = "data: " + json.dumps(chunk)
        ex.text = "".join(b + "\n\n" for b in blocks)


def messages_no_stop(ex: Exchange) -> None:
    if ex.media_type == "text/event-stream" and ex.path.endswith("v1/messages"):
        ex.text = "".join(b + "\n\n" for b in _sse_blocks(ex.text) if "message_stop" not in b)


def ndjson_missing_final(ex: Exchange) -> None:
    if ex.media_type == "application/x-ndjson":
        ex.text = _ndjson([o for o in _json_lines(ex.text) if not o.get("done")])


def ndjson_after_done(ex: Exchange) -> None:
    if ex.media_type == "application/x-ndjson":
        objects = _json_lines(ex.text)
        extra = {**objects[0], "done": False}
        ex.text = _ndjson([*objects, extra])


def ndjson_no_done_reason(ex: Exchange) -> None:
    if ex.media_type in ("application/x-ndjson", "application/json") and ex.status == 200:
        objects = _json_lines(ex.text) if ex.media_type == "application/x-ndjson" else [json.loads(ex.text)]
        for o in objects:
            if isinstance(o, dict) and o.get("done"):
                o.pop("done_reason", None)
        ex.text = _ndjson(objects) if ex.media_type == "application/x-ndjson" else json.dumps(objects[0])


def ndjson_as_json(ex: Exchange) -> None:
    """Labels NDJSON streams application/json (clients then parse the stream as one document)."""
    if ex.media_type == "application/x-ndjson":
        ex.media_type = "application/json"


def native_error_shape(ex: Exchange) -> None:
    if ex.status >= 400 and ex.path.startswith("api/") and ex.media_type == "application/json":
        body = json.loads(ex.text)
        ex.text = json.dumps({"message": body.get("error")})


def openai_error_shape(ex: Exchange) -> None:
    """/v1 errors in the native shape {"error": "msg"} instead of {"error": {message, type, ...}}."""
    if ex.status >= 400 and ex.path.startswith("v1/") and ex.media_type == "application/json":
        body = json.loads(ex.text)
        error = body.get("error")
        message = error.get("message") if isinstance(error, dict) else error
        ex.text = json.dumps({"error": message})


def anthropic_error_shape(ex: Exchange) -> None:
    """/v1/messages errors in the OpenAI shape instead of {"type": "error", "error": {...}, "request_id"}."""
    if ex.status >= 400 and ex.path == "v1/messages" and ex.media_type == "application/json":
        body = json.loads(ex.text)
        error = body.get("error") if isinstance(body.get("error"), dict) else {}
        ex.text = json.dumps({"error": {"message": error.get("message"), "type": error.get("type"), "param": None, "code": None}})


def embeddings_reordered(ex: Exchange) -> None:
    """Returns a batch's vectors in reverse order."""
    if ex.path == "api/embed" and ex.status == 200:
        body = json.loads(ex.text)
        body["embeddings"] = list(reversed(body.get("embeddings") or []))
        ex.text = json.dumps(body)


def server_error_on_bad_input(ex: Exchange) -> None:
    if ex.status == 400:
        ex.status = 500


def unnormalised_embeddings(ex: Exchange) -> None:
    if ex.path == "api/embed" and ex.status == 200:
        body = json.loads(ex.text)
        body["embeddings"] = [[x * 2.5 for x in vector] for vector in body.get("embeddings") or []]
        ex.text = json.dumps(body)


def tags_without_digest(ex: Exchange) -> None:
    if ex.path == "api/tags" and ex.status == 200:
        body = json.loads(ex.text)
        for model in body.get("models") or []:
            model.pop("digest", None)
        ex.text = json.dumps(body)


def metrics_missing(ex: Exchange) -> None:
    """Final objects without eval_count / eval_duration."""
    if ex.media_type == "application/x-ndjson":
        objects = _json_lines(ex.text)
        for o in objects:
            o.pop("eval_count", None)
            o.pop("eval_duration", None)
        ex.text = _ndjson(objects)


def version_not_semver(ex: Exchange) -> None:
    if ex.path == "api/version":
        ex.text = json.dumps({"version": "latest"})


def _native_objects(ex: Exchange) -> list[dict[str, Any]] | None:
    if ex.status != 200 or ex.path not in ("api/generate", "api/chat"):
        return None
    if ex.media_type == "application/x-ndjson":
        return _json_lines(ex.text)
    if ex.media_type == "application/json":
        return [json.loads(ex.text)]
    return None


def _put_native(ex: Exchange, objects: list[dict[str, Any]]) -> None:
    ex.text = _ndjson(objects) if ex.media_type == "application/x-ndjson" else json.dumps(objects[0])


def eval_count_words(ex: Exchange) -> None:
    """Reports the number of words of the output as eval_count (a proxy that cannot count tokens)."""
    objects = _native_objects(ex)
    if objects:
        text = "".join(o.get("response") or (o.get("message") or {}).get("content") or "" for o in objects)
        for o in objects:
            if o.get("done") and "eval_count" in o:
                o["eval_count"] = len(text.split())
        _put_native(ex, objects)


def done_reason_lies(ex: Exchange) -> None:
    """Says done_reason "stop" where the backend stopped by length."""
    objects = _native_objects(ex)
    if objects:
        for o in objects:
            if o.get("done_reason") == "length":
                o["done_reason"] = "stop"
        _put_native(ex, objects)


def ps_always_empty(ex: Exchange) -> None:
    if ex.path == "api/ps" and ex.status == 200:
        ex.text = json.dumps({"models": []})


def buffered_stream(ex: Exchange) -> None:
    """No rewrite: the answer is only buffered, so a whole stream reaches the client in one burst."""


def _chat_chunks(ex: Exchange) -> list[dict[str, Any]] | None:
    if ex.media_type != "text/event-stream" or not ex.path.endswith("chat/completions"):
        return None
    return [json.loads(b.removeprefix("data: ")) if b.startswith("data: {") else b for b in _sse_blocks(ex.text)]


def _put_chunks(ex: Exchange, chunks: list[Any]) -> None:
    ex.text = "".join((c if isinstance(c, str) else "data: " + json.dumps(c)) + "\n\n" for c in chunks)


def finish_on_content_chunk(ex: Exchange) -> None:
    """Puts finish_reason on the last content chunk instead of a separate finish chunk (OpenAI clients accept
    both; Ollama ≥ 0.32.6 sends the separate chunk)."""
    chunks = _chat_chunks(ex)
    if not chunks:
        return
    with_choices = [i for i, c in enumerate(chunks) if isinstance(c, dict) and c.get("choices")]
    finish = next((i for i in with_choices if chunks[i]["choices"][0].get("finish_reason")), None)
    before = [i for i in with_choices if finish is not None and i < finish]
    if finish is None or not before:
        return
    chunks[before[-1]]["choices"][0]["finish_reason"] = chunks[finish]["choices"][0]["finish_reason"]
    del chunks[finish]
    _put_chunks(ex, chunks)


def content_null(ex: Exchange) -> None:
    """`delta.content: null` where Ollama sends "" or nothing (the finish chunk's delta {}), as several
    OpenAI-compatible servers do: OpenAI's schema and SDK allow null."""
    chunks = _chat_chunks(ex)
    if not chunks:
        return
    for chunk in chunks:
        if isinstance(chunk, dict):
            for choice in chunk.get("choices") or []:
                delta = choice.get("delta")
                if isinstance(delta, dict) and not delta.get("content"):
                    delta["content"] = None
    _put_chunks(ex, chunks)


def _other_id(prefix: str, length: int) -> str:
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
    return prefix + "".join(random.choice(alphabet) for _ in range(length))


def other_ids(ex: Exchange) -> None:
    """OpenAI- and Anthropic-style ids (chatcmpl-<base62>, msg_01<base62>) and Anthropic's `stop_sequence: null`
    where Ollama has chatcmpl-<n>, msg_<24 hex> and no stop_sequence: the SDKs accept either."""
    if ex.status != 200:
        return
    chunks = _chat_chunks(ex)
    if chunks:
        new_id = _other_id("chatcmpl-", 29)
        for chunk in chunks:
            if isinstance(chunk, dict):
                chunk["id"] = new_id
        _put_chunks(ex, chunks)
    elif ex.path == "v1/chat/completions" and ex.media_type == "application/json":
        body = json.loads(ex.text)
        body["id"] = _other_id("chatcmpl-", 29)
        ex.text = json.dumps(body)
    elif ex.path == "v1/messages" and ex.media_type == "application/json":
        body = json.loads(ex.text)
        body["id"] = _other_id("msg_01", 22)
        body.setdefault("stop_sequence", None)
        ex.text = json.dumps(body)
    elif ex.path == "v1/messages" and ex.media_type == "text/event-stream":
        new_id = _other_id("msg_01", 22)
        out = []
        for block in _sse_blocks(ex.text):
            head, _, data = block.partition("data: ")
            event = json.loads(data)
            if event.get("type") == "message_start":
                event["message"]["id"] = new_id
            if event.get("type") == "message_delta":
                event["delta"].setdefault("stop_sequence", None)
            out.append(head + "data: " + json.dumps(event))
        ex.text = "".join(b + "\n\n" for b in out)


# --- legal variants: what the SSE spec, HTTP and the official clients' types allow, and Ollama does not send ----


def _sse_events(text: str) -> list[list[str]]:
    """The SSE body as events, each a list of its lines (Ollama's framing: LF, blank-line separated)."""
    return [block.split("\n") for block in _sse_blocks(text)]


def sse_comments_crlf(ex: Exchange) -> None:
    """Comment lines (`: keep-alive`) before and between events, every line ended by CRLF."""
    if ex.media_type == "text/event-stream":
        out = ": keep-alive\r\n\r\n"
        for lines in _sse_events(ex.text):
            out += "\r\n".join([": tick", *lines]) + "\r\n\r\n"
        ex.text = out


def sse_data_no_space(ex: Exchange) -> None:
    """`data:{...}` and `event:name`, no space after the colon (the SSE spec strips one space if there is one)."""
    if ex.media_type == "text/event-stream":
        events = [[line.replace(": ", ":", 1) if line.startswith(("data: ", "event: ")) else line for line in lines]
                  for lines in _sse_events(ex.text)]
        ex.text = "".join("\n".join(lines) + "\n\n" for lines in events)


def anthropic_pings(ex: Exchange) -> None:
    """`event: ping` keep-alives after message_start and between deltas, as Anthropic's API sends them."""
    if ex.media_type == "text/event-stream" and ex.path == "v1/messages":
        ping = 'event: ping\ndata: {"type": "ping"}'
        out: list[str] = []
        for block in _sse_blocks(ex.text):
            out.append(block)
            if "message_start" in block or "content_block_delta" in block:
                out.append(ping)
        ex.text = "".join(b + "\n\n" for b in out)


def _with_extra(value: Any) -> Any:
    """Every JSON object (nested ones too) with one field more."""
    if isinstance(value, dict):
        return {**{k: _with_extra(v) for k, v in value.items()}, "x_vendor": "extra"}
    if isinstance(value, list):
        return [_with_extra(v) for v in value]
    return value


def extra_fields(ex: Exchange) -> None:
    """An unknown field on every object of every answer (clients ignore fields they do not know)."""
    if ex.status != 200 or ex.media_type not in ("application/json", "application/x-ndjson", "text/event-stream"):
        return
    if ex.media_type == "application/json":
        ex.text = json.dumps(_with_extra(json.loads(ex.text)))
    elif ex.media_type == "application/x-ndjson":
        ex.text = _ndjson([_with_extra(o) for o in _json_lines(ex.text)])
    else:
        out = []
        for lines in _sse_events(ex.text):
            out.append("\n".join("data: " + json.dumps(_with_extra(json.loads(line[6:])))
                                 if line.startswith("data: {") else line for line in lines))
        ex.text = "".join(b + "\n\n" for b in out)


def media_type_params(ex: Exchange) -> None:
    """`; charset=utf-8` on the stream media types (clients read the type before the `;`)."""
    if ex.media_type in ("application/x-ndjson", "text/event-stream"):
        ex.media_type += "; charset=utf-8"


def optional_null(ex: Exchange) -> None:
    """Fields the official clients type Optional, null or absent: /v1 `system_fingerprint: null`, the first chat
    delta without `role`, /api/ps entries without `context_length`."""
    if ex.status != 200:
        return
    if ex.path == "api/ps":
        body = json.loads(ex.text)
        for model in body.get("models") or []:
            model.pop("context_length", None)
        ex.text = json.dumps(body)
        return
    chunks = _chat_chunks(ex)
    if chunks:
        first = True
        for chunk in chunks:
            if isinstance(chunk, dict):
                chunk["system_fingerprint"] = None
                if first and chunk.get("choices"):
                    chunk["choices"][0]["delta"].pop("role", None)
                    first = False
        _put_chunks(ex, chunks)
    elif ex.path == "v1/chat/completions" and ex.media_type == "application/json":
        body = json.loads(ex.text)
        body["system_fingerprint"] = None
        ex.text = json.dumps(body)


# --- dodges of the checks (issue 21) ------------------------------------------------------------------------


def final_repeats_text(ex: Exchange) -> None:
    """The final done:true object carries the whole output again."""
    if ex.media_type == "application/x-ndjson" and ex.path in ("api/chat", "api/generate"):
        objects = _json_lines(ex.text)
        whole = "".join(o.get("response") or (o.get("message") or {}).get("content") or "" for o in objects)
        last = objects[-1]
        if "message" in last:
            last["message"]["content"] = whole
        else:
            last["response"] = whole
        ex.text = _ndjson(objects)


ANSWER_DEFECTS: dict[str, Callable[[Exchange], None]] = {
    "sse_comments_crlf": sse_comments_crlf,
    "sse_data_no_space": sse_data_no_space,
    "anthropic_pings": anthropic_pings,
    "extra_fields": extra_fields,
    "media_type_params": media_type_params,
    "optional_null": optional_null,
    "final_repeats_text": final_repeats_text,
    "sse_no_done": sse_no_done,
    "sse_no_role": sse_no_role,
    "sse_two_finishes": sse_two_finishes,
    "sse_changing_id": sse_changing_id,
    "messages_no_stop": messages_no_stop,
    "anthropic_error_shape": anthropic_error_shape,
    "embeddings_reordered": embeddings_reordered,
    "ndjson_missing_final": ndjson_missing_final,
    "ndjson_after_done": ndjson_after_done,
    "ndjson_no_done_reason": ndjson_no_done_reason,
    "ndjson_as_json": ndjson_as_json,
    "native_error_shape": native_error_shape,
    "openai_error_shape": openai_error_shape,
    "server_error_on_bad_input": server_error_on_bad_input,
    "unnormalised_embeddings": unnormalised_embeddings,
    "tags_without_digest": tags_without_digest,
    "metrics_missing": metrics_missing,
    "version_not_semver": version_not_semver,
    "eval_count_words": eval_count_words,
    "done_reason_lies": done_reason_lies,
    "ps_always_empty": ps_always_empty,
    "buffered_stream": buffered_stream,
    "finish_on_content_chunk": finish_on_content_chunk,
    "content_null": content_null,
    "other_ids": other_ids,
}
# Differences from Ollama that the official clients accept: caught at the exact grade only.
COMPATIBLE_ONLY = ("finish_on_content_chunk", "content_null", "other_ids", "sse_no_role")
# Legal variants (issue 21): each passes the compatible grade; the exact grade names its wire difference.
LEGAL_VARIANTS = ("sse_comments_crlf", "sse_data_no_space", "anthropic_pings", "extra_fields", "media_type_params",
                  "optional_null", "split_writes")
# `split_writes`: the answer passed through as it arrives, cut into 5-byte writes (HTTP/1.1 chunked, kept alive):
# items split across reads; `linger_after_done`: the whole stream, then the connection held open 30 s.
STREAM_DEFECTS = ("drop_connection", "stall_mid_stream", "split_writes", "linger_after_done")
LINGER_S = 30.0
# Dodges of issue 21 run by test_conformance_dodges.py (with the findings they reproduce).
DODGES = ("final_repeats_text", "linger_after_done")
STALL_S = 600.0
DEFECTS = ("none", *REQUEST_DEFECTS, *ANSWER_DEFECTS, *STREAM_DEFECTS)


def build_app(upstream: str) -> Starlette:
    client = httpx.AsyncClient(base_url=upstream, timeout=httpx.Timeout(300.0, connect=10.0))

    async def forward(request: Request) -> Response:
        defect = request.path_params["defect"]
        if defect not in DEFECTS:
            return Response(f"unknown defect {defect!r}", status_code=400, media_type="text/plain")
        path = request.path_params["path"]
        raw = await request.body()
        ex = Exchange(path=path, body=None)
        if raw and defect in REQUEST_DEFECTS:
            try:
                ex.body = json.loads(raw)
            except ValueError:
                ex.body = None
            if ex.body is not None:
                REQUEST_DEFECTS[defect](ex)
                raw = json.dumps(ex.body).encode()
        headers = {k: v for k, v in request.headers.items() if k.lower() in ("content-type", "authorization", "accept")}
        upstream_request = client.build_request(
            request.method, "/" + path, params=request.query_params, content=raw, headers=headers
        )
        answer = await client.send(upstream_request, stream=True)
        if defect == "drop_connection" and answer.headers.get("content-type", "").startswith(
            ("application/x-ndjson", "text/event-stream")
        ):
            return StreamingResponse(_break_midway(answer), status_code=answer.status_code,
                                     media_type=answer.headers.get("content-type"))
        if defect == "stall_mid_stream" and answer.headers.get("content-type", "").startswith(
            ("application/x-ndjson", "text/event-stream")
        ):
            return StreamingResponse(_stall_midway(answer), status_code=answer.status_code,
                                     media_type=answer.headers.get("content-type"))
        if defect in ("split_writes", "linger_after_done"):
            out_headers = {k: v for k, v in answer.headers.items() if k.lower() not in HOP_HEADERS}
            body = _split_writes(answer) if defect == "split_writes" else _linger(answer)
            return StreamingResponse(body, status_code=answer.status_code, headers=out_headers)
        if defect not in ANSWER_DEFECTS:  # the control and request defects: pass the answer through as it arrives
            out_headers = {k: v for k, v in answer.headers.items() if k.lower() not in HOP_HEADERS}
            return StreamingResponse(pass_through(answer), status_code=answer.status_code, headers=out_headers)
        body = await answer.aread()
        await answer.aclose()
        ex.status = answer.status_code
        ex.media_type = answer.headers.get("content-type", "").split(";")[0].strip()
        ex.text = body.decode("utf-8", errors="replace")
        out_headers = {k: v for k, v in answer.headers.items() if k.lower() not in HOP_HEADERS}
        original_type = ex.media_type
        if defect in ANSWER_DEFECTS and ex.text:
            ANSWER_DEFECTS[defect](ex)
        if ex.media_type != original_type:
            out_headers["content-type"] = ex.media_type
        return Response(ex.text.encode() if ex.text or body else b"", status_code=ex.status, headers=out_headers)

    async def _split_writes(answer: httpx.Response) -> AsyncIterator[bytes]:
        try:
            async for chunk in answer.aiter_bytes():
                for start in range(0, len(chunk), 5):
                    yield chunk[start:start + 5]
                    await asyncio.sleep(0)
        finally:
            await answer.aclose()

    async def _linger(answer: httpx.Response) -> AsyncIterator[bytes]:
        async for chunk in pass_through(answer):
            yield chunk
        if answer.headers.get("content-type", "").startswith(("application/x-ndjson", "text/event-stream")):
            await asyncio.sleep(LINGER_S)

    async def _stall_midway(answer: httpx.Response) -> AsyncIterator[bytes]:
        """Sends the first piece of a stream, then nothing (the connection stays open): a silent stall."""
        try:
            async for chunk in answer.aiter_bytes():
                yield chunk
                break
            await asyncio.sleep(STALL_S)
        finally:
            await answer.aclose()

    async def _break_midway(answer: httpx.Response) -> AsyncIterator[bytes]:
        sent = 0
        async for chunk in answer.aiter_bytes():
            yield chunk
            sent += 1
            if sent >= 2:
                break
        await answer.aclose()
        raise ConnectionAbortedError("broken target: connection dropped mid-stream on purpose")

    methods = ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"]
    return Starlette(routes=[Route("/defect/{defect}/{path:path}", forward, methods=methods)])


class BrokenTarget:
    """The proxy on a free loopback port, in a background thread. `url_for(defect)` gives a target base URL."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.server: uvicorn.Server | None = None
        self.thread: threading.Thread | None = None
        self.base = ""

    def start(self) -> BrokenTarget:
        config = uvicorn.Config(build_app(self.upstream), host="127.0.0.1", port=0, log_level="critical", lifespan="off")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="broken-target", daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 20
        while not (self.server.started and self.server.servers):
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the broken target did not start")
            time.sleep(0.05)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        self.base = f"http://127.0.0.1:{port}"
        return self

    def url_for(self, defect: str) -> str:
        if not re.fullmatch(r"[a-z_]+", defect) or defect not in DEFECTS:
            raise ValueError(f"unknown defect {defect!r}")
        return f"{self.base}/defect/{defect}"

    def stop(self) -> None:
        if self.server is not None:
            self.server.should_exit = True
        if self.thread is not None:
            self.thread.join(timeout=10)
