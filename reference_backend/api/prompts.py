"""Prompt rendering: the shipped Gemma chat template (jinja) and the subset of Go templates a request's
`template` field uses (`{{ .System }}`, `{{ .Prompt }}`, `{{ .Response }}`, `{{ if .X }}…{{ else }}…{{ end }}`,
`{{-`/`-}}` trimming), which is what generate's `template` override needs.
"""

from __future__ import annotations

import functools
import json
import re
from typing import Any

import jinja2

from ollama_conformance.reference_backend.store import bundled


class TemplateError(ValueError):
    pass


@functools.lru_cache(maxsize=1)
def _gemma_template() -> jinja2.Template:
    env = jinja2.Environment(autoescape=False, keep_trailing_newline=True)
    env.policies["json.dumps_kwargs"] = {"ensure_ascii": False, "sort_keys": False}
    return env.from_string(bundled.template_text("gemma3.jinja"))


def render_chat(messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None) -> str:
    """The prompt text for a chat (BOS is added by the tokenizer, as llama.cpp does)."""
    normalized = []
    for message in messages:
        calls = []
        for call in message.get("tool_calls") or []:
            function = call.get("function") or {}
            calls.append({"function": {"name": function.get("name", ""), "arguments": function.get("arguments") or {}}})
        normalized.append(
            {"role": message.get("role", "user"), "content": message.get("content") or "", "tool_calls": calls}
        )
    return _gemma_template().render(messages=normalized, tools=tools or None)


_ACTION = re.compile(r"\{\{(-?)\s*(.*?)\s*(-?)\}\}", re.S)


def render_go_template(template: str, values: dict[str, str]) -> str:
    """Renders the Go-template subset with .System / .Prompt / .Response (unknown fields render as empty)."""
    tokens: list[tuple[str, str]] = []
    pos = 0
    for match in _ACTION.finditer(template):
        text = template[pos : match.start()]
        if match.group(1):
            text = text.rstrip()
        if tokens and tokens[-1][0] == "trim_next":
            tokens.pop()
            text = text.lstrip()
        tokens.append(("text", text))
        tokens.append(("action", match.group(2)))
        if match.group(3):
            tokens.append(("trim_next", ""))
        pos = match.end()
    tail = template[pos:]
    if tokens and tokens[-1][0] == "trim_next":
        tokens.pop()
        tail = tail.lstrip()
    tokens.append(("text", tail))

    out: list[str] = []
    stack: list[tuple[bool, bool]] = []  # (this branch active, parent active)

    def active() -> bool:
        return all(branch for branch, _ in stack)

    def value(expr: str) -> str:
        expr = expr.strip()
        if not expr.startswith("."):
            raise TemplateError(f"template: unsupported expression {expr!r}")
        return values.get(expr[1:], "")

    for kind, text in tokens:
        if kind == "text":
            if active():
                out.append(text)
            continue
        if text.startswith("/*"):
            continue
        if text.startswith("if "):
            stack.append((bool(value(text[3:])), active()))
        elif text == "else":
            if not stack:
                raise TemplateError("template: unexpected {{else}}")
            branch, parent = stack.pop()
            stack.append((not branch, parent))
        elif text.startswith("else if "):
            branch, parent = stack.pop()
            stack.append((not branch and bool(value(text[8:])), parent))
        elif text == "end":
            if not stack:
                raise TemplateError("template: unexpected {{end}}")
            stack.pop()
        elif active():
            out.append(value(text))
    if stack:
        raise TemplateError("template: unexpected EOF")
    return "".join(out)


def tools_json(tools: list[dict[str, Any]]) -> str:
    return "\n".join(json.dumps(tool, ensure_ascii=False) for tool in tools)
