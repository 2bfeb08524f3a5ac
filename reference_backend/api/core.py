"""The native inference handlers shared by every HTTP surface: generate, chat, embed (and legacy embeddings).

`chat`/`generate` are async generators yielding exactly the objects of Ollama's NDJSON stream (the last one has
`done: true`, `done_reason` and the metrics) whatever `stream` says; the HTTP layer streams or merges them.
Validation errors raise ApiError before the first item; an engine failure after it yields one `{"error": ...}`.

Optional keys a surface may add to the body (never sent by Ollama clients):
- `_request_start_ns` (int, perf_counter_ns): when the HTTP request arrived, so total_duration covers parsing.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import time
from collections.abc import AsyncIterator
from typing import Any

from ollama_conformance.reference_backend.api import prompts
from ollama_conformance.reference_backend.api.errors import ApiError
from ollama_conformance.reference_backend.api.prompts import TemplateError
from ollama_conformance.reference_backend.api.tokens import PromptTooLong, certainly_longer, tokenize_for_context
from ollama_conformance.reference_backend.api.wire import canonical_keys, rfc3339_nano, unmarshal_type_error
from ollama_conformance.reference_backend.durations import DurationError, parse_keep_alive
from ollama_conformance.reference_backend.engine.generate import (
    DoneEvent,
    ErrorEvent,
    GenerationRequest,
    QueueFull,
    TokenEvent,
)
from ollama_conformance.reference_backend.engine.options import OptionError, Options
from ollama_conformance.reference_backend.engine.scheduler import LoadedModel
from ollama_conformance.reference_backend.store import bundled
from ollama_conformance.reference_backend.store.local import ModelEntry
from ollama_conformance.reference_backend.store.names import parse_name

GENERATE_FIELDS = (
    "model", "prompt", "suffix", "system", "template", "context", "stream", "raw", "format", "keep_alive",
    "images", "options", "think", "truncate", "shift", "logprobs", "top_logprobs", "_debug_render_only",
)  # fmt: skip
CHAT_FIELDS = (
    "model", "messages", "tools", "format", "options", "stream", "keep_alive", "think", "truncate", "shift",
    "logprobs", "top_logprobs", "_debug_render_only",
)  # fmt: skip
EMBED_FIELDS = ("model", "input", "truncate", "dimensions", "keep_alive", "options")
EMBEDDINGS_FIELDS = ("model", "prompt", "keep_alive", "options")
MESSAGE_FIELDS = ("role", "content", "thinking", "images", "tool_calls", "tool_name", "tool_call_id")

PROMPT_TOO_LONG = (
    "the prompt is longer than the context length currently available to the model; shorten the prompt, "
    "adjust the context length in settings, or use a model with a longer context length"
)
BUSY_MESSAGE = "server busy, please try again.  maximum pending requests exceeded"
THINK_LEVELS = ("high", "medium", "low", "max")


# --- field checks with Go's decoding errors ------------------------------------------------------------------
def _type_error(struct: str, field: str, value: Any, go_type: str) -> ApiError:
    return unmarshal_type_error(struct, field, value, go_type)


def _check_str(body: dict[str, Any], struct: str, *fields: str) -> None:
    for field in fields:
        value = body.get(field)
        if value is not None and not isinstance(value, str):
            raise _type_error(struct, field, value, "string")


def _check_bool(body: dict[str, Any], struct: str, *fields: str) -> None:
    for field in fields:
        value = body.get(field)
        if value is not None and not isinstance(value, bool):
            raise _type_error(struct, field, value, "bool")


def _check_int(body: dict[str, Any], struct: str, field: str) -> int:
    value = body.get(field)
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int | float) or not float(value).is_integer():
        raise _type_error(struct, field, value, "int")
    return int(value)


def _check_images(images: Any, struct: str) -> list[bytes]:
    if images is None:
        return []
    if not isinstance(images, list):
        raise _type_error(struct, "images", images, "[]api.ImageData")
    decoded = []
    for item in images:
        if not isinstance(item, str):
            raise _type_error(struct, "images", item, "api.ImageData")
        try:
            decoded.append(base64.b64decode(item, validate=True))
        except (binascii.Error, ValueError) as exc:
            position = next((i for i, ch in enumerate(item) if not (ch.isalnum() or ch in "+/=")), len(item))
            raise ApiError(400, f"illegal base64 data at input byte {position}") from exc
    return decoded


def _think(body: dict[str, Any]) -> bool | str | None:
    value = body.get("think")
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str):
        if value not in THINK_LEVELS:
            raise ApiError(
                400, f'invalid think value: "{value}" (must be "high", "medium", "low", "max", true, or false)'
            )
        return value
    raise ApiError(400, 'think must be a boolean or string ("high", "medium", "low", "max", true, or false)')


def _keep_alive(body: dict[str, Any]) -> float | None:
    try:
        return parse_keep_alive(body.get("keep_alive"))
    except DurationError as exc:
        raise ApiError(400, str(exc)) from exc


def _top_logprobs(body: dict[str, Any], struct: str) -> int:
    top = _check_int(body, struct, "top_logprobs")
    if top < 0 or top > 20:
        raise ApiError(400, "top_logprobs must be between 0 and 20")
    return top


def _format(body: dict[str, Any]) -> Any:
    value = body.get("format")
    if value is None or value == "":
        return None
    if value == "json" or isinstance(value, dict):
        return value
    raw = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))
    raise ApiError(500, f'invalid format: "{raw}"; expected "json" or a valid JSON Schema object')


def _check_map(body: dict[str, Any], struct: str, field: str) -> None:
    value = body.get(field)
    if value is not None and not isinstance(value, dict):
        raise _type_error(struct, field, value, "map[string]interface {}")


def _options(state: Any, entry: ModelEntry, body: dict[str, Any]) -> Options:
    raw = body.get("options")
    options = Options(num_ctx=state.config.context_length)
    try:
        options.apply(bundled.params_of(entry, state.store))
        options.apply(raw)
    except OptionError as exc:
        raise ApiError(500, str(exc)) from exc
    return options


def _lookup(state: Any, name: str, *, not_found: str) -> ModelEntry:
    entry = state.store.get(name) if parse_name(name) else None
    if entry is None:
        raise ApiError(404, not_found)
    return entry


def _metrics(done: DoneEvent, started_ns: int, load_ns: int) -> dict[str, Any]:
    out: dict[str, Any] = {
        "total_duration": max(time.perf_counter_ns() - started_ns, 1),
        "load_duration": max(load_ns, 1),
    }
    if done.prompt_eval_count:
        out["prompt_eval_count"] = done.prompt_eval_count
        out["prompt_eval_duration"] = max(done.prompt_eval_duration_ns, 1)
    if done.eval_count:
        out["eval_count"] = done.eval_count
        out["eval_duration"] = max(done.eval_duration_ns, 1)
    return out


def _lifecycle_answer(model_name: str, kind: str, done_reason: str) -> dict[str, Any]:
    """The answer to an empty prompt or message list: the model was loaded or unloaded; no text, no metrics."""
    text: dict[str, Any] = {"message": {"role": "assistant", "content": ""}} if kind == "chat" else {"response": ""}
    return {"model": model_name, "created_at": rfc3339_nano(), **text, "done": True, "done_reason": done_reason}


def _num_ctx(options: Options) -> int:
    return max(4, min(options.num_ctx, 32768))


# --- generate --------------------------------------------------------------------------------------------------
async def generate(state: Any, body: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
    started = body.get("_request_start_ns") or time.perf_counter_ns()
    body = canonical_keys(body, GENERATE_FIELDS)
    struct = "GenerateRequest"
    _check_str(body, struct, "model", "prompt", "suffix", "system", "template")
    _check_bool(body, struct, "stream", "raw", "truncate", "shift", "logprobs")
    _check_map(body, struct, "options")
    keep_alive = _keep_alive(body)
    think = _think(body)
    model_name = body.get("model") or ""
    if not parse_name(model_name):
        raise ApiError(404, f"model '{model_name}' not found")
    entry = _lookup(state, model_name, not_found=f"model '{model_name}' not found")
    context = body.get("context")
    if context is not None and (
        not isinstance(context, list) or not all(isinstance(t, int) and not isinstance(t, bool) for t in context)
    ):
        raise _type_error(struct, "context", context, "[]int")
    images = _check_images(body.get("images"), struct)
    top_logprobs = _top_logprobs(body, struct)
    raw = bool(body.get("raw"))
    if raw and (body.get("template") or body.get("system") or context):
        raise ApiError(400, "raw mode does not support template, system, or context")
    prompt = body.get("prompt") or ""
    fmt = _format(body)

    if not prompt and not images and keep_alive == 0:
        await state.scheduler.unload(entry)
        yield _lifecycle_answer(model_name, "generate", "unload")
        return
    caps = bundled.capabilities(entry, state.store)
    if "completion" not in caps:
        raise ApiError(400, f'"{model_name}" does not support generate')
    if body.get("suffix") and "insert" not in caps:
        raise ApiError(400, f"{entry.name.full} does not support insert")
    if think not in (None, False) and "thinking" not in caps:
        raise ApiError(400, f'"{model_name}" does not support thinking')
    options = _options(state, entry, body)

    loaded, load_ns = await _acquire(state, entry)
    try:
        if not prompt and not images:
            yield _lifecycle_answer(model_name, "generate", "load")
            return
        tokenizer = loaded.tokenizer
        text = prompt if raw else _render_generate(state, entry, body, prompt, images, think)
        if body.get("_debug_render_only"):
            # Ollama answers with a zero GenerateResponse plus the debug info (routes.go), as plain JSON
            yield {
                "model": model_name,
                "created_at": rfc3339_nano(),
                "response": "",
                "done": False,
                "_debug_info": {"rendered_template": text},
            }
            return
        if context:
            # special tokens are rendered (llama.cpp's detokenize does) so they tokenize back to themselves; the
            # leading BOS is dropped because tokenizing the whole prompt adds it again
            bos = tokenizer.bos_token_id
            previous = context[1:] if bos is not None and context[:1] == [bos] else context
            text = tokenizer.decode(previous, skip_special_tokens=False) + text
        tokens = _prompt_tokens(loaded, text, options, body)
        request = _generation_request(state, loaded, tokens, options, body, top_logprobs, fmt, None)
        output_tokens: list[int] = []
        async for item in _run(state, loaded, request):
            if isinstance(item, TokenEvent):
                chunk: dict[str, Any] = {
                    "model": model_name,
                    "created_at": rfc3339_nano(),
                    "response": item.text,
                    "done": False,
                }
                if item.logprobs:
                    chunk["logprobs"] = item.logprobs
                yield chunk
            elif isinstance(item, DoneEvent):
                output_tokens = item.output_tokens
                final: dict[str, Any] = {
                    "model": model_name,
                    "created_at": rfc3339_nano(),
                    "response": "",
                    "done": True,
                    "done_reason": item.done_reason,
                }
                if not raw:
                    final["context"] = tokens + output_tokens
                final.update(_metrics(item, started, load_ns))
                yield final
            else:
                yield {"error": item.message}
    finally:
        state.scheduler.release(loaded, keep_alive)


# --- chat ------------------------------------------------------------------------------------------------------
def _messages(body: dict[str, Any]) -> list[dict[str, Any]]:
    raw = body.get("messages")
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise _type_error("ChatRequest", "messages", raw, "[]api.Message")
    messages = []
    for item in raw:
        if not isinstance(item, dict):
            raise _type_error("ChatRequest", "messages", item, "api.Message")
        message = canonical_keys(item, MESSAGE_FIELDS)
        _check_str(message, "ChatRequest.messages", "role", "content", "thinking", "tool_name", "tool_call_id")
        message["role"] = (message.get("role") or "").lower()
        _check_images(message.get("images"), "ChatRequest.messages")
        calls = message.get("tool_calls")
        if calls is not None and not isinstance(calls, list):
            raise _type_error("ChatRequest.messages", "tool_calls", calls, "[]api.ToolCall")
        messages.append(message)
    return messages


def _tools(body: dict[str, Any], struct: str) -> list[dict[str, Any]] | None:
    """Go decodes each tool into api.Tool: a non-object tool, function or parameters is a 400, not a crash."""
    tools = body.get("tools")
    if tools is None:
        return None
    if not isinstance(tools, list):
        raise _type_error(struct, "tools", tools, "api.Tools")
    for tool in tools:
        if not isinstance(tool, dict):
            raise _type_error(struct, "tools", tool, "api.Tool")
        function = tool.get("function")
        if function is not None and not isinstance(function, dict):
            raise _type_error("Tool", "function", function, "api.ToolFunction")
        if isinstance(function, dict):
            _check_str(function, "ToolFunction", "name", "description")
            parameters = function.get("parameters")
            if parameters is not None and not isinstance(parameters, dict):
                raise _type_error("ToolFunction", "parameters", parameters, "api.ToolFunctionParameters")
    return tools


async def chat(state: Any, body: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
    started = body.get("_request_start_ns") or time.perf_counter_ns()
    body = canonical_keys(body, CHAT_FIELDS)
    struct = "ChatRequest"
    _check_str(body, struct, "model")
    _check_bool(body, struct, "stream", "truncate", "shift", "logprobs")
    _check_map(body, struct, "options")
    keep_alive = _keep_alive(body)
    think = _think(body)
    model_name = body.get("model") or ""
    if not model_name:
        raise ApiError(400, "model is required")
    if not parse_name(model_name):
        raise ApiError(400, "invalid model name")
    entry = _lookup(state, model_name, not_found=f"model '{model_name}' not found")
    messages = _messages(body)
    tools = _tools(body, struct)
    top_logprobs = _top_logprobs(body, struct)
    fmt = _format(body)

    if not messages and keep_alive == 0:
        await state.scheduler.unload(entry)
        yield _lifecycle_answer(model_name, "chat", "unload")
        return
    caps = bundled.capabilities(entry, state.store)
    if "completion" not in caps:
        raise ApiError(400, f'"{model_name}" does not support chat')
    if tools and "tools" not in caps:
        raise ApiError(400, f"{entry.name.full} does not support tools")
    if think not in (None, False) and "thinking" not in caps:
        raise ApiError(400, f'"{model_name}" does not support thinking')
    options = _options(state, entry, body)

    loaded, load_ns = await _acquire(state, entry)
    try:
        if not messages:
            yield _lifecycle_answer(model_name, "chat", "load")
            return
        tokenizer = loaded.tokenizer
        messages = _with_model_history(state, entry, messages)
        text = _render_chat(state, entry, messages, tools, think)
        if body.get("_debug_render_only"):
            # Ollama answers with a zero ChatResponse plus the debug info (routes.go), as plain JSON
            yield {
                "model": model_name,
                "created_at": rfc3339_nano(),
                "message": {"role": "", "content": ""},
                "done": False,
                "_debug_info": {"rendered_template": text},
            }
            return
        if body.get("truncate") is not False:
            num_ctx = _context_of(loaded, options)
            kept = _truncate_history(state, entry, messages, tools, think, tokenizer, num_ctx)
            if kept is not messages:
                text = _render_chat(state, entry, kept, tools, think)
        tokens = _prompt_tokens(loaded, text, options, body)
        request = _generation_request(state, loaded, tokens, options, body, top_logprobs, fmt, tools)
        from ollama_conformance.reference_backend.engine.toolcalls import ToolCallParser

        parser = ToolCallParser(tools) if tools else None
        async for item in _run(state, loaded, request):
            if isinstance(item, TokenEvent):
                content = item.text
                calls: list[dict[str, Any]] = []
                if parser is not None:
                    content, calls = parser.feed(content)
                if not content and not calls and not item.logprobs:
                    continue
                message: dict[str, Any] = {"role": "assistant", "content": content}
                if calls:
                    message["tool_calls"] = calls
                chunk: dict[str, Any] = {
                    "model": model_name,
                    "created_at": rfc3339_nano(),
                    "message": message,
                    "done": False,
                }
                if item.logprobs:
                    chunk["logprobs"] = item.logprobs
                yield chunk
            elif isinstance(item, DoneEvent):
                if parser is not None:
                    content, calls = parser.finish()
                    if content or calls:
                        message = {"role": "assistant", "content": content}
                        if calls:
                            message["tool_calls"] = calls
                        yield {"model": model_name, "created_at": rfc3339_nano(), "message": message, "done": False}
                final: dict[str, Any] = {
                    "model": model_name,
                    "created_at": rfc3339_nano(),
                    "message": {"role": "assistant", "content": ""},
                    "done": True,
                    "done_reason": item.done_reason,
                }
                final.update(_metrics(item, started, load_ns))
                yield final
            else:
                yield {"error": item.message}
    finally:
        state.scheduler.release(loaded, keep_alive)


def _truncate_history(
    state: Any, entry: ModelEntry, messages: list[dict[str, Any]], tools: Any, think: Any, tokenizer: Any, num_ctx: int
) -> list[dict[str, Any]]:
    """chatPrompt's truncation: drop messages from the front (keeping the system messages among them) until the
    prompt fits; the last message always stays. A rendering surely too long is not tokenized."""
    last = len(messages) - 1
    for start in range(len(messages)):
        kept = [m for m in messages[:start] if m.get("role") == "system"] + messages[start:]
        text = _render_chat(state, entry, kept, tools, think)
        if start == last:
            return kept
        if certainly_longer(tokenizer, text, num_ctx):
            continue
        if len(tokenizer(text, add_special_tokens=True)["input_ids"]) <= num_ctx:
            return messages if start == 0 else kept
    return messages


def _model_template(state: Any, entry: ModelEntry) -> str:
    """The model's template layer; without one, Ollama's DefaultTemplate."""
    return bundled.template_of(entry, state.store) or prompts.DEFAULT_TEMPLATE


def _render(template: str, messages: list[dict[str, Any]], tools: Any, think: Any, **values: str) -> str:
    try:
        return prompts.render(template, messages, tools, think=think, **values)
    except TemplateError as exc:
        raise ApiError(500, str(exc)) from exc


def _render_chat(state: Any, entry: ModelEntry, messages: list[dict[str, Any]], tools: Any, think: Any) -> str:
    return _render(_model_template(state, entry), messages, tools, think)


def _with_model_history(state: Any, entry: ModelEntry, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """ChatHandler: the model's MESSAGE history first, its SYSTEM before all unless the request starts with one."""
    out = bundled.messages_of(entry, state.store) + messages
    system = bundled.system_of(entry, state.store)
    if system and messages and messages[0].get("role") != "system":
        out = [{"role": "system", "content": system}, *out]
    return out


