"""The GitHub Action (action.yml): its steps' own commands, run here as the runner would run them.

The install step is not run (it would replace this checkout's editable install); every other shell step is, with
the `${{ ... }}` expressions bound to this machine: inputs, runner.temp, the step outputs written to GITHUB_OUTPUT.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
EXPRESSION = re.compile(r"\$\{\{\s*([^}]+?)\s*\}\}")


def _action() -> dict[str, Any]:
    return yaml.safe_load((REPO / "action.yml").read_text(encoding="utf-8"))


def _run_steps(inputs: dict[str, str], temp: Path) -> dict[str, subprocess.CompletedProcess[str]]:
    action = _action()
    values = {f"inputs.{k}": str(v.get("default", "")) for k, v in action["inputs"].items()}
    values.update({f"inputs.{k}": v for k, v in inputs.items()})
    values.update({"runner.temp": str(temp), "github.action_path": str(REPO)})
    outputs: dict[str, str] = {}
    done: dict[str, subprocess.CompletedProcess[str]] = {}
    for step in action["runs"]["steps"]:
        if "run" not in step or step["id"] == "install":
            continue
        resolve = lambda text: EXPRESSION.sub(lambda m: values[m.group(1)], str(text))  # noqa: E731
        output_file = temp / f"output-{step['id']}"
        output_file.write_text("")
        env = {**os.environ, **{k: resolve(v) for k, v in step.get("env", {}).items()}, "GITHUB_OUTPUT": str(output_file)}
        env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"  # this venv's ollama-conformance
        env.pop("GITHUB_STEP_SUMMARY", None)
        done[step["id"]] = subprocess.run(["bash", "-eo", "pipefail", "-c", step["run"]], env=env, cwd=temp,
                                          capture_output=True, text=True, timeout=900)
        for line in output_file.read_text().splitlines():
            key, _, value = line.partition("=")
            outputs[key] = value
            values[f"steps.{step['id']}.outputs.{key}"] = value
    return done


def test_action_inputs_and_steps_are_declared() -> None:
    action = _action()
    assert action["runs"]["using"] == "composite"
    assert {"target", "model", "gate", "surfaces"} <= set(action["inputs"])
    assert action["inputs"]["gate"]["default"] == "MUST"
    assert any(str(s.get("uses", "")).startswith("actions/upload-artifact@") for s in action["runs"]["steps"])
    for step in action["runs"]["steps"]:  # inputs reach the scripts through env, never pasted into the script
        assert "${{" not in str(step.get("run", "")), step.get("id")


@pytest.mark.slow
def test_action_steps_check_report_and_gate(reference_url: str, tmp_path: Path) -> None:
    done = _run_steps({"target": reference_url, "surfaces": "native", "extra-args": "--feature server.*"}, tmp_path)
    out = tmp_path / "ollama-conformance"
    assert done["check"].returncode == 0, done["check"].stdout[-3000:]
    assert (out / "check.json").is_file() and (out / "junit.xml").is_file()
    assert done["report"].returncode == 0, done["report"].stdout[-2000:] + done["report"].stderr[-2000:]
    for name in ("report.md", "report.html", "summary.json", "badge.svg"):
        assert (out / name).is_file(), name
    assert done["gate"].returncode == 0


def test_action_gate_fails_when_nothing_answers(tmp_path: Path) -> None:
    done = _run_steps({"target": "http://127.0.0.1:9", "extra-args": "--timeout 5"}, tmp_path)
    assert done["check"].returncode == 0  # the step records the code; the gate step acts on it
    assert done["report"].returncode == 0  # the report step never hides the gate's verdict
    assert done["gate"].returncode == 3, done["gate"].stdout
