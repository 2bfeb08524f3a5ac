"""The conformance suite: the pytest plugin, its test modules (suite/), the Target, and `check`.

The plugin (plugin.py) is loaded by pytest's entry point, so this package must stay cheap to import."""

from ollama_conformance.lazy import lazy_exports

# public name -> the private module that defines it
__all__, __getattr__ = lazy_exports(__name__, {
    "CheckOptions": ".runner",
    "Target": ".target",
    "run_check": ".runner",
    "warm_up": ".warmup",
})
