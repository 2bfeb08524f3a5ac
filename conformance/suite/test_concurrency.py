"""Several requests at once, and a client that hangs up mid-stream: the server keeps serving."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from ollama_conformance.conformance.checks import Api, final


@pytest.mark.feature("concurrency.parallel")
def test_parallel_requests_are_all_served(api: Api, chat_model: str) -> None:
    def one(index: int) -> dict:
        got = api.post("/api/generate", {"model": chat_model, "prompt": f"Count to {index}:", "stream": False,
                                         "options": {"num_predict": 3}})
        return api.single(got)

    with ThreadPoolExecutor(max_workers=3) as pool:
        answers = list(pool.map(one, range(3)))
    assert all(a.get("done") is True and a.get("done_reason") in ("stop", "length") for a in answers), answers


@pytest.mark.feature("stream.cancel")
def test_hang_up_mid_stream_leaves_the_server_usable(api: Api, chat_model: str) -> None:
    body = {"model": chat_model, "prompt": "Once upon a time", "options": {"num_predict": 64}}
    with api.client.stream("POST", "/api/generate", json=body) as response:
        assert response.status_code == 200, f"status {response.status_code}"
        first = next(response.iter_lines())
        assert first.startswith("{"), f"first line {first[:80]!r}"
    # The connection is closed with the generation unfinished; the next request must be served normally.
    after = api.ndjson(api.post("/api/generate", {"model": chat_model, "prompt": "Hi", "options": {"num_predict": 2}}))
    assert final(after).get("done") is True
