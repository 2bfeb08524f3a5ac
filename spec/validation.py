"""Validate an instance against a resolved schema and say exactly where it fails."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError

from ollama_conformance.spec.grades import GRADES, Grade, exact_form
from ollama_conformance.spec.versions import at_version

MAX_MESSAGE = 300
DISCRIMINATORS = ("const", "not")


def _where(path: Iterable[Any]) -> str:
    out = "$"
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


def _explain(error: ValidationError) -> list[ValidationError]:
    """The errors that say what is actually wrong.

    A oneOf/anyOf failure carries every branch's errors in .context; the branch with the fewest errors is the one
    the instance was meant to be (e.g. a final chunk, not a non-final one), so report that branch's errors.
    """
    if not error.context:
        return [error]
    branches: dict[Any, list[ValidationError]] = {}
    for sub in error.context:
        branches.setdefault(sub.relative_schema_path[0], []).append(sub)
    # A branch that fails a `const` or a `not` (our discriminators: done, type, the error line) is the wrong
    # branch, whatever its count.
    best = min(
        branches.values(),
        key=lambda errs: (
            any(e.validator in DISCRIMINATORS for e in errs),
            len(errs),
            # on a tie, the branch whose type matched says more ("does not match pattern" over "not a number")
            sum(e.validator == "type" for e in errs),
            -max(len(e.absolute_path) for e in errs),
        ),
    )
    out: list[ValidationError] = []
    for sub in best:
        out += _explain(sub)
    return out


def validate(
    instance: object, schema: dict[str, Any], *, grade: Grade = "exact", ollama_version: str | None = None,
    closed: bool = False,
) -> list[str]:
    """[] when `instance` is valid; else one line per problem, 'at $.a.b[0]: message'.

    `grade` (spec/grades.py): "exact" (Ollama itself, the default) also applies the schema's `x-exact` rules;
    "compatible" only what the official clients rely on.
    `closed` (exact grade, for what a server sends): no property the schema does not name (spec/grades.py).
    `ollama_version` (spec/versions.py): judge as that Ollama version behaved (its `x-ollama-since` /
    `x-ollama-until` fields); None: the schema as given (spec/ hands out the spec's version of each)."""
    if grade not in GRADES:
        raise ValueError(f"unknown grade {grade!r}; choose from {', '.join(GRADES)}")
    if ollama_version is not None:  # the schemas spec/ hands out are already the spec's version's
        schema = at_version(schema, ollama_version)
    validator = Draft202012Validator(exact_form(schema, closed=closed) if grade == "exact" else schema)
    lines: list[str] = []
    for error in validator.iter_errors(instance):
        for cause in _explain(error):
            message = cause.message
            if len(message) > MAX_MESSAGE:
                message = message[:MAX_MESSAGE] + "..."
            line = f"at {_where(cause.absolute_path)}: {message}"
            if line not in lines:
                lines.append(line)
    return sorted(lines)
