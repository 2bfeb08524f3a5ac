"""Property-based tests: requests generated from the spec's own request schemas (schemathesis strategies, run by
hypothesis), valid and invalid, each bounded to stay cheap.

For every generated request the answer must be a status the spec declares, a body valid against the spec's
schema for it (every item of a stream; NDJSON included, which schemathesis itself cannot check), errors in the
surface's shape, a 5xx only for the failures Ollama itself answers 500 to, and it must arrive before the
deadline. Generation is derandomised so a run is reproducible; hypothesis prints the falsifying request.
"""

from __future__ import annotations

from datetime import timedelta
from functools import cache
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, settings

from ollama_conformance import spec
from ollama_conformance.conformance.checks import Api
from ollama_conformance.conformance.streams import Captured
from ollama_conformance.conformance.target import Target

MAX_EXAMPLES = 6
# Operations never fuzzed: they change the target's models, or exist only on ollama.com.
MUTATING = {"create", "copy", "delete", "pull", "push", "blobUpload"}
# ... or they reach ollama.com with the daemon's key (a signed-in target would be signed out), or take multipart.
NOT_FUZZED = MUTATING | {"whoami", "signout", "webSearchExperimental", "webFetchExperimental", "createTranscription"}
# Ollama answers 500 to these valid-looking requests (ollama-api-facts §4: option types, format).
KNOWN_500 = ("must be of type", "invalid format")
# Bounds that keep a generated request cheap and the session's models loaded.
OPTION_BOUNDS = {"num_predict": 4, "num_ctx": 2048, "num_batch": 512, "num_thread": 2, "num_keep": 4, "top_logprobs": 5}


def fuzzed_operations() -> list[spec.Operation]:
    return [
        op for op in spec.operations()
        if not op.cloud_only and op.operation_id not in NOT_FUZZED and op.method in ("GET", "POST") and "{" not in op.path
    ]


@cache
def _schemathesis_operation(surface: str, method: str, path: str) -> Any:
    import schemathesis

    return schemathesis.openapi.from_dict(spec.document(surface))[path][method]


def bound(body: Any, path: str, target: Target) -> Any:
    """Point a generated body at a real model and cap the work it asks for."""
    if not isinstance(body, dict):
        return body
    # Go matches JSON keys case-insensitively: drop every spelling of the keys that would unload or bloat.
    body = {k: v for k, v in body.items() if k.lower() not in ("keep_alive", "verbose")}
    model = target.embed_model if "embed" in path else target.chat_model
    if model:
        body["model"] = model
    options = body.get("options")
    if path in ("/api/generate", "/api/chat"):
        options = dict(options) if isinstance(options, dict) else {}
        body["options"] = options
    if isinstance(options, dict):
        for key, cap in OPTION_BOUNDS.items():
            value = options.get(key)
            too_big = isinstance(value, int | float) and value > cap
            unbounded = key == "num_predict" and (not isinstance(value, int | float) or value < 0)
            if too_big or unbounded:
                options[key] = cap
    for key in ("max_tokens", "max_output_tokens", "max_completion_tokens"):
        value = body.get(key)
        # a negative limit means "unbounded" to Ollama (num_predict -1): as costly as a too-large one
        if key in body and (not isinstance(value, int) or value > 4 or value < 0):
            body[key] = 4 if key != "max_output_tokens" else 16
    if path in ("/v1/chat/completions", "/v1/completions") and "max_tokens" not in body:
        body["max_tokens"] = 4
    if path == "/v1/responses" and "max_output_tokens" not in body:
        body["max_output_tokens"] = 16
    if isinstance(body.get("top_logprobs"), int) and body["top_logprobs"] > 5:
        body["top_logprobs"] = 5
    return body


