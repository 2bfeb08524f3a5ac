"""Native error behaviour: unknown and missing models per endpoint, empty and malformed bodies, wrong types."""

from __future__ import annotations

import pytest

from ollama_conformance.conformance.checks import Api, exact

MISSING = "no-such-model-xyz"

# Ollama's status when `model` is absent differs per endpoint (ollama-api-facts §4).
MODEL_REQUIRED = [
    ("/api/chat", {"messages": [{"role": "user", "content": "hi"}]}, 400),
    ("/api/generate", {"prompt": "hi"}, 404),
    ("/api/embed", {"input": "hi"}, 404),
    ("/api/embeddings", {"prompt": "hi"}, 400),
    ("/api/show", {}, 400),
]
NOT_FOUND = [
    ("/api/chat", {"model": MISSING, "messages": [{"role": "user", "content": "hi"}]}),
    ("/api/generate", {"model": MISSING, "prompt": "hi"}),
    ("/api/embed", {"model": MISSING, "input": "hi"}),
    ("/api/embeddings", {"model": MISSING, "prompt": "hi"}),
]
INFERENCE = ["/api/chat", "/api/generate", "/api/embed", "/api/show"]


@pytest.mark.feature("errors.model_not_found")
@pytest.mark.parametrize(("path", "body"), NOT_FOUND, ids=[p for p, _ in NOT_FOUND])
def test_unknown_model(api: Api, path: str, body: dict) -> None:
    got = api.post(path, body)
    message = api.native_error(got, 404)
    api.contract("POST", path, got)
    assert MISSING in message and "not found" in message, f"message {message!r}"


@pytest.mark.feature("errors.model_required")
@pytest.mark.parametrize(("path", "body", "status"), MODEL_REQUIRED, ids=[p for p, _, _ in MODEL_REQUIRED])
def test_missing_model(api: Api, path: str, body: dict, status: int) -> None:
    got = api.post(path, body)
    api.native_error(got, status)
    api.contract("POST", path, got)


@pytest.mark.feature("errors.empty_body")
@pytest.mark.parametrize("path", INFERENCE)
def test_empty_body(api: Api, path: str) -> None:
    got = api.post(path, raw=b"", headers={"Content-Type": "application/json"})
    message = api.native_error(got, 400)
    assert message == "missing request body", f"message {message!r}"


@pytest.mark.feature("errors.malformed_json")
@pytest.mark.parametrize("path", INFERENCE)
def test_malformed_json(api: Api, path: str) -> None:
    got = api.post(path, raw=b'{"model": "x", ', headers={"Content-Type": "application/json"})
    api.native_error(got, 400)
    api.contract("POST", path, got)


@pytest.mark.feature("errors.wrong_type")
def test_wrong_field_type(api: Api, chat_model: str) -> None:
    got = api.post("/api/chat", {"model": chat_model, "messages": "not a list"})
    api.native_error(got, 400)


@pytest.mark.feature("errors.option_type")
def test_option_of_wrong_type(api: Api, chat_model: str) -> None:
    """Ollama answers 500 `option "temperature" must be of type float32`. ollama-python raises the same
    ResponseError for any 4xx or 5xx (its `_request_raw`: raise_for_status), so a server that refuses the bad type
    as a bad request (400, 422) differs from Ollama only at the exact grade; accepting it (2xx) still fails."""
    got = api.post("/api/generate", {"model": chat_model, "prompt": "hi", "options": {"temperature": "hot"}})
    message = api.native_error(got, (500, 400, 422))
    assert "temperature" in message, f"the refusal does not name the option: message {message!r}"
    exact(got.status == 500, f"status {got.status}, Ollama answers 500 to an option of the wrong type")
    exact('option "temperature" must be of type' in message,
          f"message {message!r}, Ollama's is 'option \"temperature\" must be of type float32'")


@pytest.mark.feature("errors.invalid_model_name")
def test_invalid_model_name(api: Api) -> None:
    got = api.call("DELETE", "/api/delete", {"model": "bad name!/:/"})
    api.native_error(got, 400)
