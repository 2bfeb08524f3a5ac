"""Load the OpenAPI documents (one per surface) and list their operations."""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

SPEC_DIR = Path(__file__).resolve().parent
SPEC_VERSION = "0.33.0-rc2"
SURFACES = ("native", "openai", "anthropic")
HTTP_METHODS = ("get", "head", "post", "put", "patch", "delete", "options", "trace")
STREAM_MEDIA_TYPES = ("application/x-ndjson", "text/event-stream")


@dataclass(frozen=True)
class Operation:
    surface: str
    method: str  # upper case
    path: str  # OpenAPI template
    operation_id: str
    cloud_only: bool
    streaming: bool


@cache
def _load(surface: str) -> dict[str, Any]:
    if surface not in SURFACES:
        raise ValueError(f"unknown surface {surface!r}; expected one of {', '.join(SURFACES)}")
    import yaml  # here: importing the spec package costs nothing until a document is read

    with (SPEC_DIR / f"{surface}.yaml").open(encoding="utf-8") as fh:
        return yaml.load(fh, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))  # libyaml: 9x faster


def document(surface: str) -> dict[str, Any]:
    """The parsed OpenAPI document of a surface, `$ref`s left as they are (a copy: callers may mutate it)."""
    return copy.deepcopy(_load(surface))


def media_type_base(media_type: str) -> str:
    """`application/json; charset=utf-8` -> `application/json`."""
    return media_type.split(";", 1)[0].strip().lower()


def _is_streaming(op: dict[str, Any]) -> bool:
    for response in op.get("responses", {}).values():
        for media_type, media in (response.get("content") or {}).items():
            if "x-stream" in media or media_type_base(media_type) in STREAM_MEDIA_TYPES:
                return True
    return False


@cache
def _operations() -> tuple[Operation, ...]:
    found = []
    for surface in SURFACES:
        for path, item in _load(surface).get("paths", {}).items():
            for method in HTTP_METHODS:
                op = item.get(method)
                if op is None:
                    continue
                found.append(
                    Operation(
                        surface=surface,
                        method=method.upper(),
                        path=path,
                        operation_id=op["operationId"],
                        cloud_only=bool(op.get("x-cloud-only", item.get("x-cloud-only", False))),
                        streaming=_is_streaming(op),
                    )
                )
    return tuple(found)


def operations() -> list[Operation]:
    """Every operation of every surface, in document order."""
    return list(_operations())


@cache
def _template_regex(template: str) -> re.Pattern[str]:
    parts = re.split(r"(\{[^/{}]+\})", template)
    pattern = "".join("[^/]+" if p.startswith("{") and p.endswith("}") else re.escape(p) for p in parts)
    return re.compile(f"^{pattern}$")


def find_path(path: str) -> tuple[str, str] | None:
    """(surface, template) for a template or a concrete path (query string ignored); None if no route matches."""
    path = path.split("?", 1)[0]
    for surface in SURFACES:
        if path in _load(surface).get("paths", {}):
            return surface, path
    for surface in SURFACES:
        for template in _load(surface).get("paths", {}):
            if "{" in template and _template_regex(template).match(path):
                return surface, template
    return None


def find_operation(method: str, path: str) -> tuple[str, str, dict[str, Any]] | None:
    """(surface, template, raw operation object) for a method and a path, or None."""
    found = find_path(path)
    if found is None:
        return None
    surface, template = found
    op = _load(surface)["paths"][template].get(method.lower())
    if op is None:
        return None
    return surface, template, op
