"""Ollama's version history in the spec: `x-ollama-since` / `x-ollama-until`, and schemas as an older version had them.

Annotations (strings are Ollama versions, as in its release tags):

- on a property schema: `x-ollama-since: "0.12.6"` means Ollama has sent (or accepted) the field as described
  since that version; before it, the field could be absent, so it is not required. `x-ollama-until: "0.32.6"`
  means the field was removed in that version: from then on it is not part of the object.
- on a schema that lists `required`: `x-ollama-required-since: {done_reason: "0.1.35"}` for a requirement whose
  property is described elsewhere (an `allOf` member).
- on an operation or any other schema: `x-ollama-since` / `x-ollama-until` record when the route or behaviour
  appeared or went away; `x-ollama-change` says in words what changed. These do not alter validation (the
  schema already admits both forms) but `ollama-conformance spec --since X` lists them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from typing import Any

from ollama_conformance.spec.documents import SPEC_VERSION, SURFACES, _load
from ollama_conformance.spec.grades import EXACT_KEY

SINCE = "x-ollama-since"
UNTIL = "x-ollama-until"
REQUIRED_SINCE = "x-ollama-required-since"
CHANGE = "x-ollama-change"
REMOVED = "x-ollama-removed"  # written by at_version: a removed field's schema, kept for an older version

# Ollama's releases (git tags vX.Y.Z of github.com/ollama/ollama up to v0.33.0-rc2), oldest first: used to name
# "the last version before X" in "valid for <= X".
RELEASES: tuple[str, ...] = tuple(
    ["0.0.1", "0.0.2", "0.0.3", "0.0.4", "0.0.5", "0.0.6", "0.0.7", "0.0.8", "0.0.9", "0.0.10", "0.0.11", "0.0.12", "0.0.13", "0.0.14", "0.0.15", "0.0.16", "0.0.17", "0.0.18", "0.0.19", "0.0.20", "0.0.21", "0.1.0", "0.1.1", "0.1.2", "0.1.3", "0.1.4", "0.1.5", "0.1.6", "0.1.7", "0.1.8", "0.1.9", "0.1.10", "0.1.11", "0.1.12", "0.1.13", "0.1.14", "0.1.15", "0.1.16", "0.1.17", "0.1.18", "0.1.19", "0.1.20", "0.1.21", "0.1.22", "0.1.23", "0.1.24", "0.1.25", "0.1.26", "0.1.27", "0.1.28", "0.1.29", "0.1.30", "0.1.31", "0.1.32", "0.1.33", "0.1.34", "0.1.35", "0.1.36", "0.1.37", "0.1.38", "0.1.39", "0.1.40", "0.1.41", "0.1.42", "0.1.43", "0.1.44", "0.1.45", "0.1.46", "0.1.47", "0.1.48", "0.2.0", "0.2.1", "0.2.2", "0.2.3", "0.2.4", "0.2.5", "0.2.6", "0.2.7", "0.2.8", "0.3.0", "0.3.1", "0.3.2", "0.3.3", "0.3.4", "0.3.5", "0.3.6", "0.3.7", "0.3.8", "0.3.9", "0.3.10", "0.3.11", "0.3.12", "0.3.13", "0.3.14", "0.4.0", "0.4.1", "0.4.2", "0.4.3", "0.4.4", "0.4.5", "0.4.6", "0.4.7", "0.5.0", "0.5.1", "0.5.2", "0.5.3", "0.5.4", "0.5.5", "0.5.6", "0.5.7", "0.5.8", "0.5.9", "0.5.10", "0.5.11", "0.5.12", "0.5.13", "0.6.0", "0.6.1", "0.6.2", "0.6.3", "0.6.4", "0.6.5", "0.6.6", "0.6.7", "0.6.8", "0.7.0", "0.7.1", "0.8.0", "0.9.0", "0.9.1", "0.9.2", "0.9.3", "0.9.4", "0.9.5", "0.9.6", "0.10.0", "0.10.1", "0.11.0", "0.11.1", "0.11.2", "0.11.3", "0.11.4", "0.11.5", "0.11.6", "0.11.7", "0.11.8", "0.11.9", "0.11.10", "0.11.11", "0.12.0", "0.12.1", "0.12.2", "0.12.3", "0.12.4", "0.12.5", "0.12.6", "0.12.7", "0.12.8", "0.12.9", "0.12.10", "0.12.11", "0.13.0", "0.13.1", "0.13.2", "0.13.3", "0.13.4", "0.13.5", "0.14.0", "0.14.1", "0.14.2", "0.14.3", "0.15.0", "0.15.1", "0.15.2", "0.15.3", "0.15.4", "0.15.5", "0.15.6", "0.16.0", "0.16.1", "0.16.2", "0.16.3", "0.17.0", "0.17.1", "0.17.2", "0.17.3", "0.17.4", "0.17.5", "0.17.6", "0.17.7", "0.18.0", "0.18.1", "0.18.2", "0.18.3", "0.19.0", "0.20.0", "0.20.1", "0.20.2", "0.20.3", "0.20.4", "0.20.5", "0.20.6", "0.20.7", "0.21.0", "0.21.1", "0.21.2", "0.22.0", "0.22.1", "0.23.0", "0.23.1", "0.23.2", "0.23.3", "0.23.4", "0.24.0", "0.30.0", "0.30.1", "0.30.2", "0.30.3", "0.30.4", "0.30.5", "0.30.6", "0.30.7", "0.30.8", "0.30.9", "0.30.10", "0.30.11", "0.31.0", "0.31.1", "0.31.2", "0.32.0", "0.32.1", "0.32.2", "0.32.3", "0.32.4", "0.32.5", "0.32.6", "0.32.7", "0.32.8", "0.32.9", "0.32.10", "0.32.11", "0.32.12", "0.32.13", "0.32.14", "0.32.15"]
)

_VERSION = re.compile(r"^v?(\d+)\.(\d+)\.(\d+)(?:-([0-9A-Za-z.-]+))?$")

Version = tuple[int, int, int, int, str]


class VersionError(ValueError):
    """Not an Ollama version (X.Y.Z with an optional -pre-release)."""


def parse_version(text: str) -> Version:
    """A sortable key: 0.33.0-rc2 < 0.33.0 < 0.33.1 (a pre-release sorts before its release)."""
    match = _VERSION.match(text.strip())
    if match is None:
        raise VersionError(f"{text!r} is not an Ollama version (expected X.Y.Z, e.g. 0.12.6 or 0.33.0-rc2)")
    major, minor, patch, pre = match.groups()
    return (int(major), int(minor), int(patch), 0 if pre else 1, _pre_key(pre or ""))


def _pre_key(pre: str) -> str:
    # rc2 < rc10: pad the numbers so the string order is the numeric one
    return re.sub(r"\d+", lambda m: m.group(0).zfill(6), pre)


def older(a: str, b: str) -> bool:
    return parse_version(a) < parse_version(b)


def release_before(version: str) -> str | None:
    """The last release older than `version` (None if there is none)."""
    key = parse_version(version)
    earlier = [r for r in RELEASES if parse_version(r) < key]
    return earlier[-1] if earlier else None


def at_version(schema: Any, version: str | None) -> Any:
    """A copy of a resolved schema as Ollama `version` behaved: fields added later not required, removed fields
    gone. `None`: the spec's own version (the fields removed before it are gone)."""
    return _at(schema, parse_version(version or SPEC_VERSION))


