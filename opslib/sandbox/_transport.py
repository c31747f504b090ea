"""Transport faults: what the network does to a call, laid over any scenario.

A scenario decides what a system answers; a transport fault decides whether the
answer arrives. One fault at a time per system, injected at run time through the
control server (``POST /__sandbox/transport``), ``Sandbox.fault`` or ``runbook
sandbox fault``, and cleared the same way or by a scenario reset:

- ``timeout``: the server holds the request (``hold_s``, default 60 s, or until
  the fault is cleared) and closes the connection without an answer;
- ``429``: Too Many Requests with ``Retry-After: <retry_after>`` (default 1;
  ``null`` sends no Retry-After);
- ``5xx``: an error status (``status``, default 503) in the system's own shape;
- ``refused``: nothing listens on the system's port until the fault is cleared;
- ``truncated``: the answer the system would give, its body cut in half (the
  ``Content-Length`` matches the cut body, so only the content is broken).

``count`` limits a fault to the next N requests (a burst, then recovery); without
it the fault lasts until cleared. ``refused`` always lasts until cleared.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from typing import Any

SYSTEMS = ("platform", "cloudflare", "status_page", "mailchannels", "stripe", "r2")
KINDS = ("timeout", "429", "5xx", "refused", "truncated")
DEFAULT_HOLD_S = 60.0
MAX_HOLD_S = 600.0


@dataclass(frozen=True)
class Fault:
    """One transport fault on one system.

    Attributes:
        system: one of :data:`SYSTEMS`.
        kind: one of :data:`KINDS`.
        count: requests left to fault; None for "until cleared".
        retry_after: seconds named in ``Retry-After`` (kind 429); None sends
            the 429 without the header.
        status: the status sent (kind 5xx).
        hold_s: how long a request is held (kind timeout).
    """

    system: str
    kind: str
    count: int | None = None
    retry_after: int | None = 1
    status: int = 503
    hold_s: float = DEFAULT_HOLD_S


def parse_fault(data: Any) -> Fault:
    """Build a fault from the control API's JSON object.

    Raises:
        ValueError: naming each wrong field and the form expected.
    """
    if not isinstance(data, dict):
        raise ValueError('expected a JSON object such as {"system": ..., "kind": ...}')
    problems = []
    known = {"system", "kind", "count", "retry_after", "status", "hold_s"}
    problems += [f"unknown field {name!r}" for name in sorted(set(data) - known)]
    system, kind = data.get("system"), data.get("kind")
    if system not in SYSTEMS:
        problems.append(f"system: got {system!r}, expected one of {', '.join(SYSTEMS)}")
    if kind not in KINDS:
        problems.append(f"kind: got {kind!r}, expected one of {', '.join(KINDS)}")
    count = data.get("count")
    if count is not None and not _is_int(count, 1):
        problems.append(f"count: got {count!r}, expected a whole number of at least 1")
    if count is not None and kind == "refused":
        problems.append("count: refused lasts until cleared; leave count out")
    retry_after = data.get("retry_after", 1)
    if retry_after is not None and not _is_int(retry_after, 0):
        problems.append(
            f"retry_after: got {retry_after!r}, expected whole seconds or null"
        )
    status = data.get("status", 503)
    if not _is_int(status, 500) or status > 599:
        problems.append(f"status: got {status!r}, expected a status from 500 to 599")
    hold_s = data.get("hold_s", DEFAULT_HOLD_S)
    if (
        isinstance(hold_s, bool)
        or not isinstance(hold_s, (int, float))
        or not 0 < hold_s <= MAX_HOLD_S
    ):
        problems.append(f"hold_s: got {hold_s!r}, expected seconds in (0, 600]")
    if problems:
        raise ValueError("; ".join(problems))
    return Fault(str(system), str(kind), count, retry_after, status, float(hold_s))


def _is_int(value: object, minimum: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= minimum


class TransportFaults:
    """The faults pending per system, shared by every server of the sandbox.

    A server whose port can be closed (``refused``) registers a pair of
    callbacks: one stops listening, one listens again on the same port.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: dict[str, Fault] = {}
        self._released: dict[str, threading.Event] = {}
        self._listeners: dict[str, tuple[Callable[[], None], Callable[[], None]]] = {}

    def register(
        self, system: str, close: Callable[[], None], reopen: Callable[[], None]
    ) -> None:
        """Let ``refused`` close and reopen the listening port of ``system``."""
        self._listeners[system] = (close, reopen)

    def set(self, fault: Fault) -> dict[str, Any]:
        """Lay a fault over its system, replacing the one pending there."""
        self.clear(fault.system)
        with self._lock:
            self._faults[fault.system] = fault
            self._released[fault.system] = threading.Event()
        if fault.kind == "refused" and fault.system in self._listeners:
            self._listeners[fault.system][0]()
        return self.pending()

    def clear(self, system: str | None = None) -> dict[str, Any]:
        """Clear one system's fault, or all of them; held requests are let go."""
        with self._lock:
            names = [system] if system else list(self._faults)
            removed = [self._faults.pop(n) for n in names if n in self._faults]
            for name in names:
                event = self._released.pop(name, None)
                if event is not None:
                    event.set()
        for fault in removed:
            if fault.kind == "refused" and fault.system in self._listeners:
                self._listeners[fault.system][1]()
        return self.pending()

    def pending(self) -> dict[str, Any]:
        """The faults in force, by system."""
        with self._lock:
            return {name: asdict(fault) for name, fault in self._faults.items()}

    def take(self, system: str) -> Fault | None:
        """The fault to apply to one request of ``system``, counting it down."""
        with self._lock:
            fault = self._faults.get(system)
            if fault is None or fault.kind == "refused":
                return None
            if fault.count is not None:
                if fault.count <= 1:
                    del self._faults[system]
                else:
                    self._faults[system] = replace(fault, count=fault.count - 1)
            return fault

    def hold(self, fault: Fault) -> None:
        """Keep a request waiting, as a server that never answers does."""
        with self._lock:
            event = self._released.get(fault.system) or threading.Event()
        event.wait(fault.hold_s)


def error_answer(fault: Fault) -> tuple[int, list[tuple[str, str]], bytes]:
    """Status, headers and body of a 429 or 5xx in the system's own shape."""
    status = 429 if fault.kind == "429" else fault.status
    named = status == 429 and fault.retry_after is not None
    headers = [("Retry-After", str(fault.retry_after))] if named else []
    message = "Too many requests; slow down" if status == 429 else "Service unavailable"
    if fault.system == "r2":
        code = "SlowDown" if status == 429 else "ServiceUnavailable"
        body = (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            f"<Error><Code>{code}</Code><Message>{message}</Message></Error>"
        ).encode()
        return status, [("Content-Type", "application/xml"), *headers], body
    payload: Any
    if fault.system == "cloudflare":
        payload = {
            "success": False,
            "errors": [{"code": 971 if status == 429 else 10002, "message": message}],
            "messages": [],
            "result": None,
        }
    elif fault.system == "stripe":
        kind = "rate_limit_error" if status == 429 else "api_error"
        payload = {"error": {"type": kind, "message": message}}
    else:
        payload = {"error": message}
    body = json.dumps(payload).encode()
    return status, [("Content-Type", "application/json"), *headers], body


def cut(body: bytes) -> bytes:
    """The first half of a body (at least one byte short of it)."""
    return body[: max(0, min(len(body) // 2, len(body) - 1))]
