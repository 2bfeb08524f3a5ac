"""`bench --calibrate`, shortened: every step runs and reports its errors; the figures themselves are printed, not
asserted (performance is measured by benchmarks, never by timed assertions)."""

from __future__ import annotations

import io
import json
from pathlib import Path

from ollama_conformance.load.calibrate import NOMINAL_ITL_MS, run_calibration, verdicts


def test_calibration_runs_every_step_and_writes_its_report(tmp_path: Path) -> None:
    text = io.StringIO()
    assert run_calibration(duration_s=1.0, out_dir=str(tmp_path), stream=text) == 0
    report = json.loads((tmp_path / "calibration" / "calibration.json").read_text())
    assert report["schedule"]["nominal_itl_ms"] == NOMINAL_ITL_MS
    assert [s["name"] for s in report["steps"]] == ["openai-c1", "openai-c16", "openai-c64", "native-c64"]
    for step in report["steps"]:
        assert step["requests"] > 0 and step["errors"] == 0
        assert step["output_tokens"]["min"] == step["output_tokens"]["max"] == 50  # server counts, not chunks
        assert step["ttft_err_ms"]["n"] == step["requests"]
        assert step["vs_server_stamps"]["ttft_err_ms"]["n"] == step["requests"]
        assert step["server_lateness"]["requests"] >= step["requests"]
    assert all(r["chunks_per_s"] > 0 for r in report["chunk_rate"])
    assert {v["name"] for v in report["verdicts"]} == {v["name"] for v in verdicts(report)}
    assert "max chunk rate" in text.getvalue()
