"""The load harness: locust users for NDJSON and SSE streams, schedules, samples, metrics, telemetry, `bench`."""

from ollama_conformance.lazy import lazy_exports

# public name -> the private module that defines it
__all__, __getattr__ = lazy_exports(__name__, {
    "BenchOptions": ".runner",
    "run_bench": ".runner",
})
