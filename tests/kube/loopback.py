"""A scripted HTTP server on loopback for unit tests of :mod:`katib.controller.kube.api`.

Each test says what the server answers (a function of the request); the server records every
request. It knows nothing of Kubernetes semantics: that is the fake API server's job
(:mod:`katib.controller.kube.fake`).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import kubernetes.client


@dataclass
class Request:
    """One request as the server saw it."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any


@dataclass
class Reply:
    """An answer: a JSON ``body`` with ``status``, or ``lines`` streamed one write each."""

    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    lines: list[bytes] | None = None
    line_gate: Callable[[int], None] | None = None  # called before each streamed line
    abort: bool = False  # drop the connection after the lines, without ending the stream


def status_body(code: int, reason: str, message: str = "") -> dict[str, Any]:
    """A Kubernetes ``Status`` error object."""
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "status": "Failure",
        "code": code,
        "reason": reason,
        "message": message or reason,
    }


class LoopbackServer:
    """``with LoopbackServer(answer) as server: ...``: ``answer(request) -> Reply``."""

    def __init__(self, answer: Callable[[Request], Reply]) -> None:
        self.answer = answer
        self.requests: list[Request] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _handle(self) -> None:
                parts = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                request = Request(
                    self.command,
                    parts.path,
                    dict(parse_qsl(parts.query)),
                    {k.lower(): v for k, v in self.headers.items()},
                    json.loads(raw) if raw else None,
                )
                outer.requests.append(request)
                reply = outer.answer(request)
                self.send_response(reply.status)
                for key, value in reply.headers.items():
                    self.send_header(key, value)
                if reply.lines is not None:
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Transfer-Encoding", "chunked")
                    self.end_headers()
                    for index, line in enumerate(reply.lines):
                        if reply.line_gate is not None:
                            reply.line_gate(index)
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(line), line))
                        self.wfile.flush()
                    if reply.abort:
                        self.close_connection = True
                        return
                    self.wfile.write(b"0\r\n\r\n")
                    return
                if isinstance(reply.body, bytes):
                    data = reply.body
                else:
                    data = json.dumps(reply.body).encode() if reply.body is not None else b""
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle  # noqa: N815

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)

    def api_client(self) -> kubernetes.client.ApiClient:
        """An official client pointed at this server, without auth."""
        configuration = kubernetes.client.Configuration()
        configuration.host = self.url
        return kubernetes.client.ApiClient(configuration)

    def __enter__(self) -> LoopbackServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def event_lines(*events: tuple[str, dict[str, Any]]) -> list[bytes]:
    """Watch events as the API server writes them: one JSON object and a newline each."""
    return [json.dumps({"type": kind, "object": obj}).encode() + b"\n" for kind, obj in events]


def replies(*sequence: Reply) -> Iterator[Reply]:
    """An iterator over ``sequence``, repeating its last element."""
    yield from sequence
    while True:
        yield sequence[-1]
