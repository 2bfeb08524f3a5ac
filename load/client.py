"""One measured request: a streaming-safe HTTP/1.1 client that stamps bytes as they arrive, and its raw sample.

The protocol is h11's (a well-kept sans-I/O HTTP/1.1 library); the sockets are ours, so every phase is stamped
exactly where it happens: TCP connect, TLS handshake, request written, first byte of the response, first output
chunk (from the stream parser), last byte. Each read is stamped before anything is parsed: on Linux with the
kernel's own receive time (SO_TIMESTAMPNS, converted to the `perf_counter_ns` clock), so a client process the OS
did not schedule for a few ms still gets the true arrival time (the delay is kept as `read_delay_max_ms`); over
TLS, or where the kernel gives none, with `time.perf_counter_ns()` right after the read. Under locust the sockets are gevent's (patched at import), so a read blocks only its own greenlet. httpx
was measured first and costs ~0.7 ms per request in its layers above h11, which would be booked as TTFT error;
h11 on a socket costs ~0.1 ms. Idle keep-alive connections are reused; TCP_NODELAY is set so small writes leave
at once.
"""

from __future__ import annotations

import contextlib
import json
import socket
import ssl
import struct
import sys
import time
from typing import Any
from urllib.parse import urlsplit

import h11
from ollama_conformance.load.endpoints import EndpointSpec
from ollama_conformance.load.metrics import output_tokens, request_metrics
from ollama_conformance.load.streams import parser_for

RECV_BYTES = 65536
USER_AGENT = "ollama-conformance-bench/0.1"
# Linux kernel receive timestamps (SO_TIMESTAMPNS, CLOCK_REALTIME): the kernel stamps bytes when they reach the
# socket, so a client process that the OS did not schedule for a while still gets the true arrival time.
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)
SCM_TIMESTAMPNS = SO_TIMESTAMPNS
ANCILLARY_BYTES = socket.CMSG_SPACE(16) if hasattr(socket, "CMSG_SPACE") else 0
MAX_KERNEL_LEAD_NS = 60 * 10**9  # a kernel stamp older than this is a clock step, not a slow read


class TargetFault(Exception):
    """The target broke the exchange (closed, stalled, sent garbage)."""


class Timeout(Exception):
    """No byte within the read timeout, or the request ran past its total time."""


class _Connection:
    def __init__(self, sock: socket.socket, kernel_stamps: bool) -> None:
        self.sock = sock
        self.kernel_stamps = kernel_stamps
        self.h11 = h11.Connection(h11.CLIENT, max_incomplete_event_size=1 << 20)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()


