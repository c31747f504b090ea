"""What the platform stand-in served: one record per Worker invocation.

The analytics and telemetry stand-ins (``_analytics``) read nothing else: every
number they report comes from a request the platform stand-in really answered.
A record keeps the time, method, path, HTTP status, the serving version, the
invocation outcome, the message the Worker threw, if any, and the wall time, CPU
time and outbound calls the request cost (``_timing``).

Replayed traffic. A scenario that needs an hour of history sends its requests over
loopback with the header ``X-Sandbox-Replay-At`` (epoch seconds, at most two hours
back): the stand-in serves such a request with the deployment that was live at that
moment, runs its rate-limit windows on that clock, and records it at that time.
Only the sandbox's own traffic generator (``_traffic``) sends the header; opslib
never does.

Invocation outcome, as Workers analytics counts it: a Worker that catches an error
and answers 500 has still succeeded (``ok``); only an uncaught throw is an
``exception``. The platform's global handler catches everything, so its 5xx
answers are ``ok`` invocations; a broken version is the exception.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from . import _timing
from ._http import Request, Response
from ._state import Script, Version, World

logger = logging.getLogger(__name__)

REPLAY_HEADER = "X-Sandbox-Replay-At"
REPLAY_HORIZON_S = 2 * 3600
RECORDS_SWITCH = "invocations"
TRAFFIC_SWITCH = "replayed_traffic"
RECORDS_KEPT = 5000
TRAFFIC_WAIT_S = 30.0


@dataclass(frozen=True)
class Invocation:
    """One request the platform stand-in served."""

    at: float
    method: str
    path: str
    status: int
    version_id: str
    outcome: str
    error: str
    request_id: str
    wall_ms: float = 0.0
    cpu_ms: float = 0.0
    subrequests: int = 0
    logs: tuple[str, ...] = ()


@dataclass
class TrafficRun:
    """A scenario's replayed traffic, sent by a background thread.

    Attributes:
        condition: bound to the world lock; notified when the run ends.
        done: True once every request was sent (or the run gave up).
        sent: how many requests were answered.
        problem: why the run gave up, if it did.
    """

    condition: threading.Condition
    done: bool = False
    sent: int = 0
    problem: str = ""
    statuses: dict[int, int] = field(default_factory=dict)


def replay_time(request: Request, now: float | None = None) -> float | None:
    """Return the replay time a request carries, or None for live traffic."""
    raw = request.headers.get(REPLAY_HEADER)
    if not raw:
        return None
    now = time.time() if now is None else now
    try:
        at = float(raw)
    except ValueError:
        return None
    if not now - REPLAY_HORIZON_S <= at <= now:
        return None
    return at


def version_at(world: World, script: Script, at: float | None) -> Version:
    """Pick the version serving a request at ``at`` (None: now), by traffic share."""
    if at is None:
        return world.pick_version(script)
    live = [d for d in script.deployments if d.created_on <= at] or script.deployments
    pairs = live[-1].versions
    chosen = world.rng.choices([p[0] for p in pairs], [p[1] for p in pairs])[0]
    version = script.version(chosen)
    assert version is not None
    return version


def record_invocation(
    world: World,
    request: Request,
    response: Response,
    version: Version,
    at: float | None,
    thrown: str = "",
    *,
    uncaught: bool = False,
    logs: tuple[str, ...] = (),
) -> Response:
    """Keep one served request in the scenario's records; return ``response``.

    ``logs`` are the lines the Worker logged while serving it (Workers Logs).
    """
    records = world.scenario.switches.setdefault(
        RECORDS_SWITCH, deque(maxlen=RECORDS_KEPT)
    )
    cost = _timing.finish()
    records.append(
        Invocation(
            at=time.time() if at is None else at,
            method=request.method,
            path=request.path,
            status=response.status,
            version_id=version.id,
            outcome="exception" if uncaught else "ok",
            error=thrown,
            request_id=uuid.uuid4().hex,
            wall_ms=cost.wall_ms if cost else 0.0,
            cpu_ms=cost.cpu_ms if cost else 0.0,
            subrequests=cost.subrequests if cost else 0,
            logs=tuple(logs),
        )
    )
    return response


def invocations(world: World) -> list[Invocation]:
    """Return the scenario's records, oldest first (call with the lock held)."""
    return sorted(world.scenario.switches.get(RECORDS_SWITCH) or (), key=_time)


def start_traffic(world: World, send: Callable[[TrafficRun], None]) -> TrafficRun:
    """Run ``send`` in a background thread; readers wait for it to finish.

    Called from a scenario's after_reset hook, which holds the world lock: the
    requests can only be served once the reset is over, so they cannot be sent
    from the hook itself.
    """
    run = TrafficRun(threading.Condition(world.lock))
    world.scenario.switches[TRAFFIC_SWITCH] = run

    def _main() -> None:
        try:
            send(run)
        finally:  # readers must never wait for a run that died
            with run.condition:
                run.done = True
                run.condition.notify_all()

    threading.Thread(target=_main, name="sandbox-traffic", daemon=True).start()
    return run


def wait_for_traffic(world: World, timeout: float = TRAFFIC_WAIT_S) -> None:
    """Wait until the scenario's replayed traffic is served (call with the lock).

    Waiting on a condition bound to the world lock releases the lock meanwhile,
    so the platform stand-in can serve the traffic being waited for.
    """
    run = world.scenario.switches.get(TRAFFIC_SWITCH)
    if not isinstance(run, TrafficRun):
        return
    with run.condition:
        if not run.condition.wait_for(lambda: run.done, timeout):
            logger.warning("replayed traffic still running after %s s", timeout)


def _time(record: Any) -> float:
    return float(record.at)
