"""The HTTP surfaces: native /api, OpenAI /v1, Responses and Anthropic adapters over one core (core.py)."""
