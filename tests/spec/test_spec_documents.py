"""The OpenAPI documents: valid OpenAPI 3.1, every $ref resolves, every schema is usable JSON Schema 2020-12,
every route Ollama serves is there with its error statuses, and streaming/security conventions hold."""

from __future__ import annotations

from typing import Any

import pytest
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate as validate_openapi

from ollama_conformance import spec
from ollama_conformance.spec.resolve import unresolved_refs

# Every route of Ollama 0.33.0-rc2's router (server/routes.go GenerateRoutes), plus the cloud-only ones
EXPECTED_OPERATIONS = {
    ("native", "GET", "/"), ("native", "HEAD", "/"),
    ("native", "GET", "/api/version"), ("native", "HEAD", "/api/version"),
    ("native", "GET", "/api/status"),
    ("native", "POST", "/api/generate"), ("native", "POST", "/api/chat"),
    ("native", "POST", "/api/embed"), ("native", "POST", "/api/embeddings"),
    ("native", "GET", "/api/tags"), ("native", "HEAD", "/api/tags"),
    ("native", "GET", "/api/ps"), ("native", "POST", "/api/show"),
    ("native", "POST", "/api/create"), ("native", "POST", "/api/copy"), ("native", "DELETE", "/api/delete"),
    ("native", "POST", "/api/pull"), ("native", "POST", "/api/push"),
    ("native", "HEAD", "/api/blobs/{digest}"), ("native", "POST", "/api/blobs/{digest}"),
    ("native", "POST", "/api/web_search"), ("native", "POST", "/api/web_fetch"),
    ("native", "POST", "/api/me"), ("native", "POST", "/api/signout"),
    ("native", "DELETE", "/api/user/keys/{encodedKey}"),
    ("native", "POST", "/api/experimental/web_search"), ("native", "POST", "/api/experimental/web_fetch"),
    ("native", "GET", "/api/experimental/model-recommendations"),
    ("openai", "POST", "/v1/audio/transcriptions"),
    ("openai", "POST", "/v1/chat/completions"), ("openai", "POST", "/v1/completions"),
    ("openai", "POST", "/v1/embeddings"), ("openai", "GET", "/v1/models"),
    ("openai", "GET", "/v1/models/{model}"), ("openai", "POST", "/v1/responses"),
    ("anthropic", "POST", "/v1/messages"),
}  # fmt: skip

# one real error body per surface (from facts §4 and the recordings' shapes)
ERROR_BODIES = {
    "native": {"error": "model 'x' not found"},
    "openai": {"error": {"message": "model 'x' not found", "type": "not_found_error", "param": None, "code": None}},
    "anthropic": {
        "type": "error",
        "error": {"type": "invalid_request_error", "message": "messages is required"},
        "request_id": "req_0123456789abcdef01234567",
    },
}

# error statuses whose body is more than the surface's error shape
SPECIFIC_ERROR_BODIES = {
    ("/api/me", "401"): {"error": "unauthorized", "signin_url": "https://ollama.com/connect?name=h&key=c3NoLWVk"},
}


@pytest.mark.parametrize("surface", spec.SURFACES)
def test_document_is_valid_openapi_31(surface: str) -> None:
    doc = spec.document(surface)
    assert doc["openapi"].startswith("3.1")
    validate_openapi(doc)


@pytest.mark.parametrize("surface", spec.SURFACES)
def test_document_names_the_ollama_version(surface: str) -> None:
    info = spec.document(surface)["info"]
    assert info["version"] == spec.SPEC_VERSION
    assert info["x-ollama-version"] == spec.SPEC_VERSION


@pytest.mark.parametrize("surface", spec.SURFACES)
def test_every_ref_resolves(surface: str) -> None:
    doc = spec.document(surface)
    assert unresolved_refs(doc, doc) == []


def _has_ref(node: object) -> bool:
    if isinstance(node, dict):
        return "$ref" in node or any(_has_ref(v) for v in node.values())
    if isinstance(node, list):
        return any(_has_ref(v) for v in node)
    return False


@pytest.mark.parametrize("surface", spec.SURFACES)
def test_every_component_resolves_to_a_valid_json_schema(surface: str) -> None:
    for name in spec.document(surface)["components"]["schemas"]:
        schema = spec.component_schema(surface, name)
        assert not _has_ref(schema), name
        Draft202012Validator.check_schema(schema)


def test_every_route_is_described() -> None:
    found = {(op.surface, op.method, op.path) for op in spec.operations()}
    assert found == EXPECTED_OPERATIONS


