"""Arrival schedules for open-loop runs, and the duration / SLO strings of the command line."""

from __future__ import annotations

import random
import re
from collections.abc import Iterator

from ollama_conformance.errors import UsageError

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_UNITS = {"ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


def parse_duration(text: str, what: str = "duration") -> float:
    """'60s', '1.5m', '500ms', '10' (seconds) -> seconds."""
    m = _DURATION.match(str(text))
    if not m:
        raise UsageError(f"invalid {what} {text!r}: use e.g. 500ms, 10s, 2m")
    return float(m.group(1)) * _UNITS[m.group(2)]


def parse_arrival(text: str) -> tuple[str, float]:
    """'poisson' | 'constant' | 'gamma:K' -> (kind, shape). Poisson is gamma with shape 1."""
    if text == "poisson":
        return "gamma", 1.0
    if text == "constant":
        return "constant", 0.0
    if text.startswith("gamma:"):
        try:
            shape = float(text[6:])
        except ValueError:
            shape = -1.0
        if shape <= 0:
            raise UsageError(f"invalid arrival {text!r}: gamma:K needs K > 0 (K < 1 burstier, K > 1 smoother)")
        return "gamma", shape
    raise UsageError(f"invalid arrival {text!r}: use poisson, constant or gamma:K")


def inter_arrivals(rate: float, arrival: str, seed: int) -> Iterator[float]:
    """Seconds between successive intended starts, for `rate` requests/s (seeded: the same run is reproducible).

    Gamma with shape K and scale 1/(rate*K) has mean 1/rate; K = 1 is Poisson (exponential gaps).
    """
    if rate <= 0:
        raise UsageError("--rate values must be > 0")
    kind, shape = parse_arrival(arrival)
    rng = random.Random(seed)
    while True:
        if kind == "constant":
            yield 1.0 / rate
        else:
            yield rng.gammavariate(shape, 1.0 / (rate * shape))


def parse_slo(text: str | None) -> dict[str, float]:
    """'ttft=500ms,itl=50ms,e2e=5s' -> {'ttft_ms': 500.0, 'itl_ms': 50.0, 'e2e_ms': 5000.0}."""
    if not text:
        return {}
    out: dict[str, float] = {}
    for part in text.split(","):
        key, sep, value = part.partition("=")
        key = key.strip().lower()
        if not sep or key not in ("ttft", "itl", "e2e"):
            raise UsageError(f"invalid SLO {part!r}: use ttft=500ms,itl=50ms,e2e=5s")
        out[f"{key}_ms"] = parse_duration(value, f"SLO {key}") * 1000.0
    return out


def parse_list(text: str, what: str) -> list[float]:
    """'1,2,4' -> [1.0, 2.0, 4.0] (each > 0)."""
    values: list[float] = []
    for part in str(text).split(","):
        try:
            v = float(part)
        except ValueError:
            raise UsageError(f"invalid {what} {part!r}: use a comma-separated list of numbers") from None
        if v <= 0:
            raise UsageError(f"{what} values must be > 0, got {part}")
        values.append(v)
    return values
