"""Finds tool calls in a chat answer: a JSON object `{"name": <tool>, "arguments": {...}}` (our Gemma template's
call syntax). Text that may still become a call is held back; a finished call becomes Ollama's ToolCall
(`id` call_xxxxxxxx, `function.index`, `function.name`, `function.arguments` as an object)."""

from __future__ import annotations

import json
import secrets
import string
from typing import Any

_ID_ALPHABET = string.ascii_lowercase + string.digits
_decoder = json.JSONDecoder()


def new_call_id() -> str:
    return "call_" + "".join(secrets.choice(_ID_ALPHABET) for _ in range(8))


class ToolCallParser:
    def __init__(self, tools: list[dict[str, Any]]) -> None:
        self.names = {(t.get("function") or {}).get("name") for t in tools if isinstance(t, dict)}
        self.buffer = ""
        self.index = 0

    def feed(self, text: str) -> tuple[str, list[dict[str, Any]]]:
        """Returns (content to send now, finished calls)."""
        self.buffer += text
        content, calls = "", []
        while self.buffer:
            start = self.buffer.find("{")
            if start < 0:
                content += self.buffer
                self.buffer = ""
                break
            content += self.buffer[:start]
            self.buffer = self.buffer[start:]
            try:
                value, end = _decoder.raw_decode(self.buffer)
            except json.JSONDecodeError:
                if self._may_become_call(self.buffer):
                    break  # wait for more text
                content += self.buffer[0]
                self.buffer = self.buffer[1:]
                continue
            call = self._as_call(value)
            if call is None:
                content += self.buffer[:end]
            else:
                calls.append(call)
            self.buffer = self.buffer[end:]
        return content, calls

    def finish(self) -> tuple[str, list[dict[str, Any]]]:
        rest, self.buffer = self.buffer, ""
        return rest, []

    def _may_become_call(self, text: str) -> bool:
        compact = "".join(text.split())
        prefix = '{"name":'
        return compact.startswith(prefix) or prefix.startswith(compact)

    def _as_call(self, value: Any) -> dict[str, Any] | None:
        if not isinstance(value, dict) or value.get("name") not in self.names:
            return None
        arguments = value.get("arguments", value.get("parameters", {}))
        if not isinstance(arguments, dict):
            return None
        call = {"id": new_call_id(), "function": {"index": self.index, "name": value["name"], "arguments": arguments}}
        self.index += 1
        return call
