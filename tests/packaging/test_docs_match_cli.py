"""The docs name only subcommands and options that exist, and the README's command table lists every subcommand."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from ollama_conformance.cli import build_parser

REPO = Path(__file__).resolve().parents[2]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md")), REPO / "load" / "README.md",
        REPO / "reference_backend" / "README.md", REPO / "spec" / "README.md"]
# `ollama-conformance SUB ...` up to the end of the command (a line end, a backtick, a pipe, a comment)
COMMAND = re.compile(r"ollama-conformance[ \t]+([a-z]+)((?:[^`|#\n]|\\\n)*)")
QUOTED = re.compile(r"'[^'\n]*'|\"[^\"\n]*\"")
OPTION = re.compile(r"(?<![\w-])(--[a-z][a-z0-9-]*)")


def _subcommands() -> dict[str, set[str]]:
    parser, _ = build_parser()
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return {name: {s for action in p._actions for s in action.option_strings} for name, p in sub.choices.items()}


def _documented_commands() -> list[tuple[Path, str, str]]:
    found = []
    for path in DOCS:
        if path.exists():
            for match in COMMAND.finditer(path.read_text(encoding="utf-8")):
                found.append((path, match.group(1), match.group(2)))
    return found


def test_readme_table_lists_every_subcommand() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    table = set(re.findall(r"^\| `([a-z]+)` \|", readme, flags=re.M))
    assert table == set(_subcommands()), table ^ set(_subcommands())


@pytest.mark.parametrize("path", DOCS, ids=lambda p: str(p.relative_to(REPO)))
def test_documented_options_exist(path: Path) -> None:
    if not path.exists():
        pytest.skip(f"{path.name} is not in this checkout")
    commands = _subcommands()
    wrong = []
    for doc, sub, rest in _documented_commands():
        if doc != path:
            continue
        if sub not in commands:
            wrong.append(f"unknown subcommand {sub!r}")
            continue
        for option in OPTION.findall(QUOTED.sub("", rest)):  # a quoted argument (a label) is not an option
            if option not in commands[sub] and option != "--help":
                wrong.append(f"{sub} {option}")
    assert not wrong, f"{path.name} documents what --help does not have: {sorted(set(wrong))}"
