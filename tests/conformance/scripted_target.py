"""A scripted loopback server for the project's tests: answers per mode (`http://HOST:PORT/<mode>/api/...`),
each a fixed answer, a function of the request body (a rule-based engine), or a way to break the connection.
Anything not scripted: 404 text/plain, as a router answers a route it does not have."""

from __future__ import annotations

import json
import socket
import struct
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

# (status, content type, JSON body or text), an action ("reset", "close", "half-stream-reset"), a function of the
# parsed request body giving one of those, or None (the route is not served, even where discovery answers it)
Answer = Any
MODEL = "m:1"  # the model the scripted servers serve


class ThirdPartyLike:
    """A loopback server answering per mode (`http://HOST:PORT/<mode>/api/...`); anything else 404 text/plain."""

    def __init__(self, modes: dict[str, dict[tuple[str, str], Answer]],
                 discovery: dict[tuple[str, str], Answer] | None = None) -> None:
        self.modes = modes
        self.discovery = discovery or {}
        find: Callable[[str, str], Answer | None] = self._find

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _answer(self) -> None:
                raw = self.rfile.read(int(self.headers.get("content-length") or 0))
                answer = find(self.command, self.path) or (404, "text/plain", "404 page not found")
                if callable(answer):  # an answer that depends on the request (a rule-based engine)
                    try:
                        request = json.loads(raw) if raw else None
                    except ValueError:
                        request = None
                    answer = answer(request)
                if isinstance(answer, str):
                    self._break(answer)
                    return
                status, media, body = answer
                data = (body if isinstance(body, str) else json.dumps(body)).encode()
                self.send_response(status)
                self.send_header("content-type", media)
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _break(self, how: str) -> None:
                if how == "half-stream-reset":
                    self.wfile.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/x-ndjson\r\n"
                                     b"transfer-encoding: chunked\r\n\r\n")
                    line = json.dumps({"model": MODEL, "message": {"role": "assistant", "content": "Hi"}, "done": False})
                    self.wfile.write(f"{len(line) + 1:x}\r\n{line}\n\r\n".encode())
                    self.wfile.flush()
                time.sleep(0.3)  # the client is waiting in a read when the connection goes
                if how != "close":  # an RST rather than a FIN
                    self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                self.close_connection = True
                self.connection.close()

            do_GET = do_POST = do_HEAD = do_DELETE = _answer

            def log_message(self, *args: object) -> None:
                return

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request: Any, client_address: Any) -> None:
                return  # the sockets this server breaks on purpose

        self.server = Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def _find(self, method: str, path: str) -> Answer | None:
        parts = path.split("?")[0].split("/", 2)  # "", mode, the route's path
        if len(parts) < 3:
            return None
        mode, route = parts[1], (method, "/" + parts[2])
        answers = self.modes.get(mode, {})
        if route in answers:  # a mode may answer a discovery route itself (None: not served)
            return answers[route]
        return self.discovery.get(route)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