def _render_generate(
    state: Any, entry: ModelEntry, body: dict[str, Any], prompt: str, images: list[bytes], think: Any
) -> str:
    """GenerateHandler: the request's template or the model's, over the request's system (else the model's),
    the model's MESSAGE history (not with `context`) and the prompt; with a suffix, .Prompt/.Suffix only."""
    template = body.get("template") or _model_template(state, entry)
    if body.get("template"):
        try:
            prompts.parse(template)
        except TemplateError as exc:
            raise ApiError(500, str(exc)) from exc
    if body.get("suffix"):
        return _render(template, [], None, think, prompt=prompt, suffix=body["suffix"])
    messages: list[dict[str, Any]] = []
    system = body.get("system") or bundled.system_of(entry, state.store)
    if system:
        messages.append({"role": "system", "content": system})
    if body.get("context") is None:
        messages.extend(bundled.messages_of(entry, state.store))
    user: dict[str, Any] = {"role": "user", "content": prompt}
    if images:
        user["images"] = images
    messages.append(user)
    return _render(template, messages, None, think)


# --- shared generation plumbing --------------------------------------------------------------------------------
async def _acquire(state: Any, entry: ModelEntry) -> tuple[LoadedModel, int]:
    """The loaded model and the load duration (the time spent getting it, as Ollama's scheduleRunner reports)."""
    started = time.perf_counter_ns()
    try:
        loaded, _ = await state.scheduler.acquire(entry)
        return loaded, time.perf_counter_ns() - started
    except ApiError:
        raise
    except Exception as exc:
        raise ApiError(
            500,
            f"model runner has unexpectedly stopped, this may be due to resource limitations or an internal error, check ollama server logs for details: {exc}",
        ) from exc


