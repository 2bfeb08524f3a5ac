"""The conformance suite: the pytest plugin, its test modules (suite/), the Target, and `check`.

The plugin (plugin.py) is loaded by pytest's entry point, so this package must stay cheap to import."""

from __future__ import annotations

import importlib
from typing import Any

# public name -> the private module that defines it; imported on first use, so importing the package stays cheap
_EXPORTS = {
    "CheckOptions": ".runner",
    "Target": ".target",
    "run_check": ".runner",
    "warm_up": ".warmup",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name], __name__), name)
