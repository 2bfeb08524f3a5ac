"""spec/features.yaml: the catalogue shared by tests and reports is well formed and points at real operations."""

from __future__ import annotations

import re

import yaml

from ollama_conformance import spec
from ollama_conformance.spec.documents import SPEC_DIR
from ollama_conformance.spec.features import CAPABILITIES, FEATURE_SURFACES
from ollama_conformance.vocabulary import LEVELS

# ids the other parts were promised (renaming any of them breaks their tests)
PROMISED = [
    "server.root",
    "server.version",
    "routing.not_found",
    "routing.method_not_allowed",
    "generate.basic",
    "generate.stream.ndjson",
    "generate.num_predict",
    "generate.stop",
    "generate.seed",
    "generate.format.json",
    "generate.format.json_schema",
    "generate.suffix.refused",
    "generate.load_unload",
    "generate.raw",
    "chat.basic",
    "chat.stream.ndjson",
    "chat.tools",
    "chat.think.refused",
    "chat.logprobs",
    "embed.basic",
    "embed.normalized",
    "embed.dimensions",
    "embed.truncate",
    "embeddings.legacy",
    "tags.list",
    "show.details",
    "ps.list",
    "keep_alive.unload",
    "errors.model_not_found",
    "errors.model_required",
    "errors.empty_body",
    "errors.malformed_json",
    "errors.option_type",
    "v1.chat.basic",
    "v1.chat.stream",
    "v1.chat.stream.include_usage",
    "v1.chat.tools",
    "v1.chat.response_format",
    "v1.completions.basic",
    "v1.completions.stream",
    "v1.embeddings.float",
    "v1.embeddings.base64",
    "v1.models.list",
    "v1.models.get",
    "v1.responses.basic",
    "v1.responses.stream",
    "v1.errors.shape",
    "anthropic.messages.basic",
    "anthropic.messages.stream",
    "anthropic.messages.tools",
    "anthropic.errors.shape",
    "cloud.auth.bearer",
    "cloud.auth.missing",
    "cloud.web_search",
    "cloud.web_fetch",
    "cloud.routing.suffix",
    "cloud.disabled",
]

ENDPOINT = re.compile(r"^(GET|HEAD|POST|PUT|PATCH|DELETE) (/\S*)$")


def test_at_least_sixty_features_with_every_level() -> None:
    feats = spec.features()
    assert len(feats) >= 60
    assert {f.level for f in feats.values()} == set(LEVELS)


def test_promised_ids_exist() -> None:
    missing = [fid for fid in PROMISED if fid not in spec.features()]
    assert missing == []


def test_ids_are_unique_in_the_file() -> None:
    raw = yaml.safe_load((SPEC_DIR / "features.yaml").read_text(encoding="utf-8"))
    ids = [entry["id"] for entry in raw["features"]]
    assert len(ids) == len(set(ids))
    assert raw["spec_version"] == spec.SPEC_VERSION


def test_entries_are_well_formed() -> None:
    for feature in spec.features().values():
        assert re.fullmatch(r"[a-z0-9_]+(\.[a-z0-9_]+)+", feature.id), feature.id
        assert feature.level in LEVELS, feature.id
        assert feature.capability is None or feature.capability in CAPABILITIES, feature.id
        assert feature.surface in FEATURE_SURFACES, feature.id
        assert feature.description.strip(), feature.id


def test_endpoints_name_operations_of_the_spec() -> None:
    known = {(op.method, op.path) for op in spec.operations()}
    for feature in spec.features().values():
        for endpoint in feature.endpoints:
            match = ENDPOINT.match(endpoint)
            assert match, f"{feature.id}: {endpoint!r} is not 'METHOD /path'"
            assert (match.group(1), match.group(2)) in known, f"{feature.id}: {endpoint} is not in the spec"


def test_every_operation_has_a_feature() -> None:
    covered = {e for f in spec.features().values() for e in f.endpoints}
    missing = [f"{op.method} {op.path}" for op in spec.operations() if f"{op.method} {op.path}" not in covered]
    assert missing == []
