"""ollama-conformance: the conformance suite and benchmarking harness for the Ollama HTTP API."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("ollama-conformance")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0"