def _generation_request(
    state: Any,
    loaded: LoadedModel,
    tokens: list[int],
    options: Options,
    body: dict[str, Any],
    top_logprobs: int,
    fmt: Any,
    tools: list[dict[str, Any]] | None,
) -> GenerationRequest:
    num_ctx = _context_of(loaded, options)
    factory = None
    if fmt is not None or tools:
        from ollama_conformance.reference_backend.engine import grammar

        try:
            factory = grammar.constraint_factory(loaded, fmt, tools)
        except grammar.GrammarError as exc:
            raise ApiError(500, str(exc)) from exc
    return GenerationRequest(
        prompt_tokens=tokens,
        options=options,
        num_ctx=num_ctx,
        stop_token_ids=bundled.GEMMA_STOP_TOKEN_IDS,
        logprobs=bool(body.get("logprobs")),
        top_logprobs=top_logprobs,
        constraint_factory=factory,
        shift=body.get("shift") is not False,
    )


def _prompt_tokens(loaded: LoadedModel, text: str, options: Options, body: dict[str, Any]) -> list[int]:
    """The prompt's tokens, truncated to the context as Ollama's runner does unless truncate/shift is false."""
    may_truncate = body.get("truncate") is not False and body.get("shift") is not False
    try:
        return tokenize_for_context(
            loaded.tokenizer, text, _context_of(loaded, options), options.num_keep, may_truncate
        )
    except PromptTooLong as exc:
        raise ApiError(400, PROMPT_TOO_LONG) from exc