def _at(node: Any, key: Version) -> Any:
    if isinstance(node, list):
        return [_at(item, key) for item in node]
    if not isinstance(node, dict):
        return node
    out = {k: (v if k == "properties" else _at(v, key)) for k, v in node.items()}
    not_required: set[str] = set()
    props = node.get("properties")
    if isinstance(props, dict):
        kept = {}
        for name, sub in props.items():
            if isinstance(sub, dict) and REMOVED in sub:  # removed at a later version than this one: restore it
                sub = sub[REMOVED]
            if isinstance(sub, dict) and UNTIL in sub and key >= parse_version(sub[UNTIL]):
                # gone: any value is another server's field; the schema is kept aside for older versions
                not_required.add(name)
                kept[name] = {UNTIL: sub[UNTIL], REMOVED: sub}
                continue
            if isinstance(sub, dict) and SINCE in sub and key < parse_version(sub[SINCE]):
                not_required.add(name)
            kept[name] = _at(sub, key)
        out["properties"] = kept
    for name, since in (node.get(REQUIRED_SINCE) or {}).items():
        if key < parse_version(since):
            not_required.add(name)
    if not_required and isinstance(node.get("required"), list):
        out["required"] = [name for name in node["required"] if name not in not_required]
    exact = out.get(EXACT_KEY)  # the exact grade's own `required` of the same object follows the same versions
    if not_required and isinstance(exact, dict) and isinstance(exact.get("required"), list):
        out[EXACT_KEY] = {**exact, "required": [name for name in exact["required"] if name not in not_required]}
    return out


