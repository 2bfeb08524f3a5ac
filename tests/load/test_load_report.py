"""A bench sweep in the HTML report: the Pareto chart of the sweep, the token-count source, the capacity search."""

from __future__ import annotations

import re
from pathlib import Path

from ollama_conformance.load.capacity import SearchOptions
from ollama_conformance.reports.results import load_paths
from ollama_conformance.reports.svgplot import pareto_front
from ollama_conformance.reports.writer import write_reports


def test_pareto_front_keeps_only_undominated_points() -> None:
    points = [(10.0, 50.0), (20.0, 60.0), (15.0, 70.0), (30.0, 200.0), (25.0, 55.0)]
    assert pareto_front(points) == [(10.0, 50.0), (25.0, 55.0), (30.0, 200.0)]


def test_a_capacity_search_sweep_is_charted_and_explained(synthetic, bench, tmp_path: Path) -> None:
    server = synthetic("--slots", "1", "--ttft-ms", "20", "--interval-ms", "10", "--chunks", "4")
    run = bench(target=server.url, surface="openai", arrival="constant", slo={"ttft_ms": 1000.0}, duration_s=1.5,
                find_max_rate=True, search=SearchOptions(start_rps=2.0, max_probes=2))
    assert run.status == 0
    assert [p["rate_rps"] for p in run.results["capacity"]["probes"]] == [2.0, 4.0]
    written = write_reports(load_paths([run.out]), tmp_path / "report")
    html = written.html.read_text()
    svg = re.search(r'<svg[^>]*aria-label="Throughput vs latency \(Pareto\)".*?</svg>', html, re.S)
    assert svg is not None
    # one labelled point per step of the sweep, on real axes
    assert ">rate=2<" in svg.group(0) and ">rate=4<" in svg.group(0) and "no data" not in svg.group(0)
    assert svg.group(0).count("<circle") == 2
    assert "Max sustainable rate" in html and "2: " in html
    # the step table says where N_out came from: the server's usage, asked for with include_usage
    assert re.search(r"<td>usage \d+</td>", html)