def _context_of(loaded: LoadedModel, options: Options) -> int:
    """num_ctx as the runner applies it: a static slot table holds at most its own context."""
    num_ctx = _num_ctx(options)
    static = getattr(loaded.runner, "static", None)
    return min(num_ctx, static.context) if static is not None else num_ctx


async def _run(
    state: Any, loaded: LoadedModel, request: GenerationRequest
) -> AsyncIterator[TokenEvent | DoneEvent | ErrorEvent]:
    assert loaded.runner is not None
    try:
        events = loaded.runner.submit(request)
    except QueueFull as exc:
        raise ApiError(503, BUSY_MESSAGE) from exc
    try:
        while True:
            event = await events.get()
            yield event
            if isinstance(event, DoneEvent | ErrorEvent):
                return
    finally:
        request.cancelled.set()  # the client went away or the stream ended: free the slot


# --- embeddings ------------------------------------------------------------------------------------------------
async def embed(state: Any, body: dict[str, Any]) -> dict[str, Any]:
    started = body.get("_request_start_ns") or time.perf_counter_ns()
    body = canonical_keys(body, EMBED_FIELDS)
    struct = "EmbedRequest"
    _check_str(body, struct, "model")
    _check_bool(body, struct, "truncate")
    _check_map(body, struct, "options")
    keep_alive = _keep_alive(body)
    model_name = body.get("model") or ""
    if not model_name:
        raise ApiError(404, "model '' not found")
    entry = _lookup(state, model_name, not_found=f'model "{model_name}" not found, try pulling it first')
    raw_input = body.get("input")
    if raw_input is None or raw_input == "" or raw_input == []:
        texts: list[str] = []
    elif isinstance(raw_input, str):
        texts = [raw_input]
    elif isinstance(raw_input, list) and all(isinstance(t, str) for t in raw_input):
        texts = list(raw_input)
    else:
        raise ApiError(400, "invalid input type")
    dimensions = _check_int(body, struct, "dimensions")
    options = _options(state, entry, body)
    loaded, load_ns = await _acquire(state, entry)
    try:
        if not texts:
            return {"model": model_name, "embeddings": []}
        vectors, counts = await _embed_texts(
            state, loaded, texts, options, truncate=body.get("truncate", True), normalize=True
        )
    finally:
        state.scheduler.release(loaded, keep_alive)
    if 0 < dimensions < len(vectors[0]):
        vectors = [_normalize(v[:dimensions]) for v in vectors]
    return {
        "model": model_name,
        "embeddings": vectors,
        "total_duration": max(time.perf_counter_ns() - started, 1),
        "load_duration": max(load_ns, 1),
        "prompt_eval_count": sum(counts),
    }


