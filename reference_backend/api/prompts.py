"""Prompt rendering as Ollama's template package does it: a model's Go template (or a request's) executed over
the values Ollama passes — the messages-based data for templates that use `.Messages`, the legacy per-turn
`.System`/`.Prompt`/`.Response` data otherwise, `.Prompt`/`.Suffix` for fill-in-the-middle — with messages
collated (consecutive same-role messages merged, system messages joined) and tools and tool calls in the
template-facing shapes of ollama/template/template.go.
"""

from __future__ import annotations

import functools
from typing import Any

from ollama_conformance.reference_backend import gotemplate
from ollama_conformance.reference_backend.gotemplate import GoStruct, NilSlice, StringerDict, StringerList

TemplateError = gotemplate.TemplateError
DEFAULT_TEMPLATE = "{{ .Prompt }}"


@functools.lru_cache(maxsize=32)
def parse(text: str) -> gotemplate.Template:
    """template.Parse: Go's parse errors as TemplateError; `{{ .Response }}` appended where Ollama appends it."""
    tmpl = gotemplate.parse(text)
    names = tmpl.identifiers()
    if "messages" not in names and "response" not in names:
        tmpl.nodes.append(
            gotemplate._Action(gotemplate._Pipe([], False, [gotemplate._Command([gotemplate._Field(["Response"])])]))
        )
    return tmpl


def _json_stringer(value: GoStruct) -> str:
    return gotemplate.go_json(value)


class PropertyType(list):  # type: ignore[type-arg]
    """api.PropertyType: one type prints and marshals as a string, several as a list."""

    def go_string(self) -> str:
        return "" if not self else self[0] if len(self) == 1 else "[" + " ".join(self) + "]"

    def go_json(self) -> str:
        return gotemplate.go_json(self[0] if len(self) == 1 else list(self))


def _property(schema: Any) -> GoStruct:
    schema = schema if isinstance(schema, dict) else {}
    raw_type = schema.get("type")
    types = PropertyType([raw_type] if isinstance(raw_type, str) else list(raw_type or []))
    enum = schema.get("enum")
    return GoStruct(
        "api.ToolProperty",
        {
            "AnyOf": NilSlice() if not schema.get("anyOf") else [_property(s) for s in schema["anyOf"]],
            "Type": types,
            "Items": schema.get("items"),
            "Description": schema.get("description") or "",
            "Enum": NilSlice() if enum is None else [_go_number(e) for e in enum],
            "Properties": None,
            "Required": NilSlice() if schema.get("required") is None else list(schema["required"]),
        },
        json_tags={
            "AnyOf": ("anyOf", True),
            "Type": ("type", True),
            "Items": ("items", True),
            "Description": ("description", True),
            "Enum": ("enum", True),
            "Properties": ("properties", True),
            "Required": ("required", True),
        },
    )


