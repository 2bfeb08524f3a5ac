"""The engine benchmark's command line: bad input is refused, `--engine-steps` prints one figure per variant."""

from __future__ import annotations

import re
import subprocess
import sys

from ollama_conformance.reference_backend.bench import ENGINE_VARIANTS, main

BENCH = [sys.executable, "-m", "ollama_conformance.reference_backend.bench"]


def test_non_positive_counts_are_refused(capsys) -> None:  # type: ignore[no-untyped-def]
    assert main(["--num-predict", "0"]) == 2
    assert "must be positive" in capsys.readouterr().err
    assert main(["--versus", "localhost:1"]) == 2


def test_engine_steps_prints_each_variant_with_its_ratio() -> None:
    proc = subprocess.run([*BENCH, "--engine-steps", "--streams", "1", "--num-predict", "2", "--rounds", "1"],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = [line for line in proc.stdout.splitlines() if "ms/step" in line]
    assert [re.search(r"stream\(s\), (.+?): ", line)[1] for line in lines] == list(ENGINE_VARIANTS)  # type: ignore[index]
    ratios = [float(re.search(r"\(([\d.]+)x the fp32\)", line)[1]) for line in lines]  # type: ignore[index]
    assert ratios[0] == 1.0 and all(r > 0 for r in ratios)
    profile = [line for line in proc.stdout.splitlines() if "profile of the default's step" in line]
    assert len(profile) == 1 and re.search(r"weights [\d.]+ \+ head [\d.]+ \+ attention [\d.]+ \+ rest", profile[0])
