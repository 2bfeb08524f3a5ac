"""Go's text/template, as Ollama uses it: parse a template as Go parses it and execute it as Go executes it.

Covers what Ollama's template library uses: text and actions with trim markers, comments, pipelines, variables and
`$`, `if`/`else if`/`else`, `range` (with `else`, `break`, `continue`), `with`, parenthesised pipelines and field
chains, the builtin functions (and, or, not, len, index, slice, print, printf, println, eq, ne, lt, le, gt, ge) and
Ollama's own (json, currentDate, yesterdayDate, toTypeScriptType). Values print as Go's fmt prints them; Go structs
are `GoStruct`, nil slices `NilSlice`, maps are dicts. Parse errors carry Go's text (`template: :LINE: ...`).
The oracle is Go itself: tests/gotemplate renders a corpus with Go and compares byte for byte.
"""

from __future__ import annotations

import datetime as _dt
import decimal
import json as _json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


class TemplateError(ValueError):
    """A template Go refuses to parse or fails to execute; the message is Go's."""


class _Break(Exception):
    pass


class _Continue(Exception):
    pass


class _Missing:
    """Go's invalid reflect.Value (a missing map key under missingkey=zero): prints as <no value>, is false."""

    def __repr__(self) -> str:
        return "<no value>"


MISSING = _Missing()


class NilSlice(list):  # type: ignore[type-arg]
    """A nil Go slice: empty, prints as [], marshals to JSON null."""


@dataclass
class GoStruct:
    """A Go struct value: fields in declaration order, JSON names as its tags give them, an optional String()."""

    type_name: str
    fields: dict[str, Any]
    json_tags: dict[str, tuple[str, bool]] = field(default_factory=dict)  # go name -> (json name, omitempty)
    stringer: Callable[[GoStruct], str] | None = None
    methods: dict[str, Callable[..., Any]] = field(default_factory=dict)
    pointer: bool = False  # held as *T: fmt prints &{...} for an operand (text/template's own printing indirects)


class StringerDict(dict):  # type: ignore[type-arg]
    """A Go map type with a String() method that marshals itself to JSON (Ollama's templateArgs/Properties)."""


class StringerList(list):  # type: ignore[type-arg]
    """A Go slice type with a String() method that marshals itself to JSON (Ollama's templateTools)."""


# --- lexer -----------------------------------------------------------------------------------------------------
_SPACE = " \t\r\n"


@dataclass
class _Tok:
    kind: str
    val: str
    line: int


