"""Models on disk: the store in Ollama's layout, model names, the bundled models and their conversion cache."""
