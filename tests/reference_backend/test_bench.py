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


def test_memory_split_accounts_for_the_resident_memory() -> None:
    import os

    from ollama_conformance.reference_backend.bench import memory_mb, memory_split

    split = memory_split(os.getpid())
    total = memory_mb(os.getpid())["VmRSS"]
    assert set(split) == {"weights", "libraries", "anonymous", "other"}
    assert split["libraries"] > 10 and split["anonymous"] > 10  # this process has torch loaded
    assert abs(sum(split.values()) - total) < 0.1 * total


def test_memory_prints_each_phase_the_peak_and_the_steady_figure() -> None:
    proc = subprocess.run([*BENCH, "--memory", "--context", "512", "--num-predict", "2"],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    phases = re.findall(r"RSS (\d+) MB \(anon (\d+), file-mapped (\d+)\), peak so far (\d+) MB", proc.stdout)
    assert len(phases) == 6, proc.stdout  # loaded, then five phases
    for rss, anon, mapped, peak in (tuple(map(int, p)) for p in phases):
        assert 100 < rss <= peak and abs(anon + mapped - rss) <= 2
    peaks = [int(p[3]) for p in phases]
    assert peaks == sorted(peaks)  # a peak since start never goes down
    steady, peak = map(int, re.search(r"idle after the workload\): (\d+) MB; peak over the run: (\d+) MB",
                                      proc.stdout).groups())  # type: ignore[union-attr]
    assert 100 < steady <= peak and peak >= peaks[-1]
    weights = re.search(r"by mapping, steady: weights (\d+) MB", proc.stdout)
    assert weights and int(weights[1]) > 100  # the GGUF's weights as the kernels take them, memory-mapped
    assert main(["--memory", "--context", "16"]) == 2
