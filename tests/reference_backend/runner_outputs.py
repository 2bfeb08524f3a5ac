"""The serving loop's output tokens for a batch of requests submitted together (engine tests)."""

from __future__ import annotations

from ollama_conformance.reference_backend.engine.generate import DoneEvent, GenerationRequest, TextRunner


async def output_tokens(runner: TextRunner, requests: list[GenerationRequest]) -> list[list[int]]:
    """Submit every request at once (so they share decode steps), then each one's tokens once it is done."""
    queues = [runner.submit(request) for request in requests]
    outputs = []
    for events in queues:
        while not isinstance(event := await events.get(), DoneEvent):
            pass
        outputs.append(event.output_tokens)
    return outputs
