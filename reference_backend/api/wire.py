"""Wire details shared by the HTTP surfaces: Go-style JSON encoding, timestamps, request body decoding.

Ollama encodes with Go's encoding/json, which escapes <, >, & (and U+2028/U+2029) as \\u003c etc.; clients
parse either form, but byte-level comparisons with recordings see the difference, so we encode the same way.
"""

from __future__ import annotations

import json
import time
from typing import Any

_GO_ESCAPES = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}
_GO_ESCAPE_TABLE = str.maketrans(_GO_ESCAPES)


class BodyError(ValueError):
    """A request body that cannot be decoded: status 400 with this message."""


def go_json(obj: Any) -> bytes:
    text = json.dumps(obj, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return text.translate(_GO_ESCAPE_TABLE).encode("utf-8")


def rfc3339_nano(ns: int | None = None) -> str:
    """Go's time.RFC3339Nano in UTC: trailing zeros of the fraction dropped, 'Z' suffix."""
    ns = time.time_ns() if ns is None else ns
    seconds, frac = divmod(ns, 1_000_000_000)
    base = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
    fraction = f"{frac:09d}".rstrip("0")
    return f"{base}.{fraction}Z" if fraction else f"{base}Z"


def rfc3339_local(seconds: float) -> str:
    """A wall-clock time as Go prints time.Time in JSON (RFC3339Nano with the local offset)."""
    ns = int(seconds * 1e9)
    whole, frac = divmod(ns, 1_000_000_000)
    local = time.localtime(whole)
    base = time.strftime("%Y-%m-%dT%H:%M:%S", local)
    fraction = f"{frac:09d}".rstrip("0")
    offset = time.strftime("%z", local)
    zone = "Z" if offset in ("+0000", "-0000") else f"{offset[:3]}:{offset[3:]}"
    return f"{base}.{fraction}{zone}" if fraction else f"{base}{zone}"


def decode_body(raw: bytes) -> dict[str, Any]:
    """A JSON object body, with Go's error texts for the common failures."""
    if not raw or not raw.strip():
        raise BodyError("missing request body")
    try:
        value = json.loads(raw)
    except UnicodeDecodeError as exc:
        raise BodyError("invalid character looking for beginning of value") from exc
    except json.JSONDecodeError as exc:
        raise BodyError(go_syntax_error(raw.decode("utf-8", errors="replace"), exc)) from exc
    if value is None:
        return {}
    if not isinstance(value, dict):
        kind = {list: "array", str: "string", bool: "bool"}.get(type(value), "number")
        raise BodyError(f"json: cannot unmarshal {kind} into Go value of type map[string]interface {{}}")
    return value


def go_char(ch: str) -> str:
    """Go's quoteChar, as in its syntax errors: 'x', with the quote itself escaped."""
    return "'\\''" if ch == "'" else f"'{ch}'"


def go_syntax_error(text: str, exc: json.JSONDecodeError) -> str:
    """Go's encoding/json message for the syntax error Python found (the text clients see from Ollama)."""
    if exc.pos >= len(text.rstrip()):
        return "unexpected EOF"
    char = text[exc.pos]
    literal = {"t": "true", "f": "false", "n": "null"}.get(char)
    if exc.msg.startswith("Expecting value") and literal:
        for offset, expected in enumerate(literal):
            position = exc.pos + offset
            if position >= len(text):
                return "unexpected EOF"
            if text[position] != expected:
                return f"invalid character {go_char(text[position])} in literal {literal} (expecting {go_char(expected)})"
    if exc.msg.startswith("Expecting value"):
        return f"invalid character {go_char(char)} looking for beginning of value"
    if exc.msg.startswith("Expecting property name"):
        return f"invalid character {go_char(char)} looking for beginning of object key string"
    if exc.msg.startswith("Expecting ':'"):
        return f"invalid character {go_char(char)} after object key"
    if exc.msg.startswith("Expecting ','"):
        return f"invalid character {go_char(char)} after object key:value pair"
    if exc.msg.startswith("Extra data"):
        return f"invalid character {go_char(char)} after top-level value"
    return f"invalid character {go_char(char)} in string literal" if "control character" in exc.msg else exc.msg


# Go type names for the fields we check, as they appear in "json: cannot unmarshal X into Go struct field ...".
_JSON_KIND = {str: "string", bool: "bool", int: "number", float: "number", list: "array", dict: "object"}


def json_kind(value: Any) -> str:
    return _JSON_KIND.get(type(value), "null")


def canonical_keys(body: dict[str, Any], fields: tuple[str, ...]) -> dict[str, Any]:
    """Go matches JSON keys to struct fields case-insensitively (an exact match wins); unknown keys are dropped
    except those starting with '_' (internal hints between our surfaces)."""
    lower = {f.lower(): f for f in fields}
    out: dict[str, Any] = {}
    exact: set[str] = set()
    for key, value in body.items():
        if key in fields:
            out[key] = value
            exact.add(key)
        elif key.lower() in lower:
            name = lower[key.lower()]
            if name not in exact:
                out[name] = value
        elif key.startswith("_"):
            out[key] = value
    return out
