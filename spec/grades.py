"""The two grades of a schema: *compatible* (what the official clients rely on) and *exact* (Ollama 0.33 itself).

A spec schema is the compatible one. Where Ollama is stricter than any client needs (its id formats, a string
where the OpenAI schema allows null, a field it omits instead of sending null), the schema carries the stricter
rule under the keyword `x-exact`: a subschema that holds only at the exact grade. JSON Schema validators ignore
`x-` keywords, so the plain schema is the compatible grade; `exact_form` folds every `x-exact` into an `allOf`.

    id: {type: string, x-exact: {pattern: "^msg_[0-9a-f]{24}$"}}
"""

from __future__ import annotations

from typing import Any, Literal

Grade = Literal["compatible", "exact"]
GRADES: tuple[Grade, ...] = ("compatible", "exact")
EXACT_KEY = "x-exact"



COMPOSITION = ("allOf", "anyOf", "oneOf")


def exact_form(schema: Any, *, closed: bool = False) -> Any:
    """`schema` with every `x-exact` subschema required as well (allOf). `closed` (for what Ollama sends, not for
    what clients send it) also closes the field set: an object carries no property its schema does not name
    (Ollama sends none; clients ignore them, so the compatible grade allows them). An object schema that says
    `additionalProperties` keeps its own rule."""
    if not closed and not has_exact_rules(schema):
        return schema
    return _fold(schema, branch=False, closed=closed)


def _fold(node: Any, *, branch: bool, closed: bool) -> Any:
    if isinstance(node, list):
        return [_fold(item, branch=branch, closed=closed) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: _fold(value, branch=key in COMPOSITION, closed=closed) for key, value in node.items() if key != EXACT_KEY}
    if EXACT_KEY in node:
        out["allOf"] = [*out.get("allOf", []), _fold(node[EXACT_KEY], branch=True, closed=closed)]
    if not closed:
        return out
    # closed where the object's whole schema is known: not in a branch of a composition, whose siblings and
    # parent may name more properties (`unevaluatedProperties` sees the properties every applied branch names)
    if not branch and "properties" in node and "additionalProperties" not in node and "unevaluatedProperties" not in node:
        out["unevaluatedProperties"] = False
    return out


def has_exact_rules(schema: Any) -> bool:
    if isinstance(schema, dict):
        return EXACT_KEY in schema or any(has_exact_rules(v) for v in schema.values())
    if isinstance(schema, list):
        return any(has_exact_rules(v) for v in schema)
    return False
