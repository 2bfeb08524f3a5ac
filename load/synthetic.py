"""A synthetic Ollama-compatible streaming server with a known schedule: the ground truth for the harness.

Every streamed response follows one schedule: the first chunk is written `ttft_ms` after the request body was
read, then one chunk every `interval_ms`, `chunks` chunks in all, each carrying `tokens_per_chunk` tokens; the
final object carries the server figures (`eval_count` = chunks x tokens_per_chunk, durations in ns) and the
OpenAI `usage`. Deadlines are absolute (no drift) and each connection has its own thread sleeping with
`time.sleep` (nanosleep, ~0.1 ms precise) rather than an event loop whose epoll timeouts round up to 1 ms.
The server measures its own lateness against the schedule (GET /synthetic/stats), and each paced chunk carries
`x_sent_ns` (and the first one `x_arrived_ns`, when the request line arrived), both on the machine's monotonic
clock, so a calibration can tell the server's error from the client's.

Faults, for the harness's own tests: `--error-every K` answers every K-th generation request with a 500,
`--stall-every K` stops every K-th stream after its first chunk for `--stall-s` seconds, `--drop-every K`
closes every K-th connection after its first chunk, `--garbage-every K` sends a line that is not JSON after the
first chunk of every K-th stream.

Capacity, for the capacity search's tests: `--slots N` lets at most N generations run at once (others wait, FIFO,
and their schedule starts when they get a slot); `--per-token-ms T` sets the chunk interval to T x tokens per chunk.
Slots are booked on the clock, not by threads handing a lock over (whose wake-up delays on a busy machine would
lower the capacity): a request starts at max(its arrival, the earliest time a slot is free) and holds it for
ttft + (chunks - 1) x interval. So the server's capacity is exactly N / (ttft + (chunks - 1) x interval) req/s. A request's
`max_tokens` / `num_predict` caps its chunks (ceil(cap / tokens per chunk)), as a real server stops at the cap.

GET /synthetic/requests lists what each generation request asked (path, message roles, prompt words, the cap,
the time it waited for a slot): the ground truth for the workload tests (multi-turn histories, length draws).

Run: `python -m load.synthetic --port 0 [--ttft-ms 200 --interval-ms 20 --chunks 25 --tokens-per-chunk 2]`;
it prints its base URL on one stdout line, then serves until terminated.
"""

from __future__ import annotations

import argparse
import itertools
import json
import socket
import sys
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

CREATED_AT = "2026-01-01T00:00:00.000000000Z"
REQUEST_LOG_MAX = 100_000
GENERATION_PATHS = {"/api/chat", "/api/generate", "/v1/chat/completions", "/v1/completions"}


