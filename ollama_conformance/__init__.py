"""ollama-conformance: the conformance suite and benchmarking harness for the Ollama HTTP API.

Subpackages: spec, conformance, load, reports, reference_backend, fixtures (each states its public API).
"""

from typing import Any

from ollama_conformance.errors import TargetError, UsageError

__all__ = ["TargetError", "UsageError", "__version__"]


def __getattr__(name: str) -> Any:
    """`__version__` is read from the installed metadata on first use (importlib.metadata costs a start-up)."""
    if name != "__version__":
        raise AttributeError(f"module 'ollama_conformance' has no attribute {name!r}")
    from importlib.metadata import PackageNotFoundError, version

    try:
        found = version("ollama-conformance")
    except PackageNotFoundError:  # running from a source tree that was not installed
        found = "0.0.0"
    globals()["__version__"] = found
    return found
