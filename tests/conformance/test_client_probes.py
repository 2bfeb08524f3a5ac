"""The official clients' scripted probes (conformance/client_probes) against real servers.

On the bundled backend every scenario of every client passes; through the seeded-defect proxy with a connection
dropped mid-stream, exactly the streaming scenarios fail, each naming the client call that broke and the client's
own exception. The JavaScript packages install on demand into the npm cache folder (network to npm needed once).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from broken_target import BrokenTarget

from ollama_conformance.cli import main
from ollama_conformance.conformance.client_probes import js_clients
from ollama_conformance.conformance.client_probes.model import CLIENTS
from ollama_conformance.conformance.client_probes.runner import parse_clients, run_clients
from ollama_conformance.conformance.differential import discover_models
from ollama_conformance.conformance.results import validate_results
from ollama_conformance.errors import UsageError


def test_client_names() -> None:
    assert parse_clients("all") == list(CLIENTS)
    assert parse_clients("") == [] and parse_clients("none") == []
    assert parse_clients("openai-js, ollama-python") == ["openai-js", "ollama-python"]
    with pytest.raises(UsageError, match="unknown client"):
        parse_clients("ollama-go")


def test_clients_usage_errors_come_before_the_suite(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "--clients", "ollama-go"]) == 2
    assert main(["check", "--clients", "all"]) == 2  # no --target: nothing would be left to probe after the suite
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 2


def test_without_node_js_clients_are_not_applicable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.setattr(js_clients, "NODE", "/nonexistent/node")
    result = js_clients.run_js_client("ollama-js", "http://127.0.0.1:9", "m", None)
    assert (result.state, result.reason) == ("not_applicable", "node is not installed")
    assert "not applicable (node is not installed)" in result.summary()


@pytest.fixture(scope="module")
def models(warm_reference_url: str) -> tuple[str, str | None]:
    with httpx.Client(base_url=warm_reference_url, timeout=60) as client:
        model, embed = discover_models(client)
    assert model is not None and embed is not None
    return model, embed


@pytest.mark.slow
@pytest.mark.parametrize("client", CLIENTS)
def test_every_scenario_passes_on_the_bundled_backend(warm_reference_url: str, models: tuple[str, str | None], client: str) -> None:
    (result,) = run_clients([client], warm_reference_url, *models)
    assert result.state == "ran", result.reason
    assert result.version
    failures = [f"{s.name}: {s.step}: {s.exception}" for s in result.scenarios if s.status != "pass"]
    assert not failures, "\n".join(failures)
    assert len(result.scenarios) >= 5


@pytest.fixture(scope="module")
def broken(warm_reference_url: str) -> Iterator[BrokenTarget]:
    proxy = BrokenTarget(warm_reference_url).start()
    yield proxy
    proxy.stop()


@pytest.mark.slow
def test_a_broken_stream_names_the_call_and_the_client_exception(broken: BrokenTarget, models: tuple[str, str | None]) -> None:
    (result,) = run_clients(["ollama-python"], broken.url_for("drop_connection"), *models)
    failed = {s.name: s for s in result.scenarios if s.status != "pass"}
    assert set(failed) == {"chat stream", "generate stream"}, {n: s.exception for n, s in failed.items()}
    assert failed["chat stream"].step == "client.chat(model, messages, stream=True)"
    assert failed["generate stream"].step == "client.generate(model, prompt, stream=True)"
    for scenario in failed.values():  # the exception the client raised, by its own type name
        assert scenario.exception.split(":")[0].startswith(("httpx.", "httpcore.", "ollama.")), scenario.exception
    assert result.summary() == f"ollama-python {result.version}: {len(result.scenarios) - 2}/{len(result.scenarios)}"


@pytest.mark.slow
def test_check_clients_section_in_the_results(warm_reference_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "check.json"
    code = main(["check", "--target", warm_reference_url, "--feature", "server.version", "--clients", "anthropic-python",
                 "--json", str(out), "-q"])
    data = json.loads(out.read_text())
    assert validate_results(data) == []
    (section,) = data["clients"]
    assert section["client"] == "anthropic-python" and section["passed"] == section["total"] > 0
    assert code == 0
    assert f"clients: anthropic-python {section['version']}: {section['total']}/{section['total']}" in capsys.readouterr().out