class _Lexer:
    def __init__(self, text: str) -> None:
        self.text = text
        self.toks: list[_Tok] = []

    def _line(self, pos: int) -> int:
        return self.text.count("\n", 0, pos) + 1

    def _err(self, pos: int, msg: str) -> TemplateError:
        return TemplateError(f"template: :{self._line(pos)}: {msg}")

    def run(self) -> list[_Tok]:
        text, pos, n = self.text, 0, len(self.text)
        trim_next = False
        while pos < n:
            start = text.find("{{", pos)
            if start < 0:
                chunk = text[pos:]
                if trim_next:
                    chunk = chunk.lstrip(_SPACE)
                if chunk:
                    self.toks.append(_Tok("text", chunk, self._line(pos)))
                pos = n
                break
            chunk = text[pos:start]
            if trim_next:
                chunk = chunk.lstrip(_SPACE)
            left_trim = text.startswith("{{-", start) and start + 3 < n and text[start + 3] in _SPACE
            if left_trim:
                chunk = chunk.rstrip(_SPACE)
            if chunk:
                self.toks.append(_Tok("text", chunk, self._line(pos)))
            pos = start + (4 if left_trim else 2)
            # a comment must follow the delimiter (and trim marker) at once
            after = pos
            if text.startswith("/*", after):
                end = text.find("*/", after + 2)
                if end < 0:
                    raise self._err(start, "unclosed comment")
                pos = end + 2
                if (
                    text.startswith(" -}}", pos)
                    or text.startswith("\t-}}", pos)
                    or text.startswith("\n-}}", pos)
                    or text.startswith("\r-}}", pos)
                ):
                    trim_next = True
                    pos += 4
                elif text.startswith("}}", pos):
                    trim_next = False
                    pos += 2
                else:
                    raise self._err(start, "comment ends before closing delimiter")
                continue
            if left_trim:
                pos = start + 3
            self.toks.append(_Tok("left", "{{", self._line(start)))
            pos, trim_next = self._action(pos)
        self.toks.append(_Tok("eof", "", self._line(n)))
        return self.toks

    def _action(self, pos: int) -> tuple[int, bool]:
        text, n = self.text, len(self.text)
        depth = 0
        while True:
            if pos >= n:
                raise self._err(pos, "unclosed action")
            ch = text[pos]
            if ch in _SPACE:
                end = pos
                while end < n and text[end] in _SPACE:
                    end += 1
                if text.startswith("-}}", end) and end > pos:
                    self.toks.append(_Tok("right", "}}", self._line(end)))
                    return end + 3, True
                self.toks.append(_Tok("space", text[pos:end], self._line(pos)))
                pos = end
                continue
            if text.startswith("}}", pos):
                if depth > 0:
                    raise self._err(pos, "unclosed left paren")
                self.toks.append(_Tok("right", "}}", self._line(pos)))
                return pos + 2, False
            line = self._line(pos)
            if ch == "|":
                self.toks.append(_Tok("pipe", "|", line))
                pos += 1
            elif ch == "(":
                depth += 1
                self.toks.append(_Tok("lparen", "(", line))
                pos += 1
            elif ch == ")":
                depth -= 1
                if depth < 0:
                    raise self._err(pos, "unexpected right paren")
                self.toks.append(_Tok("rparen", ")", line))
                pos += 1
            elif ch == ",":
                self.toks.append(_Tok("comma", ",", line))
                pos += 1
            elif text.startswith(":=", pos):
                self.toks.append(_Tok("declare", ":=", line))
                pos += 2
            elif ch == "=":
                self.toks.append(_Tok("assign", "=", line))
                pos += 1
            elif ch == '"':
                end = pos + 1
                while end < n and text[end] != '"':
                    if text[end] == "\\":
                        end += 1
                    if end < n and text[end] == "\n":
                        raise self._err(pos, "unterminated quoted string")
                    end += 1
                if end >= n:
                    raise self._err(pos, "unterminated quoted string")
                self.toks.append(_Tok("string", text[pos : end + 1], line))
                pos = end + 1
            elif ch == "`":
                end = text.find("`", pos + 1)
                if end < 0:
                    raise self._err(pos, "unterminated raw quoted string")
                self.toks.append(_Tok("rawstring", text[pos : end + 1], line))
                pos = end + 1
            elif ch == "'":
                m = re.compile(r"'(\\.[^']*|[^'\\])'").match(text, pos)
                if not m:
                    raise self._err(pos, "unterminated character constant")
                self.toks.append(_Tok("char", m.group(0), line))
                pos = m.end()
            elif ch == "$":
                m = re.compile(r"\$\w*").match(text, pos)
                assert m
                self.toks.append(_Tok("variable", m.group(0), line))
                pos = m.end()
            elif ch == ".":
                if pos + 1 < n and text[pos + 1].isdigit():
                    pos = self._number(pos)
                    continue
                m = re.compile(r"\.\w+").match(text, pos)
                if m:
                    self.toks.append(_Tok("field", m.group(0), line))
                    pos = m.end()
                else:
                    self.toks.append(_Tok("dot", ".", line))
                    pos += 1
            elif ch.isdigit() or (ch in "+-" and pos + 1 < n and text[pos + 1].isdigit()):
                pos = self._number(pos)
            elif ch.isalpha() or ch == "_":
                m = re.compile(r"\w+").match(text, pos)
                assert m
                word = m.group(0)
                kind = "bool" if word in ("true", "false") else "nil" if word == "nil" else "ident"
                if word in _KEYWORDS:
                    kind = "keyword"
                self.toks.append(_Tok(kind, word, line))
                pos = m.end()
            else:
                raise self._err(pos, f"unrecognized character in action: {_go_quote_rune(ch)}")

    def _number(self, pos: int) -> int:
        m = re.compile(r"[+-]?(0[xX][0-9a-fA-F_]+|(\d[\d_]*)?\.?\d*([eE][+-]?\d+)?)").match(self.text, pos)
        assert m
        self.toks.append(_Tok("number", m.group(0), self._line(pos)))
        return m.end()


_KEYWORDS = {"if", "else", "end", "range", "with", "define", "template", "block", "break", "continue"}


def _go_quote_rune(ch: str) -> str:
    return f"U+{ord(ch):04X}" + (f" '{ch}'" if ch.isprintable() else "")


# --- parse tree ------------------------------------------------------------------------------------------------
@dataclass
class _Text:
    text: str


@dataclass
class _Field:
    idents: list[str]


@dataclass
class _Var:
    idents: list[str]  # ["$x", "Field", ...]


@dataclass
class _Dot:
    pass


@dataclass
class _Const:
    value: Any


@dataclass
class _Ident:
    name: str


@dataclass
class _Chain:
    node: Any
    fields: list[str]


@dataclass
class _Command:
    args: list[Any]


@dataclass
class _Pipe:
    decl: list[str]
    is_assign: bool
    cmds: list[_Command]


@dataclass
class _Action:
    pipe: _Pipe


@dataclass
class _Branch:
    kind: str  # if, range, with
    pipe: _Pipe
    body: list[Any]
    else_body: list[Any] | None


@dataclass
class _BreakNode:
    pass


@dataclass
class _ContinueNode:
    pass


