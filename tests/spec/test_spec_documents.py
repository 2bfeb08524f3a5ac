"""The OpenAPI documents: valid OpenAPI 3.1, every $ref resolves, every schema is usable JSON Schema 2020-12,
every route Ollama serves is there with its error statuses, and streaming/security conventions hold."""

from __future__ import annotations

import pytest
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate as validate_openapi

import spec
from spec.resolve import unresolved_refs

# facts §1: every daemon route, plus the cloud-only ones
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
    assert "400" in statuses, f"{op.path} must declare 400"
    assert "500" in statuses, f"{op.path} must declare 500"
    for status in statuses:
        if not status.startswith(("4", "5")):
            continue
        assert spec.response_media_types(op.method, op.path, status) == ["application/json"], (op.path, status)
        schema = spec.response_schema(op.method, op.path, status, "application/json")
        assert schema is not None
        assert spec.validate(ERROR_BODIES[op.surface], schema) == [], (op.path, status)
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
