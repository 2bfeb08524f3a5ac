"""The Ollama HTTP API as OpenAPI 3.1 documents, and a small API to load, resolve and validate against them.

Documents: native.yaml (/api/*), openai.yaml (/v1/* OpenAI-compatible), anthropic.yaml (/v1/messages).
Stream responses: the schema of a stream media type (application/x-ndjson, text/event-stream) is the schema of
ONE item; the media type carries `x-stream: ndjson|sse`, SSE adds `x-sse-sentinel` and `x-sse-events`.
"""

from ollama_conformance.spec.documents import SPEC_VERSION, SURFACES, Operation, document, find_path, operations
from ollama_conformance.spec.features import Feature, features
from ollama_conformance.spec.schemas import (
    component_schema,
    declared_statuses,
    request_schema,
    response_media,
    response_media_types,
    response_schema,
)
from ollama_conformance.spec.schemathesis_form import register_ndjson_deserializer, schemathesis_document
from ollama_conformance.spec.validation import validate
from ollama_conformance.spec.versions import Change, VersionError, at_version, changes, parse_version

__all__ = [
    "SPEC_VERSION",
    "SURFACES",
    "Change",
    "Feature",
    "Operation",
    "VersionError",
    "at_version",
    "changes",
    "component_schema",
    "declared_statuses",
    "document",
    "features",
    "find_path",
    "operations",
    "parse_version",
    "register_ndjson_deserializer",
    "request_schema",
    "response_media",
    "response_media_types",
    "response_schema",
    "schemathesis_document",
    "validate",
]
