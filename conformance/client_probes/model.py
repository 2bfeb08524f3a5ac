"""What a client probe produces: per client, its scenarios with the step that broke and the client's exception."""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any

CLIENTS = ("ollama-python", "openai-python", "anthropic-python", "ollama-js", "openai-js")
SEED = 42
CAP = 16  # output tokens per request: the scenarios judge the client's handling, not the text
TOOL = {
    "name": "get_weather",
    "description": "Get the current weather in a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}
ANSWER_SCHEMA = {"type": "object", "properties": {"answer": {"type": "boolean"}}, "required": ["answer"]}


class ProbeFailure(AssertionError):
    """The client completed the call but what it returned is not what a user of the client gets from Ollama."""


@dataclass
class ScenarioResult:
    name: str
    status: str  # pass | fail
    step: str = ""  # the client call that broke, as a user would write it
    exception: str = ""  # the exception's type (module.Class) and first line
    duration_s: float = 0.0


@dataclass
class ClientResult:
    client: str
    language: str
    version: str | None
    state: str  # ran | not_applicable | error
    reason: str = ""
    scenarios: list[ScenarioResult] = field(default_factory=list)

    @property
    def passed(self) -> int:
        return sum(1 for s in self.scenarios if s.status == "pass")

    def summary(self) -> str:
        name = f"{self.client} {self.version or ''}".strip()
        if self.state != "ran":
            return f"{name}: {self.state.replace('_', ' ')} ({self.reason})"
        return f"{name}: {self.passed}/{len(self.scenarios)}"

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data.update(passed=self.passed, total=len(self.scenarios))
        return data


def exception_text(exc: BaseException) -> str:
    kind = type(exc)
    module = kind.__module__.split(".")[0]
    first = (str(exc).strip().splitlines() or [""])[0][:300]
    return f"{module}.{kind.__name__}: {first}" if module != "builtins" else f"{kind.__name__}: {first}"


class Steps:
    """Records the client call in progress, so a failure says which one broke."""

    def __init__(self) -> None:
        self.current = ""

    @contextmanager
    def __call__(self, call: str) -> Iterator[None]:
        self.current = call
        yield


def check(condition: bool, message: str) -> None:
    if not condition:
        raise ProbeFailure(message)


def run_scenarios(scenarios: list[tuple[str, Callable[[Steps], None]]]) -> list[ScenarioResult]:
    results = []
    for name, scenario in scenarios:
        steps = Steps()
        started = time.monotonic()
        try:
            scenario(steps)
            status, exception = "pass", ""
        except ProbeFailure as exc:
            status, exception = "fail", f"not as Ollama: {exc}"
        except Exception as exc:  # the client's own exception: exactly what a user would see
            status, exception = "fail", exception_text(exc)
            if not exception.strip(": "):
                exception = traceback.format_exc(limit=1)[-300:]
        results.append(ScenarioResult(name, status, steps.current if status != "pass" else "", exception,
                                      round(time.monotonic() - started, 3)))
    return results
