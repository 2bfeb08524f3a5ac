"""The harness against the bundled reference backend (real model): distributed workers, both surfaces."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema

SCHEMA = json.loads((Path(__file__).resolve().parents[2] / "load" / "results.schema.json").read_text())


def test_two_workers_against_the_reference_backend_merge_their_samples(reference_url, bench) -> None:
    run = bench(target=reference_url, profile="reference", model="gemma3:270m", concurrency=[2], requests=2,
                duration_s=None, workers=2, output_tokens=3, request_timeout_s=120.0)
    assert run.status == 0
    jsonschema.validate(run.results, SCHEMA)
    assert run.results["target"]["version"] and run.results["model"]["digest"]
    assert run.results["preload"]["status"] == "ok"
    step = run.results["steps"][0]
    assert step["requests"] == {"ok": 2, "error": 0, "timeout": 0}
    assert len(step["workers"]) == 2  # one sample from each worker process, merged
    assert {s["worker"] for s in run.samples} == set(step["workers"])
    for s in run.samples:
        assert s["output_tokens_source"] == "eval_count" and 1 <= s["output_tokens"] <= 3
        assert s["server"]["eval_duration"] > 0 and s["server"]["total_duration"] > 0
    assert step["metrics"]["server_decode_tokens_per_s"]["n"] == 2
    assert step["metrics"]["overhead_ms"]["n"] == 2


def test_openai_surface_of_the_reference_backend(reference_url, bench) -> None:
    run = bench(target=reference_url, profile="reference", model="gemma3:270m", surface="openai", endpoint="chat",
                concurrency=[1], requests=2, duration_s=None, output_tokens=3, request_timeout_s=120.0)
    step = run.results["steps"][0]
    assert step["requests"]["ok"] == 2, [s["error"] for s in run.samples]
    assert all(s["output_tokens_source"] == "usage" for s in run.samples)
    assert step["metrics"]["ttft_ms"]["n"] == 2
