"""Fixtures shared by every conformance test: the discovered target, an HTTP client, the model names, and the
checks run before each test: its surface present, its preconditions served, its capability not known missing."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from ollama_conformance.conformance import session as recording
from ollama_conformance.conformance.checks import Api
from ollama_conformance.conformance.cloud_profile import session_budget
from ollama_conformance.conformance.streams import Captured
from ollama_conformance.conformance.suite.payloads import capped
from ollama_conformance.conformance.target import Target


class TargetUnavailable(Exception):
    """The target could not be discovered: every test reports this as an error."""


class RecordingApi(Api):
    """`Api` that caps the output of every generating request that names no cap (payloads.capped) and keeps each
    answer's body for the results (the exchange of a test that did not pass)."""

    def call(self, method: str, path: str, body: Any = None, **kwargs: Any) -> Captured:
        got = super().call(method, path, capped(path, body), **kwargs)
        recording.record_body(got.text)
        return got


def _session(config: pytest.Config):
    session = config.pluginmanager.get_plugin("ollama-conformance-session")
    if session is None:
        raise TargetUnavailable("the conformance plugin is not active (run the suite through pytest --pyargs ollama_conformance.conformance)")
    return session


@pytest.fixture(scope="session")
def target(pytestconfig: pytest.Config) -> Target:
    session = _session(pytestconfig)
    found = session.resolve_target()
    if found is None:
        raise TargetUnavailable(session.target_error or "target unavailable")
    return found


@pytest.fixture(scope="session")
def client(target: Target, pytestconfig: pytest.Config) -> Iterator[httpx.Client]:
    timeout = httpx.Timeout(target.timeout_s, connect=min(10.0, target.timeout_s))
    # --ollama-max-requests (conformance/cloud_profile.py); every answer is recorded for the failure report.
    hooks = {"request": [session_budget(pytestconfig).spend], "response": [recording.record_response]}
    # an idle kept-alive connection is not reused after 2 s: servers close idle ones (llama-server after 5 s), and a
    # request sent on a connection the server is closing fails without ever reaching it
    limits = httpx.Limits(keepalive_expiry=2.0)
    with httpx.Client(base_url=target.url, headers=target.headers(), timeout=timeout, event_hooks=hooks,
                      limits=limits) as http:
        yield http


@pytest.fixture(scope="session")
def api(client: httpx.Client, target: Target) -> Api:
    return RecordingApi(client, target)


# Function-scoped (cheap lookups), so the autouse check below runs first: an absent surface's test fails with
# that cause rather than skipping for want of a model.
@pytest.fixture
def chat_model(target: Target) -> str:
    if not target.chat_model:
        pytest.skip("no chat model known on the target (none with the 'completion' capability): give one with --model")
    return target.chat_model


@pytest.fixture
def embed_model(target: Target) -> str:
    if not target.embed_model:
        pytest.skip("no embedding model known on the target (none with the 'embedding' capability): give one with --embed-model")
    return target.embed_model


@pytest.fixture(autouse=True)
def _applicable(request: pytest.FixtureRequest) -> None:
    """Before each test, in this order:
    - its surface is absent: the test fails with that one cause (the same line for every test of the surface);
    - a precondition owned by another feature (a surface, a route) is missing: not applicable, naming it;
    - the model lacks the capability (per /api/show) and the target refuses a request needing it (as Ollama
      does): not applicable; the target serves it anyway: the test runs; capabilities unknown: it runs, flagged;
    - mutating tests need --allow-mutations."""
    marker = request.node.get_closest_marker("feature")
    if marker is None:
        return
    if request.node.get_closest_marker("mutating") and not request.config.option.ollama_allow_mutations:
        pytest.skip("changes the target's models: run with --allow-mutations")
    from ollama_conformance import spec

    feature = spec.features().get(marker.args[0])
    if feature is None:
        return
    target: Target = request.getfixturevalue("target")
    if feature.surface == "cloud" and target.profile != "cloud" and not target.has_surface("native"):
        # off the cloud profile these are the daemon's cloud rules: a feature of the native daemon, not a surface
        pytest.skip(f"the daemon's cloud rules need the native surface, which the target lacks "
                    f"({target.absent_reason('native')})")
    absent = target.absent_reason(feature.surface)
    if absent:
        request.node.user_properties.append(("conformance_absent", absent))
        pytest.fail(absent, pytrace=False)
    for needs in request.node.iter_markers("requires_surface"):
        for surface in needs.args:
            if not target.has_surface(surface):
                pytest.skip(f"compares with the {surface} surface, which the target lacks ({target.absent_reason(surface)})")
    for needs in request.node.iter_markers("requires_route"):
        method, path = needs.args
        missing = _session(request.config).route_missing(method, path)
        if missing:
            owner = needs.kwargs.get("feature")
            owned = f" (feature {owner}, {spec.features()[owner].level})" if owner in spec.features() else ""
            pytest.skip(f"needs {method} {path}{owned}, which the target does not serve: {missing}")
    capability = feature.capability
    if not capability:
        return
    model = target.embed_model if capability == "embedding" else target.chat_model
    if model is None:
        flag = "--embed-model" if capability == "embedding" else "--model"
        pytest.skip(f"no model with the {capability!r} capability known on the target: give one with {flag}")
    capabilities = target.capabilities(model)
    if capabilities is None:
        request.node.user_properties.append(("capability_unknown", True))
    elif capability not in capabilities:
        served, evidence = _session(request.config).capability_probe(model, capability)
        if not served:
            pytest.skip(f"model {model} lacks the {capability!r} capability (from /api/show; {evidence})")
        # the server does not refuse what it says the model cannot do: its behaviour is judged, not its claim
        request.node.user_properties.append(("capability_contradicted", f"/api/show leaves out {capability!r}, "
                                             f"yet {evidence}"))
