"""Fold the check results of several servers into one: `run` on the embedded default checks the reference backend
three times (as a daemon on a throw-away store, in cloud mode, with OLLAMA_NO_CLOUD=1) and reports once.

The main run is the whole suite; an extra run answers the tests the main one found not applicable for one stated
reason (e.g. "needs the cloud profile"): those rows are replaced by the extra run's rows of the same test id. Every
row names the target it ran on (`target`), the document lists the targets (`targets`), and the summary counts are
recomputed, so the gate, the reports and the JUnit file see one result.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Part:
    label: str  # the target the rows name
    answers: tuple[str, ...]  # what the main run's not-applicable reasons this part answers say (() for the main run)
    results: dict[str, Any]  # a check results document (conformance/results.schema.json)


def fold(main: Part, extras: list[Part]) -> dict[str, Any]:
    """The main results with the rows the extra parts answer replaced by theirs; a new document."""
    from ollama_conformance.conformance.results import summarise

    folded = copy.deepcopy(main.results)
    tests: list[dict[str, Any]] = [{**test, "target": main.label} for test in folded.get("tests", [])]
    position = {test["id"]: i for i, test in enumerate(tests)}
    counts = {main.label: len(tests)}
    for part in extras:
        counts[part.label] = 0
        for test in part.results.get("tests", []):
            i = position.get(test["id"])
            if i is None:
                continue
            mine = tests[i]
            if mine.get("target") != main.label or mine["status"] != "not_applicable":
                continue
            if not any(said in str(mine.get("message") or "") for said in part.answers):
                continue
            tests[i] = {**test, "target": part.label}
            counts[main.label] -= 1
            counts[part.label] += 1
    folded["tests"] = tests
    folded["summary"] = summarise(tests)
    folded["targets"] = [_target_entry(main, counts[main.label])] + [_target_entry(p, counts[p.label]) for p in extras]
    return folded


def _target_entry(part: Part, tests: int) -> dict[str, Any]:
    target = part.results.get("target") or {}
    return {"label": part.label, "url": target.get("url"), "profile": target.get("profile"),
            "version": target.get("version"), "tests": tests, "answers": list(part.answers)}
