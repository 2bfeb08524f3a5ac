"""Slots and the queue: a client that disconnects frees its slot; a full queue answers 503 with Ollama's message.

One backend with OLLAMA_NUM_PARALLEL=1 and OLLAMA_MAX_QUEUE=1: a single slot makes both behaviours observable.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from ollama_conformance.reference_backend.launcher import ReferenceBackend

GEMMA = "gemma3:270m"
ENDLESS = {"model": GEMMA, "prompt": "Once upon a time", "options": {"num_predict": 100000, "temperature": 0}}
BUSY = "server busy, please try again.  maximum pending requests exceeded"


@pytest.fixture(scope="module")
def single_slot_url() -> Iterator[str]:
    env = {"OLLAMA_NUM_PARALLEL": "1", "OLLAMA_MAX_QUEUE": "1"}
    with ReferenceBackend(env=env) as backend:
        httpx.post(f"{backend.url}/api/generate", json={"model": GEMMA, "prompt": ""}, timeout=300).raise_for_status()
        yield backend.url


def read_chunks(response: httpx.Response, count: int) -> list[dict]:
    chunks = []
    for line in response.iter_lines():
        chunks.append(json.loads(line))
        if len(chunks) >= count:
            break
    return chunks


def test_disconnect_frees_the_slot(single_slot_url: str) -> None:
    with httpx.Client(base_url=single_slot_url, timeout=120) as client:
        with client.stream("POST", "/api/generate", json=ENDLESS) as response:
            assert response.status_code == 200
            assert len(read_chunks(response, 2)) == 2
        # the stream above is closed mid-generation; with one slot, this request can only run once it is freed
        result = client.post(
            "/api/generate", json={"model": GEMMA, "prompt": "Hi", "stream": False, "options": {"num_predict": 2}}
        )
        assert result.status_code == 200 and result.json()["done"] is True


def test_full_queue_answers_503(single_slot_url: str) -> None:
    holders: list[httpx.Response] = []
    client = httpx.Client(base_url=single_slot_url, timeout=120)
    started = threading.Event()
    try:
        running = client.send(client.build_request("POST", "/api/generate", json=ENDLESS), stream=True)
        holders.append(running)
        lines = running.iter_lines()  # kept referenced: a collected iterator would close the stream
        assert json.loads(next(lines))["done"] is False  # this request holds the only slot

        def wait_in_queue() -> None:
            with httpx.Client(base_url=single_slot_url, timeout=120) as other:
                started.set()
                with other.stream("POST", "/api/generate", json=ENDLESS) as queued:
                    read_chunks(queued, 1)

        waiter = threading.Thread(target=wait_in_queue, daemon=True)
        waiter.start()
        started.wait(10)
        time.sleep(1.0)  # let the second request reach the queue
        deadline = time.monotonic() + 30
        status, body = 0, {}
        while time.monotonic() < deadline:  # until the waiting request is queued, the third one may still fit
            with client.stream("POST", "/api/generate", json=ENDLESS, timeout=httpx.Timeout(120, read=10)) as third:
                status = third.status_code
                if status == 503:
                    body = json.loads(third.read())
                    break
            time.sleep(0.2)
        assert status == 503
        assert body == {"error": BUSY}
    finally:
        for response in holders:
            response.close()
        client.close()
