"""Inline local `$ref`s so a schema is usable on its own with jsonschema (Draft 2020-12)."""

from __future__ import annotations

from typing import Any

# A recursive reference is cut at its second appearance on one branch and replaced by this permissive schema,
# so resolution always terminates; no schema of ours recurses through a field that carries data we check.
RECURSION_STUB: dict[str, Any] = {"description": "recursive reference (not expanded)"}


def _pointer(document: dict[str, Any], ref: str) -> Any:
    if not ref.startswith("#/"):
        raise ValueError(f"only local $refs are supported, got {ref!r}")
    node: Any = document
    for raw in ref[2:].split("/"):
        key = raw.replace("~1", "/").replace("~0", "~")
        if isinstance(node, list):
            node = node[int(key)]
        elif isinstance(node, dict) and key in node:
            node = node[key]
        else:
            raise KeyError(f"$ref {ref!r} does not resolve")
    return node


def resolve(node: Any, document: dict[str, Any], _stack: tuple[str, ...] = ()) -> Any:
    """A copy of `node` with every `$ref` replaced by its target (sibling keywords kept beside it)."""
    if isinstance(node, list):
        return [resolve(item, document, _stack) for item in node]
    if not isinstance(node, dict):
        return node
    ref = node.get("$ref")
    if isinstance(ref, str):
        if ref in _stack:
            return dict(RECURSION_STUB)
        target = resolve(_pointer(document, ref), document, (*_stack, ref))
        siblings = {k: resolve(v, document, _stack) for k, v in node.items() if k != "$ref"}
        if not siblings:
            return target
        return {"allOf": [target], **siblings}
    return {key: resolve(value, document, _stack) for key, value in node.items()}


def unresolved_refs(node: Any, document: dict[str, Any], where: str = "$") -> list[str]:
    """Every `$ref` under `node` that does not resolve, as 'where: ref'."""
    problems: list[str] = []
    if isinstance(node, list):
        for i, item in enumerate(node):
            problems += unresolved_refs(item, document, f"{where}[{i}]")
    elif isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str):
            try:
                _pointer(document, ref)
            except (KeyError, ValueError, IndexError) as exc:
                problems.append(f"{where}: {exc}")
        for key, value in node.items():
            if key != "$ref":
                problems += unresolved_refs(value, document, f"{where}.{key}")
    return problems
