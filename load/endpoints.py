"""What to send: the path and JSON body of each (surface, endpoint), and the prompts.

Output length is capped the way each surface allows (`options.num_predict` natively, `max_tokens` on /v1); Ollama
has no `ignore_eos`, so a server may stop earlier and N_out always comes from the server's own count. /v1 streams
ask for `stream_options.include_usage` so that count exists.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ollama_conformance.errors import UsageError

PATHS: dict[tuple[str, str], str] = {
    ("native", "chat"): "/api/chat",
    ("native", "generate"): "/api/generate",
    ("native", "embed"): "/api/embed",
    ("openai", "chat"): "/v1/chat/completions",
    ("openai", "completions"): "/v1/completions",
    ("openai", "embed"): "/v1/embeddings",
}

# a word that is one token in common tokenizers, for --input-tokens
FILLER_WORD = " hello"


@dataclass(frozen=True)
class EndpointSpec:
    surface: str
    endpoint: str
    model: str
    output_tokens: int | None = None
    seed: int | None = None

    @property
    def path(self) -> str:
        return PATHS[(self.surface, self.endpoint)]

    @property
    def streaming(self) -> bool:
        return self.endpoint != "embed"

    @property
    def sse(self) -> bool:
        return self.surface == "openai"

    def body(self, prompt: str, output_tokens: int | None = None,
             messages: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        """The request body: `prompt` as the one user message (or `messages`, a whole history, for chat), output
        capped at `output_tokens` (default: the spec's cap)."""
        if self.endpoint == "embed":
            return {"model": self.model, "input": prompt}
        cap = output_tokens if output_tokens is not None else self.output_tokens
        chat = messages if messages is not None else [{"role": "user", "content": prompt}]
        if self.surface == "native":
            options: dict[str, Any] = {}
            if cap is not None:
                options["num_predict"] = cap
            if self.seed is not None:
                options["seed"] = self.seed
            body: dict[str, Any] = {"model": self.model, "stream": True}
            if self.endpoint == "chat":
                body["messages"] = chat
            else:
                body["prompt"] = prompt
            if options:
                body["options"] = options
            return body
        body = {"model": self.model, "stream": True, "stream_options": {"include_usage": True}}
        if self.endpoint == "chat":
            body["messages"] = chat
        else:
            body["prompt"] = prompt
        if cap is not None:
            body["max_tokens"] = cap
        if self.seed is not None:
            body["seed"] = self.seed
        return body


def endpoint_spec(surface: str, endpoint: str, model: str, output_tokens: int | None, seed: int | None) -> EndpointSpec:
    if (surface, endpoint) not in PATHS:
        valid = ", ".join(f"{s}/{e}" for s, e in PATHS)
        raise UsageError(f"no endpoint {endpoint!r} on surface {surface!r} (valid: {valid})")
    return EndpointSpec(surface, endpoint, model, output_tokens, seed)


def load_prompts(path: str | None, input_tokens: int | None) -> list[str]:
    """Prompts from a file (one per line, or JSONL objects with "prompt"), else one of about N filler tokens."""
    if path is None:
        n = input_tokens if input_tokens is not None else 16
        if n < 1:
            raise UsageError("--input-tokens must be at least 1")
        return ["Count:" + FILLER_WORD * (n - 1)]
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot read prompts file {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise UsageError(f"prompts file {path} is not UTF-8 text") from None
    prompts: list[str] = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        if line.lstrip().startswith("{"):
            try:
                obj = json.loads(line)
            except ValueError:
                raise UsageError(f"{path}:{number}: invalid JSON line") from None
            if not isinstance(obj, dict) or not isinstance(obj.get("prompt"), str):
                raise UsageError(f'{path}:{number}: a JSON line needs a string "prompt"')
            prompts.append(obj["prompt"])
        else:
            prompts.append(line)
    if not prompts:
        raise UsageError(f"prompts file {path} holds no prompt")
    return prompts