def test_operation_ids_are_unique() -> None:
    ids = [op.operation_id for op in spec.operations()]
    assert len(ids) == len(set(ids))


@pytest.mark.parametrize("op", [op for op in spec.operations() if op.method == "POST"], ids=lambda op: op.path)
def test_every_body_route_documents_its_errors(op: spec.Operation) -> None:
    statuses = spec.declared_statuses(op.method, op.path)
    takes_body = "requestBody" in spec.document(op.surface)["paths"][op.path]["post"]
    if takes_body:  # /api/me and /api/signout ignore the body: nothing to refuse
        assert "400" in statuses, f"{op.path} must declare 400"
    assert "500" in statuses, f"{op.path} must declare 500"
    for status in statuses:
        if not status.startswith(("4", "5")):
            continue
        assert spec.response_media_types(op.method, op.path, status) == ["application/json"], (op.path, status)
        schema = spec.response_schema(op.method, op.path, status, "application/json")
        assert schema is not None
        body = SPECIFIC_ERROR_BODIES.get((op.path, status), ERROR_BODIES[op.surface])
        assert spec.validate(body, schema) == [], (op.path, status)
        # and the error shape of another surface is not mistaken for this one's (cloud-proxy statuses aside)
        if status in ("400", "404", "500"):
            other = ERROR_BODIES["native" if op.surface != "native" else "openai"]
            assert spec.validate(other, schema) != [], (op.path, status)


@pytest.mark.parametrize("op", [op for op in spec.operations() if op.streaming], ids=lambda op: op.path)
def test_stream_media_types_follow_the_conventions(op: spec.Operation) -> None:
    media_types = spec.response_media_types(op.method, op.path, 200)
    assert "application/json" in media_types, "stream:false answers application/json"
    stream = [m for m in media_types if m in ("application/x-ndjson", "text/event-stream")]
    assert len(stream) == 1
    media = spec.response_media(op.method, op.path, 200, stream[0])
    assert media is not None and media["schema"]
    if stream[0] == "application/x-ndjson":
        assert media["x-stream"] == "ndjson"
    else:
        assert media["x-stream"] == "sse"
        assert ("x-sse-sentinel" in media) != ("x-sse-events" in media), "SSE: a sentinel or named events"
        assert "oneOf" in media["schema"] or "x-sse-sentinel" in media


@pytest.mark.parametrize(
    ("method", "path"), [("POST", "/v1/responses"), ("POST", "/v1/messages")], ids=["responses", "messages"]
)
def test_named_sse_events_have_matching_payload_types(method: str, path: str) -> None:
    media = spec.response_media(method, path, 200, "text/event-stream")
    assert media is not None
    for event, schema in media["x-sse-events"].items():
        payload_type = next(s for s in [schema, *schema.get("allOf", [])] if "type" in s.get("properties", {}))
        allowed = payload_type["properties"]["type"]
        assert event == allowed.get("const") or event in allowed.get("enum", []), event
        # every event payload is also accepted by the item oneOf
        assert len(media["schema"]["oneOf"]) >= 1


def test_cloud_only_routes_carry_bearer_and_daemon_routes_none() -> None:
    for op in spec.operations():
        doc = spec.document(op.surface)
        raw = doc["paths"][op.path][op.method.lower()]
        if op.cloud_only:
            assert op.path in ("/api/web_search", "/api/web_fetch")
            assert raw["security"] == [{"bearer": []}]
            assert doc["components"]["securitySchemes"]["bearer"] == {
                "type": "http",
                "scheme": "bearer",
                "description": doc["components"]["securitySchemes"]["bearer"]["description"],
            }
        else:
            assert raw.get("security", doc.get("security")) == [], op


@pytest.mark.parametrize("surface", spec.SURFACES)
def test_routing_behaviour_is_documented(surface: str) -> None:
    routing = spec.document(surface)["x-routing"]
    assert routing["not_found"] == {"status": 404, "content_type": "text/plain", "body": "404 page not found"}
    assert routing["method_not_allowed"]["status"] == 405
    assert routing["method_not_allowed"]["body"] == "405 method not allowed"


@pytest.mark.parametrize("surface", spec.SURFACES)
def test_schemathesis_loads_the_document(surface: str) -> None:
    import schemathesis

    schema = schemathesis.openapi.from_dict(spec.document(surface))
    loaded = []
    for result in schema.get_all_operations():
        operation = result.ok()  # raises on an operation schemathesis cannot load
        loaded.append((operation.method.upper(), operation.path))
    expected = {(m, p) for s, m, p in EXPECTED_OPERATIONS if s == surface}
    assert set(loaded) == expected


