"""Ollama Cloud: the cloud mode (auth, web search/fetch corpus) and routing of cloud models."""
