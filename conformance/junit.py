"""Make pytest's JUnit XML say what the results JSON says, test by test.

pytest writes a conformance *error* raised inside a test (a dropped connection, a stall) as `<failure>`, an
absent surface's failure (raised before the test body) as `<error>`, and an inconclusive test as a failure or a
skip. After the run each `<testcase>` is rewritten from its JSON entry: pass (no child), fail `<failure>`, error
`<error>`, not_applicable `<skipped>`, inconclusive `<skipped type="inconclusive">`; a `conformance_status`
property names the state either way, so a CI dashboard and the JSON never disagree.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

OUTCOME_TAGS = ("failure", "error", "skipped")
TAG_OF = {"fail": "failure", "error": "error", "not_applicable": "skipped", "inconclusive": "skipped"}


def align_junit(path: Path, results_by_id: dict[str, dict[str, Any]]) -> None:
    tree = ET.parse(path)
    counts = {"failures": 0, "errors": 0, "skipped": 0}
    for suite in tree.getroot().iter("testsuite"):
        for case in suite.iter("testcase"):
            entry = _entry_of(case, results_by_id)
            if entry is None:
                continue
            _rewrite(case, entry)
        for key, tag in (("failures", "failure"), ("errors", "error"), ("skipped", "skipped")):
            counts[key] = sum(1 for case in suite.iter("testcase") if case.find(tag) is not None)
            suite.set(key, str(counts[key]))
    tree.write(path, encoding="utf-8", xml_declaration=True)


def _entry_of(case: ET.Element, results_by_id: dict[str, dict[str, Any]]) -> dict[str, Any] | None:
    props = case.find("properties")
    if props is None:
        return None
    for prop in props.iter("property"):
        if prop.get("name") == "test_id":
            return results_by_id.get(prop.get("value", ""))
    return None


def _rewrite(case: ET.Element, entry: dict[str, Any]) -> None:
    status = entry["status"]
    old = [child for child in case if child.tag in OUTCOME_TAGS]
    detail = "\n".join(child.text or "" for child in old if child.text)
    for child in old:
        case.remove(child)
    props = case.find("properties")
    assert props is not None
    for prop in list(props):
        if prop.get("name") == "conformance_status":
            props.remove(prop)
    ET.SubElement(props, "property", name="conformance_status", value=status)
    tag = TAG_OF.get(status)
    if tag is None:
        return
    element = ET.SubElement(case, tag, message=entry["message"].splitlines()[0][:500] if entry["message"] else status)
    if status == "inconclusive":
        element.set("type", "inconclusive")
    text = entry["message"]
    if entry.get("curl"):
        text += "\n\n" + entry["curl"]
    if status in ("fail", "error") and detail and detail not in text:
        text += "\n\n" + detail[-4000:]
    element.text = text
