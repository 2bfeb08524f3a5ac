"""Lint the documents with Redocly CLI (npm `@redocly/cli`, configured by spec/redocly.yaml).

Install (CI): `npm install --no-save --no-package-lock @redocly/cli@2.77.0` in the repo root (node_modules/ is
git-ignored). Without it the test is skipped with that instruction, visibly; in CI (CI set) it fails.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from ollama_conformance import spec
from ollama_conformance.spec.documents import SPEC_DIR

REDOCLY = SPEC_DIR.parent / "node_modules" / ".bin" / "redocly"


@pytest.mark.parametrize("surface", spec.SURFACES)
def test_redocly_lint(surface: str) -> None:
    if not REDOCLY.exists():
        if os.environ.get("CI"):  # .ci/run installs it: missing there is a failure, not a skip
            pytest.fail("Redocly CLI missing in CI: .ci/run must npm-install @redocly/cli")
        pytest.skip("Redocly CLI not installed: npm install --no-save --no-package-lock @redocly/cli@2.77.0")
    proc = subprocess.run(
        [
            str(REDOCLY),
            "lint",
            "--config",
            str(SPEC_DIR / "redocly.yaml"),
            "--format",
            "summary",
            str(SPEC_DIR / f"{surface}.yaml"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=Path(SPEC_DIR.parent),
        env={**os.environ, "REDOCLY_TELEMETRY": "off", "REDOCLY_SUPPRESS_UPDATE_NOTICE": "true"},
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    findings = [line for line in proc.stdout.splitlines() if line.startswith(("error", "warning"))]
    assert findings == [], proc.stdout
