"""ollama-conformance: the conformance suite and benchmarking harness for the Ollama HTTP API.

Subpackages: spec, conformance, load, reports, reference_backend, fixtures (each states its public API).
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("ollama-conformance")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0"

from ollama_conformance.errors import TargetError, UsageError

__all__ = ["TargetError", "UsageError", "__version__"]
