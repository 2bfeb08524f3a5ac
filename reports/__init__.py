"""Reports from check and bench results: Markdown, HTML, JSON summary, badge; `compare` and the history."""

from ollama_conformance.lazy import lazy_exports

# public name -> the private module that defines it
__all__, __getattr__ = lazy_exports(__name__, {
    "ResultSet": ".results",
    "compare": ".compare",
    "load_paths": ".results",
    "render_compare_markdown": ".compare",
    "write_reports": ".writer",
})
