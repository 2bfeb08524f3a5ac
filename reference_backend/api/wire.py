"""Go's wire format for every HTTP surface: the one Go-JSON encoder, the one JSON response, body decoding and
the one Go struct binder, all with the texts Go's encoding/json and gin produce. Needs no torch.

Ollama encodes with Go's encoding/json, which escapes <, >, & (and U+2028/U+2029) as \\u003c etc.; clients
parse either form, but byte-level comparisons with recordings see the difference, so we encode the same way.
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Mapping
from typing import Any

from starlette.responses import Response

from ollama_conformance.reference_backend.api.errors import RequestError

_GO_ESCAPES = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}
_GO_ESCAPE_TABLE = str.maketrans(_GO_ESCAPES)

JSON = "application/json"
# gin's c.JSON (the native handlers, and Ollama's middlewares answering their own validation errors); bodies that
# pass through the /v1 response writers get the writer's bare `application/json`.
JSON_UTF8 = "application/json; charset=utf-8"


class BodyError(ValueError):
    """A request body that cannot be decoded: status 400 with this message."""


def go_json(obj: Any, *, sort_keys: bool = False) -> str:
    """Compact JSON as Go's json.Marshal writes it. `sort_keys` mimics a Go map (keys sorted). NaN and the
    infinities raise ValueError, as Go's encoder refuses them."""
    # The escaped characters can only occur inside JSON strings, so a plain translation is safe.
    text = json.dumps(obj, ensure_ascii=False, separators=(",", ":"), sort_keys=sort_keys, allow_nan=False)
    return text.translate(_GO_ESCAPE_TABLE)


def json_response(
    obj: Any, status_code: int = 200, content_type: str = JSON_UTF8, *, newline: bool = False
) -> Response:
    """A JSON body as gin's c.JSON writes it, or with `newline` as Go's json.Encoder.Encode does (the /v1 and
    /v1/messages writers): same bytes plus a trailing newline."""
    body = go_json(obj) + "\n" if newline else go_json(obj)
    return Response(body.encode(), status_code=status_code, headers={"content-type": content_type})


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


class GoDecodeError(ValueError):
    """JSON that Python's decoder takes and Go's refuses (NaN, Infinity, numbers beyond float64): Go's text."""


_CONSTANT_ERRORS = {
    "NaN": "invalid character 'N' looking for beginning of value",
    "Infinity": "invalid character 'I' looking for beginning of value",
    "-Infinity": "invalid character 'I' in numeric literal",
}
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_SURROGATE = re.compile("[\ud800-\udfff]")


def _refuse_constant(name: str) -> Any:
    raise GoDecodeError(
        _CONSTANT_ERRORS.get(name, f"invalid character {go_char(name[:1])} looking for beginning of value")
    )


def _float64(literal: str) -> float:
    value = float(literal)
    if math.isinf(value):  # Go: the literal overflows float64
        raise GoDecodeError(f"json: cannot unmarshal number {literal} into Go value of type float64")
    return value


def _int_within_float64(literal: str) -> int:
    if len(literal.lstrip("-")) > 308:
        _float64(literal)
    return int(literal)


def _replace_surrogates(value: Any) -> Any:
    if isinstance(value, str):
        return _SURROGATE.sub("\ufffd", value)
    if isinstance(value, list):
        return [_replace_surrogates(v) for v in value]
    if isinstance(value, dict):
        return {_replace_surrogates(k): _replace_surrogates(v) for k, v in value.items()}
    return value


def go_loads(text: str) -> Any:
    """json.loads with Go's rules: NaN and the infinities are syntax errors and a number beyond float64 a type
    error (GoDecodeError), a lone UTF-16 surrogate escape decodes to U+FFFD (Python keeps the surrogate, which
    then cannot be encoded). JSONDecodeError for other malformed JSON."""
    try:
        value = json.loads(text, parse_constant=_refuse_constant, parse_float=_float64, parse_int=_int_within_float64)
        if _SURROGATE_ESCAPE.search(text):
            value = _replace_surrogates(value)
    except RecursionError:  # Go stops at 10000 levels, Python's decoder near 1000: both refuse with Go's text
        raise GoDecodeError("exceeded max depth") from None
    return value


def decode_body(raw: bytes) -> dict[str, Any]:
    """A JSON object body, with Go's error texts for the common failures."""
    if not raw or not raw.strip():
        raise BodyError("missing request body")
    text = raw.decode("utf-8", errors="replace")  # Go reads invalid UTF-8 in strings as U+FFFD
    try:
        value = go_loads(text)
    except GoDecodeError as exc:
        raise BodyError(str(exc)) from None
    except json.JSONDecodeError as exc:
        raise BodyError(go_syntax_error(text, exc)) from exc
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
                return (
                    f"invalid character {go_char(text[position])} in literal {literal} (expecting {go_char(expected)})"
                )
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


# --- the Go struct binder ---------------------------------------------------------------------------------------


def json_type(value: Any) -> str:
    """The JSON kind Go's decoder names in its errors."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _fits(value: Any, go_type: str) -> bool:
    if go_type == "any":
        return True
    if go_type == "string":
        return isinstance(value, str)
    if go_type == "bool":
        return isinstance(value, bool)
    if go_type == "int":  # Go parses the literal as an integer: 4.0 and 1e3 do not fit
        return isinstance(value, int) and not isinstance(value, bool)
    if go_type in ("float64", "float32"):
        return isinstance(value, int | float) and not isinstance(value, bool)
    if go_type.startswith("[]"):
        return isinstance(value, list)
    return isinstance(value, dict)  # struct, pointer to struct or map


def unmarshal_type_error(struct: str, field: str, value: Any, go_type: str) -> RequestError:
    """Go's UnmarshalTypeError for `value` bound to field `struct.field` of type `go_type`. A number that does not
    fit an integer field is named with its literal (`number 1.5`), any other mismatch by its kind."""
    shown = json_type(value)
    if shown == "number" and go_type == "int":
        shown = f"number {json.dumps(value)}"
    # Go names the pointed-to type: a *T field reports T.
    return RequestError(
        f"json: cannot unmarshal {shown} into Go struct field {struct}.{field} of type {go_type.lstrip('*')}"
    )


def decode_struct(data: Any, struct: str, fields: Mapping[str, str]) -> dict[str, Any]:
    """Bind `data` the way encoding/json fills the Go struct `struct` (e.g. `openai.ChatCompletionRequest`) with
    `fields` (json name -> Go type): keys matched as canonical_keys does, nulls dropped (Go leaves the zero value),
    a value of the wrong JSON type a RequestError with Go's text. Returns the known fields by canonical name."""
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise RequestError(f"json: cannot unmarshal {json_type(data)} into Go value of type {struct}")
    out: dict[str, Any] = {}
    field_struct = struct.split(".")[-1]
    for name, value in canonical_keys(data, tuple(fields)).items():
        if value is None or name not in fields:
            continue
        go_type = fields[name]
        if not _fits(value, go_type):
            raise unmarshal_type_error(field_struct, name, value, go_type)
        out[name] = value
    return out


def parse_json_body(raw: bytes) -> Any:
    """gin's ShouldBindJSON: an empty body is `EOF`, malformed JSON Go's syntax message (both 400)."""
    if not raw.strip():
        raise RequestError("EOF")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RequestError(f"invalid character in request body: {exc.reason}") from None
    try:
        return go_loads(text)
    except GoDecodeError as exc:
        raise RequestError(str(exc)) from None
    except json.JSONDecodeError as exc:
        raise RequestError(go_syntax_error(text, exc)) from None