class _Parser:
    def __init__(self, toks: list[_Tok], funcs: dict[str, Callable[..., Any]]) -> None:
        self.toks = toks
        self.i = 0
        self.funcs = funcs
        self.vars: list[str] = ["$"]
        self.range_depth = 0

    def _peek(self) -> _Tok:
        return self.toks[self.i]

    def _next(self) -> _Tok:
        tok = self.toks[self.i]
        self.i += 1
        return tok

    def _next_nonspace(self) -> _Tok:
        tok = self._next()
        while tok.kind == "space":
            tok = self._next()
        return tok

    def _peek_nonspace(self) -> _Tok:
        j = self.i
        while self.toks[j].kind == "space":
            j += 1
        return self.toks[j]

    def _err(self, tok: _Tok, msg: str) -> TemplateError:
        return TemplateError(f"template: :{tok.line}: {msg}")

    def parse(self) -> list[Any]:
        nodes, _end = self._list(top=True)
        return nodes

    def _list(self, top: bool = False) -> tuple[list[Any], str]:
        """Nodes up to {{end}} or {{else}}; returns (nodes, 'end' | 'else' | 'eof')."""
        nodes: list[Any] = []
        while True:
            tok = self._next()
            if tok.kind == "eof":
                if not top:
                    raise self._err(tok, "unexpected EOF")
                return nodes, "eof"
            if tok.kind == "text":
                nodes.append(_Text(tok.val))
                continue
            # tok is left delimiter
            word = self._peek_nonspace()
            if word.kind == "keyword":
                if word.val in ("end", "else"):
                    self._next_nonspace()
                    if top:
                        raise self._err(word, f"unexpected {{{{{word.val}}}}}")
                    if word.val == "end":
                        self._expect_right("end")
                    return nodes, word.val
                nodes.append(self._keyword())
                continue
            pipe = self._pipeline("command", decl_ok=True)
            nodes.append(_Action(pipe))

    def _expect_right(self, context: str) -> None:
        tok = self._next_nonspace()
        if tok.kind != "right":
            raise self._err(tok, f"unexpected {_desc(tok)} in {context}")

    def _keyword(self) -> Any:
        tok = self._next_nonspace()
        word = tok.val
        if word in ("if", "range", "with"):
            return self._branch(word, tok)
        if word in ("break", "continue"):
            nxt = self._next_nonspace()
            if nxt.kind != "right":
                raise self._err(nxt, f"unexpected {_desc(nxt)} in {{{{{word}}}}}")
            if self.range_depth == 0:
                raise self._err(tok, f"{{{{{word}}}}} outside {{{{range}}}}")
            return _BreakNode() if word == "break" else _ContinueNode()
        raise self._err(tok, f"{{{{{word}}}}} is not supported by the reference backend's templates")

    def _branch(self, kind: str, tok: _Tok) -> _Branch:
        saved = len(self.vars)
        pipe = self._pipeline(kind, decl_ok=True, range_ok=kind == "range")
        if kind == "range":
            self.range_depth += 1
        body, end = self._list()
        if kind == "range":
            self.range_depth -= 1
        else_body: list[Any] | None = None
        if end == "else":
            nxt = self._peek_nonspace()
            if kind in ("if", "with") and nxt.kind == "keyword" and nxt.val in ("if", "with") and nxt.val == kind:
                # {{else if ...}}: an if nested in the else list, ended by the same {{end}}
                inner_tok = self._next_nonspace()
                else_body = [self._branch(kind, inner_tok)]
            else:
                self._expect_right("else")
                else_body, end2 = self._list()
                if end2 == "else":
                    raise self._err(tok, "expected end; found {{else}}")
        del self.vars[saved:]
        return _Branch(kind, pipe, body, else_body)

    def _pipeline(self, context: str, decl_ok: bool, range_ok: bool = False) -> _Pipe:
        decl: list[str] = []
        is_assign = False
        start = self.i
        tok = self._peek_nonspace()
        if decl_ok and tok.kind == "variable":
            # lookahead for a declaration or assignment
            j = self.i
            while self.toks[j].kind == "space":
                j += 1
            names = [self.toks[j].val]
            k = j + 1
            while self.toks[k].kind == "space":
                k += 1
            if range_ok and self.toks[k].kind == "comma":
                k += 1
                while self.toks[k].kind == "space":
                    k += 1
                if self.toks[k].kind == "variable":
                    names.append(self.toks[k].val)
                    k += 1
                    while self.toks[k].kind == "space":
                        k += 1
                else:
                    raise self._err(self.toks[k], "range can only initialize variables")
            if self.toks[k].kind in ("declare", "assign"):
                is_assign = self.toks[k].kind == "assign"
                if is_assign:
                    for name in names:
                        if name not in self.vars:
                            raise self._err(self.toks[j], f'undefined variable "{name}"')
                decl = names
                self.i = k + 1
            else:
                self.i = start
        cmds: list[_Command] = []
        while True:
            tok = self._peek_nonspace()
            if tok.kind in ("right", "rparen"):
                closing = self._next_nonspace()
                if closing.kind == "rparen" and context != "parenthesized pipeline":
                    raise self._err(closing, "unexpected right paren")
                if closing.kind == "right" and context == "parenthesized pipeline":
                    raise self._err(closing, "unclosed left paren")
                if not cmds:
                    raise self._err(closing, f"missing value for {context}")
                break
            cmds.append(self._command())
            nxt = self._peek_nonspace()
            if nxt.kind == "pipe":
                self._next_nonspace()
        if not is_assign:
            self.vars.extend(decl)
        for cmd in cmds[1:]:
            first = cmd.args[0]
            if isinstance(first, _Const | _Dot) or (isinstance(first, _Const) and first.value is None):
                raise self._err(tok, f"non executable command in pipeline stage {cmds.index(cmd) + 1}")
        return _Pipe(decl, is_assign, cmds)

    def _command(self) -> _Command:
        args: list[Any] = []
        while True:
            tok = self._peek()
            if tok.kind == "space":
                self._next()
                continue
            if tok.kind in ("right", "rparen", "pipe"):
                break
            operand = self._operand()
            args.append(operand)
            nxt = self._peek()
            if nxt.kind in ("space", "right", "rparen", "pipe"):
                continue
            raise self._err(nxt, f"unexpected {_desc(nxt)} in operand")
        if not args:
            raise self._err(self._peek(), "empty command")
        return _Command(args)

    def _operand(self) -> Any:
        node = self._term()
        if self._peek().kind == "field":
            fields = []
            while self._peek().kind == "field":
                fields.append(self._next().val[1:])
            if isinstance(node, _Field):
                return _Field(node.idents + fields)
            if isinstance(node, _Var):
                return _Var(node.idents + fields)
            if isinstance(node, _Const | _Dot) and not isinstance(node, _Dot):
                raise self._err(self._peek(), "unexpected . after term")
            return _Chain(node, fields)
        return node

    def _term(self) -> Any:
        tok = self._next()
        if tok.kind == "ident":
            if tok.val not in self.funcs:
                raise self._err(tok, f'function "{tok.val}" not defined')
            return _Ident(tok.val)
        if tok.kind == "dot":
            return _Dot()
        if tok.kind == "nil":
            return _Const(None)
        if tok.kind == "variable":
            if tok.val not in self.vars:
                raise self._err(tok, f'undefined variable "{tok.val}"')
            return _Var([tok.val])
        if tok.kind == "field":
            return _Field([tok.val[1:]])
        if tok.kind == "bool":
            return _Const(tok.val == "true")
        if tok.kind == "number":
            return _Const(_parse_number(tok, self))
        if tok.kind == "string":
            return _Const(_unquote(tok.val))
        if tok.kind == "rawstring":
            return _Const(tok.val[1:-1].replace("\r", ""))
        if tok.kind == "char":
            return _Const(ord(_unquote('"' + tok.val[1:-1] + '"')))
        if tok.kind == "lparen":
            return self._pipeline("parenthesized pipeline", decl_ok=True)
        raise self._err(tok, f"unexpected {_desc(tok)} in operand")


