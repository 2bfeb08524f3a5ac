"""A small OCI distribution registry: the part of the API Ollama's pull and push use (see server.py)."""