def _go_number(value: Any) -> Any:
    """encoding/json decodes a number into `any` as float64."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return float(value)
    if isinstance(value, list):
        return [_go_number(v) for v in value]
    if isinstance(value, dict):
        return {k: _go_number(v) for k, v in value.items()}
    return value


def template_tools(tools: list[dict[str, Any]] | None) -> StringerList | None:
    """convertToolsForTemplate: templateTools, each a templateTool that prints as its JSON."""
    if tools is None:
        return None
    out = StringerList()
    for tool in tools:
        function = tool.get("function") if isinstance(tool.get("function"), dict) else {}
        params = function.get("parameters") if isinstance(function.get("parameters"), dict) else {}
        properties = StringerDict(
            {k: _property(v) for k, v in (params.get("properties") or {}).items()}
            if isinstance(params.get("properties"), dict)
            else {}
        )
        parameters = GoStruct(
            "template.templateToolFunctionParameters",
            {
                "Type": params.get("type") or "",
                "Defs": _go_number(params.get("$defs")),
                "Items": _go_number(params.get("items")),
                "Required": NilSlice() if params.get("required") is None else list(params["required"]),
                "Properties": properties,
            },
            json_tags={
                "Type": ("type", False),
                "Defs": ("$defs", True),
                "Items": ("items", True),
                "Required": ("required", True),
                "Properties": ("properties", False),
            },
        )
        fn = GoStruct(
            "template.templateToolFunction",
            {
                "Name": function.get("name") or "",
                "Description": function.get("description") or "",
                "Parameters": parameters,
            },
            json_tags={
                "Name": ("name", False),
                "Description": ("description", False),
                "Parameters": ("parameters", False),
            },
        )
        out.append(
            GoStruct(
                "template.templateTool",
                {"Type": tool.get("type") or "", "Items": _go_number(tool.get("items")), "Function": fn},
                json_tags={"Type": ("type", False), "Items": ("items", True), "Function": ("function", False)},
                stringer=_json_stringer,
            )
        )
    return out


def _template_message(message: dict[str, Any]) -> GoStruct:
    calls: list[GoStruct] = NilSlice()
    for call in message.get("tool_calls") or []:
        function = call.get("function") if isinstance(call, dict) and isinstance(call.get("function"), dict) else {}
        arguments = function.get("arguments")
        calls.append(
            GoStruct(
                "template.templateToolCall",
                {
                    "ID": call.get("id") or "",
                    "Function": GoStruct(
                        "template.templateToolCallFunction",
                        {
                            "Index": int(function.get("index") or 0),
                            "Name": function.get("name") or "",
                            "Arguments": StringerDict(_go_number(arguments) if isinstance(arguments, dict) else {}),
                        },
                    ),
                },
            )
        )
    if calls:
        calls = list(calls)
    images = message.get("images")
    return GoStruct(
        "template.templateMessage",
        {
            "Role": message.get("role") or "",
            "Content": message.get("content") or "",
            "Thinking": message.get("thinking") or "",
            "Images": list(images) if images else NilSlice(),
            "ToolCalls": calls,
            "ToolName": message.get("tool_name") or "",
            "ToolCallID": message.get("tool_call_id") or "",
        },
        pointer=True,
    )


def collate(messages: list[dict[str, Any]]) -> tuple[str, list[dict[str, Any]]]:
    """Consecutive messages of one role (tool messages excepted) merge with a blank line; system texts are joined."""
    system: list[str] = []
    out: list[dict[str, Any]] = []
    for message in messages:
        role = message.get("role") or ""
        if role == "system":
            system.append(message.get("content") or "")
        if out and out[-1].get("role") == role and role != "tool":
            out[-1] = {**out[-1], "content": (out[-1].get("content") or "") + "\n\n" + (message.get("content") or "")}
        else:
            out.append(dict(message))
    return "\n\n".join(system), out


def _think_values(think: bool | str | None) -> dict[str, Any]:
    is_set = think is not None
    level = "" if think is None else (think if isinstance(think, str) else ("true" if think else "false"))
    return {"Think": think not in (None, False), "ThinkLevel": level, "IsThinkSet": is_set}


def render(
    template_text: str,
    messages: list[dict[str, Any]],
    tools: list[dict[str, Any]] | None = None,
    *,
    prompt: str = "",
    suffix: str = "",
    think: bool | str | None = None,
) -> str:
    """Ollama's Template.Execute over template.Values{Messages, Tools, Prompt, Suffix, Think...}."""
    tmpl = parse(template_text)
    think_values = _think_values(think)
    if prompt and suffix:
        return tmpl.execute({"Prompt": prompt, "Suffix": suffix, "Response": "", **think_values})
    system, collated = collate(messages)
    names = tmpl.identifiers()
    if "messages" in names:
        return tmpl.execute(
            {
                "System": system,
                "Messages": [_template_message(m) for m in collated],
                "Tools": template_tools(tools),
                "Response": "",
                **think_values,
            }
        )
    return _render_legacy(tmpl, collated, think_values)


def _render_legacy(tmpl: gotemplate.Template, messages: list[dict[str, Any]], think: dict[str, Any]) -> str:
    """Templates without .Messages run once per system/user/assistant turn; the last run stops at .Response."""
    out: list[str] = []
    system = prompt = response = ""

    def execute() -> None:
        nonlocal system, prompt, response
        out.append(tmpl.execute({"System": system, "Prompt": prompt, "Response": response, **think}))
        system = prompt = response = ""

    for message in messages:
        role, content = message.get("role"), message.get("content") or ""
        if role == "system":
            if prompt or response:
                execute()
            system = content
        elif role == "user":
            if response:
                execute()
            prompt = content
        elif role == "assistant":
            response = content
    cut = gotemplate.Template.__new__(gotemplate.Template)
    cut.text = tmpl.text
    cut.nodes = _cut_at_response(tmpl.nodes, [False])
    out.append(cut.execute({"System": system, "Prompt": prompt, "Response": response, **think}))
    return "".join(out)


def _cut_at_response(nodes: list[Any], cut: list[bool]) -> list[Any]:
    """deleteNode: drop the first `.Response` field and every node after it."""
    kept: list[Any] = []
    for node in nodes:
        if cut[0]:
            break
        if isinstance(node, gotemplate._Action):
            args_kept = []
            for cmd in node.pipe.cmds:
                args = []
                for arg in cmd.args:
                    if cut[0]:
                        break
                    if isinstance(arg, gotemplate._Field) and "Response" in arg.idents:
                        cut[0] = True  # the .Response field itself stays; what follows it goes
                    args.append(arg)
                if args:
                    args_kept.append(gotemplate._Command(args))
            if args_kept:
                kept.append(gotemplate._Action(gotemplate._Pipe(node.pipe.decl, node.pipe.is_assign, args_kept)))
        elif isinstance(node, gotemplate._Branch):
            body = _cut_at_response(node.body, cut)
            else_body = None if node.else_body is None else _cut_at_response(node.else_body, cut)
            kept.append(gotemplate._Branch(node.kind, node.pipe, body, else_body))
        else:
            kept.append(node)
    return kept
