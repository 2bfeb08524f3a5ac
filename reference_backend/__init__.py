"""The bundled Ollama-compatible server on PyTorch (`serve`): api/ over engine/ and store/, and cloud/.

Nothing here imports torch until a server is built or a model is loaded."""

from __future__ import annotations

import importlib
from typing import Any

# public name -> the private module that defines it; imported on first use, so importing the package stays cheap
_EXPORTS = {
    "ReferenceBackend": ".launcher",
    "ServerConfig": ".config",
    "build_app": ".app",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name], __name__), name)