def _desc(tok: _Tok) -> str:
    if tok.kind == "right":
        return '"}}"'
    if tok.kind == "eof":
        return "EOF"
    if tok.kind == "keyword":
        return f"<{tok.val}>"
    if tok.kind == "space":
        return "space"
    return f'"{tok.val}"' if tok.kind in ("pipe", "lparen", "rparen", "comma", "declare", "assign") else f"<{tok.val}>"


def _parse_number(tok: _Tok, parser: _Parser) -> int | float:
    text = tok.val.replace("_", "")
    try:
        if re.fullmatch(r"[+-]?0[xX][0-9a-fA-F]+", text):
            return int(text, 16)
        if re.fullmatch(r"[+-]?\d+", text):
            return int(text, 10) if not re.fullmatch(r"[+-]?0\d+", text) else int(text, 8)
        return float(text)
    except ValueError:
        raise parser._err(tok, f"bad number syntax: {_go_quote(tok.val)}") from None


_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", '"': '"', "'": "'", "a": "\a", "b": "\b", "f": "\f", "v": "\v"}


def _unquote(quoted: str) -> str:
    body = quoted[1:-1]
    out: list[str] = []
    i = 0
    while i < len(body):
        ch = body[i]
        if ch != "\\":
            out.append(ch)
            i += 1
            continue
        esc = body[i + 1]
        if esc in _ESCAPES:
            out.append(_ESCAPES[esc])
            i += 2
        elif esc == "x":
            out.append(chr(int(body[i + 2 : i + 4], 16)))
            i += 4
        elif esc == "u":
            out.append(chr(int(body[i + 2 : i + 6], 16)))
            i += 6
        elif esc == "U":
            out.append(chr(int(body[i + 2 : i + 10], 16)))
            i += 10
        else:
            out.append(chr(int(body[i + 1 : i + 4], 8)))
            i += 4
    return "".join(out)


# --- printing as Go's fmt --------------------------------------------------------------------------------------
def _go_quote(s: str) -> str:
    out = ['"']
    for ch in s:
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ch == "\r":
            out.append("\\r")
        elif ch.isprintable() or ch == " ":
            out.append(ch)
        elif ord(ch) < 0x10000:
            out.append(f"\\x{ord(ch):02x}" if ord(ch) < 0x80 else f"\\u{ord(ch):04x}")
        else:
            out.append(f"\\U{ord(ch):08x}")
    out.append('"')
    return "".join(out)


def format_float(value: float, json_style: bool = False) -> str:
    """strconv's shortest formatting: %v's (exponent at < -4 or >= 21) or encoding/json's (< -6 or >= 21)."""
    if value != value:
        return "NaN"
    if value in (float("inf"), float("-inf")):
        return "+Inf" if value > 0 else "-Inf"
    if value == 0:
        return "-0" if str(value).startswith("-") and not json_style else "0"
    d = decimal.Decimal(repr(value))
    sign, digits, exp = d.as_tuple()
    digit_str = "".join(map(str, digits)).rstrip("0") or "0"
    assert isinstance(exp, int)
    point = len(digits) + exp  # the decimal exponent: value = 0.digits * 10**point
    x = point - 1
    low = -6 if json_style else -4
    if x < low or x >= 21:
        mant = digit_str[0] + ("." + digit_str[1:] if len(digit_str) > 1 else "")
        e = f"{'-' if x < 0 else '+'}{abs(x):02d}"
        if json_style and -10 < x < 0:
            e = f"-{-x}"  # encoding/json writes e-7 where strconv writes e-07
        text = f"{mant}e{e}"
    elif point <= 0:
        text = "0." + "0" * (-point) + digit_str
    elif point >= len(digit_str):
        text = digit_str + "0" * (point - len(digit_str))
    else:
        text = digit_str[:point] + "." + digit_str[point:]
    return ("-" if sign else "") + text


