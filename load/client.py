"""One measured request: a streaming-safe HTTP/1.1 client that stamps bytes as they arrive, and its raw sample.

The protocol is h11's (a well-kept sans-I/O HTTP/1.1 library); the sockets are ours, so every phase is stamped
exactly where it happens: TCP connect, TLS handshake, request written, first byte of the response, first output
chunk (from the stream parser), last byte. Each read is stamped before anything is parsed: on Linux with the
kernel's own receive time (SO_TIMESTAMPNS, converted to the `perf_counter_ns` clock), so a client process the OS
did not schedule for a few ms still gets the true arrival time (the delay is kept as `read_delay_max_ms`); over
TLS, or where the kernel gives none, with `time.perf_counter_ns()` right after the read. Under locust the sockets are gevent's (patched at import), so a read blocks only its own greenlet. httpx
was measured first and costs ~0.7 ms per request in its layers above h11, which would be booked as TTFT error;
h11 on a socket costs ~0.1 ms. TCP_NODELAY is set so small writes leave at once.

Keep-alive connections are reused (`reuse=False` opens one per request and sends `Connection: close`). A server
may close an idle connection at any time, so reuse is made safe in three layers, none of which can send a
request twice to a server that may have read it:
1. before a reused connection carries a request it is polled: readable while idle means the server closed it (or
   sent bytes nobody asked for); it is dropped unused (`stale_discarded`, nothing was sent);
2. a write the kernel refused before taking a single byte is retried on a fresh connection;
3. a connection that ends before any byte of the response came back is retried once, on a fresh connection,
   only when the server is shown not to have read the request: its kernel reset our bytes (data that reaches a
   closed socket, or lies unread when the server closes, is answered with a TCP reset; a server that read the
   whole request and then closed sends a plain FIN, which is reported as an error, never retried). On Linux the
   reset is read from TCP_INFO (the socket goes from CLOSE_WAIT to CLOSE), waiting at most a few round trips.
Each sample says `connection` ("new" or "reused"), `retries` (0 or 1, with `retry_reason`), `stale_discarded`, and
`reuse_turned_off` (see `KEEPALIVE_PROBE_S`: a server that closes after every response is no longer reused).
"""

from __future__ import annotations

import contextlib
import errno
import json
import select
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
TCP_CLOSE = 7  # tcpi_state of a socket the peer reset (linux/include/net/tcp_states.h)
TCP_INFO_RTT_OFFSET = 68  # struct tcp_info: u8 x8, u32 x15, then tcpi_rtt (microseconds)
RESET_WAIT_MIN_S = 0.005
# After the first response on a kept-alive connection, wait this long (after the sample is stamped, so no latency
# is measured across it) to see whether the server closes connections after responses; llama.cpp's server does,
# with a graceful close that drains (reads and drops) a request sent meanwhile, so no reset ever proves it unread.
KEEPALIVE_PROBE_S = 0.03
RESET_WAIT_MAX_S = 0.25


class TargetFault(Exception):
    """The target broke the exchange (closed, stalled, sent garbage)."""


class Timeout(Exception):
    """No byte within the read timeout, or the request ran past its total time."""


class NothingSent(TargetFault):
    """The kernel refused the request's first byte: nothing reached the server, a retry is safe."""


