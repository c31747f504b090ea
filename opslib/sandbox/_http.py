"""A small HTTP layer for the stand-ins: requests in, responses out.

Each stand-in is a function from ``Request`` to ``Response`` served by an
``AppServer``: a stdlib ``ThreadingHTTPServer`` bound to 127.0.0.1 with daemon
threads, HTTP/1.1 keep-alive and TCP_NODELAY on every accepted socket (without it a
Python server adds about 45 ms to each call, TOOLS.md).
"""

from __future__ import annotations

import json
import logging
import socket
import socketserver
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from ._transport import Fault, TransportFaults, cut, error_answer

logger = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"


@dataclass
class Request:
    """One parsed HTTP request.

    Attributes:
        method: upper-case method.
        path: percent-decoded path without the query string.
        raw_path: the path as sent, still percent-encoded.
        query: query parameters, every value a list.
        headers: case-insensitive header mapping.
        body: the raw body.
        client_ip: the peer address.
        target: the request target as sent, query string included.
    """

    method: str
    path: str
    raw_path: str
    query: dict[str, list[str]]
    headers: Message
    body: bytes
    client_ip: str
    target: str = ""

    def arg(self, name: str, default: str | None = None) -> str | None:
        """Return the first value of a query parameter."""
        values = self.query.get(name)
        return values[0] if values else default

    def json(self) -> Any:
        """Decode the body as JSON.

        Raises:
            ValueError: when the body is not valid JSON.
        """
        return json.loads(self.body.decode("utf-8") or "null")


@dataclass
class Response:
    """An HTTP response to send."""

    status: int
    body: bytes = b""
    headers: list[tuple[str, str]] = field(default_factory=list)

    @classmethod
    def json(
        cls, status: int, payload: Any, headers: list[tuple[str, str]] | None = None
    ) -> Response:
        """Build a JSON response."""
        body = json.dumps(payload, separators=(",", ":")).encode("utf-8")
        return cls(
            status, body, [("Content-Type", "application/json"), *(headers or [])]
        )

    @classmethod
    def text(
        cls,
        status: int,
        text: str,
        content_type: str = "text/plain; charset=UTF-8",
        headers: list[tuple[str, str]] | None = None,
    ) -> Response:
        """Build a text response."""
        return cls(
            status,
            text.encode("utf-8"),
            [("Content-Type", content_type), *(headers or [])],
        )

    def header(self, name: str) -> str | None:
        """Return the first header of that name, case-insensitively."""
        wanted = name.lower()
        return next((v for k, v in self.headers if k.lower() == wanted), None)


App = Callable[[Request], Response]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: AppServer

    def version_string(self) -> str:
        return self.server.server_header

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("request server=%s line=%s", self.server.name, format % args)

    def _dispatch(self) -> None:
        request = self._read_request()
        fault = self.server.take_fault()
        if fault is not None and fault.kind == "timeout":
            self.server.hold(fault)
            self.close_connection = True  # no answer, ever, on this connection
            return
        if fault is not None and fault.kind in ("429", "5xx"):
            status, headers, body = error_answer(fault)
            self._write_response(Response(status, body, headers))
            return
        try:
            response = self.server.app(request)
        except Exception:
            logger.exception(
                "handler failed server=%s path=%s", self.server.name, request.path
            )
            response = Response.text(500, "sandbox handler error\n")
        if fault is not None and fault.kind == "truncated":
            response = Response(response.status, cut(response.body), response.headers)
        self._write_response(response)

    def _read_request(self) -> Request:
        split = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length > 0 else b""
        return Request(
            method=self.command,
            path=unquote(split.path),
            raw_path=split.path,
            query=parse_qs(split.query, keep_blank_values=True),
            headers=self.headers,
            body=body,
            client_ip=self.client_address[0],
            target=self.path,
        )

    def _write_response(self, response: Response) -> None:
        self.send_response(response.status)
        for name, value in response.headers:
            self.send_header(name, value)
        if self.command != "HEAD" or response.header("Content-Length") is None:
            self.send_header("Content-Length", str(len(response.body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(response.body)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = do_HEAD = _dispatch


class Reopenable(socketserver.TCPServer):
    """A server that can stop listening and listen again on the same port.

    While closed, the port refuses connections and the connections already
    accepted are cut, as when the process behind a port is gone. Transport
    faults (``_transport``) apply to the requests of ``system``.
    """

    faults: TransportFaults | None = None
    system = ""

    def serve_in_thread(self) -> None:
        """Serve in a daemon thread named after the system."""
        name = f"sandbox-{self.system or 'server'}"
        threading.Thread(
            target=self.serve_forever, args=(0.1,), name=name, daemon=True
        ).start()

    def take_fault(self) -> Fault | None:
        """The transport fault for this request, if one is pending."""
        return self.faults.take(self.system) if self.faults and self.system else None

    def hold(self, fault: Fault) -> None:
        """Hold a request until the fault's time passes or it is cleared."""
        if self.faults is not None:
            self.faults.hold(fault)

    def register_faults(self, faults: TransportFaults, system: str) -> None:
        """Apply ``system``'s transport faults here, ``refused`` included."""
        self.faults, self.system = faults, system
        faults.register(system, self.close_port, self.reopen_port)

    def close_port(self) -> None:
        """Stop listening and cut the open connections."""
        self.shutdown()
        self.socket.close()
        for connection in self._open_connections():
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        logger.info("port closed system=%s", self.system)

    def reopen_port(self) -> None:
        """Listen again on the same port and serve."""
        self.socket = socket.socket(self.address_family, self.socket_type)
        self.server_bind()
        self.server_activate()
        self.serve_in_thread()
        logger.info("port reopened system=%s", self.system)

    def get_request(self) -> tuple[socket.socket, Any]:
        """Accept a connection, switch Nagle's algorithm off and remember it."""
        connection, address = super().get_request()
        connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._open_connections(add=connection)
        return connection, address

    def shutdown_request(self, request: Any) -> None:
        """Forget a connection once its handler is done."""
        self._open_connections(drop=request)
        super().shutdown_request(request)

    def _open_connections(
        self, *, add: Any = None, drop: Any = None
    ) -> list[socket.socket]:
        """Add or drop one accepted connection; returns those still open."""
        # setdefault is atomic, so the first two threads agree on one lock and set
        lock: threading.Lock = vars(self).setdefault("_open_lock", threading.Lock())
        with lock:
            known: set[Any] = vars(self).setdefault("_open_set", set())
            if add is not None:
                known.add(add)
            known.discard(drop)
            return list(known)


class AppServer(Reopenable, ThreadingHTTPServer):
    """A threaded loopback server handing every request to ``app``.

    Args:
        port: port to bind on 127.0.0.1; 0 picks a free one.
        app: the request-to-response function.
        name: short name for logs ("platform", "cloudflare", ...).
        server_header: value of the ``Server`` header.

    Raises:
        OSError: when the port is taken.
    """

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, port: int, app: App, name: str, server_header: str) -> None:
        self.app = app
        self.name = name
        self.server_header = server_header
        super().__init__((LOOPBACK, port), _Handler)

    @property
    def port(self) -> int:
        """The port actually bound."""
        return int(self.server_address[1])