def go_sprint_value(value: Any, depth: int = 0) -> str:
    """fmt's %v of one value."""
    if value is MISSING:
        return "<no value>" if depth == 0 else "<invalid reflect.Value>"
    if value is None:
        return "<nil>"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return format_float(value)
    if isinstance(value, str):
        return value
    if hasattr(value, "go_string"):
        return str(value.go_string())
    if isinstance(value, GoStruct):
        if value.stringer is not None:
            return value.stringer(value)
        return "{" + " ".join(go_sprint_value(v, depth + 1) for v in value.fields.values()) + "}"
    if isinstance(value, StringerDict | StringerList):
        return go_json(value)
    if isinstance(value, dict):
        items = sorted(value.items(), key=lambda kv: _sort_key(kv[0]))
        return (
            "map["
            + " ".join(f"{go_sprint_value(k, depth + 1)}:{go_sprint_value(v, depth + 1)}" for k, v in items)
            + "]"
        )
    if isinstance(value, list | tuple):
        return "[" + " ".join(go_sprint_value(v, depth + 1) for v in value) + "]"
    return str(value)


def _sort_key(key: Any) -> Any:
    return (0, key) if isinstance(key, int | float) else (1, str(key))


def go_json(value: Any) -> str:
    """encoding/json.Marshal: compact, map keys sorted, struct fields by their tags, <>& escaped."""
    text = _json_value(value)
    return (
        text.replace("<", "\\u003c")
        .replace(">", "\\u003e")
        .replace("&", "\\u0026")
        .replace("\u2028", "\\u2028")
        .replace("\u2029", "\\u2029")
    )


def _json_value(value: Any) -> str:
    if hasattr(value, "go_json"):
        return str(value.go_json())
    if value is None or value is MISSING or isinstance(value, NilSlice):
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return format_float(value, json_style=True)
    if isinstance(value, str):
        return _json.dumps(value, ensure_ascii=False)
    if isinstance(value, GoStruct):
        if "MarshalJSON" in value.methods:
            return value.methods["MarshalJSON"](value)
        parts = []
        for name, item in value.fields.items():
            json_name, omitempty = value.json_tags.get(name, (name, False))
            if json_name == "-" or (omitempty and _json_empty(item)):
                continue
            parts.append(_json.dumps(json_name) + ":" + _json_value(item))
        return "{" + ",".join(parts) + "}"
    if isinstance(value, dict):
        items = sorted(value.items(), key=lambda kv: str(kv[0]))
        return "{" + ",".join(_json.dumps(str(k), ensure_ascii=False) + ":" + _json_value(v) for k, v in items) + "}"
    if isinstance(value, list | tuple):
        return "[" + ",".join(_json_value(v) for v in value) + "]"
    return _json.dumps(str(value))


def _json_empty(value: Any) -> bool:
    if value is None or value is MISSING:
        return True
    if isinstance(value, bool):
        return not value
    if isinstance(value, int | float):
        return value == 0
    if isinstance(value, str | list | dict | tuple):
        return len(value) == 0
    return False


# --- printf ----------------------------------------------------------------------------------------------------
_VERB = re.compile(r"%([+\-# 0]*)(\d+|\*)?(?:\.(\d+|\*)?)?([a-zA-Z%])")


def _fmt_operand(value: Any) -> str:
    """fmt's %v of an operand of Sprint/Sprintf (depth 0): nil is <nil>, a struct pointer &{...}."""
    if value is None or value is MISSING:
        return "<nil>"
    if isinstance(value, GoStruct) and value.pointer and value.stringer is None:
        return "&" + go_sprint_value(value)
    return go_sprint_value(value)


def _go_type(value: Any) -> str:
    if value is None or value is MISSING:
        return ""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float64"
    if isinstance(value, str):
        return "string"
    if isinstance(value, GoStruct):
        return value.type_name
    if isinstance(value, dict):
        return "map[string]interface {}"
    return "[]interface {}"


def go_sprintf(fmt: str, args: list[Any]) -> str:
    out: list[str] = []
    pos = 0
    argi = 0
    for m in _VERB.finditer(fmt):
        out.append(fmt[pos : m.start()])
        pos = m.end()
        flags, width, prec, verb = m.group(1), m.group(2), m.group(3), m.group(4)
        if verb == "%":
            out.append("%")
            continue
        if argi >= len(args):
            out.append(f"%!{verb}(MISSING)")
            continue
        arg = args[argi]
        argi += 1
        text = _format_verb(verb, flags, prec, arg)
        if width and width != "*":
            w = int(width)
            if "-" in flags:
                text = text.ljust(w)
            elif "0" in flags and verb in "dfxXeEg":
                neg = text.startswith("-")
                body = text[1:] if neg else text
                text = ("-" if neg else "") + body.rjust(w - neg, "0")
            else:
                text = text.rjust(w)
        out.append(text)
    out.append(fmt[pos:])
    if argi < len(args):
        extra = ", ".join(f"{_go_type(a)}={go_sprint_value(a, 1)}" if a is not None else "<nil>" for a in args[argi:])
        out.append(f"%!(EXTRA {extra})")
    return "".join(out)


def _bad_verb(verb: str, arg: Any) -> str:
    if arg is None or arg is MISSING:
        return f"%!{verb}(<nil>)"
    return f"%!{verb}({_go_type(arg)}={go_sprint_value(arg, 1)})"