@dataclass
class Schedule:
    ttft_ms: float = 200.0
    interval_ms: float = 20.0
    chunks: int = 25
    tokens_per_chunk: int = 2
    prompt_tokens: int = 16
    error_every: int = 0
    stall_every: int = 0
    stall_s: float = 30.0
    drop_every: int = 0
    garbage_every: int = 0
    slots: int = 0  # 0: unlimited

    def chunks_for(self, body: dict[str, Any]) -> int:
        """The chunks of one answer: the schedule's, fewer when the request caps its output tokens."""
        cap = body.get("max_tokens", body.get("max_completion_tokens"))
        options = body.get("options")
        if cap is None and isinstance(options, dict):
            cap = options.get("num_predict")
        if isinstance(cap, int) and cap > 0:
            return max(1, min(self.chunks, -(-cap // self.tokens_per_chunk)))
        return self.chunks


def request_record(path: str, body: dict[str, Any], waited_ns: int) -> dict[str, Any]:
    """What a generation request asked, for GET /synthetic/requests."""
    messages = body.get("messages") if isinstance(body.get("messages"), list) else []
    texts = [m.get("content") for m in messages if isinstance(m, dict) and isinstance(m.get("content"), str)]
    if isinstance(body.get("prompt"), str):
        texts.append(body["prompt"])
    options = body.get("options") if isinstance(body.get("options"), dict) else {}
    return {"path": path, "roles": [m.get("role") for m in messages if isinstance(m, dict)],
            "contents": texts if messages else [], "prompt_words": sum(len(t.split()) for t in texts),
            "max_tokens": body.get("max_tokens", options.get("num_predict")), "slot_wait_ms": waited_ns / 1e6}


class LatenessStats:
    """Server-side lateness of every write against its deadline, in ns (first chunks apart from later ones)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.first: list[int] = []
        self.later: list[int] = []
        self.requests = 0

    def add(self, first_late_ns: int, later_late_ns: list[int]) -> None:
        with self.lock:
            self.requests += 1
            self.first.append(first_late_ns)
            self.later.extend(later_late_ns)

    def summary(self) -> dict[str, Any]:
        from ollama_conformance.load.metrics import dist  # numpy only when asked

        with self.lock:
            return {
                "requests": self.requests,
                "first_chunk_late_ms": dist([v / 1e6 for v in self.first]),
                "chunk_late_ms": dist([v / 1e6 for v in self.later]),
            }

    def reset(self) -> None:
        with self.lock:
            self.first.clear()
            self.later.clear()
            self.requests = 0


def sleep_until(deadline_ns: int) -> None:
    remaining = deadline_ns - time.perf_counter_ns()
    if remaining > 0:
        time.sleep(remaining / 1e9)


def _sse(obj: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(obj, separators=(",", ":")).encode() + b"\n\n"


def _ndjson(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode() + b"\n"


class Framer:
    """Builds the wire bytes of one endpoint's chunks and final object."""

    def __init__(self, path: str, body: dict[str, Any], sched: Schedule, request_id: int) -> None:
        self.path = path
        self.model = str(body.get("model") or "synthetic")
        self.sched = sched
        self.sse = path.startswith("/v1/")
        opts = body.get("stream_options") or {}
        self.include_usage = bool(opts.get("include_usage"))
        self.continuous_usage = bool(opts.get("continuous_usage_stats"))
        self.id = f"syn-{request_id}"
        self.chunks = sched.chunks_for(body)
        self.text = " tok" * sched.tokens_per_chunk

    def usage(self, done_chunks: int) -> dict[str, int]:
        completion = done_chunks * self.sched.tokens_per_chunk
        return {
            "prompt_tokens": self.sched.prompt_tokens,
            "completion_tokens": completion,
            "total_tokens": self.sched.prompt_tokens + completion,
        }

    def chunk(self, index: int, stamps: dict[str, int] | None = None) -> bytes:
        """Chunk `index`; `stamps` (server clock, perf_counter_ns) are added as `x_*` keys, which clients ignore."""
        extra = stamps or {}
        if self.path == "/api/chat":
            return _ndjson({"model": self.model, "created_at": CREATED_AT,
                            "message": {"role": "assistant", "content": self.text}, "done": False, **extra})
        if self.path == "/api/generate":
            return _ndjson({"model": self.model, "created_at": CREATED_AT, "response": self.text, "done": False,
                            **extra})
        if self.path == "/v1/chat/completions":
            delta: dict[str, Any] = {"content": self.text}
            if index == 0:
                delta = {"role": "assistant", "content": self.text}
            obj: dict[str, Any] = {"id": self.id, "object": "chat.completion.chunk", "created": 0, "model": self.model,
                                   "system_fingerprint": "fp_ollama",
                                   "choices": [{"index": 0, "delta": delta, "finish_reason": None}]}
        else:
            obj = {"id": self.id, "object": "text_completion", "created": 0, "model": self.model,
                   "system_fingerprint": "fp_ollama", "choices": [{"index": 0, "text": self.text, "finish_reason": None}]}
        if self.continuous_usage:
            obj["usage"] = self.usage(index + 1)
        obj.update(extra)
        return _sse(obj)

    def final(self, durations: dict[str, int]) -> bytes:
        s = self.sched
        eval_count = self.chunks * s.tokens_per_chunk
        if not self.sse:
            obj: dict[str, Any] = {"model": self.model, "created_at": CREATED_AT, "done": True, "done_reason": "length",
                                   "prompt_eval_count": s.prompt_tokens, "eval_count": eval_count, **durations}
            if self.path == "/api/chat":
                obj["message"] = {"role": "assistant", "content": ""}
            else:
                obj["response"] = ""
            return _ndjson(obj)
        if self.path == "/v1/chat/completions":
            last: dict[str, Any] = {"id": self.id, "object": "chat.completion.chunk", "created": 0, "model": self.model,
                                    "system_fingerprint": "fp_ollama",
                                    "choices": [{"index": 0, "delta": {"content": ""}, "finish_reason": "length"}]}
        else:
            last = {"id": self.id, "object": "text_completion", "created": 0, "model": self.model,
                    "system_fingerprint": "fp_ollama", "choices": [{"index": 0, "text": "", "finish_reason": "length"}]}
        if self.continuous_usage:
            last["usage"] = self.usage(self.chunks)
        out = _sse(last)
        if self.include_usage:
            out += _sse({"id": self.id, "object": last["object"], "created": 0, "model": self.model,
                         "system_fingerprint": "fp_ollama", "choices": [], "usage": self.usage(self.chunks)})
        return out + b"data: [DONE]\n\n"


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: SyntheticServer

    def log_message(self, format: str, *args: Any) -> None:  # quiet: the harness reads stdout for the URL only
        return

    def setup(self) -> None:
        super().setup()
        # Small writes must leave at once: Nagle + delayed ACK would add up to 40 ms to a chunk.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def parse_request(self) -> bool:
        # The schedule starts when the request line has arrived, so the server's own header parsing is inside it.
        self.arrived_ns = time.perf_counter_ns()
        return super().parse_request()

    def _json(self, status: int, obj: Any) -> None:
        data = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/api/version":
            self._json(200, {"version": "0.0.0-synthetic"})
        elif path == "/api/tags":
            self._json(200, {"models": [{"name": "synthetic", "model": "synthetic", "digest": "0" * 64, "size": 0}]})
        elif path == "/api/ps":
            self._json(200, {"models": [{"name": "synthetic", "model": "synthetic", "size": 1 << 20,
                                         "size_vram": 0, "digest": "0" * 64}]})
        elif path == "/v1/models":
            self._json(200, {"object": "list", "data": [{"id": "synthetic", "object": "model", "created": 0,
                                                         "owned_by": "library"}]})
        elif path == "/synthetic/stats":
            self._json(200, self.server.stats.summary())
        elif path == "/synthetic/requests":
            with self.server.requests_lock:
                self._json(200, list(self.server.requests))
        elif path in ("/", "/health"):  # /health: what OpenAI-style benchmark tools probe first
            self._json(200, "Ollama is running")
        else:
            self._json(404, {"error": "404 page not found"})

    def do_POST(self) -> None:
        path = self.path.split("?", 1)[0]
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        received_ns = self.arrived_ns
        if path == "/synthetic/reset":
            self.server.stats.reset()
            with self.server.requests_lock:
                self.server.requests.clear()
            self._json(200, {"ok": True})
            return
        try:
            body = json.loads(raw or b"{}")
            if not isinstance(body, dict):
                raise ValueError("body is not an object")
        except ValueError as exc:
            self._json(400, {"error": f"invalid JSON: {exc}"})
            return
        if path in ("/api/embed", "/v1/embeddings"):
            self._embed(path, body)
        elif path == "/api/show":
            self._json(200, {"capabilities": ["completion"], "details": {"family": "synthetic"}, "model_info": {}})
        elif path in GENERATION_PATHS:
            self._generate(path, body, received_ns)
        else:
            self._json(404, {"error": "404 page not found"})

    def _embed(self, path: str, body: dict[str, Any]) -> None:
        inputs = body.get("input")
        n = len(inputs) if isinstance(inputs, list) else 1
        vectors = [[0.0] * 8 for _ in range(n)]
        if path == "/api/embed":
            self._json(200, {"model": body.get("model"), "embeddings": vectors, "total_duration": 1000,
                             "load_duration": 0, "prompt_eval_count": self.server.schedule.prompt_tokens * n})
        else:
            self._json(200, {"object": "list", "model": body.get("model"),
                             "data": [{"object": "embedding", "index": i, "embedding": v} for i, v in enumerate(vectors)],
                             "usage": {"prompt_tokens": self.server.schedule.prompt_tokens * n,
                                       "total_tokens": self.server.schedule.prompt_tokens * n}})

    def _write_chunk(self, data: bytes) -> None:
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))

    def _generate(self, path: str, body: dict[str, Any], received_ns: int) -> None:
        sched = self.server.schedule
        n = next(self.server.counter)
        if sched.error_every and n % sched.error_every == 0:
            self._json(500, {"error": "synthetic failure"})
            return
        waited = self.server.book_slot(received_ns, sched.chunks_for(body))
        self.server.log_request(request_record(path, body, waited))
        self._generation(path, body, received_ns + waited, n)

    def _generation(self, path: str, body: dict[str, Any], received_ns: int, n: int) -> None:
        sched = self.server.schedule
        framer = Framer(path, body, sched, n)
        if body.get("stream") is False:
            self._non_stream(framer, received_ns)
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream" if framer.sse else "application/x-ndjson")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        self.wfile.flush()
        ttft_ns = int(sched.ttft_ms * 1e6)
        interval_ns = int(sched.interval_ms * 1e6)
        late: list[int] = []
        first_late = 0
        if interval_ns == 0 and not (sched.drop_every or sched.stall_every or sched.garbage_every):
            self._burst(framer, received_ns, ttft_ns)
            return
        for i in range(framer.chunks):
            deadline = received_ns + ttft_ns + i * interval_ns
            sleep_until(deadline)
            # the server's own send stamp rides in the chunk, so a calibration can separate client from server error
            stamps = {"x_sent_ns": time.perf_counter_ns()}
            if i == 0:
                stamps["x_arrived_ns"] = received_ns
            self._write_chunk(framer.chunk(i, stamps))
            lateness = time.perf_counter_ns() - deadline
            if i == 0:
                first_late = lateness
                if sched.drop_every and n % sched.drop_every == 0:
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                if sched.stall_every and n % sched.stall_every == 0:
                    time.sleep(sched.stall_s)
                if sched.garbage_every and n % sched.garbage_every == 0:
                    self._write_chunk(b"data: {not json\n\n" if framer.sse else b"<html>not json</html>\n")
            else:
                late.append(lateness)
        end_ns = time.perf_counter_ns()
        durations = {"total_duration": end_ns - received_ns, "load_duration": 0,
                     "prompt_eval_duration": ttft_ns, "eval_duration": max(end_ns - received_ns - ttft_ns, 1)}
        self._write_chunk(framer.final(durations))
        self.wfile.write(b"0\r\n\r\n")
        self.server.stats.add(first_late, late)

    def _burst(self, framer: Framer, received_ns: int, ttft_ns: int) -> None:
        """Interval 0: every chunk as fast as the socket takes them (the harness's maximum chunk rate)."""
        sleep_until(received_ns + ttft_ns)
        steady = framer.chunk(1) if framer.chunks > 1 else b""
        wire = b"%x\r\n%s\r\n" % (len(steady), steady) if steady else b""
        first = framer.chunk(0)
        self._write_chunk(first)
        first_late = time.perf_counter_ns() - (received_ns + ttft_ns)
        per_write = max(1, 32768 // max(len(wire), 1))
        remaining = framer.chunks - 1
        while remaining > 0:
            n = min(per_write, remaining)
            self.wfile.write(wire * n if not framer.continuous_usage else
                             b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in
                                      (framer.chunk(framer.chunks - remaining + j) for j in range(n))))
            remaining -= n
        end_ns = time.perf_counter_ns()
        durations = {"total_duration": end_ns - received_ns, "load_duration": 0,
                     "prompt_eval_duration": max(ttft_ns, 1), "eval_duration": max(end_ns - received_ns - ttft_ns, 1)}
        self._write_chunk(framer.final(durations))
        self.wfile.write(b"0\r\n\r\n")
        self.server.stats.add(first_late, [])

    def _non_stream(self, framer: Framer, received_ns: int) -> None:
        sched = self.server.schedule
        sleep_until(received_ns + int((sched.ttft_ms + sched.interval_ms * max(framer.chunks - 1, 0)) * 1e6))
        text = framer.text * framer.chunks
        eval_count = framer.chunks * sched.tokens_per_chunk
        elapsed = time.perf_counter_ns() - received_ns
        durations = {"total_duration": elapsed, "load_duration": 0, "prompt_eval_count": sched.prompt_tokens,
                     "prompt_eval_duration": int(sched.ttft_ms * 1e6), "eval_count": eval_count,
                     "eval_duration": max(elapsed - int(sched.ttft_ms * 1e6), 1)}
        if framer.path == "/api/chat":
            obj: dict[str, Any] = {"model": framer.model, "created_at": CREATED_AT,
                                   "message": {"role": "assistant", "content": text}, "done": True,
                                   "done_reason": "length", **durations}
        elif framer.path == "/api/generate":
            obj = {"model": framer.model, "created_at": CREATED_AT, "response": text, "done": True,
                   "done_reason": "length", **durations}
        elif framer.path == "/v1/chat/completions":
            obj = {"id": framer.id, "object": "chat.completion", "created": 0, "model": framer.model,
                   "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                                "finish_reason": "length"}], "usage": framer.usage(framer.chunks)}
        else:
            obj = {"id": framer.id, "object": "text_completion", "created": 0, "model": framer.model,
                   "choices": [{"index": 0, "text": text, "finish_reason": "length"}],
                   "usage": framer.usage(framer.chunks)}
        self._json(200, obj)


class SyntheticServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024

    def handle_error(self, request: Any, client_address: Any) -> None:
        # a client that goes away mid-stream (a benchmark stopping) is normal here, not worth a traceback
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)

    def __init__(self, address: tuple[str, int], schedule: Schedule) -> None:
        super().__init__(address, Handler)
        self.schedule = schedule
        self.stats = LatenessStats()
        self.counter = itertools.count(1)
        self.slot_free_ns = [0] * schedule.slots  # when each slot is next free (perf_counter_ns)
        self.slot_lock = threading.Lock()
        self.requests: list[dict[str, Any]] = []
        self.requests_lock = threading.Lock()

    def book_slot(self, arrived_ns: int, chunks: int) -> int:
        """With --slots: book the earliest free slot for this request; returns how long it waits for it (ns)."""
        if not self.slot_free_ns:
            return 0
        s = self.schedule
        busy = int((s.ttft_ms + (chunks - 1) * s.interval_ms) * 1e6)
        with self.slot_lock:
            slot = min(range(len(self.slot_free_ns)), key=self.slot_free_ns.__getitem__)
            start = max(arrived_ns, self.slot_free_ns[slot])
            self.slot_free_ns[slot] = start + busy
        return start - arrived_ns

    def log_request(self, record: dict[str, Any]) -> None:
        with self.requests_lock:
            if len(self.requests) < REQUEST_LOG_MAX:
                self.requests.append(record)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m load.synthetic", description=__doc__.split("\n\n")[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--ttft-ms", type=float, default=200.0)
    p.add_argument("--interval-ms", type=float, default=20.0)
    p.add_argument("--chunks", type=int, default=25)
    p.add_argument("--tokens-per-chunk", type=int, default=2)
    p.add_argument("--prompt-tokens", type=int, default=16)
    p.add_argument("--error-every", type=int, default=0)
    p.add_argument("--stall-every", type=int, default=0)
    p.add_argument("--stall-s", type=float, default=30.0)
    p.add_argument("--drop-every", type=int, default=0)
    p.add_argument("--garbage-every", type=int, default=0)
    p.add_argument("--slots", type=int, default=0, help="at most N generations at once (0: no limit)")
    p.add_argument("--per-token-ms", type=float, default=None, help="chunk interval = this x tokens per chunk")
    args = p.parse_args(argv)
    if args.per_token_ms is not None:
        if args.per_token_ms < 0:
            p.error("--per-token-ms must be >= 0")
        args.interval_ms = args.per_token_ms * args.tokens_per_chunk
    if args.slots < 0:
        p.error("--slots must be >= 0")
    if args.chunks < 1 or args.tokens_per_chunk < 1 or args.ttft_ms < 0 or args.interval_ms < 0:
        p.error("--chunks and --tokens-per-chunk must be >= 1, times >= 0")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    schedule = Schedule(ttft_ms=args.ttft_ms, interval_ms=args.interval_ms, chunks=args.chunks,
                        tokens_per_chunk=args.tokens_per_chunk, prompt_tokens=args.prompt_tokens,
                        error_every=args.error_every, stall_every=args.stall_every, stall_s=args.stall_s,
                        drop_every=args.drop_every, garbage_every=args.garbage_every, slots=args.slots)
    server = SyntheticServer((args.host, args.port), schedule)
    host, port = server.server_address[:2]
    print(f"http://{host}:{port}", flush=True)
    try:
        server.serve_forever(poll_interval=0.5)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())


class SyntheticProcess:
    """`python -m load.synthetic ...` as a child process (a context manager): `.url`, `.pid`, `.stop()`."""

    def __init__(self, args: list[str] | None = None, startup_timeout_s: float = 30.0) -> None:
        self.args = list(args or [])
        self.startup_timeout_s = startup_timeout_s
        self.url = ""
        self.process: Any = None

    @property
    def pid(self) -> int:
        return int(self.process.pid)

    def start(self) -> str:
        import subprocess

        self.process = subprocess.Popen(
            [sys.executable, "-m", "ollama_conformance.load.synthetic", "--host", "127.0.0.1", "--port", "0", *self.args],
            stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
        )
        found: list[str] = []

        def read() -> None:
            line = self.process.stdout.readline()
            found.append(line.strip())

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        reader.join(self.startup_timeout_s)
        if not found or not found[0].startswith("http://"):
            self.stop()
            raise RuntimeError(f"synthetic server did not start: {found[0] if found else 'no output'}")
        self.url = found[0]
        return self.url

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except Exception:
                self.process.kill()
                self.process.wait(timeout=10)

    def __enter__(self) -> SyntheticProcess:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