class NoResponse(TargetFault):
    """The connection ended (EOF or reset) after the request was written and before any byte of a response."""

    def __init__(self, text: str, reset: bool) -> None:
        super().__init__(text)
        self.reset = reset


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

    def __init__(self, base_url: str, timeout_s: float, headers: dict[str, str] | None = None,
                 reuse: bool = True) -> None:
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
        self.reuse = reuse
        self.keepalive_probed = False
        if not reuse:
            self.headers.append(("Connection", "close"))
        self._idle: list[_Connection] = []
        self._ssl = ssl.create_default_context() if self.tls else None
        self.read_delay_ns = 0
        self.kernel_reads = 0
        self.last_text: str | None = None

    def close(self) -> None:
        while self._idle:
            self._idle.pop().close()

    def _take_idle(self) -> tuple[_Connection | None, int]:
        """An idle connection the server has not closed (or None), and how many closed ones were dropped unused."""
        dropped = 0
        while self._idle:
            conn = self._idle.pop()
            if _closed_while_idle(conn):
                conn.close()
                dropped += 1
                continue
            return conn, dropped
        return None, dropped

    def _send(self, conn: _Connection, data: bytes) -> None:
        """Write all of `data`; NothingSent when the kernel refused its first byte (so a retry cannot duplicate)."""
        view = memoryview(data)
        sent = 0
        while sent < len(view):
            try:
                sent += conn.sock.send(view[sent:])
            except OSError as exc:
                if sent == 0 and not isinstance(exc, TimeoutError):
                    raise NothingSent(f"write refused before any byte was sent ({type(exc).__name__})") from None
                raise

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
        except (ConnectionResetError, BrokenPipeError) as exc:
            if "first_byte_ns" not in stamps:
                raise NoResponse(f"connection reset before any byte of the response ({type(exc).__name__})",
                                 reset=True) from None
            raise
        if not data:
            if "first_byte_ns" not in stamps:
                raise NoResponse("connection closed before any byte of the response", reset=False)
            return data, time.perf_counter_ns()
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
        self._send(conn, out)
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

    def measure(self, spec: EndpointSpec, body: dict[str, Any], intended_start_ns: int,
                keep_text: bool = False) -> dict[str, Any]:
        """Send one request and return its sample (stamps in perf_counter_ns); target faults become its status.

        With `keep_text` the answer's text is left in `self.last_text` (not in the sample)."""
        stamps: dict[str, int] = {}
        parser = parser_for(spec.sse, keep_text)
        sample: dict[str, Any] = {"status": "ok", "error": None, "http_status": None}
        content = json.dumps(body).encode()
        start_ns = time.perf_counter_ns()
        deadline = start_ns + int(self.timeout_s * 1e9)
        on_data = parser.feed if spec.streaming else None
        raw = b""
        self.read_delay_ns = self.kernel_reads = 0
        conn: _Connection | None = None
        retry_reason: str | None = None
        reused = False
        stale = 0
        try:
            for attempt in (0, 1):
                conn, stale_now = self._take_idle() if attempt == 0 and self.reuse else (None, 0)
                stale += stale_now
                reused = conn is not None
                if conn is None:
                    conn = self._open(stamps)
                try:
                    status, raw, reusable = self._exchange(conn, spec.path, content, stamps, deadline, on_data)
                    break
                except NothingSent:
                    if attempt:
                        raise
                    retry_reason = "write refused before any byte was sent"
                except NoResponse as exc:
                    if attempt or not reused or not _server_never_read(conn, exc):
                        raise
                    retry_reason = "the server had closed the kept-alive connection: it reset the request unread"
                # a retry: nothing of this attempt reached the server's application, so it cannot generate twice
                conn.close()
                conn = None
                stamps.clear()
            sample["http_status"] = status
            if status != 200:
                sample["status"], sample["error"] = "error", _error_text(status, raw)
            parser.close(time.perf_counter_ns())
            if reusable and self.reuse:
                self._idle.append(conn)
            else:
                conn.close()
            conn = None
        except Timeout as exc:
            sample["status"], sample["error"] = "timeout", str(exc)
        except (TargetFault, h11.ProtocolError, OSError) as exc:
            text = str(exc) or type(exc).__name__
            sample["status"], sample["error"] = "error", f"{type(exc).__name__}: {text}"
            if isinstance(exc, NoResponse) and reused and retry_reason is None:
                sample["error"] += " (kept-alive connection; not retried: the server may have read the request)"
        finally:
            if conn is not None:
                conn.close()
        sample["connection"] = "reused" if reused else "new"
        sample["retries"] = 1 if retry_reason else 0
        sample["retry_reason"] = retry_reason
        sample["stale_discarded"] = stale
        end_ns = time.perf_counter_ns()
        st = parser.state
        self.last_text = "".join(st.text) if st.text is not None else None
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
        sample["reuse_turned_off"] = self._probe_keepalive()
        return sample

    def _probe_keepalive(self) -> bool:
        """Once per client, after its first kept-alive response (every stamp of the sample already taken): does
        the server close connections after responses? Then reusing them can only race its close: stop reusing.

        Returns whether reuse was turned off now.
        """
        if self.keepalive_probed or not self.reuse or not self._idle:
            return False
        self.keepalive_probed = True
        conn = self._idle[-1]
        try:
            readable, _, _ = select.select([conn.sock], [], [], KEEPALIVE_PROBE_S)
        except (OSError, ValueError):
            readable = [conn.sock]
        if not readable:
            return False
        self.close()
        self.reuse = False
        return True


def _closed_while_idle(conn: _Connection) -> bool:
    """Whether an idle connection is unusable: readable while idle means EOF, a reset, or bytes nobody asked for."""
    try:
        readable, _, _ = select.select([conn.sock], [], [], 0)
    except (OSError, ValueError):
        return True
    # nothing is owed on an idle connection: whatever made it readable (FIN, reset, TLS close_notify, stray bytes)
    # makes it unfit to carry a request
    return bool(readable)


def _server_never_read(conn: _Connection, exc: NoResponse) -> bool:
    """Whether the server's kernel reset our request's bytes: then its application never read all of them.

    A reset seen by recv says so directly. A plain EOF is ambiguous (the server may have read the request and then
    closed), unless a reset follows it: our bytes reaching a socket the server had already closed are answered
    with one, which moves ours from CLOSE_WAIT to CLOSE. Wait for it a few round trips (TCP_INFO, Linux only).
    """
    if exc.reset:
        return True
    tcp_info = getattr(socket, "TCP_INFO", None)
    if tcp_info is None or isinstance(conn.sock, ssl.SSLSocket):
        return False
    try:
        info = conn.sock.getsockopt(socket.IPPROTO_TCP, tcp_info, 104)
        rtt_s = struct.unpack_from("I", info, TCP_INFO_RTT_OFFSET)[0] / 1e6 if len(info) >= 72 else 0.0
        until = time.perf_counter() + min(max(4 * rtt_s, RESET_WAIT_MIN_S), RESET_WAIT_MAX_S)
        while True:
            if info[0] == TCP_CLOSE:
                return True
            err = conn.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err in (errno.ECONNRESET, errno.EPIPE):
                return True
            if time.perf_counter() >= until:
                return False
            time.sleep(0.001)
            info = conn.sock.getsockopt(socket.IPPROTO_TCP, tcp_info, 104)
    except OSError:
        return False


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