def _format_verb(verb: str, flags: str, prec: str | None, arg: Any) -> str:
    if verb == "v":
        if "+" in flags or "#" in flags:
            raise TemplateError("printf: %+v and %#v are not supported by the reference backend's templates")
        return _fmt_operand(arg)
    if verb == "s":
        if isinstance(arg, str):
            return arg if prec is None else arg[: int(prec)]
        if isinstance(arg, GoStruct | StringerDict | StringerList):
            return go_sprint_value(arg)
        if isinstance(arg, list) and all(isinstance(a, str) for a in arg):
            return go_sprint_value(arg)
        return _bad_verb(verb, arg)
    if verb == "q":
        if isinstance(arg, str):
            return _go_quote(arg)
        if isinstance(arg, int) and not isinstance(arg, bool):
            return "'" + chr(arg) + "'"
        return _bad_verb(verb, arg)
    if verb == "d":
        if isinstance(arg, int) and not isinstance(arg, bool):
            text = str(arg)
            return "+" + text if "+" in flags and arg >= 0 else text
        if isinstance(arg, list) and all(isinstance(a, int) and not isinstance(a, bool) for a in arg):
            return "[" + " ".join(map(str, arg)) + "]"
        return _bad_verb(verb, arg)
    if verb == "t":
        return ("true" if arg else "false") if isinstance(arg, bool) else _bad_verb(verb, arg)
    if verb in "xX":
        if isinstance(arg, int) and not isinstance(arg, bool):
            text = format(arg, "x")
        elif isinstance(arg, str):
            text = arg.encode().hex()
        else:
            return _bad_verb(verb, arg)
        return text.upper() if verb == "X" else text
    if verb in "feEgG":
        if isinstance(arg, float):
            if verb in "gG" and prec is None:
                return format_float(arg) if verb == "g" else format_float(arg).upper()
            p = 6 if prec is None else int(prec)
            text = format(arg, f".{p}{verb}")
            return re.sub(r"e([+-])(\d)$", r"e\g<1>0\2", text)
        return _bad_verb(verb, arg)
    if verb == "c":
        return chr(arg) if isinstance(arg, int) and not isinstance(arg, bool) else _bad_verb(verb, arg)
    return _bad_verb(verb, arg)


# --- functions -------------------------------------------------------------------------------------------------
def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "string"
    if value is None or value is MISSING:
        return "invalid"
    return "other"


def is_true(value: Any) -> bool:
    if value is None or value is MISSING:
        return False
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return value != 0
    if isinstance(value, str | list | tuple | dict):
        return len(value) > 0
    return True


def _eq(arg1: Any, *rest: Any) -> bool:
    if not rest:
        raise TemplateError("missing argument for comparison")
    k1 = _kind(arg1)
    for arg in rest:
        k2 = _kind(arg)
        if k1 != k2:
            if k1 != "invalid" and k2 != "invalid":
                raise TemplateError("incompatible types for comparison")
            if (arg1 is None or arg1 is MISSING) and (arg is None or arg is MISSING):
                return True
            if k1 == "invalid" or k2 == "invalid":
                other = arg if k1 == "invalid" else arg1
                if isinstance(other, list | dict) or other is None:
                    if len(other or []) == 0 and isinstance(other, NilSlice):
                        return True
                    continue
                raise TemplateError("incompatible types for comparison")
            continue
        if k1 == "other" and (isinstance(arg1, list | dict) or isinstance(arg, list | dict)):
            raise TemplateError(f"non-comparable type {go_sprint_value(arg1)}: {_go_type(arg1)}")
        if arg1 == arg:
            return True
    return False


def _ne(a: Any, b: Any) -> bool:
    return not _eq(a, b)


def _ordered(a: Any, b: Any) -> tuple[Any, Any]:
    ka, kb = _kind(a), _kind(b)
    if ka not in ("int", "float", "string") or kb not in ("int", "float", "string"):
        raise TemplateError("invalid type for comparison")
    if ka != kb:
        raise TemplateError("incompatible types for comparison")
    return a, b


def _lt(a: Any, b: Any) -> bool:
    x, y = _ordered(a, b)
    return bool(x < y)


def _le(a: Any, b: Any) -> bool:
    x, y = _ordered(a, b)
    return bool(x <= y)


def _gt(a: Any, b: Any) -> bool:
    x, y = _ordered(a, b)
    return bool(x > y)


def _ge(a: Any, b: Any) -> bool:
    x, y = _ordered(a, b)
    return bool(x >= y)


def _len(value: Any) -> int:
    if isinstance(value, str):
        return len(value.encode())
    if isinstance(value, list | tuple | dict):
        return len(value)
    if value is None or value is MISSING:
        raise TemplateError("len of nil pointer")
    raise TemplateError(f"len of type {_go_type(value)}")


def _index(item: Any, *indexes: Any) -> Any:
    if item is None or item is MISSING:
        raise TemplateError("index of untyped nil")
    for idx in indexes:
        if isinstance(item, dict):
            item = item.get(idx, MISSING)
        elif isinstance(item, list | tuple | str):
            if not isinstance(idx, int) or isinstance(idx, bool):
                raise TemplateError(f"cannot index slice/array with type {_go_type(idx)}")
            if idx < 0 or idx >= len(item):
                raise TemplateError(f"index out of range: {idx}")
            item = item[idx] if not isinstance(item, str) else item.encode()[idx]
        else:
            raise TemplateError(f"can't index item of type {_go_type(item)}")
    return item


