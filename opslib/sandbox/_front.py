"""The sandbox's own front for a stand-in that runs in another process.

localstripe serves from a child process, so its port cannot be closed or its
answers cut from here. Clients therefore call the sandbox's front, an
``AppServer`` like the other stand-ins (transport faults included), which passes
each request to the child on its private loopback port and the answer back.
"""

from __future__ import annotations

import http.client
import threading

from ._http import LOOPBACK, Request, Response

# Hop-by-hop headers, and those the front's own server writes itself.
_DROPPED = frozenset(
    {
        "connection",
        "keep-alive",
        "transfer-encoding",
        "content-length",
        "server",
        "date",
        "proxy-connection",
        "te",
        "upgrade",
        "expect",
    }
)


class ProxyApp:
    """Forward requests to a loopback port, one kept-alive connection per thread.

    Args:
        port: the port of the stand-in behind the front.
        timeout: seconds to wait for the stand-in's answer.
    """

    def __init__(self, port: int, *, timeout: float = 60.0) -> None:
        self.port = port
        self.timeout = timeout
        self._local = threading.local()

    def __call__(self, request: Request) -> Response:
        """Send one request on and return the answer unchanged."""
        headers = {
            name: value
            for name, value in request.headers.items()
            if name.lower() not in _DROPPED
        }
        target = request.target or request.raw_path
        for attempt in (1, 2):  # a kept-alive connection the child closed: once more
            connection = self._connection(fresh=attempt == 2)
            try:
                connection.request(
                    request.method, target, body=request.body or None, headers=headers
                )
                answer = connection.getresponse()
                body = answer.read()
                break
            except (http.client.RemoteDisconnected, ConnectionResetError):
                connection.close()
                if attempt == 2:
                    raise
        kept = [(k, v) for k, v in answer.getheaders() if k.lower() not in _DROPPED]
        length = answer.getheader("Content-Length")
        if request.method == "HEAD" and length is not None:
            kept.append(("Content-Length", length))  # the size of what GET would send
        return Response(answer.status, body, kept)

    def _connection(self, *, fresh: bool) -> http.client.HTTPConnection:
        connection: http.client.HTTPConnection | None = getattr(
            self._local, "connection", None
        )
        if connection is None or fresh:
            connection = http.client.HTTPConnection(
                LOOPBACK, self.port, timeout=self.timeout
            )
            self._local.connection = connection
        return connection
