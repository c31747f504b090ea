"""An hour of user traffic, replayed against the platform stand-in over loopback.

A scenario's after_reset hook calls :func:`replay_hour`: it opens sessions for a
few users (rows of KV state, like a login would write), then a background thread
sends the requests, oldest first, to the platform stand-in's real port, each
marked with its moment in the last hour (``_invocations.REPLAY_HEADER``). The
stand-in answers them as usual, so rate limits, switches and the version live at
that moment all apply; the analytics stand-ins read what it recorded.

About 180 requests for a normal hour (one ``/manuscripts`` listing a minute, the
profile and subscription every other minute, payment history every third, the
admin revenue page every fourth, a billing-portal session every fifth, an upload
every seventh), plus what a scenario
adds; a run takes well under two seconds.
"""

from __future__ import annotations

import json
import logging
import random
import sqlite3
import time
import uuid
from dataclasses import dataclass

import httpx

from ._invocations import REPLAY_HEADER, TRAFFIC_SWITCH, TrafficRun, start_traffic
from ._state import World

logger = logging.getLogger(__name__)

HOUR_MINUTES = 60
READY_WAIT_S = 20.0
SESSION_TTL_S = 3 * 3600
# (path, method, every n minutes, starting at minute)
_NORMAL_HOUR = (
    ("/manuscripts", "GET", 1, 0),
    ("/auth/me", "GET", 2, 0),
    ("/payments/subscription", "GET", 2, 1),
    ("/payments/history", "GET", 3, 0),
    ("/admin/revenue", "GET", 4, 2),
    ("/upload/manuscript", "POST", 7, 3),
    ("/payments/create-portal-session", "POST", 5, 4),
)


@dataclass(frozen=True)
class Visit:
    """One request of the replayed hour."""

    at: float
    method: str
    path: str
    session: str


def replay_hour(world: World, now: float, *, free_users: int = 0) -> None:
    """Open sessions and start replaying the last hour (call with the lock held).

    Args:
        world: the sandbox state, just reset to a scenario.
        now: the scenario's start; the hour replayed ends then.
        free_users: FREE-tier users who also list manuscripts 14 times and read
            their subscription 12 times in the hour (past their 10 per path a day).
    """
    rng = random.Random(f"traffic:{world.scenario.name}")
    paying, admins, free = _users(world, rng, free_users)
    sessions = {
        user: _open_session(world, user, now) for user in paying + admins + free
    }
    visits = _normal_visits(
        rng, now, [sessions[u] for u in paying], sessions[admins[0]]
    )
    for user in free:
        visits += _free_visits(rng, now, sessions[user])
    visits.sort(key=lambda v: v.at)
    world.scenario.details.setdefault("traffic_requests", len(visits))
    start_traffic(world, lambda run: _send(world, visits, run))


def _users(
    world: World, rng: random.Random, free_users: int
) -> tuple[list[str], list[str], list[str]]:
    connection = sqlite3.connect(world.database)
    try:
        rows = connection.execute(
            "SELECT id, role, LOWER(subscription_tier) FROM users "
            "WHERE email_verified = 1 ORDER BY email"
        ).fetchall()
    finally:
        connection.close()
    paying = [r[0] for r in rows if r[1] == "author" and r[2] in ("pro", "enterprise")]
    admins = [r[0] for r in rows if r[1] == "admin"]
    free = [r[0] for r in rows if r[1] == "author" and r[2] == "free"]
    return rng.sample(paying, 8), admins[:1], rng.sample(free, free_users)


def _open_session(world: World, user_id: str, now: float) -> str:
    sessions = world.namespace(world.environment.kv_namespaces["SESSIONS"])
    session_id = str(uuid.uuid4())
    if sessions is not None:
        value = {
            "userId": user_id,
            "createdAt": int((now - HOUR_MINUTES * 60) * 1000),
            "expiresAt": int((now + SESSION_TTL_S) * 1000),
            "rememberMe": True,
        }
        sessions.put(
            f"session:{session_id}", json.dumps(value).encode(), ttl=SESSION_TTL_S
        )
    return session_id


def _normal_visits(
    rng: random.Random, now: float, paying: list[str], admin: str
) -> list[Visit]:
    start = now - HOUR_MINUTES * 60
    visits = []
    for path, method, every, first in _NORMAL_HOUR:
        for minute in range(first, HOUR_MINUTES, every):
            session = admin if path.startswith("/admin/") else rng.choice(paying)
            at = start + minute * 60 + rng.uniform(1, 58)
            visits.append(Visit(at, method, path, session))
    return visits


def _free_visits(rng: random.Random, now: float, session: str) -> list[Visit]:
    start = now - HOUR_MINUTES * 60
    plan = (("/manuscripts", 14), ("/payments/subscription", 12))
    return [
        Visit(start + rng.uniform(60, HOUR_MINUTES * 60 - 30), "GET", path, session)
        for path, count in plan
        for _ in range(count)
    ]


def _send(world: World, visits: list[Visit], run: TrafficRun) -> None:
    base_url = _platform_url(world)
    if base_url is None:
        run.problem = f"the platform stand-in did not start within {READY_WAIT_S} s"
        logger.warning("replayed traffic not sent: %s", run.problem)
        return
    with httpx.Client(base_url=base_url, timeout=10.0) as client:
        for visit in visits:
            if world.scenario.switches.get(TRAFFIC_SWITCH) is not run:
                run.problem = "the scenario changed before its traffic was sent"
                return
            response = client.request(
                visit.method,
                visit.path,
                headers={
                    REPLAY_HEADER: f"{visit.at:.3f}",
                    "Cookie": f"session_id={visit.session}",
                },
                files={"file": ("chapter.txt", b"Chapter one.")}
                if visit.path == "/upload/manuscript"
                else None,
            )
            run.sent += 1
            run.statuses[response.status_code] = (
                run.statuses.get(response.status_code, 0) + 1
            )
    logger.info("replayed traffic sent=%s statuses=%s", run.sent, run.statuses)


def _platform_url(world: World) -> str | None:
    """The platform stand-in's URL, from the status file the sandbox writes once
    its servers are bound (at first start, after this scenario's reset)."""
    from ._server import STATUS_FILE  # _server imports the scenarios, hence here

    deadline = time.monotonic() + READY_WAIT_S
    path = world.state_dir / STATUS_FILE
    while time.monotonic() < deadline:
        try:
            status = json.loads(path.read_text(encoding="utf-8"))
            return str(status["urls"]["platform_url"])
        except (OSError, ValueError, KeyError):
            time.sleep(0.05)
    return None