def _slice(item: Any, *indexes: Any) -> Any:
    if item is None or item is MISSING:
        raise TemplateError("slice of untyped nil")
    if len(indexes) > 3:
        raise TemplateError(f"too many slice indexes: {len(indexes)}")
    if isinstance(item, str):
        if len(indexes) == 3:
            raise TemplateError("cannot 3-index slice a string")
        data = item.encode()
    elif isinstance(item, list | tuple):
        data = item
    else:
        raise TemplateError(f"can't slice item of type {_go_type(item)}")
    bounds = [0, len(data)]
    for i, idx in enumerate(indexes[:2]):
        if not isinstance(idx, int) or isinstance(idx, bool) or idx < 0 or idx > len(data):
            raise TemplateError(f"index out of range: {idx}")
        bounds[i] = idx
    if bounds[0] > bounds[1]:
        raise TemplateError(f"invalid slice index: {bounds[0]} > {bounds[1]}")
    part = data[bounds[0] : bounds[1]]
    return (
        part.decode(errors="replace")
        if isinstance(part, bytes)
        else type(item)(part)
        if isinstance(item, list) and type(item) is not NilSlice
        else list(part)
    )


def _print(*args: Any) -> str:
    out: list[str] = []
    for i, arg in enumerate(args):
        if i > 0 and not isinstance(arg, str) and not isinstance(args[i - 1], str):
            out.append(" ")
        out.append(_fmt_operand(arg))
    return "".join(out)


def _println(*args: Any) -> str:
    return " ".join(_fmt_operand(a) for a in args) + "\n"


def _printf(fmt: str, *args: Any) -> str:
    return go_sprintf(fmt, list(args))


def _json_func(value: Any) -> str:
    return go_json(value)


def _current_date(*_: Any) -> str:
    return _dt.date.today().isoformat()


def _yesterday_date(*_: Any) -> str:
    return (_dt.date.today() - _dt.timedelta(days=1)).isoformat()


_TS_TYPES = {
    "string": "string",
    "number": "number",
    "integer": "number",
    "boolean": "boolean",
    "array": "any[]",
    "object": "Record<string, any>",
    "null": "null",
}


def _to_typescript(value: Any) -> str:
    if not isinstance(value, GoStruct) or value.type_name != "api.ToolProperty":
        return "any"
    any_of = value.fields.get("AnyOf") or []
    if any_of:
        return " | ".join(_to_typescript(v) for v in any_of)
    types = value.fields.get("Type") or []
    if not types:
        return "any"
    return " | ".join(_TS_TYPES.get(t, "any") for t in types)


FUNCS: dict[str, Callable[..., Any]] = {
    "and": lambda *a: a,  # evaluated lazily by the executor
    "or": lambda *a: a,
    "not": lambda a: not is_true(a),
    "len": _len,
    "index": _index,
    "slice": _slice,
    "print": _print,
    "printf": _printf,
    "println": _println,
    "eq": _eq,
    "ne": _ne,
    "lt": _lt,
    "le": _le,
    "gt": _gt,
    "ge": _ge,
    "json": _json_func,
    "currentDate": _current_date,
    "yesterdayDate": _yesterday_date,
    "toTypeScriptType": _to_typescript,
}


