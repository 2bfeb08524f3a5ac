"""Runtime options (`options` in a request, `PARAMETER`s in a Modelfile) with Ollama's defaults and type errors.

Ollama converts the options map with reflection (api.Options.FromMap): a wrong JSON type is an error whose text
the server returns with status 500; unknown keys are ignored; ints accept any JSON number (truncated).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any


class OptionError(ValueError):
    """An option of the wrong type: Ollama answers 500 with this message."""


@dataclass
class Options:
    num_keep: int = 4
    seed: int = -1
    num_predict: int = -1
    top_k: int = 40
    top_p: float = 0.9
    min_p: float = 0.0
    typical_p: float = 1.0
    repeat_last_n: int = 64
    temperature: float = 0.8
    repeat_penalty: float = 1.0
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    stop: list[str] = field(default_factory=list)
    num_ctx: int = 4096
    num_batch: int = 512
    num_gpu: int = -1
    main_gpu: int = 0
    num_thread: int = 0
    use_mmap: bool | None = None
    draft_num_predict: int = 0

    def apply(self, values: dict[str, Any] | None) -> Options:
        """Overlay a request's or a Modelfile's options onto these, checking types as Ollama does."""
        if not values:
            return self
        kinds = {f.name: f.type for f in fields(self)}
        for key, value in values.items():
            kind = kinds.get(key)
            if kind is None or value is None:
                continue  # unknown keys are ignored (Ollama logs a warning)
            if kind == "int":
                if isinstance(value, bool) or not isinstance(value, int | float):
                    raise OptionError(f'option "{key}" must be of type integer')
                setattr(self, key, int(value))
            elif kind == "float":
                if isinstance(value, bool) or not isinstance(value, int | float):
                    raise OptionError(f'option "{key}" must be of type float32')
                setattr(self, key, float(value))
            elif kind.startswith("bool"):
                if not isinstance(value, bool):
                    raise OptionError(f'option "{key}" must be of type boolean')
                setattr(self, key, value)
            elif kind.startswith("list"):
                if not isinstance(value, list):
                    raise OptionError(f'option "{key}" must be of type array')
                if not all(isinstance(item, str) for item in value):
                    raise OptionError(f'option "{key}" must be of an array of strings')
                setattr(self, key, list(value))
        return self


def parse_parameters(params: dict[str, Any]) -> dict[str, Any]:
    """A params layer (Modelfile PARAMETERs, JSON) as an options map."""
    return dict(params)


def format_parameters(params: dict[str, Any]) -> str:
    """The text /api/show returns in `parameters`: Go's `%-30s %#v` per value, one line each."""
    lines = []
    for key, value in params.items():
        values = value if isinstance(value, list) else [value]
        for item in values:
            if isinstance(item, str):
                import json

                rendered = json.dumps(item)
            elif isinstance(item, bool):
                rendered = "true" if item else "false"
            else:
                rendered = repr(item) if not (isinstance(item, float) and item.is_integer()) else str(int(item))
            lines.append(f"{key:<30} {rendered}")
    return "\n".join(lines)
