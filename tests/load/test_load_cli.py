"""`ollama-conformance bench` as a user runs it: bad input is one clear line and exit 2, an unusable target exit 3."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from ollama_conformance.cli import main


def bench_cli(*args: str, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ollama_conformance", "bench", *args], capture_output=True,
                          text=True, timeout=timeout, stdin=subprocess.DEVNULL)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--concurrency", "0"], "--concurrency values must be > 0"),
        (["--concurrency", "1.5"], "whole numbers"),
        (["--rate", "fast"], "invalid --rate"),
        (["--rate", "1", "--arrival", "gamma:-2"], "gamma:K needs K > 0"),
        (["--duration", "soon"], "invalid --duration"),
        (["--slo", "ttft=fast"], "invalid SLO ttft"),
        (["--slo", "latency=5s"], "invalid SLO"),
        (["--prompts", "/nonexistent/prompts.txt"], "cannot read prompts file"),
        (["--surface", "openai", "--endpoint", "generate"], "no endpoint 'generate' on surface 'openai'"),
        (["--workers", "-1"], "--workers must be between"),
        (["--input-tokens", "uniform:9,2"], "invalid --input-tokens"),
        (["--output-tokens", "normal:x"], "invalid --output-tokens"),
        (["--workload", "multi-turn", "--rate", "1"], "multi-turn is a closed loop"),
        (["--workload", "multi-turn", "--endpoint", "generate"], "needs --endpoint chat"),
        (["--workload", "trace"], "needs --trace FILE"),
        (["--workload", "trace", "--trace", "/nonexistent/t.jsonl"], "cannot read trace"),
        (["--trace", "/nonexistent/t.jsonl"], "--trace is for --workload trace"),
        (["--find-max-rate"], "--find-max-rate needs --slo"),
        (["--find-max-rate", "--slo", "ttft=1s", "--goodput-fraction", "2"], "--goodput-fraction"),
        (["--find-max-rate", "--slo", "ttft=1s", "--search-budget", "soon"], "invalid --search-budget"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path: Path, capsys, args: list[str], message: str) -> None:
    # in-process (the dispatcher's own error handling): options are checked before locust or any target is used
    status = main(["bench", "--target", "http://127.0.0.1:9", "--out", str(tmp_path), *args])
    err = capsys.readouterr().err
    assert status == 2, err
    assert message in err and len(err.strip().splitlines()) == 1


def test_unreachable_target_is_exit_3(tmp_path: Path) -> None:
    r = bench_cli("--target", "http://127.0.0.1:9", "--out", str(tmp_path), "--duration", "1s")
    assert r.returncode == 3
    assert "cannot reach http://127.0.0.1:9" in r.stderr and "Traceback" not in r.stderr


def test_cli_run_against_synthetic_writes_every_output(synthetic, tmp_path: Path) -> None:
    server = synthetic("--ttft-ms", "10", "--interval-ms", "5", "--chunks", "3")
    out = tmp_path / "out"
    r = bench_cli("--target", server.url, "--model", "synthetic", "--surface", "openai", "--endpoint",
                  "completions", "--concurrency", "2", "--duration", "1s", "--warmup", "0s", "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert "concurrency=2: ok" in r.stderr
    results = json.loads((out / "results.json").read_text())
    assert results["kind"] == "ollama-conformance.bench" and results["config"]["path"] == "/v1/completions"
    assert (out / "samples.jsonl").stat().st_size > 0
    assert (out / "locust" / "concurrency-2" / "locust_stats.csv").exists()


def test_embed_endpoint_measures_e2e_only(synthetic, tmp_path: Path) -> None:
    server = synthetic()
    out = tmp_path / "out"
    r = bench_cli("--target", server.url, "--model", "synthetic", "--endpoint", "embed", "--requests", "5",
                  "--warmup", "0s", "--out", str(out))
    assert r.returncode == 0, r.stderr
    step = json.loads((out / "results.json").read_text())["steps"][0]
    assert step["requests"]["ok"] >= 5
    assert step["metrics"]["e2e_ms"]["n"] == step["requests"]["ok"] and step["metrics"]["ttft_ms"]["n"] == 0
