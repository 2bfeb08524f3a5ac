"""Reports built from fixed results files carry the right numbers and states."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from ollama_conformance.cli import main
from ollama_conformance.reports.badge import badge_color, badge_svg, badge_text
from ollama_conformance.reports.results import load_paths
from ollama_conformance.reports.summary import build_summary


def _summary(results_dir: Path) -> dict:
    return build_summary(load_paths([results_dir / "check_baseline.json", results_dir / "bench_baseline"]))


def test_conformance_counts_and_rates(results_dir: Path) -> None:
    check = _summary(results_dir)["conformance"][0]
    assert {k: check["by_level"]["MUST"][k] for k in ("pass", "fail", "error", "not_applicable")} == {
        "pass": 8, "fail": 0, "error": 0, "not_applicable": 0,
    }
    assert check["by_level"]["MUST"]["rate"] == 1.0
    assert check["by_level"]["SHOULD"]["rate"] == pytest.approx(2 / 4)  # an error counts against the target
    assert check["by_level"]["MAY"]["rate"] == pytest.approx(1 / 2)  # not-applicable tests are left out
    assert check["by_surface"]["openai"]["rate"] == pytest.approx(4 / 5)
    assert check["total"] == {"pass": 11, "fail": 2, "inconclusive": 0, "not_applicable": 2, "error": 1, "rate": pytest.approx(11 / 14)}
    assert check["exact_by_level"] is None  # a v1 file carries no grades
    assert [f["feature"] for f in check["failures"]] == [
        "errors.model_not_found.message", "openai.headers.request_id", "generate.logprobs",
    ]
    states = {(f["feature"], f["surface"]): f["status"] for f in check["features"]}
    assert states[("chat.thinking", "native")] == "not_applicable"
    assert states[("openai.headers.request_id", "openai")] == "error"
    assert states[("chat.stream.ndjson", "native")] == "pass"


def test_performance_figures_match_the_raw_samples(results_dir: Path) -> None:
    summary = _summary(results_dir)
    bench = load_paths([results_dir / "bench_baseline"]).benches[0]
    step = summary["performance"][0]["steps"][1]
    assert step["name"] == "concurrency=2" and step["requests"] == {"ok": 48, "error": 0, "timeout": 0}
    ttft = np.array([s["ttft_ms"] for s in bench.step_samples("concurrency=2")])
    assert len(ttft) == 48  # warmup requests are not measured
    assert step["latency"]["ttft_ms"]["p50"] == pytest.approx(np.percentile(ttft, 50), abs=1e-3)
    assert step["latency"]["ttft_ms"]["p99"] == pytest.approx(np.percentile(ttft, 99), abs=1e-3)
    assert summary["performance"][0]["gpu"] == {"available": False, "reason": "NVML Shared Library Not Found"}
    assert summary["performance"][0]["rss_peak_bytes"] > 1_300_000_000


def test_badge_text_color_and_svg() -> None:
    rates = {"MUST": 1.0, "SHOULD": 0.9444, "MAY": None}
    assert badge_text(rates) == "MUST 100% · SHOULD 94%"
    assert badge_text({"MUST": 0.996, "SHOULD": 1.0, "MAY": 0.5}) == "MUST 99% · SHOULD 100% · MAY 50%"  # floored
    assert badge_text({}) == "no results"
    assert badge_color(rates) == "#4c1"
    assert badge_color({"MUST": 0.95}) == "#dfb317"
    assert badge_color({"MUST": 0.5}) == "#e05d44"
    svg = ET.fromstring(badge_svg(rates))
    texts = [t.text for t in svg.iter("{http://www.w3.org/2000/svg}text")]
    assert "ollama API" in texts and "MUST 100% · SHOULD 94%" in texts


class _Collector(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


def test_report_command_writes_every_artefact(results_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    code = main(["report", str(results_dir / "check_baseline.json"), str(results_dir / "bench_baseline"), "--out", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    assert "conformance: MUST 100% · SHOULD 50% · MAY 50%" in printed
    assert sorted(p.name for p in out.iterdir()) == ["badge.svg", "report.html", "report.md", "summary.json"]

    md = (out / "report.md").read_text()
    assert "| MUST | 8 | 0 | 0 | 0 | 0 | 100% |" in md
    assert "| SHOULD | 2 | 1 | 1 | 0 | 0 | 50% |" in md
    assert "### Failures (3)" in md
    assert "got 'model not found'" in md
    assert "| concurrency=1 | 48 / 0 / 0 |" in md
    assert len(md) < 65_536  # fits a GitHub comment

    summary = json.loads((out / "summary.json").read_text())
    assert summary["kind"] == "ollama-conformance.summary" and summary["schema_version"] == 1
    assert summary["conformance"][0]["by_level"]["SHOULD"]["fail"] == 1

    html = (out / "report.html").read_text()
    parser = _Collector()
    parser.feed(html)
    tags = parser.tags
    assert not [t for t, a in tags if t in ("script", "link", "img", "iframe")]  # nothing fetched, nothing run
    assert "http" not in " ".join(str(a.get("href") or "") + str(a.get("src") or "") for _, a in tags)
    svgs = [a for t, a in tags if t == "svg" and "chart" in str(a.get("class"))]
    # TTFT CDF, E2E CDF, ITL histogram, TTFT vs concurrency, throughput, throughput vs TTFT p90 (Pareto), memory
    assert len(svgs) == 7
    assert "Pareto" in html
    cells = [a for t, a in tags if t == "td" and a.get("title")]
    assert len(cells) == 16  # one matrix cell per (feature, surface), each with its reason on hover
    assert any("gemma3:270m lacks capability 'thinking'" in str(a["title"]) for a in cells)
    assert "NVML Shared Library Not Found" in html


def test_bench_only_report_has_no_badge(results_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert main(["report", str(results_dir / "bench_noise"), "--out", str(out)]) == 0
    assert not (out / "badge.svg").exists()
    assert "## Conformance" not in (out / "report.md").read_text()


def test_gpu_memory_is_drawn_when_sampled(results_dir: Path, tmp_path: Path) -> None:
    folder = tmp_path / "bench"
    folder.mkdir()
    data = json.loads((results_dir / "bench_baseline" / "results.json").read_text())
    (folder / "samples.jsonl").write_text((results_dir / "bench_baseline" / "samples.jsonl").read_text())
    t0 = data["telemetry"]["rss"]["samples"][0][0]
    data["telemetry"]["gpu"] = {
        "available": True,
        "reason": None,
        "samples": [{"device": 0, "t_ns": t0 + i * 200_000_000, "memory_used_bytes": (2000 + i) * 2**20} for i in range(50)],
    }
    (folder / "results.json").write_text(json.dumps(data))
    out = tmp_path / "out"
    assert main(["report", str(folder), "--out", str(out)]) == 0
    html = (out / "report.html").read_text()
    assert "GPU memory and RSS over time" in html and "GPU 0 memory used" in html
    assert "GPU telemetry: sampled" in (out / "report.md").read_text()


def test_grades_inconclusive_and_surfaces_reach_every_report(results_dir: Path, tmp_path: Path) -> None:
    path = results_dir / "check_graded.json"  # check_baseline.json as results v2, with one exact-only and one inconclusive
    summary = build_summary(load_paths([path]))
    check = summary["conformance"][0]
    assert check["by_level"]["MUST"]["rate"] == 1.0  # compatible: what gates
    assert check["exact_by_level"]["MUST"]["rate"] == pytest.approx(7 / 8)
    assert check["by_level"]["SHOULD"]["inconclusive"] == 1
    assert check["by_level"]["SHOULD"]["rate"] == pytest.approx(1 / 4)  # inconclusive never raises a rate
    assert any(f["status"] == "inconclusive" for f in check["failures"])
    out = tmp_path / "out"
    assert main(["report", str(path), "--out", str(out)]) == 0
    markdown = (out / "report.md").read_text()
    assert "compatible MUST 100% · exact MUST 87%" in markdown
    assert "surface **anthropic**: absent (POST /v1/messages → 404)" in markdown
    assert "| inconclusive |" in markdown
    html = (out / "report.html").read_text()
    assert "Level (exact)" in html and "? inconclusive" in html and " ≠" in html
    assert "compatible MUST 100% · exact MUST 87%" in (out / "badge.svg").read_text()