def boundaries(schema: Any) -> list[str]:
    """Every version at which something in `schema` changes, newest first."""
    found: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, list):
            for item in node:
                walk(item)
        elif isinstance(node, dict):
            for key in (SINCE, UNTIL):
                if isinstance(node.get(key), str):
                    found.add(node[key])
            for value in (node.get(REQUIRED_SINCE) or {}).values():
                found.add(value)
            for value in node.values():
                walk(value)

    walk(schema)
    return sorted(found, key=parse_version, reverse=True)


def candidate_versions(schema: Any) -> list[str]:
    """Versions worth trying to judge a payload by, newest first: the spec's own, then for each boundary the
    release just before it and the boundary itself (behaviour is constant between boundaries)."""
    out = [SPEC_VERSION]
    for boundary in boundaries(schema):
        for version in (boundary, release_before(boundary)):
            if version and version not in out:
                out.append(version)
    return sorted(out, key=parse_version, reverse=True)


@dataclass(frozen=True)
class Change:
    surface: str
    where: str  # JSON-pointer-like place in the document
    since: str | None
    until: str | None
    text: str  # x-ollama-change, or the description of the annotated node

    @property
    def version(self) -> str:
        return self.until or self.since or ""


@cache
def _changes() -> tuple[Change, ...]:
    found: list[Change] = []
    for surface in SURFACES:
        _collect(_load(surface), surface, (), found)
    return tuple(found)


def _place(keys: tuple[str, ...]) -> str:
    """A readable place: `POST /api/signout`, `ChatStreamFinal.done_reason`, `CompletionChunk.usage`."""
    if len(keys) >= 3 and keys[0] == "paths":
        return f"{keys[2].upper()} {keys[1]}" + "".join(f".{k}" for k in keys[3:])
    if keys[:2] == ("components", "schemas"):
        keys = keys[2:]
    names = [k for k in keys if k not in ("properties", "items", "allOf", "oneOf", "anyOf") and not k.isdigit()]
    return ".".join(names) or "/"


def _collect(node: Any, surface: str, keys: tuple[str, ...], found: list[Change]) -> None:
    if isinstance(node, list):
        for i, item in enumerate(node):
            _collect(item, surface, (*keys, str(i)), found)
        return
    if not isinstance(node, dict):
        return
    since, until = node.get(SINCE), node.get(UNTIL)
    if since or until:
        text = node.get(CHANGE) or node.get("summary") or node.get("description") or ""
        found.append(Change(surface, _place(keys), since, until, " ".join(str(text).split())))
    for name, version in (node.get(REQUIRED_SINCE) or {}).items():
        if not (since == version and CHANGE in node):  # the node's own annotation already says it
            found.append(Change(surface, _place((*keys, name)), version, None, f"{name} always sent"))
    for key, value in node.items():
        if key != REQUIRED_SINCE:
            _collect(value, surface, (*keys, key), found)


def changes(since: str | None = None) -> list[Change]:
    """Every annotated change, oldest first; with `since`, only those after that version (what a server of
    version `since` does differently from the spec's version)."""
    key = parse_version(since) if since is not None else None
    out = [c for c in _changes() if key is None or parse_version(c.version) > key]
    return sorted(out, key=lambda c: (parse_version(c.version), c.surface, c.where))
