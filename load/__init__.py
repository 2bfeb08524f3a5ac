"""The load harness: locust users for NDJSON and SSE streams, schedules, samples, metrics, telemetry, `bench`."""

from __future__ import annotations

import importlib
from typing import Any

# public name -> the private module that defines it; imported on first use, so importing the package stays cheap
_EXPORTS = {
    "BenchOptions": ".runner",
    "run_bench": ".runner",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name], __name__), name)