def _schemathesis_operations() -> list[tuple[str, str, str]]:
    return sorted((op.surface, op.method, op.path) for op in spec.operations())


@pytest.mark.parametrize(("surface", "method", "path"), _schemathesis_operations(), ids=lambda v: str(v))
def test_schemathesis_generates_requests(surface: str, method: str, path: str) -> None:
    """The conformance suite fuzzes from these documents: every operation yields valid requests, and every
    operation that takes a body yields invalid ones too (bounded: two examples each)."""
    import schemathesis
    from schemathesis import GenerationMode

    operation = schemathesis.openapi.from_dict(spec.document(surface))[path][method]
    request_schema = spec.request_schema(method, path)
    modes = [GenerationMode.POSITIVE]
    if request_schema is not None and method == "POST" and "{" not in path:
        modes.append(GenerationMode.NEGATIVE)
    for mode in modes:
        seen = _draw(operation, mode, request_schema)
        assert seen, f"{method} {path}: no {mode.value} case generated"


def _draw(operation: Any, mode: Any, request_schema: dict | None) -> list[object]:
    from hypothesis import HealthCheck, given, settings
    from schemathesis import GenerationMode
    from schemathesis.core import NOT_SET

    seen: list[object] = []

    @settings(max_examples=2, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck))
    @given(case=operation.as_strategy(generation_mode=mode))
    def draw(case: Any) -> None:
        body = getattr(case, "body", NOT_SET)
        # a positive case must satisfy our own request schema (a negative one may break the body or anything else)
        if mode == GenerationMode.POSITIVE and body is not NOT_SET and request_schema is not None:
            assert spec.validate(body, request_schema) == []
        seen.append(case)

    draw()
    return seen


SCHEMA_KEYWORDS = frozenset(
    [
        "$ref",
        "type",
        "properties",
        "required",
        "items",
        "oneOf",
        "anyOf",
        "allOf",
        "not",
        "if",
        "then",
        "else",
        "const",
        "enum",
        "description",
        "default",
        "examples",
        "pattern",
        "minimum",
        "maximum",
        "minLength",
        "maxLength",
        "minItems",
        "maxItems",
        "minProperties",
        "maxProperties",
        "additionalProperties",
        "deprecated",
        "contentEncoding",
        "contentMediaType",
        "format",
        "title",
    ]
)


def _stray_keywords(node: object, where: str) -> list[str]:
    """Keys of schema objects that are no JSON Schema keyword (a YAML slip such as `{description: a, b}`)."""
    if not isinstance(node, dict):
        return []
    problems = [f"{where}: {key!r}" for key in node if key not in SCHEMA_KEYWORDS and not key.startswith("x-")]
    for key, value in (node.get("properties") or {}).items():
        problems += _stray_keywords(value, f"{where}.properties.{key}")
    for key in ("items", "not", "if", "then", "else", "additionalProperties"):
        problems += _stray_keywords(node.get(key), f"{where}.{key}")
    for key in ("oneOf", "anyOf", "allOf"):
        for i, sub in enumerate(node.get(key) or []):
            problems += _stray_keywords(sub, f"{where}.{key}[{i}]")
    return problems


@pytest.mark.parametrize("surface", spec.SURFACES)
def test_schemas_use_only_json_schema_keywords(surface: str) -> None:
    doc = spec.document(surface)
    problems = []
    for name, schema in doc["components"]["schemas"].items():
        problems += _stray_keywords(schema, name)
    for path, item in doc["paths"].items():
        for method, op in item.items():
            if not isinstance(op, dict) or "responses" not in op:
                continue
            bodies = [op.get("requestBody") or {}, *op["responses"].values()]
            for body in bodies:
                for media_type, media in (body.get("content") or {}).items():
                    problems += _stray_keywords(media.get("schema"), f"{method} {path} {media_type}")
                    for event, schema in (media.get("x-sse-events") or {}).items():
                        problems += _stray_keywords(schema, f"{method} {path} event {event}")
    assert problems == []


def test_stray_keyword_check_catches_a_yaml_slip() -> None:
    slip = {"type": "object", "properties": {"n": {"type": "integer", "description": "Default 5", "at most 10.": None}}}
    assert _stray_keywords(slip, "S") == ["S.properties.n: 'at most 10.'"]