# --- execution -------------------------------------------------------------------------------------------------
class Template:
    """A parsed template; `execute(data)` renders it."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.nodes = _Parser(_Lexer(text).run(), FUNCS).parse()

    def execute(self, data: Any) -> str:
        out: list[str] = []
        scope: list[tuple[str, Any]] = [("$", data)]
        try:
            self._list(self.nodes, data, scope, out)
        except (_Break, _Continue):  # pragma: no cover - the parser refuses them outside range
            pass
        except RecursionError as exc:
            raise TemplateError('template: executing "": exceeded maximum template depth') from exc
        except TemplateError as exc:
            # Go names the line, column and action too (`template: :1:3: executing "" at <.X>: ...`)
            raise TemplateError(f'template: executing "": {exc}') from None
        return "".join(out)

    def identifiers(self) -> set[str]:
        """Field and variable names used (lower-cased), as Ollama's Template.Vars() collects them."""
        names: set[str] = set()

        def walk(node: Any) -> None:
            if isinstance(node, list):
                for n in node:
                    walk(n)
            elif isinstance(node, _Action):
                walk(node.pipe)
            elif isinstance(node, _Branch):
                walk(node.pipe)
                walk(node.body)
                if node.else_body is not None:
                    walk(node.else_body)
            elif isinstance(node, _Pipe):
                for cmd in node.cmds:
                    for arg in cmd.args:
                        walk(arg)
            elif isinstance(node, _Field | _Var):
                names.update(i.lower() for i in node.idents)

        walk(self.nodes)
        return names

    def _list(self, nodes: list[Any], dot: Any, scope: list[tuple[str, Any]], out: list[str]) -> None:
        for node in nodes:
            if isinstance(node, _Text):
                out.append(node.text)
            elif isinstance(node, _Action):
                value = self._pipe(node.pipe, dot, scope)
                if not node.pipe.decl:
                    out.append(go_sprint_value(value))
            elif isinstance(node, _Branch):
                self._branch(node, dot, scope, out)
            elif isinstance(node, _BreakNode):
                raise _Break
            elif isinstance(node, _ContinueNode):
                raise _Continue

    def _branch(self, node: _Branch, dot: Any, scope: list[tuple[str, Any]], out: list[str]) -> None:
        mark = len(scope)
        try:
            if node.kind == "range":
                self._range(node, dot, scope, out)
                return
            value = self._pipe(node.pipe, dot, scope) if node.kind != "range" else None
            if is_true(value):
                self._list(node.body, value if node.kind == "with" else dot, scope, out)
            elif node.else_body is not None:
                self._list(node.else_body, dot, scope, out)
        finally:
            del scope[mark:]

    def _range(self, node: _Branch, dot: Any, scope: list[tuple[str, Any]], out: list[str]) -> None:
        pipe = _Pipe([], False, node.pipe.cmds)
        value = self._pipe(pipe, dot, scope)
        if isinstance(value, dict):
            items: list[tuple[Any, Any]] = sorted(value.items(), key=lambda kv: _sort_key(kv[0]))
        elif isinstance(value, list | tuple):
            items = list(enumerate(value))
        elif value is None or value is MISSING:
            items = []
        else:
            raise TemplateError(f"range can't iterate over {go_sprint_value(value)}")
        if not items:
            if node.else_body is not None:
                self._list(node.else_body, dot, scope, out)
            return
        mark = len(scope)
        for key, elem in items:
            del scope[mark:]
            if len(node.pipe.decl) == 1:
                scope.append((node.pipe.decl[0], elem))
            elif len(node.pipe.decl) == 2:
                scope.append((node.pipe.decl[0], key))
                scope.append((node.pipe.decl[1], elem))
            try:
                self._list(node.body, elem, scope, out)
            except _Break:
                break
            except _Continue:
                continue

    def _pipe(self, pipe: _Pipe, dot: Any, scope: list[tuple[str, Any]]) -> Any:
        value: Any = MISSING
        for i, cmd in enumerate(pipe.cmds):
            value = self._command(cmd, dot, scope, value if i > 0 else None, has_final=i > 0)
        for name in pipe.decl:
            if pipe.is_assign:
                for j in range(len(scope) - 1, -1, -1):
                    if scope[j][0] == name:
                        scope[j] = (name, value)
                        break
            else:
                scope.append((name, value))
        return value

    def _command(self, cmd: _Command, dot: Any, scope: list[tuple[str, Any]], final: Any, has_final: bool) -> Any:
        first = cmd.args[0]
        if isinstance(first, _Ident):
            return self._call(first.name, cmd.args[1:], dot, scope, final, has_final)
        if len(cmd.args) > 1 or has_final:
            if isinstance(first, _Field):
                raise TemplateError(f"can't give argument to non-function {'.' + '.'.join(first.idents)}")
            raise TemplateError("can't give argument to non-function")
        return self._arg(first, dot, scope)

    def _call(
        self, name: str, args: list[Any], dot: Any, scope: list[tuple[str, Any]], final: Any, has_final: bool
    ) -> Any:
        if name in ("and", "or"):
            nodes = list(args)
            values_left = len(nodes) + (1 if has_final else 0)
            if values_left == 0:
                raise TemplateError(f"wrong number of args for {name}: want at least 1 got 0")
            value: Any = MISSING
            for node in nodes:
                value = self._arg(node, dot, scope)
                if is_true(value) != (name == "and"):
                    return value
            if has_final:
                value = final
            return value
        values = [self._arg(a, dot, scope) for a in args]
        if has_final:
            values.append(final)
        try:
            return FUNCS[name](*values)
        except TemplateError as exc:
            raise TemplateError(f"error calling {name}: {exc}") from None
        except TypeError:
            raise TemplateError(f"wrong number of args for {name}: got {len(values)}") from None

    def _arg(self, node: Any, dot: Any, scope: list[tuple[str, Any]]) -> Any:
        if isinstance(node, _Dot):
            return dot
        if isinstance(node, _Const):
            return node.value
        if isinstance(node, _Field):
            return self._fields(dot, node.idents)
        if isinstance(node, _Var):
            value = self._variable(node.idents[0], scope)
            return self._fields(value, node.idents[1:])
        if isinstance(node, _Pipe):
            return self._pipe(node, dot, scope)
        if isinstance(node, _Chain):
            base = self._arg(node.node, dot, scope)
            return self._fields(base, node.fields)
        if isinstance(node, _Ident):
            return self._call(node.name, [], dot, scope, None, False)
        raise TemplateError(f"can't evaluate {node!r}")

    def _variable(self, name: str, scope: list[tuple[str, Any]]) -> Any:
        for var, value in reversed(scope):
            if var == name:
                return value
        raise TemplateError(f"undefined variable: {name}")

    def _fields(self, value: Any, names: list[str]) -> Any:
        for name in names:
            if isinstance(value, GoStruct):
                if name in value.fields:
                    value = value.fields[name]
                elif name in value.methods:
                    value = value.methods[name](value)
                else:
                    raise TemplateError(f"can't evaluate field {name} in type {value.type_name}")
            elif isinstance(value, dict):
                value = value.get(name, MISSING)
            elif value is None or value is MISSING:
                raise TemplateError(f"nil pointer evaluating interface {{}}.{name}")
            else:
                raise TemplateError(f"can't evaluate field {name} in type {_go_type(value)}")
        return value


def parse(text: str) -> Template:
    """Parses as Go's template.New("").Option("missingkey=zero").Funcs(ollamaFuncs).Parse(text) would."""
    return Template(text)