class StreamClient:
    """Keep-alive HTTP/1.1 connections to one base URL; `measure()` runs one request and returns its sample."""

    def __init__(self, base_url: str, timeout_s: float, headers: dict[str, str] | None = None) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {base_url!r}")
        self.tls = parts.scheme == "https"
        self.host = parts.hostname
        self.port = parts.port or (443 if self.tls else 80)
        self.prefix = parts.path.rstrip("/")
        self.host_header = parts.netloc.rsplit("@", 1)[-1]
        self.timeout_s = timeout_s
        self.headers = [(k, v) for k, v in (headers or {}).items()]
        self._idle: list[_Connection] = []
        self._ssl = ssl.create_default_context() if self.tls else None
        self.read_delay_ns = 0
        self.kernel_reads = 0

    def close(self) -> None:
        while self._idle:
            self._idle.pop().close()

    def _open(self, stamps: dict[str, int]) -> _Connection:
        stamps["connect_start_ns"] = time.perf_counter_ns()
        sock = socket.create_connection((self.host, self.port), timeout=min(self.timeout_s, 10.0))
        stamps["connect_end_ns"] = time.perf_counter_ns()
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        kernel_stamps = False
        if self._ssl is not None:  # TLS sockets have no recvmsg: stamps are taken in the process
            stamps["tls_start_ns"] = stamps["connect_end_ns"]
            sock = self._ssl.wrap_socket(sock, server_hostname=self.host)
            stamps["tls_end_ns"] = time.perf_counter_ns()
        elif ANCILLARY_BYTES and sys.platform.startswith("linux"):
            try:
                sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
                kernel_stamps = True
            except OSError:
                pass
        sock.settimeout(self.timeout_s)
        return _Connection(sock, kernel_stamps)

    def _recv(self, conn: _Connection, stamps: dict[str, int], deadline: int) -> tuple[bytes, int]:
        """One read: (bytes, arrival in perf_counter_ns), the kernel's arrival time where it gives one."""
        try:
            if conn.kernel_stamps:
                data, ancillary, _flags, _addr = conn.sock.recvmsg(RECV_BYTES, ANCILLARY_BYTES)
            else:
                data, ancillary = conn.sock.recv(RECV_BYTES), []
        except TimeoutError:
            raise Timeout(f"no data for {self.timeout_s:g} s") from None
        now = time.perf_counter_ns()  # stamped before anything is parsed
        wall = time.time_ns()  # read next to `now`: the pair maps the kernel's CLOCK_REALTIME stamp onto perf_counter
        arrival = now
        for level, kind, payload in ancillary:
            if level == socket.SOL_SOCKET and kind == SCM_TIMESTAMPNS and len(payload) >= 16:
                sec, nsec = struct.unpack("qq", payload[:16])
                lead = wall - (sec * 1_000_000_000 + nsec)  # how long the bytes waited for this read
                if 0 <= lead < MAX_KERNEL_LEAD_NS:
                    arrival = now - lead
                    self.read_delay_ns = max(self.read_delay_ns, lead)
                    self.kernel_reads += 1
        if "first_byte_ns" not in stamps:
            stamps["first_byte_ns"] = arrival
        if now > deadline:
            raise Timeout(f"request exceeded {self.timeout_s:g} s")
        return data, arrival

    def _exchange(self, conn: _Connection, path: str, content: bytes, stamps: dict[str, int], deadline: int,
                  on_data: Any) -> tuple[int, bytes, bool]:
        """Write the request, feed body bytes to `on_data(bytes, ns)` (or collect them).

        Returns (status, collected body, whether the connection can carry another request).
        """
        headers = [("Host", self.host_header), ("User-Agent", USER_AGENT), ("Accept", "*/*"),
                   ("Content-Type", "application/json"), ("Content-Length", str(len(content))), *self.headers]
        hc = conn.h11
        out = hc.send(h11.Request(method="POST", target=self.prefix + path, headers=headers))
        out += hc.send(h11.Data(data=content)) + hc.send(h11.EndOfMessage())
        conn.sock.sendall(out)
        stamps["request_written_ns"] = time.perf_counter_ns()
        status = 0
        collected: list[bytes] = []
        now = 0
        while True:
            event = hc.next_event()
            if event is h11.NEED_DATA:
                data, now = self._recv(conn, stamps, deadline)
                hc.receive_data(data)
                continue
            kind = type(event)
            if kind is h11.Data:
                if status == 200 and on_data is not None:
                    on_data(bytes(event.data), now)
                else:
                    collected.append(bytes(event.data))
            elif kind is h11.Response:
                status = event.status_code
                if status == 200 and on_data is not None and _is_chunked(event.headers):
                    reusable = self._stream_chunked(conn, hc.trailing_data[0], on_data, now, stamps, deadline)
                    conn.h11 = h11.Connection(h11.CLIENT, max_incomplete_event_size=1 << 20)
                    return status, b"", reusable and not _closes(event.headers)
            elif kind is h11.EndOfMessage:
                reusable = hc.our_state is h11.DONE and hc.their_state is h11.DONE
                if reusable:
                    hc.start_next_cycle()
                return status, b"".join(collected), reusable
            elif kind is h11.ConnectionClosed:
                raise TargetFault("connection closed before the response ended")

    def _stream_chunked(self, conn: _Connection, buf: bytes, on_data: Any, now: int, stamps: dict[str, int],
                        deadline: int) -> bool:
        """The hot path of a stream: decode `Transfer-Encoding: chunked` straight off the socket.

        h11 yields one event per HTTP chunk; here all chunks completed by one `recv` go to the parser at once with
        that recv's stamp, which halves the client's cost per chunk. Returns whether the message ended cleanly
        with nothing after it (so the connection can be reused).
        """
        pending = bytearray(buf)
        pos = 0
        while True:
            ready: list[bytes] = []
            while True:
                eol = pending.find(b"\r\n", pos)
                if eol < 0:
                    break
                try:
                    size = int(bytes(pending[pos:eol]).split(b";", 1)[0], 16)
                except ValueError:
                    raise TargetFault(f"invalid chunk size line {bytes(pending[pos:eol])[:40]!r}") from None
                if size == 0:
                    end = pending.find(b"\r\n\r\n", eol)  # the last chunk, then trailers (if any) and CRLF
                    if end < 0:
                        break
                    if ready:
                        on_data(b"".join(ready), now)
                    return end + 4 == len(pending)
                if len(pending) < eol + 2 + size + 2:
                    break
                ready.append(bytes(pending[eol + 2:eol + 2 + size]))
                pos = eol + 2 + size + 2
            if ready:
                on_data(b"".join(ready), now)
            if pos:
                del pending[:pos]
                pos = 0
            data, now = self._recv(conn, stamps, deadline)
            if not data:
                raise TargetFault("connection closed before the response ended")
            pending += data

    def measure(self, spec: EndpointSpec, body: dict[str, Any], intended_start_ns: int) -> dict[str, Any]:
        """Send one request and return its sample (stamps in perf_counter_ns); target faults become its status."""
        stamps: dict[str, int] = {}
        parser = parser_for(spec.sse)
        sample: dict[str, Any] = {"status": "ok", "error": None, "http_status": None}
        content = json.dumps(body).encode()
        start_ns = time.perf_counter_ns()
        deadline = start_ns + int(self.timeout_s * 1e9)
        on_data = parser.feed if spec.streaming else None
        raw = b""
        self.read_delay_ns = self.kernel_reads = 0
        self.kernel_reads = 0
        conn: _Connection | None = None
        try:
            if self._idle:
                conn = self._idle.pop()
                try:
                    status, raw, reusable = self._exchange(conn, spec.path, content, stamps, deadline, on_data)
                except (TargetFault, h11.ProtocolError, OSError):
                    if "first_byte_ns" in stamps:
                        raise
                    # the server had closed this idle keep-alive connection: one retry on a fresh one
                    conn.close()
                    conn = None
            if conn is None:
                conn = self._open(stamps)
                status, raw, reusable = self._exchange(conn, spec.path, content, stamps, deadline, on_data)
            sample["http_status"] = status
            if status != 200:
                sample["status"], sample["error"] = "error", _error_text(status, raw)
            parser.close(time.perf_counter_ns())
            if reusable:
                self._idle.append(conn)
            else:
                conn.close()
            conn = None
        except Timeout as exc:
            sample["status"], sample["error"] = "timeout", str(exc)
        except (TargetFault, h11.ProtocolError, OSError) as exc:
            text = str(exc) or type(exc).__name__
            sample["status"], sample["error"] = "error", f"{type(exc).__name__}: {text}"
        finally:
            if conn is not None:
                conn.close()
        end_ns = time.perf_counter_ns()
        st = parser.state
        sample.update(
            intended_start_ns=intended_start_ns, start_ns=start_ns, end_ns=end_ns,
            connect_start_ns=stamps.get("connect_start_ns"), connect_end_ns=stamps.get("connect_end_ns"),
            tls_start_ns=stamps.get("tls_start_ns"), tls_end_ns=stamps.get("tls_end_ns"),
            request_written_ns=stamps.get("request_written_ns"), first_byte_ns=stamps.get("first_byte_ns"),
            first_output_ns=st.first_output_ns, last_output_ns=st.last_output_ns,
            output_chunks=st.output_chunks, chunks=st.chunks, done_reason=st.done_reason,
            server=st.server, usage=st.usage,
        )
        # how long bytes waited in the kernel before this client read them (its own lag; 0 without kernel stamps)
        sample["read_delay_max_ms"] = self.read_delay_ns / 1e6
        sample["stamps_from"] = "kernel" if self.kernel_reads else "process"
        if st.server_stamps:
            sample["server_stamps"] = st.server_stamps
            sample["server_arrived_ns"] = st.server_arrived_ns
        if spec.streaming:
            n_out, source = output_tokens(st.server, st.usage, st.output_chunks)
            sample["output_tokens"], sample["output_tokens_source"] = n_out, source
            sample["prompt_tokens"] = st.server.get("prompt_eval_count", (st.usage or {}).get("prompt_tokens"))
            if sample["status"] == "ok":
                if st.error:
                    sample["status"], sample["error"] = "error", st.error
                elif not st.done:
                    sample["status"], sample["error"] = "error", "stream ended before its final object"
        else:
            sample.update(_embed_figures(raw, sample))
        sample.update({k: v for k, v in request_metrics(sample).items() if k in ("ttft_ms", "itl_ms", "e2e_ms")})
        return sample


