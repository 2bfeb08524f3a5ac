"""Fixtures shared by every conformance test: the discovered target, an HTTP client, the model names."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from ollama_conformance.conformance.checks import Api
from ollama_conformance.conformance.cloud_profile import session_budget
from ollama_conformance.conformance.target import Target


class TargetUnavailable(Exception):
    """The target could not be discovered: every test reports this as an error."""


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
    hooks = {"request": [session_budget(pytestconfig).spend]}  # --max-requests (conformance/cloud_profile.py)
    with httpx.Client(base_url=target.url, headers=target.headers(), timeout=timeout, event_hooks=hooks) as http:
        yield http


@pytest.fixture(scope="session")
def api(client: httpx.Client, target: Target) -> Api:
    return Api(client, target)


@pytest.fixture(scope="session")
def chat_model(target: Target) -> str:
    if not target.chat_model:
        pytest.skip("the target serves no model with the 'completion' capability (give one with --model)")
    return target.chat_model


@pytest.fixture(scope="session")
def embed_model(target: Target) -> str:
    if not target.embed_model:
        pytest.skip("the target serves no model with the 'embedding' capability (give one with --embed-model)")
    return target.embed_model


@pytest.fixture(autouse=True)
def _applicable(request: pytest.FixtureRequest) -> None:
    """A feature needing a capability the model lacks is not applicable; mutating tests need --allow-mutations."""
    marker = request.node.get_closest_marker("feature")
    if marker is None:
        return
    if request.node.get_closest_marker("mutating") and not request.config.option.allow_mutations:
        pytest.skip("changes the target's models: run with --allow-mutations")
    from ollama_conformance import spec

    feature = spec.features().get(marker.args[0])
    capability = feature.capability if feature else None
    if not capability:
        return
    target: Target = request.getfixturevalue("target")
    model = target.embed_model if capability == "embedding" else target.chat_model
    if model is None:
        pytest.skip(f"the target serves no model with the {capability!r} capability")
    if capability not in target.capabilities(model):
        pytest.skip(f"model {model} lacks the {capability!r} capability (from /api/show)")
