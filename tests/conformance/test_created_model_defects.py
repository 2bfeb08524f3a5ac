"""The created-model and context-shift checks (conformance/suite/test_create_behaviour.py) each fail on a seeded
defect: a proxy in front of the real reference backend drops one thing a created model or a request carries
(the SYSTEM, TEMPLATE, PARAMETER or MESSAGE of /api/create, a request's system, the context shift), so the
defect is the only difference from the control run, which must pass."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from broken_target import pass_through
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route
from suite_runs import run_suite, statuses

pytestmark = pytest.mark.slow
HOP_HEADERS = {"content-length", "transfer-encoding", "connection", "content-encoding", "keep-alive"}
SUITE_FILE = "test_create_behaviour.py"


def _drop_create_field(field: str) -> Callable[[str, dict[str, Any]], None]:
    def defect(path: str, body: dict[str, Any]) -> None:
        if path == "api/create":
            body.pop(field, None)

    return defect


def _request_system_ignored(path: str, body: dict[str, Any]) -> None:
    """A server that keeps a created model's SYSTEM over the request's."""
    if path == "api/generate" and str(body.get("model", "")).startswith("conformance-made-"):
        body.pop("system", None)


def _no_context_shift(path: str, body: dict[str, Any]) -> None:
    """A server that stops (or fails) when the context is full instead of shifting it."""
    if path == "api/generate":
        body["shift"] = False


# defect -> (its request rewrite, the test under conformance/suite/test_create_behaviour.py that must fail)
DEFECTS: dict[str, tuple[Callable[[str, dict[str, Any]], None], str]] = {
    "drop_created_system": (_drop_create_field("system"), "test_created_system_is_applied"),
    "request_system_ignored": (_request_system_ignored, "test_created_system_is_applied"),
    "drop_created_template": (_drop_create_field("template"), "test_created_template_is_rendered"),
    "drop_created_parameters": (_drop_create_field("parameters"), "test_created_parameters_are_defaults"),
    "drop_created_messages": (_drop_create_field("messages"), "test_created_messages_are_prepended"),
    "no_context_shift": (_no_context_shift, "test_generation_longer_than_the_context_completes"),
}
CHECKS = sorted({test for _, test in DEFECTS.values()})


def build_app(upstream: str) -> Starlette:
    client = httpx.AsyncClient(base_url=upstream, timeout=httpx.Timeout(600.0, connect=10.0))

    async def forward(request: Request) -> Response:
        defect, path = request.path_params["defect"], request.path_params["path"]
        if defect != "none" and defect not in DEFECTS:
            return Response(f"unknown defect {defect!r}", status_code=400, media_type="text/plain")
        raw = await request.body()
        if raw and defect in DEFECTS:
            try:
                body = json.loads(raw)
            except ValueError:
                body = None
            if isinstance(body, dict):
                DEFECTS[defect][0](path, body)
                raw = json.dumps(body).encode()
        headers = {k: v for k, v in request.headers.items() if k.lower() in ("content-type", "authorization", "accept")}
        upstream_request = client.build_request(
            request.method, "/" + path, params=request.query_params, content=raw, headers=headers
        )
        answer = await client.send(upstream_request, stream=True)
        out_headers = {k: v for k, v in answer.headers.items() if k.lower() not in HOP_HEADERS}
        return StreamingResponse(pass_through(answer), status_code=answer.status_code, headers=out_headers)

    methods = ["GET", "HEAD", "POST", "PUT", "DELETE"]
    return Starlette(routes=[Route("/defect/{defect}/{path:path}", forward, methods=methods)])


@pytest.fixture(scope="module")
def proxy(warm_reference_url: str) -> Iterator[str]:
    config = uvicorn.Config(build_app(warm_reference_url), host="127.0.0.1", port=0, log_level="critical",
                            lifespan="off")  # fmt: skip
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="created-defects", daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not (server.started and server.servers):
        assert time.monotonic() < deadline and thread.is_alive(), "the defect proxy did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
    server.should_exit = True
    thread.join(timeout=10)


def _run(proxy: str, defect: str, tests: list[str], tmp_path: Path) -> dict[str, dict[str, Any]]:
    selection = [f"{SUITE_FILE}::{test}" for test in tests]
    _, results, output = run_suite(f"{proxy}/defect/{defect}", tmp_path, selection, "--ollama-allow-mutations")
    found = statuses(results)
    for test in tests:
        assert f"conformance/suite/{SUITE_FILE}::{test}" in found, f"{test} did not run:\n{output[-3000:]}"
    return {test: found[f"conformance/suite/{SUITE_FILE}::{test}"] for test in tests}


def test_control_passes(proxy: str, tmp_path: Path) -> None:
    found = _run(proxy, "none", CHECKS, tmp_path)
    failing = {test: (entry["status"], entry["message"]) for test, entry in found.items() if entry["status"] != "pass"}
    assert not failing, f"control run: {failing}"


@pytest.mark.parametrize("defect", sorted(DEFECTS))
def test_defect_is_caught(proxy: str, tmp_path: Path, defect: str) -> None:
    test = DEFECTS[defect][1]
    entry = _run(proxy, defect, [test], tmp_path)[test]
    assert entry["status"] == "fail", f"defect {defect}: {test} is {entry['status']} ({entry['message']})"


def test_mutating_checks_need_permission(warm_reference_url: str, tmp_path: Path) -> None:
    """Without --allow-mutations the create checks do not run (not applicable), and create nothing."""
    selection = [f"{SUITE_FILE}::test_created_system_is_applied"]
    _, results, output = run_suite(warm_reference_url, tmp_path, selection)
    entry = statuses(results).get(f"conformance/suite/{SUITE_FILE}::test_created_system_is_applied")
    assert entry is not None and entry["status"] == "not_applicable", output[-2000:]
    with httpx.Client(base_url=warm_reference_url, timeout=60) as client:
        names = [m["model"] for m in client.get("/api/tags").json()["models"]]
    assert not [n for n in names if n.startswith("conformance-made-")], "a created model was left behind"
