"""Platform routes and behaviour switches of the high-error-rate scenarios.

Routes added to the platform stand-in (PLATFORM.md section 3):

- ``GET /admin/revenue``: the admin billing summary; admin session required (401
  without a session, 403 for a non-admin); reads ``payment_history``,
  ``subscriptions`` and this month's ``usage_tracking`` in D1.
- ``POST /upload/manuscript``: cookie auth, then the file goes to the
  MANUSCRIPTS_RAW bucket. The sandbox keeps no object store behind the Worker: a
  successful put answers 201 with the key it would have written, and stores
  nothing.

Switches (``ScenarioState.switches``), each a platform behaviour:

- ``broken_route``: ``{"version": id, "path": p, "message": m}``; that version's
  code throws ``m`` on path ``p`` (the global handler answers 500).
- ``d1_overloaded_share``: the share (0..1) of D1-backed requests whose D1 call
  fails with D1's overload error.
- ``r2_throttled_share``: the share of R2-backed requests whose put fails with
  R2's "reduce your request rate" error.

Which requests fail is drawn from a generator seeded by the scenario name, so a
scenario fails the same requests every time it is replayed.
"""

from __future__ import annotations

import random
import uuid

from . import _auth
from ._call import Call, WorkerError, json_response
from ._http import Response

BROKEN_ROUTE = "broken_route"
D1_OVERLOADED = "d1_overloaded_share"
R2_THROTTLED = "r2_throttled_share"
_RNG = "errorroutes_rng"
D1_OVERLOAD_MESSAGE = (
    "D1_ERROR: D1 DB is overloaded. Too many requests queued for too long."
)
R2_THROTTLE_MESSAGE = (
    "put: Reduce your concurrent request rate for the same object. (10058)"
)
# Routes whose handler needs D1 or R2 (the rate limiter's own D1 read is
# swallowed on failure, so it never fails a request).
D1_ROUTES = (
    "/manuscripts",
    "/payments/subscription",
    "/payments/can-upload",
    "/payments/history",
    "/admin/revenue",
)
R2_ROUTES = ("/upload/manuscript",)


def route(call: Call) -> Response | None:
    """Apply the switches, then answer the routes this module adds (else None).

    Raises:
        WorkerError: when a switch makes the Worker throw for this request.
    """
    _apply_switches(call)
    method, path = call.request.method, call.path
    if (method, path) == ("GET", "/admin/revenue"):
        return _admin_revenue(call)
    if (method, path) == ("POST", "/upload/manuscript"):
        return _upload(call)
    return None


def _apply_switches(call: Call) -> None:
    switches = call.world.scenario.switches
    broken = switches.get(BROKEN_ROUTE)
    if (
        isinstance(broken, dict)
        and broken.get("version") == call.version.id
        and broken.get("path") == call.path
    ):
        raise WorkerError(str(broken.get("message")))
    if call.path in D1_ROUTES and _draw(call, D1_OVERLOADED):
        raise WorkerError(D1_OVERLOAD_MESSAGE)
    if call.path in R2_ROUTES and _draw(call, R2_THROTTLED):
        raise WorkerError(R2_THROTTLE_MESSAGE)


def _draw(call: Call, switch: str) -> bool:
    share = float(call.world.scenario.switches.get(switch) or 0.0)
    if share <= 0:
        return False
    rng = call.world.scenario.switches.setdefault(
        _RNG, random.Random(call.world.scenario.name)
    )
    return bool(rng.random() < share)


def _admin_revenue(call: Call) -> Response:
    session = _auth.validate_session(call)
    if session is None:
        return json_response(401, {"error": "Unauthorized"})
    with call.d1() as db:
        user = db.execute(
            "SELECT role FROM users WHERE id = ?", (session["userId"],)
        ).fetchone()
        if user is None or user["role"] != "admin":
            raise WorkerError("Forbidden: admin access required")
        paid = db.execute(
            "SELECT COUNT(*), COALESCE(SUM(amount), 0) FROM payment_history "
            "WHERE status = 'succeeded'"
        ).fetchone()
        used = db.execute(
            "SELECT COUNT(*) FROM usage_tracking WHERE timestamp >= ?",
            (int(call.now) - 30 * 86_400,),
        ).fetchone()
        active = db.execute(
            "SELECT plan_type, COUNT(*) FROM subscriptions WHERE status = 'active' "
            "GROUP BY plan_type"
        ).fetchall()
    return json_response(
        200,
        {
            "payments": int(paid[0]),
            "revenue": int(paid[1]),
            "analysesLast30Days": int(used[0]),
            "activeSubscriptions": {row[0]: int(row[1]) for row in active},
        },
    )


def _upload(call: Call) -> Response:
    session = _auth.validate_session(call)
    if session is None:
        return json_response(401, {"error": "Unauthorized - please log in"})
    key = f"{session['userId']}/{uuid.uuid4()}/{int(call.now * 1000)}_manuscript.txt"
    return json_response(201, {"success": True, "manuscriptKey": key})
