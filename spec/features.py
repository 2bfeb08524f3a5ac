"""The catalogue of feature ids (spec/features.yaml) that tests and reports share."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from ollama_conformance.spec.documents import SPEC_DIR

CAPABILITIES = ("completion", "tools", "insert", "vision", "audio", "embedding", "thinking")
FEATURE_SURFACES = ("native", "openai", "anthropic", "cloud")


@dataclass(frozen=True)
class Feature:
    id: str
    level: str
    capability: str | None
    surface: str
    endpoints: list[str]
    description: str


@cache
def _features() -> dict[str, Feature]:
    import yaml  # here: `ollama-conformance spec --help` imports this package, not the catalogue

    with (SPEC_DIR / "features.yaml").open(encoding="utf-8") as fh:
        raw = yaml.load(fh, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))  # libyaml: 9x faster
    out: dict[str, Feature] = {}
    for entry in raw["features"]:
        feature = Feature(
            id=entry["id"],
            level=entry["level"],
            capability=entry.get("capability"),
            surface=entry["surface"],
            endpoints=list(entry.get("endpoints") or []),
            description=entry["description"],
        )
        if feature.id in out:
            raise ValueError(f"duplicate feature id {feature.id!r} in features.yaml")
        out[feature.id] = feature
    return out


def features() -> dict[str, Feature]:
    """Feature id -> Feature, in catalogue order."""
    return dict(_features())
