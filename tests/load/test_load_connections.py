"""Safe connection reuse against real loopback servers that close connections in every way real servers do.

Each server here is a plain threaded socket server speaking just enough HTTP/1.1 to stream an OpenAI chat answer.
It records the `nonce` of every request body it has *read* in full: a nonce read twice would be a second generation,
which the client must never cause, whatever the server does with its connections.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from ollama_conformance.load.client import StreamClient
from ollama_conformance.load.endpoints import endpoint_spec

SPEC = endpoint_spec("openai", "chat", "m", 3, None)
CHUNKS = [
    {"choices": [{"index": 0, "delta": {"role": "assistant", "content": "a"}, "finish_reason": None}]},
    {"choices": [{"index": 0, "delta": {"content": "b"}, "finish_reason": "length"}]},
    {"choices": [], "usage": {"prompt_tokens": 2, "completion_tokens": 2, "total_tokens": 4}},
]


def _chunked(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def _stream_response(close_header: bool, usage: bool = True) -> bytes:
    head = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n"
    if close_header:
        head += b"Connection: close\r\n"
    chunks = CHUNKS if usage else CHUNKS[:-1]
    body = b"".join(_chunked(b"data: " + json.dumps(c).encode() + b"\n\n") for c in chunks)
    return head + b"\r\n" + body + _chunked(b"data: [DONE]\n\n") + b"0\r\n\r\n"


NOT_FOUND = b"HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n{\"error\":1}"


class ClosingServer:
    """A loopback server whose connection behaviour is one of:

    - `close-header`: answers with `Connection: close`, then closes;
    - `close-silent`: closes right after every response, without saying so;
    - `close-late`: keeps the connection 80 ms after every response without reading, then closes (a request sent
      meanwhile lies unread: the kernel answers it with a reset);
    - `idle-timeout`: keeps connections alive but closes any idle for 100 ms;
    - `lingering-close`: like llama.cpp's server, ends every connection after its response with a graceful
      close: FIN first, then it reads and drops whatever arrives for 150 ms, then closes (no reset ever comes);
    - `read-then-drop`: the second request of every connection is read in full, then the connection is closed
      with no answer (the server "crashed" after reading it: a retry would be a second generation).
    """

    def __init__(self, mode: str, usage: bool = True) -> None:
        self.mode = mode
        self.usage = usage  # False: a server that never reports usage, even when asked
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.nonces: list[str] = []
        self.connection_headers: list[str] = []
        self.stream_options: list[object] = []
        self.connections = 0
        self.lock = threading.Lock()
        self.stopped = False
        threading.Thread(target=self._accept, daemon=True).start()

    def stop(self) -> None:
        self.stopped = True
        self.listener.close()

    def _accept(self) -> None:
        while not self.stopped:
            try:
                sock, _ = self.listener.accept()
            except OSError:
                return
            with self.lock:
                self.connections += 1
            threading.Thread(target=self._serve, args=(sock,), daemon=True).start()

    def _read_request(self, sock: socket.socket, buf: bytearray) -> tuple[str, dict[str, str], bytes] | None:
        while b"\r\n\r\n" not in buf:
            if self.mode == "idle-timeout":
                sock.settimeout(0.1)
            try:
                data = sock.recv(65536)
            except (TimeoutError, OSError):
                return None
            if not data:
                return None
            buf += data
        sock.settimeout(None)
        head, _, rest = bytes(buf).partition(b"\r\n\r\n")
        lines = head.decode().split("\r\n")
        headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
        length = int(headers.get("content-length", "0"))
        body = bytearray(rest)
        while len(body) < length:
            data = sock.recv(65536)
            if not data:
                return None
            body += data
        del buf[:]
        buf += body[length:]
        return lines[0], headers, bytes(body[:length])

    def _serve(self, sock: socket.socket) -> None:
        buf = bytearray()
        served = 0
        with sock:
            while True:
                request = self._read_request(sock, buf)
                if request is None:
                    return
                line, headers, body = request
                served += 1
                if not line.startswith("POST /v1/chat/completions"):
                    sock.sendall(NOT_FOUND)
                    continue
                with self.lock:
                    request_body = json.loads(body)
                    self.nonces.append(request_body.get("nonce", "?"))
                    self.stream_options.append(request_body.get("stream_options"))
                    self.connection_headers.append(headers.get("connection", ""))
                if self.mode == "read-then-drop" and served == 2:
                    return
                sock.sendall(_stream_response(self.mode == "close-header", self.usage))
                if self.mode in ("close-header", "close-silent"):
                    return
                if self.mode == "close-late":
                    time.sleep(0.08)
                    return
                if self.mode == "lingering-close":
                    sock.shutdown(socket.SHUT_WR)
                    sock.settimeout(0.15)
                    try:
                        while sock.recv(65536):
                            pass
                    except OSError:
                        pass
                    return


@pytest.fixture
def server_of() -> Iterator[Any]:
    started: list[ClosingServer] = []

    def start(mode: str, usage: bool = True) -> ClosingServer:
        server = ClosingServer(mode, usage)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def _run(client: StreamClient, n: int, pause_s: float = 0.0) -> list[dict[str, Any]]:
    samples = []
    for i in range(n):
        body = {**SPEC.body("hi"), "nonce": f"n{i}"}
        samples.append(client.measure(SPEC, body, time.perf_counter_ns()))
        time.sleep(pause_s)
    client.close()
    return samples


@pytest.mark.parametrize("mode", ["close-header", "close-silent", "close-late"])
def test_servers_that_close_after_every_response_cost_no_request(server_of, mode: str) -> None:
    server = server_of(mode)
    samples = _run(StreamClient(server.url, 10.0), 12)
    assert [s["status"] for s in samples] == ["ok"] * 12, [s["error"] for s in samples]
    assert all(s["output_tokens"] == 2 and s["output_tokens_source"] == "usage" for s in samples)
    # every request was read by the server exactly once: no request lost, none generated twice
    assert sorted(server.nonces) == sorted(f"n{i}" for i in range(12))
    if mode == "close-header":
        # the server said it closes: the client never tries the closed connection
        assert all(s["connection"] == "new" and s["retries"] == 0 and s["stale_discarded"] == 0 for s in samples)
    if mode == "close-late":
        # the connection looked alive when reused; the server's reset of the unread request allowed one retry,
        # which ran on a fresh connection
        retried = [s for s in samples if s["retries"]]
        assert retried and all(s["connection"] == "new" for s in retried)
        assert all("reset the request unread" in s["retry_reason"] for s in retried)
    assert server.connections == 12


def test_a_close_racing_the_request_is_retried_only_on_the_servers_reset(server_of, monkeypatch) -> None:
    # The idle check normally sees the server's FIN first; switched off, every reuse races the close the way a
    # FIN still in flight does: EOF, then the reset the server's kernel sends for the bytes it never read.
    import ollama_conformance.load.client as client_module

    monkeypatch.setattr(client_module, "_closed_while_idle", lambda conn: False)
    monkeypatch.setattr(client_module.StreamClient, "_probe_keepalive", lambda self: False)
    server = server_of("close-silent")
    samples = _run(StreamClient(server.url, 10.0), 8)
    assert [s["status"] for s in samples] == ["ok"] * 8, [s["error"] for s in samples]
    assert [s["retries"] for s in samples] == [0] + [1] * 7
    assert sorted(server.nonces) == sorted(f"n{i}" for i in range(8))


def test_a_server_that_closes_after_every_response_is_no_longer_reused(server_of) -> None:
    # llama.cpp's server: keep-alive headers, then a graceful close after every streamed response. A request sent
    # into that close is drained unread and answered by a plain FIN: it can be neither retried (nothing proves it
    # unread) nor answered. The client learns after its first response that the server closes, and stops reusing.
    server = server_of("lingering-close")
    samples = _run(StreamClient(server.url, 10.0), 10)
    assert [s["status"] for s in samples] == ["ok"] * 10, [s["error"] for s in samples]
    assert samples[0]["reuse_turned_off"] and not any(s["reuse_turned_off"] for s in samples[1:])
    assert all(s["connection"] == "new" and s["retries"] == 0 for s in samples)
    assert sorted(server.nonces) == sorted(f"n{i}" for i in range(10))


def test_connections_closed_while_idle_are_dropped_before_use(server_of) -> None:
    server = server_of("idle-timeout")
    samples = _run(StreamClient(server.url, 10.0), 4, pause_s=0.3)
    assert [s["status"] for s in samples] == ["ok"] * 4
    assert [s["stale_discarded"] for s in samples] == [0, 1, 1, 1]
    assert all(s["retries"] == 0 and s["connection"] == "new" for s in samples)
    assert sorted(server.nonces) == ["n0", "n1", "n2", "n3"]


def test_a_request_the_server_read_is_never_sent_again(server_of) -> None:
    server = server_of("read-then-drop")
    samples = _run(StreamClient(server.url, 10.0), 4)
    assert [s["status"] for s in samples] == ["ok", "error", "ok", "error"]
    for s in (samples[1], samples[3]):
        assert s["connection"] == "reused" and s["retries"] == 0
        assert "not retried" in s["error"]
    assert sorted(server.nonces) == ["n0", "n1", "n2", "n3"]


def test_reuse_off_opens_a_connection_per_request_and_says_close(server_of) -> None:
    server = server_of("idle-timeout")
    samples = _run(StreamClient(server.url, 10.0, reuse=False), 3)
    assert [s["status"] for s in samples] == ["ok"] * 3
    assert all(s["connection"] == "new" for s in samples)
    assert server.connections == 3
    assert server.connection_headers == ["close"] * 3


def test_bench_counts_retries_and_stale_connections_per_step(server_of, bench) -> None:
    server = server_of("close-late")
    run = bench(target=server.url, model="m", surface="openai", concurrency=[2], duration_s=None, requests=10)
    assert run.status == 0
    step = run.results["steps"][0]
    assert step["requests"]["error"] == 0
    conns = step["connections"]
    assert conns["retries"] >= 1
    assert conns["new"] + conns["reused"] == sum(step["requests"].values())
    assert step["output_tokens_source"] == {"usage": step["requests"]["ok"]}
    assert len(server.nonces) == len(run.samples) + 1  # each read once (+ the preload request): no second generation
    off = bench(target=server.url, model="m", surface="openai", concurrency=[2], duration_s=None, requests=6,
                reuse_connections=False)
    assert off.results["steps"][0]["connections"] == {"new": 6, "reused": 0, "retries": 0, "stale_discarded": 0,
                                                      "reuse_turned_off": 0}


def test_output_tokens_are_counted_from_chunks_when_the_server_reports_none(server_of, bench) -> None:
    server = server_of("idle-timeout", usage=False)
    run = bench(target=server.url, model="m", surface="openai", concurrency=[1], duration_s=None, requests=4,
                preload=False)
    step = run.results["steps"][0]
    # the harness asked (stream_options.include_usage); the server said nothing: 2 output chunks, and the step
    # says where its N_out came from
    assert server.stream_options == [{"include_usage": True}] * 4
    assert step["output_tokens_source"] == {"chunks": 4}
    assert all(s["output_tokens"] == 2 and s["output_tokens_source"] == "chunks" for s in run.samples)
