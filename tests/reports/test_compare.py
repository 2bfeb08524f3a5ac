"""`compare` flags a seeded regression, and passes an identical rerun and a rerun with only noise."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from ollama_conformance.cli import main
from ollama_conformance.reports.compare import compare
from ollama_conformance.reports.results import load_paths
from ollama_conformance.reports.stats import bootstrap_ratio, quantile_statistic


def _compare(results_dir: Path, base: list[str], cand: list[str], threshold: float = 0.05) -> dict:
    return compare(
        load_paths([results_dir / p for p in base]), load_paths([results_dir / p for p in cand]), threshold
    )


def test_identical_rerun_passes(results_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "cmp.json"
    code = main(["compare", str(results_dir / "bench_baseline"), str(results_dir / "bench_baseline"), "--json", str(out)])
    assert code == 0
    result = json.loads(out.read_text())
    assert result["verdict"] == "ok" and result["warnings"] == []
    assert {row["ratio"] for row in result["performance"]["metrics"]} == {1.0}
    assert len(result["performance"]["metrics"]) == 14  # 7 metrics x 2 steps


def test_rerun_with_only_noise_passes(results_dir: Path) -> None:
    result = _compare(results_dir, ["bench_baseline"], ["bench_noise"])
    assert result["verdict"] == "ok"
    rows = result["performance"]["metrics"]
    assert all(row["verdict"] == "unchanged" for row in rows)
    # the noise is real: some point estimates move beyond 5%, and only the interval keeps them from failing CI
    beyond = [r for r in rows if abs(r["ratio"] - 1) > 0.05]
    assert beyond and all(r["reason"] == "beyond the threshold but within noise" for r in beyond)


def test_seeded_regression_is_flagged(results_dir: Path, tmp_path: Path) -> None:
    md = tmp_path / "cmp.md"
    code = main(["compare", str(results_dir / "bench_baseline"), str(results_dir / "bench_regressed"), "--markdown", str(md)])
    assert code == 1
    result = _compare(results_dir, ["bench_baseline"], ["bench_regressed"])
    verdicts = {(r["step"], r["metric"]): r["verdict"] for r in result["performance"]["metrics"]}
    # ITL was slowed by 20% at every step: the tight per-request distribution makes it significant everywhere
    assert verdicts[("concurrency=1", "itl_ms p50")] == "regression"
    assert verdicts[("concurrency=2", "itl_ms p50")] == "regression"
    assert verdicts[("concurrency=1", "output_tokens_per_s")] == "regression"  # higher is better: a drop
    assert "Verdict: **regression**" in md.read_text()


def test_regression_within_threshold_is_not_flagged(results_dir: Path) -> None:
    result = _compare(results_dir, ["bench_baseline"], ["bench_regressed"], threshold=0.5)
    assert result["verdict"] == "ok"
    assert any(r["reason"] == "significant but within the threshold" for r in result["performance"]["metrics"])


def test_conformance_new_failures_and_passes(results_dir: Path) -> None:
    result = _compare(results_dir, ["check_baseline.json"], ["check_candidate.json"])
    conf = result["conformance"]
    assert [r["feature"] for r in conf["new_failures"]] == ["anthropic.messages.stream"]
    assert [r["feature"] for r in conf["new_passes"]] == ["generate.logprobs"]
    assert conf["by_feature"]["anthropic.messages.stream"]["new_failures"] == [
        "conformance/tests/test_anthropic.py::test_messages_stream"
    ]
    assert result["verdict"] == "regression"
    reverse = _compare(results_dir, ["check_candidate.json"], ["check_baseline.json"])
    assert [r["feature"] for r in reverse["conformance"]["new_failures"]] == ["generate.logprobs"]
    same = _compare(results_dir, ["check_baseline.json"], ["check_baseline.json"])
    assert same["verdict"] == "ok" and len(same["conformance"]["still_failing"]) == 3


def test_not_comparable_runs_warn(results_dir: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    shutil.copytree(results_dir / "bench_noise", other)
    data = json.loads((other / "results.json").read_text())
    data["model"]["digest"] = "c" * 64
    data["hardware"]["cpu"] = "Another CPU"
    data["config"]["num_predict"] = 64
    (other / "results.json").write_text(json.dumps(data))
    lines = (other / "samples.jsonl").read_text().splitlines()
    doubled = []
    for line in lines:
        sample = json.loads(line)
        sample["output_tokens"] *= 2
        doubled.append(json.dumps(sample))
    (other / "samples.jsonl").write_text("\n".join(doubled) + "\n")
    result = compare(load_paths([results_dir / "bench_baseline"]), load_paths([other]), 0.05)
    text = "\n".join(result["warnings"])
    assert "model digest differs" in text
    assert "hardware cpu differs" in text
    assert "bench config num_predict differs" in text
    assert "output lengths differ" in text


def test_unusable_input_exits_2(results_dir: Path, tmp_path: Path) -> None:
    assert main(["compare", str(results_dir / "bench_baseline"), str(tmp_path / "nope")]) == 2
    # a bench against a check: nothing to compare
    assert main(["compare", str(results_dir / "bench_baseline"), str(results_dir / "check_baseline.json")]) == 2
    with pytest.raises(SystemExit) as exc:
        main(["compare", str(results_dir / "bench_baseline"), str(results_dir / "bench_noise"), "--threshold", "lots"])
    assert exc.value.code == 2


def test_failed_requests_are_a_regression(results_dir: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(results_dir / "bench_noise", broken)
    data = json.loads((broken / "results.json").read_text())
    data["steps"][0]["requests"] = {"ok": 30, "error": 18, "timeout": 0}
    (broken / "results.json").write_text(json.dumps(data))
    result = compare(load_paths([results_dir / "bench_baseline"]), load_paths([broken]), 0.05)
    assert result["verdict"] == "regression"
    assert [e["step"] for e in result["performance"]["errors"] if e["regression"]] == ["concurrency=1"]


def test_bootstrap_interval_covers_a_known_shift() -> None:
    rng = np.random.default_rng(7)
    base = rng.lognormal(np.log(100), 0.3, size=400)
    cand = rng.lognormal(np.log(120), 0.3, size=400)
    ci = bootstrap_ratio(base, cand, quantile_statistic(0.5))
    assert ci.low < 1.2 < ci.high and ci.low > 1.0
    same = bootstrap_ratio(base, base, quantile_statistic(0.5))
    assert same.ratio == 1.0 and same.low < 1.0 < same.high


def test_run_folders_compare_as_a_whole(results_dir: Path, tmp_path: Path) -> None:
    """`compare` takes the folders `run` writes (check.json + bench/): conformance and performance together."""
    for name, check, bench in (("base", "check_baseline.json", "bench_baseline"), ("cand", "check_baseline.json", "bench_noise")):
        (tmp_path / name).mkdir()
        shutil.copy(results_dir / check, tmp_path / name / "check.json")
        shutil.copytree(results_dir / bench, tmp_path / name / "bench")
    out = tmp_path / "cmp.json"
    assert main(["compare", str(tmp_path / "base"), str(tmp_path / "cand"), "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["conformance"] is not None and result["performance"] is not None
    shutil.copy(results_dir / "check_candidate.json", tmp_path / "cand" / "check.json")
    assert main(["compare", str(tmp_path / "base"), str(tmp_path / "cand")]) == 1


def test_too_few_samples_is_said_not_hidden(results_dir: Path, tmp_path: Path) -> None:
    small = tmp_path / "small"
    shutil.copytree(results_dir / "bench_noise", small)
    lines = (small / "samples.jsonl").read_text().splitlines()
    kept = [line for line in lines if json.loads(line)["warmup"]] + [
        line for line in lines if not json.loads(line)["warmup"]
    ][:3]
    (small / "samples.jsonl").write_text("\n".join(kept) + "\n")
    result = compare(load_paths([results_dir / "bench_baseline"]), load_paths([small]), 0.05)
    assert {r["verdict"] for r in result["performance"]["metrics"]} == {"not_testable"}
    assert any("no performance metric could be tested" in w for w in result["warnings"])
    assert result["verdict"] == "ok"


def test_where_options_are_not_a_comparability_warning(results_dir: Path, tmp_path: Path) -> None:
    """Output folder, server pid and the reference backend's port change every run: they are not warned about."""
    other = tmp_path / "other"
    shutil.copytree(results_dir / "bench_noise", other)
    data = json.loads((other / "results.json").read_text())
    data["config"].update({"out_dir": "/elsewhere", "server_pid": 99, "target": "http://127.0.0.1:5"})
    (other / "results.json").write_text(json.dumps(data))
    result = compare(load_paths([results_dir / "bench_baseline"]), load_paths([other]), 0.05)
    assert result["warnings"] == []
