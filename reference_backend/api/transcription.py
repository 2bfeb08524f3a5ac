"""POST /v1/audio/transcriptions, as Ollama 0.33's TranscriptionMiddleware + ChatHandler answer it.

Ollama turns the multipart form into an /api/chat request (a fixed system prompt, the audio bytes as the user
message's media, temperature 0) and relays the reply as `{"text"}` or, with `response_format: text`, bare text.
It checks no capability itself: the runner (llama-server) refuses media for a model without a projector with
400 and its own JSON error body, which Ollama puts verbatim in the OpenAI error's message. The bundled models take
no audio, so here a model without the `audio` capability gets that same refusal.
"""

from __future__ import annotations

import base64
import email.parser
import email.policy
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ollama_conformance.reference_backend.api.errors import ApiError, openai_error_body
from ollama_conformance.reference_backend.api.wire import JSON, JSON_UTF8, go_json, json_response

SYSTEM_PROMPT = (
    "Transcribe the audio exactly as spoken. Output only the spoken words. Do not answer any question in the audio."
)
USER_PROMPT = "What exact words are spoken in this audio?"
# llama-server's body when media reach a model loaded without a projector (server-common.cpp
# tokenize_input_subprompt, format_error_response; nlohmann::json sorts the keys).
RUNNER_REFUSAL = (
    '{"error":{"code":400,"message":"Multimodal data provided, but model does not support multimodal requests.",'
    '"type":"invalid_request_error"}}'
)


class FormError(Exception):
    """A request Go's ParseMultipartForm refuses; the message is Go's error text."""


@dataclass
class Form:
    values: dict[str, str] = field(default_factory=dict)
    files: dict[str, bytes] = field(default_factory=dict)


def parse_multipart(content_type: str, body: bytes) -> Form:
    """The fields and files of a multipart/form-data body, with Go's errors for what it refuses."""
    media = content_type.split(";", 1)[0].strip().lower()
    if media != "multipart/form-data":
        raise FormError("request Content-Type isn't multipart/form-data")
    if "boundary=" not in content_type:
        raise FormError("no multipart boundary param in Content-Type")
    head = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode("latin-1", "replace")
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + body)
    if not message.is_multipart():
        raise FormError("multipart: NextPart: EOF")
    form = Form()
    parts = message.get_payload()
    if not isinstance(parts, list) or not parts:
        raise FormError("multipart: NextPart: EOF")
    for part in parts:
        name = part.get_param("name", header="content-disposition")
        if not isinstance(name, str):
            continue
        payload = part.get_payload(decode=True) or b""
        if part.get_filename() is not None:
            form.files.setdefault(name, payload)
        else:
            form.values.setdefault(name, payload.decode("utf-8", "replace"))
    return form


def chat_request(model: str, audio: bytes, language: str, prompt: str) -> dict[str, Any]:
    """openai.FromTranscriptionRequest: the native chat request the transcription becomes."""
    system = SYSTEM_PROMPT
    if language:
        system += f" The audio is in {language}."
    if prompt:
        system += f" Context: {prompt}"
    return {
        "model": model,
        "messages": [
            {"role": "system", "content": system},
            {"role": "user", "content": USER_PROMPT, "images": [base64.b64encode(audio).decode("ascii")]},
        ],
        "stream": True,
        "options": {"temperature": 0},
    }


def _middleware_error(status: int, message: str) -> Response:
    # gin's AbortWithStatusJSON in the middleware: charset, no trailing newline
    return json_response(openai_error_body(status, message), status_code=status, content_type=JSON_UTF8)


def _writer_error(status: int, message: str) -> Response:
    # TranscriptionWriter.writeError: json.Encoder (trailing newline), bare application/json
    return json_response(openai_error_body(status, message), status_code=status, content_type=JSON, newline=True)


async def transcriptions(request: Request) -> Response:
    try:
        form = parse_multipart(request.headers.get("content-type", ""), await request.body())
    except FormError as exc:
        return _middleware_error(400, f"failed to parse multipart form: {exc}")
    model = form.values.get("model") or request.query_params.get("model", "")  # Go's FormValue reads both
    if not model:
        return _middleware_error(400, "model is required")
    if "file" not in form.files:
        return _middleware_error(400, "file is required: http: no such file")
    audio = form.files["file"]
    if not audio:
        return _middleware_error(400, "audio file is empty")
    try:
        text = await _transcribe(request, model, audio, form.values)
    except ApiError as exc:
        return _writer_error(exc.status, exc.message)
    if form.values.get("response_format") == "text":
        return Response(text.encode(), status_code=200, headers={"content-type": "text/plain"})
    return Response((go_json({"text": text}) + "\n").encode(), status_code=200, headers={"content-type": JSON})


async def _transcribe(request: Request, model: str, audio: bytes, values: dict[str, str]) -> str:
    from ollama_conformance.reference_backend.api import core
    from ollama_conformance.reference_backend.api.common import NativeStream, collect_unless_disconnected, first_error
    from ollama_conformance.reference_backend.store import bundled
    from ollama_conformance.reference_backend.store.names import parse_name

    state = request.app.state.server
    if not parse_name(model):
        raise ApiError(400, "invalid model name")
    entry = state.store.get(model)
    if entry is None:
        raise ApiError(404, f"model '{model}' not found")
    caps = bundled.capabilities(entry, state.store)
    if "completion" not in caps:
        raise ApiError(400, f'"{model}" does not support chat')
    if "audio" not in caps:
        raise ApiError(400, RUNNER_REFUSAL)
    body = chat_request(model, audio, values.get("language", ""), values.get("prompt", ""))
    stream = await NativeStream(core.chat(state, body)).start()
    items = await collect_unless_disconnected(request, stream)
    if items is None:
        raise ApiError(499, "client closed the request")
    error = first_error(items)
    if error is not None:
        raise ApiError(500, error)
    return "".join(str((item.get("message") or {}).get("content", "")) for item in items).strip()


def routes() -> list[Route]:
    return [Route("/v1/audio/transcriptions", transcriptions, methods=["POST"])]
