"""reference_backend.gotemplate against Go's own text/template: tests/gotemplate/oracle.go renders every template
of the corpus over every fixed input (as Ollama's template package executes it) and every text, or Go's error,
must match byte for byte."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from ollama_conformance.reference_backend.api import prompts
from tests.conftest import missing_outside_pypi

HERE = Path(__file__).parent
# the corpus, and the template the backend ships for gemma3:270m (what /api/show gives and generation renders)
BUNDLED = HERE.parents[1] / "reference_backend" / "store" / "templates" / "gemma3.gotmpl"
CORPUS = [*sorted((HERE / "corpus").glob("*.gotmpl")), BUNDLED]
INPUTS: dict[str, dict[str, Any]] = json.loads((HERE / "inputs.json").read_text())
ERRORS: dict[str, str] = json.loads((HERE / "errors.json").read_text())
# constructs.gotmpl indexes .Tools and tool calls: it runs over the input that has them
ONLY = {"constructs": ["tools_round"]}


def _cases() -> list[dict[str, Any]]:
    cases = []
    for path in CORPUS:
        for input_name, values in INPUTS.items():
            if path.stem in ONLY and input_name not in ONLY[path.stem]:
                continue
            stem = "bundled_gemma3" if path == BUNDLED else path.stem
            cases.append({"name": f"{stem}/{input_name}", "template": path.read_text(), **values})
    for name, template in ERRORS.items():
        cases.append({"name": f"error/{name}", "template": template, **INPUTS["single_user"]})
    return cases


@pytest.fixture(scope="module")
def go_renderings() -> dict[str, dict[str, str]]:
    go = shutil.which("go")
    if go is None:
        missing_outside_pypi("Go is required for the template oracle (Debian: apt-get install -y golang-go)")
    result = subprocess.run(
        [go, "run", str(HERE / "oracle.go")],
        input=json.dumps(_cases()),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return {item["name"]: item for item in json.loads(result.stdout)}


def _python(case: dict[str, Any]) -> dict[str, str]:
    try:
        text = prompts.render(
            case["template"],
            case.get("messages") or [],
            case.get("tools"),
            prompt=case.get("prompt") or "",
            suffix=case.get("suffix") or "",
            think=case.get("think"),
        )
    except prompts.TemplateError as exc:
        return {"name": case["name"], "error": str(exc)}
    return {"name": case["name"], "output": text}


@pytest.mark.parametrize("case", _cases(), ids=lambda c: c["name"])
def test_renders_as_go(case: dict[str, Any], go_renderings: dict[str, dict[str, str]]) -> None:
    assert _python(case) == go_renderings[case["name"]]


def test_corpus_covers_the_library_shapes() -> None:
    names = {p.stem for p in CORPUS}
    assert {"llama3", "qwen2", "qwen3", "mistral", "gemma3", "deepseek", "gptoss", "legacy_chatml"} <= names
    # the oracle must see real output, not errors, for the shapes (an error on both sides would also "match")
    assert all(not c["name"].startswith("error/") or c["template"] for c in _cases())


def test_library_shapes_render_without_error(go_renderings: dict[str, dict[str, str]]) -> None:
    failed = {n: r["error"] for n, r in go_renderings.items() if "error" in r and not n.startswith("error/")}
    assert not failed
    refused = [n for n, r in go_renderings.items() if n.startswith("error/") and "error" not in r]
    assert not refused