def _is_chunked(headers: list[tuple[bytes, bytes]]) -> bool:
    return any(k == b"transfer-encoding" and b"chunked" in v.lower() for k, v in headers)


def _closes(headers: list[tuple[bytes, bytes]]) -> bool:
    return any(k == b"connection" and b"close" in v.lower() for k, v in headers)


def _error_text(status: int, body: bytes) -> str:
    try:
        obj = json.loads(body)
        if isinstance(obj, dict) and "error" in obj:
            err = obj["error"]
            msg = err.get("message") if isinstance(err, dict) else err
            return f"HTTP {status}: {msg}"
    except ValueError:
        pass
    return f"HTTP {status}: {body[:120]!r}"


def _embed_figures(body: bytes, sample: dict[str, Any]) -> dict[str, Any]:
    """An embedding response has no stream: E2E only; its token count is the input's (prompt_eval_count/usage)."""
    out: dict[str, Any] = {"output_tokens": 0, "output_tokens_source": None, "prompt_tokens": None}
    if sample["status"] != "ok":
        return out
    try:
        obj = json.loads(body)
    except ValueError:
        return {**out, "status": "error", "error": f"invalid JSON body: {body[:80]!r}"}
    if not isinstance(obj, dict) or not (obj.get("embeddings") or obj.get("data")):
        return {**out, "status": "error", "error": "response has no embeddings"}
    usage = obj.get("usage") if isinstance(obj.get("usage"), dict) else {}
    out["prompt_tokens"] = obj.get("prompt_eval_count", usage.get("prompt_tokens"))
    server = {k: obj[k] for k in ("total_duration", "load_duration", "prompt_eval_count") if isinstance(obj.get(k), int)}
    out["server"] = server
    return out
