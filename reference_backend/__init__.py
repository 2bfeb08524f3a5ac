"""The bundled Ollama-compatible server on PyTorch (`serve`): api/ over engine/ and store/, and cloud/.

Nothing here imports torch until a server is built or a model is loaded."""

from ollama_conformance.lazy import lazy_exports

# public name -> the private module that defines it
__all__, __getattr__ = lazy_exports(
    __name__,
    {
        "ReferenceBackend": ".launcher",
        "ServerConfig": ".config",
        "build_app": ".app",
    },
)