async def embeddings(state: Any, body: dict[str, Any]) -> dict[str, Any]:
    """Legacy /api/embeddings: one prompt, the raw (not normalised) vector."""
    body = canonical_keys(body, EMBEDDINGS_FIELDS)
    _check_str(body, "EmbeddingRequest", "model", "prompt")
    _check_map(body, "EmbeddingRequest", "options")
    keep_alive = _keep_alive(body)
    model_name = body.get("model") or ""
    if not model_name:
        raise ApiError(400, "model is required")
    entry = _lookup(state, model_name, not_found=f'model "{model_name}" not found, try pulling it first')
    options = _options(state, entry, body)
    loaded, _ = await _acquire(state, entry)
    try:
        prompt = body.get("prompt") or ""
        if not prompt:
            return {"embedding": []}
        vectors, _ = await _embed_texts(state, loaded, [prompt], options, truncate=True, normalize=False)
    finally:
        state.scheduler.release(loaded, keep_alive)
    return {"embedding": vectors[0]}


async def _embed_texts(
    state: Any,
    loaded: LoadedModel, texts: list[str], options: Options, *, truncate: bool, normalize: bool
) -> tuple[list[list[float]], list[int]]:
    from ollama_conformance.reference_backend.engine.embedder import InputTooLong

    if loaded.embedder is None:
        raise ApiError(500, "this model does not support embeddings in the reference backend")
    try:
        embedder = loaded.embedder
        result = await state.scheduler.compute.run(
            lambda: embedder.embed(texts, num_ctx=options.num_ctx, truncate=truncate, normalize=normalize)
        )
    except InputTooLong as exc:
        raise ApiError(400, str(exc)) from exc
    return result.vectors, result.token_counts


def _normalize(vector: list[float]) -> list[float]:
    norm = math.sqrt(sum(x * x for x in vector))
    return [x / norm for x in vector] if norm > 0 else vector
