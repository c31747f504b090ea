"""One request to the platform stand-in, with the bindings the Worker sees.

A ``Call`` carries what the Worker's ``env`` would: the version serving the
request, its KV namespaces and D1. D1 access raises ``WorkerError`` with a D1-style
message when the scenario makes D1 unavailable or a statement fails; the global
error handler in ``_platform`` turns such errors into HTTP answers.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.cookies import CookieError, SimpleCookie
from typing import Any

from ._d1 import UNAVAILABLE_MESSAGE
from ._http import Request, Response
from ._state import Namespace, Version, World


class WorkerError(Exception):
    """An exception thrown inside the Worker; its message decides the status."""


@dataclass
class Call:
    """A request plus the Worker bindings serving it.

    Attributes:
        world: the shared sandbox state.
        request: the HTTP request.
        version: the Worker version chosen for this request.
        sessions: the SESSIONS namespace (sessions and rate-limit counters).
        cache: the CACHE_KV namespace, or None when it is gone.
        now: request time, epoch seconds.
        headers: headers every answer to this call carries (rate-limit info).
        logs: the lines the Worker logged while serving the call (Workers Logs).
    """

    world: World
    request: Request
    version: Version
    sessions: Namespace
    cache: Namespace | None
    now: float = field(default_factory=time.time)
    headers: list[tuple[str, str]] = field(default_factory=list)
    logs: list[str] = field(default_factory=list)

    @property
    def ip(self) -> str:
        """The client address, as the edge would put in CF-Connecting-IP."""
        return self.request.client_ip

    @property
    def path(self) -> str:
        """The request path."""
        return self.request.path

    def cookie(self, name: str) -> str | None:
        """Return a cookie value sent by the client."""
        jar: SimpleCookie = SimpleCookie()
        try:
            jar.load(self.request.headers.get("Cookie") or "")
        except CookieError:
            return None
        morsel = jar.get(name)
        return morsel.value if morsel else None

    def body(self) -> dict[str, Any]:
        """Decode a JSON object body.

        Raises:
            WorkerError: "Invalid JSON body" (mapped to 400) otherwise.
        """
        try:
            data = self.request.json()
        except ValueError as error:
            raise WorkerError("Invalid JSON body") from error
        if not isinstance(data, dict):
            raise WorkerError("Invalid JSON body: expected an object")
        return data

    def has_secret(self, name: str) -> bool:
        """True when the serving version has the secret set."""
        return name in self.version.secrets

    @contextmanager
    def d1(self) -> Iterator[sqlite3.Connection]:
        """Open the D1 database as the ``DB`` binding would.

        Raises:
            WorkerError: when D1 is unavailable or a statement fails.
        """
        if not self.world.scenario.d1_available:
            raise WorkerError(UNAVAILABLE_MESSAGE)
        connection = sqlite3.connect(
            self.world.database, isolation_level=None, timeout=10
        )
        connection.row_factory = sqlite3.Row
        connection.execute("PRAGMA foreign_keys = ON")
        try:
            yield connection
        except sqlite3.Error as error:
            raise WorkerError(f"D1_ERROR: {error}: SQLITE_ERROR") from error
        finally:
            connection.close()

    def kv_json(self, namespace: Namespace | None, key: str) -> Any:
        """Read a JSON value from a namespace; None when absent or unreadable."""
        entry = namespace.get(key) if namespace is not None else None
        if entry is None:
            return None
        try:
            return json.loads(entry.value.decode("utf-8"))
        except ValueError:
            return None

    def kv_put_json(
        self, namespace: Namespace | None, key: str, value: Any, ttl: float
    ) -> None:
        """Write a JSON value with a TTL in seconds."""
        if namespace is not None:
            namespace.put(key, json.dumps(value).encode("utf-8"), ttl=ttl)


def json_response(
    status: int, payload: Any, headers: list[tuple[str, str]] | None = None
) -> Response:
    """Build a Worker JSON answer."""
    return Response.json(status, payload, headers)
