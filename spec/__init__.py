"""The Ollama HTTP API as OpenAPI 3.1 documents, and a small API to load, resolve and validate against them.

Documents: native.yaml (/api/*), openai.yaml (/v1/* OpenAI-compatible), anthropic.yaml (/v1/messages).
Stream responses: the schema of a stream media type (application/x-ndjson, text/event-stream) is the schema of
ONE item; the media type carries `x-stream: ndjson|sse`, SSE adds `x-sse-sentinel` and `x-sse-events`.
"""

from ollama_conformance.lazy import lazy_exports

# eager: the submodule `features` shares its name with the function, and importing a submodule binds its name on
# the package, so a lazy `features` would be the module for whoever imported spec.features first
from ollama_conformance.spec.features import Feature as Feature
from ollama_conformance.spec.features import features as features

# public name -> the private module that defines it (imported on first use: `validate --help` stays cheap)
_lazy_all, __getattr__ = lazy_exports(__name__, {
    "SPEC_VERSION": ".documents",
    "SURFACES": ".documents",
    "Operation": ".documents",
    "document": ".documents",
    "find_path": ".documents",
    "operations": ".documents",
    "component_schema": ".schemas",
    "declared_statuses": ".schemas",
    "request_schema": ".schemas",
    "response_media": ".schemas",
    "response_media_types": ".schemas",
    "response_schema": ".schemas",
    "register_ndjson_deserializer": ".schemathesis_form",
    "schemathesis_document": ".schemathesis_form",
    "validate": ".validation",
    "Change": ".versions",
    "VersionError": ".versions",
    "at_version": ".versions",
    "changes": ".versions",
    "parse_version": ".versions",
})
__all__ = sorted([*_lazy_all, "Feature", "features"])
