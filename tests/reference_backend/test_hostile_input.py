"""Hostile input costs little: a 64 MiB prompt is answered as Ollama answers it (truncated to the context by
default; refused with 400 under truncate:false) within seconds, and the server's resident memory, sampled from
/proc while the request runs, rises by less than 1 GiB above the idle loaded server. The figures are printed
(`-s` shows them); the only time bound is a generous hang guard."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from ollama_conformance.reference_backend.launcher import ReferenceBackend

GEMMA = "gemma3:270m"
HUGE = "a " * (32 * 1024 * 1024)  # 64 MiB, the prompt
GIB = 1024**3
HANG_GUARD_S = 300


@pytest.fixture(scope="module")
def server(own_reference_backend: ReferenceBackend) -> Iterator[tuple[httpx.Client, int]]:
    """The session's backend (a process of this session, so its memory can be read from /proc), model loaded."""
    backend = own_reference_backend
    with httpx.Client(base_url=backend.url, timeout=HANG_GUARD_S) as client:
        assert backend.pid is not None
        warm = client.post("/api/generate", json={"model": GEMMA, "prompt": "Hi", "stream": False,
                                                  "options": {"num_predict": 1}})  # fmt: skip
        assert warm.status_code == 200
        yield client, backend.pid


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


class PeakRss:
    """The highest VmRSS of a process while the block runs, sampled every 20 ms."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_bytes(self.pid))
            time.sleep(0.02)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_bytes(self.pid))


def measured(server: tuple[httpx.Client, int], path: str, body: dict[str, Any]) -> tuple[httpx.Response, float, int]:
    client, pid = server
    idle = rss_bytes(pid)
    started = time.monotonic()
    with PeakRss(pid) as peak:
        response = client.post(path, json=body)
    elapsed = time.monotonic() - started
    print(f"\n{path} with a 64 MiB prompt: {response.status_code} in {elapsed:.1f} s, "
          f"RSS idle {idle / GIB:.2f} GiB, peak +{(peak.peak - idle) / GIB:.2f} GiB")  # fmt: skip
    return response, elapsed, peak.peak - idle


def test_huge_generate_prompt_is_truncated_cheaply(server: tuple[httpx.Client, int]) -> None:
    body = {"model": GEMMA, "prompt": HUGE, "stream": False, "options": {"num_predict": 1}}
    response, _, rise = measured(server, "/api/generate", body)
    assert response.status_code == 200, response.text[:300]
    assert 0 < response.json()["prompt_eval_count"] < 4096
    assert rise < GIB


def test_huge_chat_message_is_truncated_cheaply(server: tuple[httpx.Client, int]) -> None:
    body = {"model": GEMMA, "messages": [{"role": "user", "content": HUGE}], "stream": False,
            "options": {"num_predict": 1}}  # fmt: skip
    response, _, rise = measured(server, "/api/chat", body)
    assert response.status_code == 200, response.text[:300]
    assert 0 < response.json()["prompt_eval_count"] < 4096
    assert rise < GIB


def test_huge_prompt_without_truncation_is_refused_cheaply(server: tuple[httpx.Client, int]) -> None:
    body = {"model": GEMMA, "prompt": HUGE, "stream": False, "truncate": False}
    response, _, rise = measured(server, "/api/generate", body)
    assert response.status_code == 400
    assert response.json()["error"].startswith("the prompt is longer than the context length")
    assert rise < GIB
