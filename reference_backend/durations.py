"""keep_alive values as Ollama reads them: Go's time.ParseDuration for strings, seconds for numbers.

Error messages are Go's, because clients and the suite compare them (`time: invalid duration "abc"`).
A negative duration means "keep loaded forever" and is returned as math.inf.
"""

from __future__ import annotations

import math
import re

_UNITS_NS = {
    "ns": 1,
    "us": 1_000,
    "µs": 1_000,
    "μs": 1_000,
    "ms": 1_000_000,
    "s": 10**9,
    "m": 60 * 10**9,
    "h": 3600 * 10**9,
}
_PART = re.compile(r"(\d*\.?\d*)([^\d.]*)")


class DurationError(ValueError):
    pass


def parse_go_duration(text: str) -> float:
    """Seconds for a Go duration string ("5m", "1h30m", "-1s", "0", "1.5h")."""
    original = text
    if text == "":
        raise DurationError(f'time: invalid duration "{original}"')
    sign = 1.0
    if text[0] in "+-":
        sign = -1.0 if text[0] == "-" else 1.0
        text = text[1:]
    if text == "0":
        return 0.0
    if text == "":
        raise DurationError(f'time: invalid duration "{original}"')
    total_ns = 0.0
    pos = 0
    while pos < len(text):
        match = _PART.match(text, pos)
        if match is None or match.end() == pos:
            raise DurationError(f'time: invalid duration "{original}"')
        number, unit = match.group(1), match.group(2)
        if number in ("", "."):
            raise DurationError(f'time: invalid duration "{original}"')
        if unit == "":
            raise DurationError(f'time: missing unit in duration "{original}"')
        if unit not in _UNITS_NS:
            raise DurationError(f'time: unknown unit "{unit}" in duration "{original}"')
        total_ns += float(number) * _UNITS_NS[unit]
        pos = match.end()
    return sign * total_ns / 1e9


def parse_keep_alive(value: object) -> float | None:
    """A request's keep_alive: None when absent/null, math.inf when negative, else seconds."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise DurationError("Unsupported type: 'bool'")
    if isinstance(value, int | float):
        return math.inf if value < 0 else float(value)
    if isinstance(value, str):
        seconds = parse_go_duration(value)
        return math.inf if seconds < 0 else seconds
    go_type = {list: "[]interface {}", dict: "map[string]interface {}"}.get(type(value), type(value).__name__)
    raise DurationError(f"Unsupported type: '{go_type}'")


def parse_env_keep_alive(value: str) -> float:
    """OLLAMA_KEEP_ALIVE: a Go duration, or else a bare integer number of seconds."""
    try:
        seconds = parse_go_duration(value)
    except DurationError:
        try:
            seconds = float(int(value))
        except ValueError as exc:
            raise DurationError(f'time: invalid duration "{value}"') from exc
    return math.inf if seconds < 0 else seconds