def check_answer(api: Api, op: spec.Operation, got: Captured, *, valid: bool) -> None:
    where = f"{op.method} {op.path}"
    api.contract(op.method, op.path, got)
    if got.status >= 500:
        message = got.text[:300]
        assert any(known in message for known in KNOWN_500), (
            f"{where}: a {'valid' if valid else 'generated invalid'} request got {got.status}: {message!r}"
        )
    if got.status >= 400 and got.media_type == "application/json":
        body = got.json()
        if op.surface == "native" or (isinstance(body, dict) and isinstance(body.get("error"), str)):
            assert isinstance(body, dict) and isinstance(body.get("error"), str), f"{where}: error body {got.text[:200]!r}"
        elif op.surface == "openai":
            assert isinstance(body.get("error"), dict) and "message" in body["error"], f"{where}: error {got.text[:200]!r}"
        else:
            assert body.get("type") == "error" and isinstance(body.get("error"), dict), f"{where}: error {got.text[:200]!r}"


def schemathesis_checks(case: Any, op: spec.Operation, got: Captured, body: Any) -> None:
    """schemathesis's own status, content-type and schema checks, as a second opinion on JSON answers.

    Streams are left to our checks above: schemathesis reads no NDJSON items and takes `[DONE]` for bad JSON.
    """
    if got.media_type != "application/json":
        return
    import httpx
    from schemathesis.specs.openapi.checks import (
        content_type_conformance,
        response_schema_conformance,
        status_code_conformance,
    )

    if isinstance(body, dict):
        case.body = body
    request = httpx.Request(op.method, f"http://target{op.path}")
    response = httpx.Response(got.status, headers=got.headers, content=got.text.encode(), request=request)
    response.elapsed = timedelta(seconds=got.elapsed_s)
    case.validate_response(response, checks=[status_code_conformance, content_type_conformance, response_schema_conformance])


def send(api: Api, op: spec.Operation, body: Any) -> Captured:
    if body is None:
        return api.call(op.method, op.path)
    if isinstance(body, bytes | bytearray):
        return api.call(op.method, op.path, raw=bytes(body), headers={"Content-Type": "application/json"})
    return api.call(op.method, op.path, body)


def run_property(api: Api, target: Target, op: spec.Operation, mode: str) -> None:
    from schemathesis import GenerationMode
    from schemathesis.core import NOT_SET

    generation = GenerationMode.POSITIVE if mode == "valid" else GenerationMode.NEGATIVE
    strategy = _schemathesis_operation(op.surface, op.method, op.path).as_strategy(generation_mode=generation)
    examples = MAX_EXAMPLES if op.method == "POST" else 1

    unserved: list[str] = []

    @settings(max_examples=examples, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck), print_blob=False,
              phases=[Phase.explicit, Phase.generate])  # no shrinking: its cost is unbounded
    @given(case=strategy)
    def prop(case: Any) -> None:
        if unserved:
            return
        body = None if case.body is NOT_SET else case.body
        if mode == "valid":
            body = bound(body, op.path, target)
        elif isinstance(body, dict):  # an invalid body stays invalid, but must not unload the session's models
            body = {k: v for k, v in body.items() if k.lower() not in ("keep_alive", "verbose")}
        got = send(api, op, body)
        if got.status == 501:  # Not Implemented: the route's own features fail for it, not the fuzzing of it
            unserved.append(f"{op.method} {op.path} is not served here (501 {got.text[:80]!r})")
            return
        check_answer(api, op, got, valid=mode == "valid")
        schemathesis_checks(case, op, got, body)

    prop()
    if unserved:
        pytest.skip(f"{unserved[0]}: its own features fail for it; fuzzing a route that is not there is not applicable")


def _params() -> list[Any]:
    params = []
    for op in fuzzed_operations():
        for mode in ("valid", "invalid"):
            if op.method == "GET" and mode == "invalid":
                continue
            params.append(pytest.param(op, mode, id=f"{op.method} {op.path} {mode}",
                                       marks=pytest.mark.feature(f"fuzz.{op.surface}")))
    return params


@pytest.mark.parametrize(("op", "mode"), _params())
def test_generated_requests(api: Api, target: Target, op: spec.Operation, mode: str) -> None:
    run_property(api, target, op, mode)
